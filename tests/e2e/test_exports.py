"""End to end through devhost over HTTP, against Azurite and the simulated tenant."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import orjson
import pytest

from devtools.tenantsim import SimConfig, iter_users
from userexport.columns import DEFAULT_COLUMN_NAMES

from .conftest import SEED, USERS, Storage, read_csv, start, wait_for_export


def expected_ids() -> list[str]:
    return [user["id"] for user in iter_users(SimConfig(users=USERS, seed=SEED))]


def test_export_of_the_whole_tenant(api, storage_http):
    started = start(api)
    body = started.json()
    assert body["status"] == "queued"
    assert started.headers["Location"] == body["statusUrl"]
    assert body["statusUrl"].endswith(f"/api/exports/{body['id']}")
    assert int(started.headers["Retry-After"]) >= 1

    answers = wait_for_export(api, started.headers["Location"])
    statuses = [a.json()["status"] for a in answers]
    assert all(a.status_code == 202 for a in answers[:-1])
    assert "running" in statuses, statuses
    progress = [a.json()["usersWritten"] for a in answers]
    assert progress == sorted(progress), "progress never goes backwards"
    final = answers[-1]
    assert final.status_code == 200
    done = final.json()
    assert done["status"] == "succeeded"
    assert done["userCount"] == USERS and done["errorCount"] == 0
    for key in ("id", "createdAt", "startedAt", "finishedAt", "downloadUrl", "errorsUrl"):
        assert done[key], key

    download = storage_http.get(done["downloadUrl"])
    assert download.status_code == 200
    assert done["fileName"] in download.headers["Content-Disposition"]
    rows = read_csv(download.content)
    assert rows[0] == list(DEFAULT_COLUMN_NAMES)
    ids = [row[5] for row in rows[1:]]
    assert sorted(ids) == sorted(expected_ids()), "every user exactly once"
    assert len(set(ids)) == len(ids)

    errors = read_csv(storage_http.get(done["errorsUrl"]).content)
    assert errors == [
        ["objectId", "userPrincipalName", "failed", "httpStatus", "errorCode", "message"]
    ]


def test_sas_urls_are_read_only(api, storage_http):
    done = wait_for_export(api, start(api, {"columns": ["objectId"]}).headers["Location"])[
        -1
    ].json()
    url = done["downloadUrl"]
    assert "sp=r&" in url or url.endswith("sp=r") or "&sp=r" in url
    for attempt in (
        storage_http.put(url, content=b"overwritten", headers={"x-ms-blob-type": "BlockBlob"}),
        storage_http.delete(url),
    ):
        assert attempt.status_code == 403, attempt.text
    assert storage_http.get(url).content.decode("utf-8-sig").startswith("objectId\r\n")


def test_column_choice(api, storage_http):
    done = wait_for_export(
        api,
        start(api, {"columns": ["userPrincipalName", "objectId", "employeeId"]}).headers[
            "Location"
        ],
    )[-1].json()
    rows = read_csv(storage_http.get(done["downloadUrl"]).content)
    assert rows[0] == ["userPrincipalName", "objectId", "employeeId"]
    assert len(rows) == USERS + 1
    assert done["columns"] == ["userPrincipalName", "objectId", "employeeId"]


def test_unknown_export_is_404(api):
    for job_id in ("8234567890123-deadbeef", "nope"):
        answer = api.get(f"/api/exports/{job_id}")
        assert answer.status_code == 404
        assert answer.headers["Content-Type"].startswith("application/problem+json")
        assert job_id in answer.json()["detail"]
    assert api.get("/api/exports/..%2F..%2Fx").status_code == 404


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b"{not json", "body"),
        (b'{"colums": ["objectId"]}', "colums"),
        (b'{"columns": ["objectId", "shoeSize"]}', "columns[1]"),
        (b'{"fileName": "../evil.csv"}', "fileName"),
    ],
)
async def test_bad_requests_write_nothing(api, storage: Storage, content, field):
    jobs_before = await storage.job_ids()
    blobs_before = await storage.blob_names()
    answer = api.post("/api/exports", content=content, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    problem = answer.json()
    assert problem["field"] == field and problem["detail"]
    await asyncio.sleep(1.5)  # anything wrongly queued would have started by now
    assert await storage.job_ids() == jobs_before
    assert await storage.blob_names() == blobs_before


async def test_duplicate_delivery_gives_one_correct_csv(api, storage: Storage, storage_http):
    started = start(api, {"columns": ["objectId", "userPrincipalName"]})
    job_id = started.json()["id"]
    # The same messages again, twice, as at-least-once delivery may do: the plan message and,
    # once the plan exists, every partition's message.
    for _ in range(2):
        await storage.send_job_message(job_id)
    wait_until_planned = time.monotonic() + 30
    while not (job := api.get(f"/api/exports/{job_id}").json()).get("partitions"):
        assert time.monotonic() < wait_until_planned
        time.sleep(0.1)
    for partition in range(job["partitions"]):
        for _ in range(2):
            await storage.send_job_message(job_id, partition=partition)
    done = wait_for_export(api, started.headers["Location"])[-1].json()
    assert done["status"] == "succeeded" and done["userCount"] == USERS
    rows = read_csv(storage_http.get(done["downloadUrl"]).content)
    ids = [row[0] for row in rows[1:]]
    assert sorted(ids) == sorted(expected_ids())

    # A late duplicate, after the job finished, changes nothing.
    blob_name = urlsplit(done["downloadUrl"]).path.split("/exports/", 1)[1]
    blob = storage.exports.get_blob_client(blob_name)
    etag = (await blob.get_blob_properties()).etag
    await storage.send_job_message(job_id)
    await asyncio.sleep(3)
    assert (await blob.get_blob_properties()).etag == etag
    assert api.get(f"/api/exports/{job_id}").json()["finishedAt"] == done["finishedAt"]


async def test_a_message_that_always_fails_ends_in_poison_with_the_job_failed(
    api, storage: Storage
):
    # A job whose recorded request names a column this version does not know fails on every
    # delivery, as a bug or a bad deployment would.
    started = start(api, {"columns": ["objectId"]})
    job_id = started.json()["id"]
    answers = wait_for_export(api, started.headers["Location"])
    assert answers[-1].json()["status"] == "succeeded"
    entity = await storage.table.get_entity("job", job_id)
    entity["RowKey"] = broken_id = job_id[:-8] + "0badc0de"
    entity["request"] = orjson.dumps(
        {"columns": ["noSuchColumn"], "fileName": "x.csv", "formulaGuard": True}
    ).decode()
    for key in ("status", "checkpoint", "startedAt", "finishedAt", "userCount", "errorCount"):
        entity.pop(key, None)
    entity["status"] = "queued"
    await storage.table.create_entity(entity)
    await storage.send_job_message(broken_id)

    final = wait_for_export(api, f"/api/exports/{broken_id}", timeout=90)[-1]
    assert final.status_code == 200
    body = final.json()
    assert body["status"] == "failed"
    # What failed and what to do, without the internals (those are in the function's logs).
    assert "every delivery" in body["reason"] and "KeyError" in body["reason"]
    assert "Traceback" not in body["reason"] and "127.0.0.1" not in body["reason"]
    assert "downloadUrl" not in body
    assert broken_id not in str(await storage.blob_names())


def test_timer_creates_a_job(api):
    before = {job["id"] for job in api.get("/api/exports").json()["value"]}
    fired = api.post("/admin/functions/nightly_export", json={"input": ""})
    assert fired.status_code == 202
    listing = api.get("/api/exports").json()["value"]
    newest = listing[0]
    assert newest["id"] not in before
    assert newest["trigger"] == "timer"
    assert newest["columns"] == list(DEFAULT_COLUMN_NAMES)
    # The nightly series, in delta mode with its snapshot: the first run lists in full.
    assert (newest["series"], newest["mode"], newest["snapshot"]) == ("nightly", "delta", True)
    done = wait_for_export(api, f"/api/exports/{newest['id']}")[-1].json()
    assert done["status"] == "succeeded" and done["userCount"] == USERS
    assert done["delta"]["kind"] == "full" and done["downloadUrl"]
    latest = api.get("/api/exports/latest", params={"series": "nightly"}).json()
    assert latest["id"] == newest["id"]


def test_list_is_newest_first_and_paged(api):
    ids = [start(api, {"columns": ["objectId"]}).json()["id"] for _ in range(3)]
    first = api.get("/api/exports", params={"pageSize": 2}).json()
    assert [job["id"] for job in first["value"]] == ids[::-1][:2]
    second = api.get(first["nextLink"]).json()
    assert second["value"][0]["id"] == ids[0]
    assert api.get("/api/exports", params={"pageSize": 0}).json()["field"] == "pageSize"
    assert api.get("/api/exports", params={"cursor": "garbage"}).status_code == 400
    for job_id in ids:
        wait_for_export(api, f"/api/exports/{job_id}")
