"""A delta series through the real stack (devhost, Azurite, the simulated tenant changed over
Graph's own write APIs): a full run, then 10 users added, 10 updated (one renamed to another
UPN prefix), 10 deleted and 1 restored; the next run's changes file lists exactly those 31, its
rebuilt snapshot is byte-identical to a fresh full export, `latest` follows, an expired
deltaLink resyncs in full, and retention deletes the oldest runs."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devtools.stack import LocalStack
from devtools.tenantsim.changes import TenantWriter
from userexport.errors import JobConflict
from userexport.exportrequest import export_request
from userexport.jobs import DeltaPlan, Job, Plan, Status, utcnow
from userexport.series import SeriesStore

from .conftest import Storage, app_settings, download, run_export, running_stack

USERS = 120
SERIES = "hr-feed"
# A tenant this small is listed in one sequence, in Graph's order, as the snapshot keeps it.
SEQUENTIAL = {
    "USEREXPORT_SMALL_TENANT_USERS": "1000",
    "USEREXPORT_PARTITIONS": "32",
    "USEREXPORT_PARTITION_SECONDS": "10",
    "USEREXPORT_SERIES_KEEP": "2",
}


@pytest.fixture(scope="module")
def delta_stack(tmp_path_factory) -> Iterator[LocalStack]:
    with running_stack(
        tmp_path_factory.mktemp("delta"), users=USERS, seed=14, app_env=SEQUENTIAL
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def api(delta_stack: LocalStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=delta_stack.api_url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def tenant(delta_stack: LocalStack) -> Iterator[TenantWriter]:
    with delta_stack.tenant_writer() as writer:
        yield writer


def export(api: httpx.Client, **body: Any) -> dict[str, Any]:
    return run_export(api, body)


def rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def test_a_delta_series_of_columns_that_need_no_preflight_plans_on_a_fresh_app(api):
    # First on this stack: the deltaLink request is the app's first Graph request (its URL
    # must not lean on one sent before).
    columns = ["objectId", "displayName", "userPrincipalName"]
    first = export(api, series="profile", mode="delta", columns=columns)
    assert first["status"] == "succeeded" and first["delta"]["kind"] == "full", first
    again = export(api, series="profile", mode="delta", columns=columns)
    assert again["status"] == "succeeded" and again["delta"]["kind"] == "changes", again


def test_a_delta_series_lists_exactly_the_changes_and_rebuilds_the_snapshot(
    delta_stack, api, tenant
):
    users = tenant.users(select="id,userPrincipalName")
    assert len(users) == USERS
    # Deleted before the series starts, restored after its first run: new to the series.
    restored = users[-1]["id"]
    tenant.delete_user(restored)

    first = export(api, series=SERIES, mode="delta", snapshot=True)
    assert first["status"] == "succeeded", first
    assert first["delta"]["kind"] == "full" and "first" in first["delta"]["reason"]
    assert "changesUrl" not in first
    assert rows(download(delta_stack, first["downloadUrl"])).__len__() == USERS  # header + 119

    added = [
        tenant.create_user(
            displayName=f"Delta Added {n}",
            userPrincipalName=f"delta.added{n}@contoso.example",
            mailNickname=f"deltaadded{n}",
            accountEnabled=True,
        )["id"]
        for n in range(10)
    ]
    updated = [u["id"] for u in users[:10]]
    for n, user_id in enumerate(updated[1:]):
        tenant.update_user(user_id, jobTitle=f"Changed title {n}")
    # A rename to another UPN prefix: the row is replaced where it was, never listed twice.
    renamed = users[0]
    new_upn = "zz-renamed." + renamed["userPrincipalName"]
    assert new_upn[0].lower() != renamed["userPrincipalName"][0].lower()
    tenant.update_user(renamed["id"], userPrincipalName=new_upn)
    deleted = [u["id"] for u in users[10:20]]
    for user_id in deleted:
        tenant.delete_user(user_id)
    tenant.restore_user(restored)

    before = httpx.get(delta_stack.sim["stats"]).json()["requests"]
    second = export(api, series=SERIES, mode="delta", snapshot=True)
    assert second["status"] == "succeeded", second
    after = httpx.get(delta_stack.sim["stats"]).json()["requests"]

    def made(*kinds: str) -> int:
        return sum(after.get(k, 0) - before.get(k, 0) for k in kinds)

    # Only the 21 changed users are looked up (and the plan's check of one user's methods);
    # the tenant is not listed again: delta pages, the check's one-user page and a $count.
    assert 21 <= made("methods", "phoneMethods", "emailMethods") <= 22
    # One $count checks the rebuilt snapshot against Graph (a restore delta may leave out).
    assert made("users") <= 1 and made("usersCount") == 1 and made("delta") >= 2
    delta = second["delta"]
    assert delta["kind"] == "changes" and delta["since"] == first["id"]
    assert (delta["added"], delta["updated"], delta["removed"]) == (11, 10, 10)
    assert delta["authenticationColumnsFrom"]["jobId"] == first["id"]

    changes = rows(download(delta_stack, second["changesUrl"]))
    header, body = changes[0], changes[1:]
    assert header[:2] == ["changeType", "changeReason"] and header[2:] == second["columns"]
    ids = header.index("objectId")
    by_type: dict[str, set[str]] = {}
    for row in body:
        by_type.setdefault(row[0], set()).add(row[ids])
    assert len(body) == 31
    assert by_type == {
        "added": {*added, restored},
        "updated": set(updated),
        "removed": set(deleted),
    }
    upn = header.index("userPrincipalName")
    assert [r[upn] for r in body if r[ids] == renamed["id"]] == [new_upn]
    # Soft-deleted users: Graph's reason "changed"; their row keeps what the snapshot held.
    assert {r[1] for r in body if r[0] == "removed"} == {"changed"}
    assert all(r[upn] for r in body if r[0] == "removed")

    # The rebuilt snapshot is the file a fresh full export of the changed tenant gives.
    fresh = export(api, columns=second["columns"])
    snapshot = download(delta_stack, second["downloadUrl"])
    assert snapshot == download(delta_stack, fresh["downloadUrl"])
    assert len(rows(snapshot)) == 1 + USERS - 1 + 10 - 10 + 1

    # latest follows the series, with the files' URLs.
    latest = api.get("/api/exports/latest", params={"series": SERIES})
    assert latest.status_code == 200, latest.text
    assert latest.json()["id"] == second["id"] and latest.json()["changesUrl"]
    assert latest.headers["Content-Location"].endswith(f"/api/exports/{second['id']}")


def test_an_expired_deltalink_resyncs_in_full_and_says_so(delta_stack, api, tenant):
    export(api, series="expiring", mode="delta")
    faults = httpx.post(delta_stack.sim["faults"], json={"expireDeltaTokens": True})
    assert faults.status_code == 200, faults.text
    again = export(api, series="expiring", mode="delta")
    assert again["delta"]["kind"] == "full"
    assert "syncStateNotFound" in again["delta"]["reason"]
    assert "syncStateNotFound" in again["reason"]
    assert again["status"] == "completedWithErrors"  # the notice is a row of the errors file
    errors = rows(download(delta_stack, again["errorsUrl"]))
    assert [r[4] for r in errors[1:]] == ["syncStateNotFound"]
    # The CSV is whole; the following run reads changes again.
    assert len(rows(download(delta_stack, again["downloadUrl"]))) == len(tenant.users()) + 1
    assert export(api, series="expiring", mode="delta")["delta"]["kind"] == "changes"


def test_a_changes_run_without_snapshot_hands_out_only_the_changes(api):
    export(api, series="no-snapshot", mode="delta")
    run = export(api, series="no-snapshot", mode="delta")
    assert run["delta"]["kind"] == "changes" and run["changesUrl"] and run["errorsUrl"]
    assert "downloadUrl" not in run
    assert (run["delta"]["added"], run["delta"]["updated"], run["delta"]["removed"]) == (0, 0, 0)


def test_latest_and_its_errors(api):
    for params, status, field in (
        ({}, 400, "series"),
        ({"series": "no such/series"}, 400, "series"),
        ({"series": "never-ran"}, 404, "series"),
        ({"series": SERIES, "top": "1"}, 400, "top"),
    ):
        answer = api.get("/api/exports/latest", params=params)
        assert answer.status_code == status, answer.text
        assert answer.json()["field"] == field


def test_retention_keeps_the_newest_runs_of_each_series(delta_stack, api):
    runs = [export(api, series="kept", columns=["objectId"])["id"] for _ in range(4)]
    fired = httpx.post(f"{delta_stack.api_url}/admin/functions/nightly_export", json={})
    assert fired.status_code in (200, 202), fired.text
    newest_first = runs[::-1]
    for job_id in newest_first[:2]:
        assert api.get(f"/api/exports/{job_id}").status_code == 200
    for job_id in newest_first[2:]:
        assert api.get(f"/api/exports/{job_id}").status_code == 404
    latest = api.get("/api/exports/latest", params={"series": "kept"}).json()
    assert latest["id"] == runs[-1]


def test_retention_keeps_a_series_definitions_apart_and_the_run_it_builds_on(delta_stack, api):
    body = {"series": "guarded-base", "mode": "delta", "columns": ["objectId"]}
    base = export(api, **body)
    # Two newer exports with files in the same series, full ones, a definition changed on
    # purpose (the delta state stays on the base): they never push the base out.
    full = [
        export(api, series="guarded-base", columns=["objectId"], redefine=True)["id"]
        for _ in range(2)
    ]
    # Dry runs have no files: however many, they never push an export with files out.
    dry = [export(api, **body, dryRun=True, redefine=True)["id"] for _ in range(3)]
    fired = httpx.post(f"{delta_stack.api_url}/admin/functions/nightly_export", json={})
    assert fired.status_code in (200, 202), fired.text
    assert api.get(f"/api/exports/{base['id']}").status_code == 200
    assert [api.get(f"/api/exports/{i}").status_code for i in full] == [200, 200]
    assert [api.get(f"/api/exports/{i}").status_code for i in dry] == [404, 200, 200]
    # latest goes by the series' definition (the delta one again): the base, not a full run.
    latest = api.get("/api/exports/latest", params={"series": "guarded-base"})
    assert latest.json()["id"] == base["id"]
    follows = export(api, **body)
    assert follows["delta"]["kind"] == "changes" and follows["delta"]["since"] == base["id"]


def test_a_failed_lookup_keeps_the_snapshots_authentication_cells(delta_stack, api, tenant):
    body = {"series": "kept-cells", "mode": "delta", "snapshot": True}
    first = export(api, **body)
    snapshot = rows(download(delta_stack, first["downloadUrl"]))
    header = snapshot[0]
    ids, title, email = (header.index(c) for c in ("objectId", "jobTitle", "authenticationEmail"))
    # Not the first user: the plan step reads that one's methods to choose its lookups.
    before = next(r for r in snapshot[2:] if r[email])
    tenant.update_user(before[ids], jobTitle="Kept cells")
    # Graph refuses this user's authentication-method reads (403, as for a user a policy
    # protects): its methods are unknown this run, not gone.
    failing = {"authenticationStatus": {before[ids]: 403}}
    assert httpx.post(delta_stack.sim["faults"], json=failing).status_code == 200
    try:
        second = export(api, **body)
    finally:
        cleared = {"authenticationStatus": {}}
        assert httpx.post(delta_stack.sim["faults"], json=cleared).status_code == 200
    assert second["status"] == "completedWithErrors" and second["delta"]["updated"] == 1
    rebuilt = rows(download(delta_stack, second["downloadUrl"]))
    [after] = [r for r in rebuilt[1:] if r[ids] == before[ids]]
    assert after[title] == "Kept cells" and after[email] == before[email]
    [changed] = rows(download(delta_stack, second["changesUrl"]))[1:]
    assert changed[0] == "updated" and changed[2:] == after
    errors = rows(download(delta_stack, second["errorsUrl"]))[1:]
    assert [r[0] for r in errors] == [before[ids]] and errors[0][3] == "403"


async def test_a_series_moves_on_only_from_the_snapshot_its_run_was_planned_on(delta_stack):
    with app_settings(delta_stack):
        store = Storage(delta_stack)
        try:
            series = SeriesStore(store.table)

            request = export_request(
                {"series": "guarded", "mode": "delta", "columns": ["objectId"]}, now=utcnow()
            )

            def run(job_id: str) -> Job:  # a changes run of the series, committed
                plan = Plan([[""]], delta=DeltaPlan("changes", None, since=None, link=""))
                return Job(job_id, Status.RUNNING, "http", utcnow(), request, plan=plan)

            async def advance(job_id: str, planned_on: str | None) -> None:
                link = f"link-{job_id}"
                await series.advance(run(job_id), delta_link=link, planned_on=planned_on)

            await advance("a", None)
            with pytest.raises(JobConflict):  # a second first run: the series has one
                await advance("b", None)
            await advance("b", "a")
            await advance("b", "a")  # its commit again: nothing to do
            with pytest.raises(JobConflict):  # planned on a, which b moved on from
                await advance("c", "a")
            await advance("c", "b")
            # b's commit retried after c built on it: b is in the history, nothing to do.
            await advance("b", "a")
            saved = await series.get("guarded")
            assert saved is not None and saved.delta_link == "link-c"
            assert saved.history == ["a", "b"]
        finally:
            await store.close()
