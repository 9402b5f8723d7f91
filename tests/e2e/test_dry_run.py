"""`"dryRun": true` end to end (devhost, Azurite, the simulated tenant): the export is planned
and estimated, then ends `estimated` with no partition rows and no blob."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from .conftest import USERS, Storage, wait_for_export

COLUMNS = ["userPrincipalName", "objectId", "authenticationEmail"]  # a lookup per user


def dry_run(api: httpx.Client, body: dict, **headers: str) -> httpx.Response:
    answer = api.post("/api/exports", json={**body, "dryRun": True}, headers=headers)
    assert answer.status_code == 202, answer.text
    return answer


async def test_a_dry_run_plans_and_estimates_and_exports_nothing(api, storage: Storage):
    started = dry_run(api, {"columns": COLUMNS})
    job_id = started.json()["id"]
    answers = wait_for_export(api, started.headers["Location"])
    final = answers[-1]
    assert final.status_code == 200 and "Retry-After" not in final.headers
    job = final.json()
    assert job["status"] == "estimated" and job["dryRun"] is True
    assert job["startedAt"] and job["finishedAt"]
    assert job["estimatedTotal"] == USERS
    assert job["columns"] == COLUMNS
    estimate = job["estimate"]
    assert estimate["listingRequests"] >= 1 and estimate["resourceUnits"] >= 1
    assert estimate["lookupRequests"] >= USERS  # the authentication column's lookups
    if "durationSeconds" in estimate:  # filled by the pace model
        assert estimate["durationSeconds"] > 0
        assert estimate["paceSource"] in ("learned", "default")
    for absent in ("downloadUrl", "errorsUrl", "urlsExpireAt"):
        assert absent not in job
    assert job["userCount"] is None and job["usersWritten"] == 0

    # Nothing was exported: no blob of the job, no partition rows, nothing left queued for it.
    assert not [name async for name in storage.exports.list_blobs(name_starts_with=job_id)]
    assert await storage.plan_prefixes(job_id) == []
    await asyncio.sleep(1.5)  # a partition message wrongly queued would have run by now
    assert not [name async for name in storage.exports.list_blobs(name_starts_with=job_id)]
    assert api.get(f"/api/exports/{job_id}").json()["finishedAt"] == job["finishedAt"]

    # The list shows it; cancelling it is refused as for any finished export.
    listed = {j["id"]: j for j in api.get("/api/exports").json()["value"]}
    assert listed[job_id]["status"] == "estimated" and listed[job_id]["dryRun"] is True
    cancel = api.delete(f"/api/exports/{job_id}")
    assert cancel.status_code == 409 and cancel.json()["detail"]
    assert api.get(f"/api/exports/{job_id}").json()["status"] == "estimated"


def test_a_real_exports_description_says_it_is_not_a_dry_run(api):
    answer = api.post("/api/exports", json={"columns": ["objectId"]})
    assert answer.status_code == 202, answer.text
    done = wait_for_export(api, answer.headers["Location"])[-1].json()
    assert done["status"] == "succeeded" and done["dryRun"] is False


async def test_a_dry_run_that_is_not_a_boolean_is_a_400_naming_it(api, storage: Storage):
    jobs_before = await storage.job_ids()
    for value in ("yes", 1, None, "true"):
        answer = api.post("/api/exports", json={"dryRun": value})
        assert answer.status_code == 400, answer.text
        assert answer.headers["Content-Type"].startswith("application/problem+json")
        assert answer.json()["field"] == "dryRun", answer.json()
    assert await storage.job_ids() == jobs_before


def test_the_idempotency_key_tells_a_dry_run_from_a_real_export(api):
    key = f"dry-run-{uuid.uuid4()}"
    first = dry_run(api, {"columns": ["objectId"]}, **{"Idempotency-Key": key})
    wait_for_export(api, first.headers["Location"])
    replay = api.post(
        "/api/exports",
        json={"columns": ["objectId"], "dryRun": True},
        headers={"Idempotency-Key": key},
    )
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert "downloadUrl" not in replay.json()
    assert replay.json()["id"] == first.json()["id"] and replay.json()["status"] == "estimated"
    real = api.post(
        "/api/exports", json={"columns": ["objectId"]}, headers={"Idempotency-Key": key}
    )
    assert real.status_code == 422 and real.json()["field"] == "Idempotency-Key"
