"""The CSV's content through the real stack: every awkward value, the authentication columns,
failed lookups in the errors file, and a tenant-wide missing permission reported once."""

from __future__ import annotations

import csv
import io
import ssl
from collections.abc import Iterator

import httpx
import orjson
import pytest

from devtools.stack import LocalStack
from devtools.tenantsim import SimConfig, dump_tenant, iter_users
from userexport.columns import DEFAULT_COLUMN_NAMES
from userexport.plan import PROBE_USERS

from .conftest import Storage, emails, running_stack, wait_for_export
from .conftest import export as export_job

USERS = 600
FORCED = {3: 403, 4: 404, 5: 500}  # user index -> status of its authentication lookups
# A lookup failing while Graph serves the others is given up on after this long (in Azure 120 s,
# longer than Graph's storms): the user forced to 500 becomes an errors-file row sooner.
STORM = {"USEREXPORT_STORM_SECONDS": "3"}


@pytest.fixture(scope="module")
def tenant(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    path = tmp_path_factory.mktemp("tenant") / "tenant.jsonl"
    dump_tenant(SimConfig(users=USERS, seed=3), path, users_only=True)
    users = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    for index, status in FORCED.items():
        users[index]["_sim"] = {"authenticationStatus": status}
    path.write_bytes(b"".join(orjson.dumps(u) + b"\n" for u in users))
    return users


@pytest.fixture(scope="module")
def tenant_file(tenant, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("tenantfile") / "tenant.jsonl"
    path.write_bytes(b"".join(orjson.dumps(u) + b"\n" for u in tenant))
    return str(path)


@pytest.fixture(scope="module")
def content_stack(tmp_path_factory, tenant_file) -> Iterator[LocalStack]:
    with running_stack(
        tmp_path_factory.mktemp("content"), tenant_file=tenant_file, app_env=STORM
    ) as stack:
        yield stack


def export(stack: LocalStack, body: dict | None = None) -> tuple[dict, list[dict], list[dict]]:
    """Runs an export over HTTP; the finished job, the CSV rows and the error rows as dicts."""
    done = export_job(stack, body)
    trust = ssl.create_default_context(cafile=stack.env["SSL_CERT_FILE"])
    with httpx.Client(timeout=60, verify=trust) as storage:
        files = [storage.get(done[key]).content for key in ("downloadUrl", "errorsUrl")]
    parsed = [
        list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline=""))) for data in files
    ]
    return done, parsed[0], parsed[1]


def expected_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    return str(value)


def test_every_value_comes_back_exactly(content_stack, tenant):
    done, rows, _ = export(content_stack, {"formulaGuard": False})
    assert done["status"] == "completedWithErrors"
    assert done["userCount"] == USERS == len(rows)
    by_id = {row["objectId"]: row for row in rows}
    assert len(by_id) == USERS
    same_name = [c for c in DEFAULT_COLUMN_NAMES if c not in _MAPPED]
    for user in tenant:
        row = by_id[user["id"]]
        assert list(row) == list(DEFAULT_COLUMN_NAMES)
        for column in same_name:
            assert row[column] == expected_cell(user.get(column)), (user["id"], column)
        assert row["telephoneNumber"] == ((user.get("businessPhones") or [None])[0] or "")
        assert row["mobile"] == (user.get("mobilePhone") or "")
        assert row["physicalDeliveryOfficeName"] == (user.get("officeLocation") or "")
        assert row["alternateEmailAddress"] == ";".join(user.get("otherMails") or [])
        methods = user.get("authentication") or {}
        forced = user.get("_sim", {}).get("authenticationStatus")
        alternate = [
            m["phoneNumber"]
            for m in methods.get("phoneMethods", [])
            if m.get("phoneType") == "alternateMobile"
        ]
        emails = [m["emailAddress"] for m in methods.get("emailMethods", [])]
        assert row["authenticationAlternativePhoneNumber"] == (
            "" if forced else (alternate or [""])[0]
        )
        assert row["authenticationEmail"] == ("" if forced else (emails or [""])[0])
    awkward = "".join(row["displayName"] + row["department"] + row["jobTitle"] for row in rows)
    for needle in (",", '"', "\n", "\t", "=", "@"):
        assert needle in awkward, f"the simulated tenant has values with {needle!r}"
    assert any(not row["displayName"] for row in rows), "users without a displayName are kept"
    assert any(any(c.isalpha() and not c.isascii() for c in row["displayName"]) for row in rows)


_MAPPED = {
    "objectId",
    "telephoneNumber",
    "mobile",
    "physicalDeliveryOfficeName",
    "alternateEmailAddress",
    "authenticationAlternativePhoneNumber",
    "authenticationEmail",
}


def test_authentication_columns_are_filled(content_stack, tenant):
    _, rows, _ = export(content_stack, {"columns": ["objectId", "authenticationEmail"]})
    filled = sum(1 for row in rows if row["authenticationEmail"])
    with_email = sum(
        1 for u in tenant if (u.get("authentication") or {}).get("emailMethods") and "_sim" not in u
    )
    assert filled == with_email > 0


@pytest.fixture(scope="module")
def short_budget_stack(tmp_path_factory, tenant_file) -> Iterator[LocalStack]:
    """Invocations shorter than the patience with a lookup that always fails: when it first
    failed is carried across invocations (the checkpoint keeps it), so the export still ends."""
    with running_stack(
        tmp_path_factory.mktemp("short"),
        tenant_file=tenant_file,
        app_env={"USEREXPORT_TIME_BUDGET_SECONDS": "1", **STORM},
    ) as stack:
        yield stack


@pytest.mark.parametrize("stack_name", ["content_stack", "short_budget_stack"])
def test_failed_lookups_are_in_the_errors_file_and_the_users_stay(stack_name, request, tenant):
    done, rows, errors = export(request.getfixturevalue(stack_name))
    assert done["status"] == "completedWithErrors" and done["userCount"] == USERS
    ids = {row["objectId"] for row in rows}
    # One methods lookup per user answers both authentication columns: one row each.
    assert done["errorCount"] == len(errors) == len(FORCED)
    for index, status in FORCED.items():
        user = tenant[index]
        assert user["id"] in ids
        row = next(r for r in rows if r["objectId"] == user["id"])
        assert row["userPrincipalName"] == user["userPrincipalName"]
        mine = [e for e in errors if e["objectId"] == user["id"]]
        assert [e["failed"] for e in mine] == ["authentication/methods"]
        for error in mine:
            assert error["httpStatus"] == str(status)
            assert error["userPrincipalName"] == user["userPrincipalName"]
            assert error["errorCode"] and error["message"]
    assert "deleted" in next(e for e in errors if e["httpStatus"] == "404")["message"]


def test_no_lookups_when_no_authentication_column(content_stack):
    def lookups() -> int:
        requests = httpx.get(content_stack.sim["stats"]).json()["requests"]
        return sum(requests.get(k, 0) for k in ("methods", "phoneMethods", "emailMethods"))

    before = lookups()
    done, _, errors = export(content_stack, {"columns": ["objectId", "displayName"]})
    assert done["status"] == "succeeded" and not errors
    assert lookups() == before
    export(content_stack, {"columns": ["objectId", "authenticationEmail"]})
    # One email lookup per user, none for phones, besides the plan step's check and its probe
    # (PROBE_USERS); the user whose lookups answer 500 is tried again until its failures span
    # USEREXPORT_STORM_SECONDS, and only that one.
    asked = lookups() - before - PROBE_USERS
    assert USERS + 1 < asked < USERS + 20


def test_manager_column(content_stack, tenant):
    _, rows, _ = export(content_stack, {"columns": ["objectId", "manager"]})
    upn = {u["id"]: u["userPrincipalName"] for u in tenant}
    expected = {u["id"]: upn.get((u.get("manager") or {}).get("id"), "") for u in tenant}
    assert {r["objectId"]: r["manager"] for r in rows} == expected
    assert any(r["manager"] for r in rows)


def test_formula_guard_is_on_by_default(content_stack, tenant):
    _, rows, _ = export(content_stack, {"columns": ["objectId", "department", "mobile"]})
    departments = {u["id"]: u.get("department") or "" for u in tenant}
    for row in rows:
        raw = departments[row["objectId"]]
        if raw.startswith(("=", "@", "\t", "\r", "-")):
            assert row["department"] == "'" + raw
        elif not raw.startswith("+"):
            assert row["department"] == raw
        assert not row["mobile"].startswith("'"), "phone numbers stay as they are"


def test_missing_permission_for_the_whole_tenant_is_said_once(tmp_path_factory):
    with running_stack(
        tmp_path_factory.mktemp("denied"), users=250, seed=5, sim_args=["--roles", "User.Read.All"]
    ) as stack:
        done, rows, errors = export(stack)
    assert done["status"] == "completedWithErrors"
    assert len(rows) == 250
    assert len(errors) == 1 and done["errorCount"] == 1
    assert "UserAuthenticationMethod.Read.All" in errors[0]["message"]
    assert "UserAuthenticationMethod.Read.All" in done["reason"]
    assert not any(
        r["authenticationEmail"] or r["authenticationAlternativePhoneNumber"] for r in rows
    )


def test_throttled_lookups_are_retried_until_every_row_is_filled(tmp_path_factory):
    config = SimConfig(users=200, seed=9)
    with_email = emails(iter_users(config))
    # 200 lookups against a bucket of 100 per 10 s: half of them draw a 429 at first.
    with running_stack(
        tmp_path_factory.mktemp("throttled"), users=200, seed=9, sim_args=["--auth-budget", "100"]
    ) as stack:
        done, rows, errors = export(stack, {"columns": ["objectId", "authenticationEmail"]})
        stats = httpx.get(stack.sim["stats"]).json()
    assert stats["throttled"] > 0
    assert done["status"] == "succeeded" and errors == []
    assert {r["objectId"]: r["authenticationEmail"] for r in rows if r["authenticationEmail"]} == (
        with_email
    )


async def test_throttled_listing_slows_down_and_loses_nothing(tmp_path_factory):
    # 40 resource units per 10 s for everything: the plan's counts and the partitions' pages
    # run the bucket low. Graph then warns (x-ms-throttle-limit-percentage) or answers 429, and
    # the listing's limiter learns the bucket's rate from either and paces by it. Whether a 429
    # comes first depends on timing, so the rate it learnt is what shows it slowed down.
    config = SimConfig(users=300, seed=13)
    with running_stack(
        tmp_path_factory.mktemp("throttled-listing"),
        users=300,
        seed=13,
        sim_args=["--budget", "40"],
        app_env={"USEREXPORT_PARTITIONS": "3"},
    ) as stack:
        done, rows, errors = export(stack, {"columns": ["objectId"]})
        store = Storage(stack)
        try:
            learnt = [
                row
                async for row in store.table.query_entities(
                    "RowKey eq 'bucket'", select=["PartitionKey", "rate"]
                )
            ]
        finally:
            await store.close()
    rates = [r.get("rate") or 0 for r in learnt if r["PartitionKey"].endswith("-listing")]
    assert rates and 0 < rates[0] < 40, learnt  # RU per second: the budget is 40 per 10 s
    assert done["status"] == "succeeded" and errors == []
    assert done["partitions"] == 3, done.get("planNote")
    assert sorted(r["objectId"] for r in rows) == sorted(u["id"] for u in iter_users(config))


def test_listing_refused_fails_the_job_with_the_permission_to_grant(tmp_path_factory):
    with running_stack(
        tmp_path_factory.mktemp("no-user-read"),
        users=50,
        seed=5,
        sim_args=["--roles", "UserAuthenticationMethod.Read.All"],
    ) as stack:
        with httpx.Client(base_url=stack.api_url, timeout=60) as api:
            started = api.post("/api/exports")
            final = wait_for_export(api, started.headers["Location"])[-1]
    assert final.status_code == 200
    body = final.json()
    assert body["status"] == "failed"
    assert "User.Read.All" in body["reason"] and "403" in body["reason"]
    assert "downloadUrl" not in body
