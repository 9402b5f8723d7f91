"""Graph as Microsoft documents it and users report it, through the real stack (devhost, Azurite,
tenantsim over HTTP) with the simulator's switch for each behaviour on (devtools/tenantsim/
README.md, "Graph as documented"): what a user checks is the downloaded file's rows, the job's
status and `reason`, and the errors file. Every cell is a value Graph gave, or the job says
which column Graph would not give and why."""

from __future__ import annotations

import contextlib
import csv
import io
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from devtools.stack import LocalStack
from devtools.tenantsim import SimConfig, iter_users, members_of, tenant_groups

from .conftest import (
    Storage,
    app_settings,
    download,
    expected_csv,
    run_export,
    running_stack,
    wait_for_export,
)

USERS = 600
SEED = 19
CONFIG = SimConfig(users=USERS, seed=SEED)
STORM = 10  # USEREXPORT_STORM_SECONDS of this stack: a refusal believed after 10 s
SIGN_IN = [
    "objectId",
    "userPrincipalName",
    "lastSignInDateTime",
    "lastSuccessfulSignInDateTime",
    "daysSinceLastSignIn",
]
NEVER = "0001-01-01T00:00:00Z"


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with running_stack(
        tmp_path_factory.mktemp("documented"),
        users=USERS,
        seed=SEED,
        app_env={"USEREXPORT_STORM_SECONDS": str(STORM)},
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def api(graph: LocalStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=graph.api_url, timeout=60) as client:
        yield client


@contextlib.contextmanager
def switched(stack: LocalStack, **switches: Any) -> Iterator[None]:
    """tenantsim's switches on (POST /_sim/faults) for the block, all reset after it."""
    answer = httpx.post(stack.sim["faults"], json=switches)
    assert answer.status_code == 200, answer.text
    try:
        yield
    finally:
        httpx.post(stack.sim["faults"] + "/reset").raise_for_status()


def sim_stats(stack: LocalStack) -> dict[str, Any]:
    return httpx.get(stack.sim["stats"]).json()


def table(stack: LocalStack, url: str) -> list[dict[str, str]]:
    text = download(stack, url).decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def same_rows(got: bytes, expected: bytes) -> bool:
    """The same header and the same rows, in any order (a partitioned export's order is its
    plan's)."""

    def records(data: bytes) -> tuple[list[str], list[list[str]]]:
        header, *body = csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""))
        return header, sorted(body)

    return records(got) == records(expected)


def activity(user: dict[str, Any], key: str) -> str:
    return (user.get("signInActivity") or {}).get(key) or ""


def days_since_success(user: dict[str, Any], started: datetime) -> str:
    last = activity(user, "lastSuccessfulSignInDateTime")
    if not last or last == NEVER:
        return ""
    return str((started - datetime.fromisoformat(last.replace("Z", "+00:00"))).days)


def started_at(job: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(job["startedAt"].replace("Z", "+00:00"))


def assert_sign_in_cells(row: dict[str, str], user: dict[str, Any], started: datetime) -> None:
    for key in ("lastSignInDateTime", "lastSuccessfulSignInDateTime"):
        assert row[key] == activity(user, key), (user["id"], key)
    assert row["daysSinceLastSignIn"] == days_since_success(user, started), user["id"]


# 1 --------------------------------------------------------------------------------------------
def test_a_wrong_no_premium_403_now_and_then_is_retried_and_every_cell_is_right(graph, api):
    """Premium tenants get Authentication_RequestFromNonPremiumTenantOrB2CTenant on
    signInActivity "occasionally" (microsoft-graph-docs-contrib #3033, microsoft-graph-docs
    #14118): a fifth of the answers here."""
    with switched(graph, signInFlaky403=0.2):
        job = run_export(api, {"columns": SIGN_IN, "formulaGuard": False})
    assert job["status"] == "succeeded", job
    assert "reason" not in job
    assert table(graph, job["errorsUrl"]) == []
    rows = {r["objectId"]: r for r in table(graph, job["downloadUrl"])}
    assert len(rows) == USERS
    for user in iter_users(CONFIG):
        assert_sign_in_cells(rows[user["id"]], user, started_at(job))
    assert sim_stats(graph)["faults"].get("signInFlaky403", 0) > 0, "the switch took effect"


def test_a_no_premium_403_that_lasts_mid_export_empties_the_rest_and_says_so(graph, api):
    """The refusal persisting after Graph served sign-in activity (the licence lapsing, or the
    flake lasting): the export finishes; the users read before keep their sign-in cells, those
    after have them empty, and `reason` and one errors-file row say so."""
    with switched(graph, signInRefusedAfter=3):
        job = run_export(api, {"columns": SIGN_IN, "formulaGuard": False})
    assert job["status"] == "completedWithErrors", job
    reason = job["reason"]
    assert "stopped serving sign-in activity" in reason and "User.Read.All" not in reason
    assert "lastSignInDateTime, lastSuccessfulSignInDateTime, daysSinceLastSignIn" in reason
    [notice] = table(graph, job["errorsUrl"])
    assert notice["failed"] == "signInActivity" and notice["httpStatus"] == "403"
    assert notice["errorCode"] == "Authentication_RequestFromNonPremiumTenantOrB2CTenant"
    assert notice["message"] == reason
    rows = {r["objectId"]: r for r in table(graph, job["downloadUrl"])}
    assert len(rows) == USERS, "no user is lost"
    emptied = 0
    for user in iter_users(CONFIG):
        row = rows[user["id"]]
        if row["lastSignInDateTime"] or row["lastSuccessfulSignInDateTime"]:
            assert_sign_in_cells(row, user, started_at(job))  # a value Graph gave, or none
        elif activity(user, "lastSignInDateTime"):
            emptied += 1
    without = int(reason.split(" users read after that")[0].rsplit(" ", 1)[-1])
    assert 0 < emptied <= without <= USERS
    assert emptied > USERS / 2, "Graph served 3 requests: most users came after"


# 2 --------------------------------------------------------------------------------------------
def test_sign_in_activity_beside_an_advanced_query_is_read_by_id(graph, api):
    """signInActivity comes back empty in advanced queries (msgraph-sdk-powershell #1898);
    filter.domain is one (endsWith)."""
    domain = "fabrikam.com"
    with switched(graph, signInEmptyInAdvancedQueries=True):
        job = run_export(
            api, {"columns": SIGN_IN, "filter": {"domain": domain}, "formulaGuard": False}
        )
        emptied = sim_stats(graph)["faults"].get("signInEmptied", 0)
    assert job["status"] == "succeeded", job
    expected = [u for u in iter_users(CONFIG) if u["userPrincipalName"].endswith("@" + domain)]
    rows = {r["objectId"]: r for r in table(graph, job["downloadUrl"])}
    assert set(rows) == {u["id"] for u in expected}
    for user in expected:
        assert_sign_in_cells(rows[user["id"]], user, started_at(job))
    assert any(r["lastSignInDateTime"] for r in rows.values())
    assert job["estimate"]["signInRequests"] >= len(expected) / 15
    assert emptied == 0, "no advanced query asked Graph for signInActivity"


def test_sign_in_activity_of_a_groups_members_is_read_by_id(graph, api):
    """signInActivity is not documented on member lists (microsoft-graph-docs-contrib #5593)."""
    group = next(g for g in tenant_groups(CONFIG) if g["displayName"] == "Engineering")
    with switched(graph, signInEmptyInMemberLists=True):
        job = run_export(
            api, {"columns": SIGN_IN, "filter": {"group": group["id"]}, "formulaGuard": False}
        )
    assert job["status"] == "succeeded", job
    members = members_of(CONFIG, group["id"])
    rows = {r["objectId"]: r for r in table(graph, job["downloadUrl"])}
    assert set(rows) == {u["id"] for u in members}
    for user in members:
        assert_sign_in_cells(rows[user["id"]], user, started_at(job))


# 6 --------------------------------------------------------------------------------------------
def test_pages_with_expand_are_asked_for_100_users(graph, api):
    """ "Max page size with $expand is 100" (microsoft-graph-docs PR #21506): the listing asks
    for 100, so Graph never has to cap a page, and the estimate counts pages of 100."""
    with switched(graph, expandPageCap=100):
        before = sim_stats(graph)
        job = run_export(api, {"columns": ["objectId", "userPrincipalName", "manager"]})
        after = sim_stats(graph)
    assert job["status"] == "succeeded", job
    assert job["estimate"]["pageSize"] == 100
    capped = after["faults"].get("expandPageCapped", 0) - before["faults"].get(
        "expandPageCapped", 0
    )
    assert capped == 0
    users = list(iter_users(CONFIG))
    upn = {u["id"]: u["userPrincipalName"] for u in users}
    rows = {r["objectId"]: r["manager"] for r in table(graph, job["downloadUrl"])}
    assert rows == {u["id"]: upn.get((u.get("manager") or {}).get("id"), "") for u in users}


# 7 --------------------------------------------------------------------------------------------
def test_a_b2c_tenant_without_count_is_one_listing_with_a_note(graph, api):
    """ "The $count and $search parameters are currently not available in Azure AD B2C
    tenants" (List users); nor are advanced queries."""
    with switched(graph, b2c=True):
        job = run_export(api, {})
    assert job["status"] == "succeeded", job
    assert "B2C" in job["planNote"] and "$count" in job["planNote"]
    assert job["estimate"]["counted"] is False and "durationSeconds" not in job["estimate"]
    assert job["estimate"]["partitions"] == 1
    assert download(graph, job["downloadUrl"]) == expected_csv(CONFIG, prefixes=[""])


# 9 --------------------------------------------------------------------------------------------
def test_a_graph_without_the_authentication_methods_api_is_one_notice(graph, api):
    """The authentication-methods API is not available in Microsoft Graph China operated by
    21Vianet (authentication-list-methods.md): one notice, not a row per user."""
    with switched(graph, authenticationMethodsApi=False):
        before = sim_stats(graph)["faults"].get("noAuthenticationApi", 0)
        job = run_export(api, {"formulaGuard": False})
        refused = sim_stats(graph)["faults"].get("noAuthenticationApi", 0) - before
    assert job["status"] == "completedWithErrors", job
    assert "21Vianet" in job["reason"] and "authenticationEmail" in job["reason"]
    [notice] = table(graph, job["errorsUrl"])
    assert notice["httpStatus"] == "400" and notice["failed"] == "authentication/methods"
    assert refused == 1, "one lookup found out; no user was looked up"
    users = {u["id"]: u for u in iter_users(CONFIG)}
    for row in table(graph, job["downloadUrl"]):
        assert row["authenticationEmail"] == row["authenticationAlternativePhoneNumber"] == ""
        assert row["userPrincipalName"] == users[row["objectId"]]["userPrincipalName"]


def test_the_authentication_methods_api_gone_mid_export_is_said_once(graph, api):
    """The plan's lookup was answered, then Graph answers none: a partition that meets it
    stops looking up, and the commit says so once, with how many users."""
    users = {u["id"]: u for u in iter_users(CONFIG)}
    # The first list page held back is the plan's one-user read, the second a partition's:
    # its users are still to be looked up when the API goes, once the other partitions have
    # looked up some of theirs (on a busy machine they may not have begun by the time the held
    # page is asked for).
    with switched(graph, slowPages={"next": 2, "seconds": 4}):
        before = sim_stats(graph)
        held, looked_up = before["faults"].get("slowPage", 0), before["authMethodsReturned"]
        started = api.post("/api/exports", json={"columns": ["objectId", "authenticationEmail"]})
        assert started.status_code == 202, started.text
        deadline = time.monotonic() + 60
        while True:
            now = sim_stats(graph)
            if now["faults"].get("slowPage", 0) >= held + 2:
                if now["authMethodsReturned"] >= looked_up + 20:
                    break
            assert time.monotonic() < deadline, f"no partition page held or looked up: {now}"
            time.sleep(0.1)
        flipped = httpx.post(graph.sim["faults"], json={"authenticationMethodsApi": False})
        assert flipped.status_code == 200, flipped.text
        job = wait_for_export(api, started.headers["Location"], timeout=120)[-1].json()
    assert job["status"] == "completedWithErrors", job
    [notice] = table(graph, job["errorsUrl"])
    assert notice["httpStatus"] == "400" and "21Vianet" in notice["message"]
    assert "users not looked up before it said so" in job["reason"]
    without = int(job["reason"].split(" users not looked up")[0].rsplit(" ", 1)[-1])
    emptied = 0
    for row in table(graph, job["downloadUrl"]):
        methods = users[row["objectId"]].get("authentication") or {}
        email = ((methods.get("emailMethods") or [{}])[0]).get("emailAddress", "")
        if row["authenticationEmail"] != email:
            assert row["authenticationEmail"] == "", "a value Graph gave, or none"
            emptied += 1
    assert 0 < emptied <= without < USERS


# 10, 11 ---------------------------------------------------------------------------------------
async def test_429s_for_cpu_are_waited_out_and_teach_no_pace(graph, api):
    """x-ms-throttle-information: CPULimitExceeded (throttling-limits.md) is not the budget:
    the export waits it out, and the shared pace learns no rate from it."""
    with switched(graph, rate429Cpu=0.05, retryAfter429Cpu=1, targets=["users", "auth"]):
        job = run_export(api, {"columns": ["objectId", "userPrincipalName", "authenticationEmail"]})
        cpu = sim_stats(graph)["faults"].get("429cpu", 0)
    assert job["status"] == "succeeded", job
    assert table(graph, job["errorsUrl"]) == [] and cpu > 0
    columns = ("objectId", "userPrincipalName", "authenticationEmail")
    expected = expected_csv(CONFIG, prefixes=[""], columns=columns)
    assert same_rows(download(graph, job["downloadUrl"]), expected)
    with app_settings(graph):
        store = Storage(graph)
        try:
            learnt = [
                row
                async for row in store.table.query_entities("PartitionKey ge 'pace-'")
                if row["RowKey"] == "bucket" and row.get("rate")
            ]
        finally:
            await store.close()
    assert learnt == [], "no bucket's rate was learnt from a 429 about CPU"


def test_a_batch_answered_424_is_retried(graph, api):
    """424 Failed Dependency on a $batch (throttling.md before 2023, json-batching.md for its
    items): transient, never a failed job or an errors-file row."""
    with switched(graph, rate424=0.3):
        job = run_export(api, {"columns": ["objectId", "authenticationEmail"]})
        failed = sim_stats(graph)["faults"].get("424", 0)
    assert job["status"] == "succeeded", job
    assert failed > 0 and table(graph, job["errorsUrl"]) == []
    emails = {
        u["id"]: ((u.get("authentication") or {}).get("emailMethods") or [{}])[0].get(
            "emailAddress", ""
        )
        for u in iter_users(CONFIG)
    }
    assert {r["objectId"]: r["authenticationEmail"] for r in table(graph, job["downloadUrl"])} == (
        emails
    )


# 12 -------------------------------------------------------------------------------------------
def test_a_groups_members_cost_what_graph_documents(graph, api):
    """transitiveMembers pages cost 5 RU, 4 with $select (throttling-limits.md): the estimate
    counts what Graph charges."""
    group = next(g for g in tenant_groups(CONFIG) if g["displayName"] == "All Staff")
    with switched(graph, memberListCosts=True):
        before = sim_stats(graph)["resourceUnits"]
        job = run_export(
            api, {"columns": ["objectId", "userPrincipalName"], "filter": {"group": group["id"]}}
        )
        charged = sim_stats(graph)["resourceUnits"] - before
    assert job["status"] == "succeeded", job
    estimate = job["estimate"]
    assert estimate["listingRequests"] * 4 <= estimate["resourceUnits"]
    # The plan's few 1-RU reads aside (Graph charges the one-member read 3), the same figure.
    assert abs(estimate["resourceUnits"] - charged) <= 3, (estimate, charged)


# 13 -------------------------------------------------------------------------------------------
def test_days_since_last_sign_in_counts_successful_sign_ins_only(graph, api):
    """lastSignInDateTime counts failed attempts; lastSuccessfulSignInDateTime exists since
    December 2023, not backfilled (signInActivity resource): here Graph has none before June."""
    with switched(graph, successfulSignInsSince="2026-06-01"):
        job = run_export(api, {"columns": SIGN_IN, "formulaGuard": False})
    assert job["status"] == "succeeded", job
    started = started_at(job)
    rows = {r["objectId"]: r for r in table(graph, job["downloadUrl"])}
    failed_later = without_success = 0
    for user in iter_users(CONFIG):
        row = rows[user["id"]]
        success = activity(user, "lastSuccessfulSignInDateTime")
        if success and success < "2026-06-01":
            success = ""  # what Graph gives with the switch on
        assert row["lastSuccessfulSignInDateTime"] == success
        days = days_since_success(
            {"signInActivity": {"lastSuccessfulSignInDateTime": success}}, started
        )
        assert row["daysSinceLastSignIn"] == days, user["id"]
        last = row["lastSignInDateTime"]
        failed_later += bool(success and last and last != NEVER and last > success)
        without_success += bool(not success and last and last != NEVER)
    assert failed_later and without_success, "the tenant has both kinds of user"


# 8 --------------------------------------------------------------------------------------------
def test_members_listed_with_their_id_alone_fail_the_job_naming_the_permission(
    tmp_path_factory: pytest.TempPathFactory,
):
    """Without a permission to read users, Graph lists members with "limited information":
    the id and @odata.type, other properties null (permissions overview)."""
    roles = "GroupMember.Read.All,AdministrativeUnit.Read.All,UserAuthenticationMethod.Read.All"
    with (
        running_stack(
            tmp_path_factory.mktemp("limited"),
            users=120,
            seed=SEED,
            sim_args=["--roles", roles, "--limited-member-info"],
        ) as stack,
        httpx.Client(base_url=stack.api_url, timeout=60) as client,
    ):
        group = tenant_groups(SimConfig(users=120, seed=SEED))[0]
        job = run_export(client, {"filter": {"group": group["id"]}})
        assert job["status"] == "failed", job
        assert "User.Read.All" in job["reason"] and group["id"] in job["reason"]
        assert "downloadUrl" not in job
        assert sim_stats(stack)["faults"].get("limitedMember", 0) > 0


# 14 -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def storm_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Invocations of 1 s, the default patience (USEREXPORT_STORM_SECONDS 120)."""
    with running_stack(
        tmp_path_factory.mktemp("storm"),
        users=300,
        seed=SEED,
        app_env={"USEREXPORT_TIME_BUDGET_SECONDS": "1"},
    ) as stack:
        yield stack


def test_a_storm_on_one_users_lookups_is_outlasted(storm_stack):
    """Graph's 5xx come in storms of seconds: one user's lookups answered 503 for 10 s while
    Graph serves the others (5 failures used to make it an errors-file row)."""
    config = SimConfig(users=300, seed=SEED)
    users = list(iter_users(config))
    victim = next(u for u in users if (u.get("authentication") or {}).get("emailMethods"))
    with (
        switched(storm_stack, authenticationStatus={victim["id"]: 503}),
        httpx.Client(base_url=storm_stack.api_url, timeout=60) as client,
    ):
        started = client.post("/api/exports", json={"columns": ["objectId", "authenticationEmail"]})
        assert started.status_code == 202, started.text
        # At least 10 s and 5 failures (backoff 1, 2, 4, 8 s), however loaded the machine.
        storm_from = time.monotonic()
        while (
            time.monotonic() - storm_from < 10
            or sim_stats(storm_stack)["faults"].get("forced503", 0) < 5
        ):
            assert time.monotonic() - storm_from < 120, "the victim's lookups were not retried"
            time.sleep(0.5)
        httpx.post(storm_stack.sim["faults"], json={"authenticationStatus": {}}).raise_for_status()
        job = wait_for_export(client, started.headers["Location"], timeout=180)[-1].json()
    assert job["status"] == "succeeded", job
    assert table(storm_stack, job["errorsUrl"]) == []
    rows = {r["objectId"]: r["authenticationEmail"] for r in table(storm_stack, job["downloadUrl"])}
    assert rows[victim["id"]] == victim["authentication"]["emailMethods"][0]["emailAddress"]
    assert sim_stats(storm_stack)["faults"].get("forced503", 0) >= 5, "it failed many times"


# 3, 4, 5 --------------------------------------------------------------------------------------
DELTA_USERS = 150
# A tenant this small is listed in one sequence, in Graph's order, as the snapshot keeps it: a
# rebuilt snapshot is byte for byte what a fresh export gives.
SEQUENTIAL = {
    "USEREXPORT_SMALL_TENANT_USERS": "1000",
    "USEREXPORT_PARTITIONS": "32",
    "USEREXPORT_PARTITION_SECONDS": "10",
}
DELTA_COLUMNS = [
    "objectId",
    "userPrincipalName",
    "displayName",
    "givenName",
    "jobTitle",
    "department",
    "mail",
    "mobile",
    "alternateEmailAddress",
    "accountEnabled",
]


@pytest.fixture(scope="module")
def delta(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with running_stack(
        tmp_path_factory.mktemp("documented-delta"),
        users=DELTA_USERS,
        seed=23,
        app_env=SEQUENTIAL,
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def delta_api(delta: LocalStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=delta.api_url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def writer(delta: LocalStack) -> Iterator[Any]:
    with delta.tenant_writer() as tenant:
        yield tenant


def run(api: httpx.Client, series: str) -> dict[str, Any]:
    """A run of a delta series with its snapshot (a series keeps the definition it began with)."""
    body = {"series": series, "mode": "delta", "columns": DELTA_COLUMNS, "snapshot": True}
    return run_export(api, body)


def test_delta_items_with_only_the_changed_properties_keep_the_other_cells(
    delta, delta_api, writer
):
    """Delta items carry "at least the properties that have been updated" and leave out
    properties never set (delta query overview, user-delta): a key absent from an item keeps
    the snapshot's cell, an explicit null clears it."""
    with switched(delta, deltaPartialItems=True):
        first = run(delta_api, "partial")
        users = writer.users(select="id,department")
        retitled = users[3]["id"]
        cleared = next(u["id"] for u in users[4:] if u.get("department"))
        writer.update_user(retitled, jobTitle="Retitled by the test")
        writer.update_user(cleared, department=None)
        writer.create_user(
            displayName="Partial Added",
            userPrincipalName="partial.added@fabrikam.onmicrosoft.com",
            mailNickname="partialadded",
            accountEnabled=True,
        )
        second = run(delta_api, "partial")
        trimmed = sim_stats(delta)["faults"].get("deltaPartialItem", 0)
    assert first["delta"]["kind"] == "full" and second["delta"]["kind"] == "changes", second
    assert (second["delta"]["added"], second["delta"]["updated"]) == (1, 2), second["delta"]
    assert trimmed > 0, "Graph's items left properties out"
    fresh = run_export(delta_api, {"columns": DELTA_COLUMNS})
    assert download(delta, second["downloadUrl"]) == download(delta, fresh["downloadUrl"])
    changes = table(delta, second["changesUrl"])
    row = next(r for r in changes if r["objectId"] == retitled)
    assert row["jobTitle"] == "Retitled by the test" and row["userPrincipalName"]
    assert next(r for r in changes if r["objectId"] == cleared)["department"] == ""


def test_a_restore_that_delta_leaves_out_makes_the_run_a_full_one(delta, delta_api, writer):
    """With $select, a restored user may not appear in delta at all (microsoft-graph-docs-
    contrib #6555): the rebuilt snapshot is checked against Graph's count."""
    victim = writer.users(select="id")[7]["id"]
    with switched(delta, deltaSkipsRestored=True):
        run(delta_api, "restores")
        writer.delete_user(victim)
        removed = run(delta_api, "restores")
        writer.restore_user(victim)
        restored = run(delta_api, "restores")
        skipped = sim_stats(delta)["faults"].get("deltaSkippedRestore", 0)
    assert removed["delta"]["kind"] == "changes" and removed["delta"]["removed"] == 1
    assert skipped > 0, "Graph's delta left the restore out"
    assert restored["status"] == "succeeded", restored
    assert restored["delta"]["kind"] == "full", restored["delta"]
    assert "Graph counts" in restored["delta"]["reason"]
    ids = {r["objectId"] for r in table(delta, restored["downloadUrl"])}
    assert victim in ids and len(ids) == len(writer.users(select="id"))
    assert run(delta_api, "restores")["delta"]["kind"] == "changes", "and on it goes"


@pytest.mark.parametrize(
    ("answer", "says"), [("SyncStateNotFound", "SyncStateNotFound"), ("gone", "410")]
)
def test_delta_state_expired_in_any_documented_shape_resyncs_in_full(
    delta, delta_api, writer, answer, says
):
    """Expired delta state is "a 40X-series error with error codes such as
    syncStateNotFound", spelt by workload, or "410 Gone and a Location header" (delta query
    overview)."""
    series = f"expiry-{answer.lower()}"
    with switched(delta, deltaExpiredAnswer=answer):
        run(delta_api, series)
        httpx.post(delta.sim["faults"], json={"expireDeltaTokens": True}).raise_for_status()
        again = run(delta_api, series)
    assert again["status"] in ("succeeded", "completedWithErrors"), again
    assert again["delta"]["kind"] == "full" and says in again["delta"]["reason"]
    assert len(table(delta, again["downloadUrl"])) == len(writer.users(select="id"))


def test_a_property_delta_refuses_fails_the_series_naming_it(delta, delta_api):
    """A property refused in a delta $select: 400 "$expand/$select is not supported for the
    following properties" (graph-explorer-v4 #3189)."""
    columns = ["objectId", "userPrincipalName", "department"]
    run_export(delta_api, {"series": "refused", "mode": "delta", "columns": columns})
    with switched(delta, deltaRefusedProperties=["department"]):
        job = run_export(delta_api, {"series": "refused", "mode": "delta", "columns": columns})
    assert job["status"] == "failed", job
    assert "department" in job["reason"] and '"mode": "full"' in job["reason"]


def test_a_b2c_tenant_refuses_delta_and_says_to_export_in_full(delta, delta_api):
    """ "Change enumeration is not supported for requested tenant" (Azure AD B2C)."""
    with switched(delta, b2c=True):
        job = run(delta_api, "b2c")
    assert job["status"] == "failed", job
    assert "Change enumeration" in job["reason"] and '"mode": "full"' in job["reason"]
