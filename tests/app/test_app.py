"""The worker and the API in-process against Azurite and the simulated tenant (conftest.py):
what a caller of the HTTP API sees, for a partitioned export, a cancelled one, a dry run and a
delta series with its latest link. Each asserts the files' bytes, not only a status."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import ssl
import time
from typing import Any

import httpx

from devtools.stack import LocalStack
from devtools.tenantsim import SimConfig, iter_users
from tests.e2e.conftest import Storage, expected_csv

from .conftest import SEED, USERS


async def wait(app: httpx.AsyncClient, location: str, *, timeout: float = 120) -> dict[str, Any]:
    """Polls as a script does, every Retry-After seconds, until the export's final answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = await app.get(location)
        if answer.status_code != 202:
            assert answer.status_code == 200, answer.text
            return answer.json()
        await asyncio.sleep(float(answer.headers["Retry-After"]))
    raise AssertionError(f"the export at {location} did not finish within {timeout} s")


async def export(app: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    started = await app.post("/api/exports", json=body)
    assert started.status_code == 202, started.text
    return await wait(app, started.headers["Location"])


def fetch(local: LocalStack, url: str) -> bytes:
    trust = ssl.create_default_context(cafile=local.env["SSL_CERT_FILE"])
    with httpx.Client(verify=trust, timeout=60) as client:
        answer = client.get(url, follow_redirects=True)
        answer.raise_for_status()
        return answer.content


def records(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def facts(data: bytes) -> dict[str, Any]:
    """What the job's `files` must say of a file: its records after the header, bytes, sha256."""
    return {
        "rows": len(records(data)) - 1,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


async def test_a_partitioned_export_is_the_tenant_byte_for_byte(local, app):
    job = await export(app, {})  # the admin center's 25 columns
    assert job["status"] == "succeeded" and job["userCount"] == USERS, job
    assert job["partitions"] == 8  # the suite splits every listing (SPLIT_EVERY_LISTING)
    storage = Storage(local)
    try:
        prefixes = await storage.plan_prefixes(job["id"])
    finally:
        await storage.close()
    users = fetch(local, job["downloadUrl"])
    assert users == expected_csv(SimConfig(users=USERS, seed=SEED), prefixes=prefixes)
    errors = fetch(local, job["errorsUrl"])
    assert records(errors)[1:] == []
    assert job["files"] == {"csv": facts(users), "errors": facts(errors)}


async def test_a_cancelled_export_hands_out_nothing(local, app):
    started = await app.post("/api/exports", json={"columns": ["objectId", "displayName"]})
    assert started.status_code == 202, started.text
    location = started.headers["Location"]
    cancelled = await app.delete(location)
    assert cancelled.status_code in (200, 202), cancelled.text
    job = await wait(app, location)
    assert job["status"] == "cancelled", job
    assert job["cancelledBy"]["kind"] == "anonymous"
    assert "downloadUrl" not in job and "files" not in job
    storage = Storage(local)
    try:
        assert not {name for name in await storage.blob_names() if name.startswith(job["id"])}
    finally:
        await storage.close()


async def test_a_dry_run_estimates_and_writes_nothing(app):
    job = await export(app, {"dryRun": True})
    assert job["status"] == "estimated", job
    estimate = job["estimate"]
    assert job["estimatedTotal"] == USERS and estimate["durationSeconds"] > 0
    assert estimate["lookupRequests"] >= USERS  # the default columns look each user up
    assert "downloadUrl" not in job and "files" not in job


async def test_a_delta_series_hands_out_its_changes_and_its_latest_link(local, app):
    body = {
        "series": "app-lane",
        "mode": "delta",
        "snapshot": True,
        "columns": ["objectId", "displayName"],
    }
    full = await export(app, body)
    assert full["status"] == "succeeded" and full["delta"]["kind"] == "full", full
    snapshot = records(fetch(local, full["downloadUrl"]))
    renamed = snapshot[1][0]
    with local.tenant_writer() as writer:
        writer.update_user(renamed, displayName="Renamed In The App Lane")
    changes = await export(app, body)
    assert changes["status"] == "succeeded" and changes["delta"]["kind"] == "changes", changes
    changed = fetch(local, changes["changesUrl"])
    assert records(changed)[1:] == [["updated", "", renamed, "Renamed In The App Lane"]]
    rebuilt = fetch(local, changes["downloadUrl"])
    assert records(rebuilt) == [
        [renamed, "Renamed In The App Lane"] if row[0] == renamed else row for row in snapshot
    ]
    assert changes["files"]["changes"] == facts(changed)
    # One link that stays the latest: the series' newest run's files.
    latest = await app.get("/api/exports/latest/users.csv", params={"series": "app-lane"})
    assert latest.status_code == 302 and latest.headers["Cache-Control"] == "no-store"
    assert fetch(local, latest.headers["Location"]) == rebuilt


async def test_graphs_transient_503s_and_a_users_404_leave_every_other_cell_exact(local, app):
    """Graph answers 503 with Retry-After when it is briefly unavailable (throttling.md: "Service
    Unavailable", retry after the header's seconds), and 404 for a user deleted between the
    listing and its lookups: the 503s are waited out; the 404 is that user's errors-file row,
    and the job says it finished with errors."""
    gone = records(fetch(local, (await export(app, {"columns": ["objectId"]}))["downloadUrl"]))
    victim = gone[5][0]
    faults = {"rate503": 0.05, "retryAfter503": 1, "authenticationStatus": {victim: 404}}
    httpx.post(local.sim["faults"], json=faults, timeout=10).raise_for_status()
    served = httpx.get(local.sim["stats"]).json()["faults"].get("503", 0)
    try:
        job = await export(app, {"columns": ["objectId", "authenticationEmail"]})
        assert httpx.get(local.sim["stats"]).json()["faults"].get("503", 0) > served
    finally:
        clear = {"rate503": 0, "authenticationStatus": {}}
        httpx.post(local.sim["faults"], json=clear, timeout=10).raise_for_status()
    assert job["status"] == "completedWithErrors" and job["errorCount"] == 1, job
    errors = records(fetch(local, job["errorsUrl"]))
    assert [(row[0], row[3]) for row in errors[1:]] == [(victim, "404")]
    emails = {u["id"]: u for u in iter_users(SimConfig(users=USERS, seed=SEED))}
    rows = records(fetch(local, job["downloadUrl"]))[1:]
    assert len(rows) == USERS
    for user_id, email in rows:
        methods = (emails[user_id].get("authentication") or {}).get("emailMethods") or []
        expected = methods[0]["emailAddress"] if methods and user_id != victim else ""
        assert email == expected, user_id


# Microsoft's published product names of the simulated tenant's SKUs (licensing-service-plan-
# reference.md): the three /subscribedSkus lists and the retired one users still hold.
PRODUCTS = {
    "06ebc4ee-1bb5-47dd-8120-11324bc54e06": "Microsoft 365 E5",
    "05e9a617-0261-4cee-bb44-138d3ef5d965": "Microsoft 365 E3",
    "f30db892-07e9-47e9-837c-80727f46fd3d": "Microsoft Power Automate Free",
    "cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46": "Microsoft 365 Business Premium",
}


async def test_licences_by_the_product_names_the_admin_center_shows(local, app):
    columns = ["objectId", "assignedLicenseIds", "assignedLicenseNames"]
    job = await export(app, {"columns": columns, "formulaGuard": False})
    assert job["status"] == "succeeded", job
    rows = records(fetch(local, job["downloadUrl"]))[1:]
    users = {u["id"]: u for u in iter_users(SimConfig(users=USERS, seed=SEED))}
    named = 0
    for user_id, ids, names in rows:
        skus = [str(lic["skuId"]) for lic in users[user_id].get("assignedLicenses") or []]
        assert ids == ";".join(skus)
        assert names == ";".join(PRODUCTS[sku] for sku in skus), user_id
        named += bool(skus)
    assert named > USERS // 3 and any("Business Premium" in row[2] for row in rows)
