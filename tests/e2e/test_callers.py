"""What Logic Apps and scripts rely on, through devhost, Azurite and the simulated tenant:
idempotent starts (Idempotency-Key) and cancel (DELETE)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import orjson
import pytest
from azure.core.exceptions import ResourceNotFoundError

from userexport import idempotency
from userexport.clients import build_clients
from userexport.jobs import utcnow
from userexport.settings import Settings

from .conftest import Storage, app_settings, running_stack, wait_for_export

BODY = {"columns": ["objectId", "userPrincipalName"], "fileName": "idem.csv"}


async def job_ids(storage: Storage) -> set[str]:
    """The ids of the job rows (not of partitions or keys); none before the first export."""
    try:
        rows = storage.table.query_entities("PartitionKey eq 'job'", select=["RowKey"])
        return {row["RowKey"] async for row in rows}
    except ResourceNotFoundError:
        return set()


def post(api: httpx.Client, body: object, key: str) -> httpx.Response:
    return api.post(
        "/api/exports",
        content=orjson.dumps(body),
        headers={"Idempotency-Key": key, "Content-Type": "application/json"},
    )


async def test_the_same_key_and_body_answer_the_first_export_never_a_second(api, storage):
    key = f"run-{time.time_ns()}"
    before = await job_ids(storage)
    first = post(api, BODY, key)
    assert first.status_code == 202, first.text
    job_id = first.json()["id"]

    again = post(api, BODY, key)  # a Logic Apps retry after a timeout
    assert again.status_code in (200, 202) and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == job_id
    assert again.headers["Location"] == first.headers["Location"]

    # The same JSON written differently is the same body.
    reordered = b'{ "fileName":"idem.csv",  "columns":["objectId","userPrincipalName"] }'
    third = api.post(
        "/api/exports",
        content=reordered,
        headers={"Idempotency-Key": key, "Content-Type": "application/json"},
    )
    assert third.json()["id"] == job_id

    done = wait_for_export(api, first.headers["Location"])[-1]
    assert done.json()["status"] == "succeeded"
    finished = post(api, BODY, key)  # after it finished: 200 and the finished export
    assert finished.status_code == 200 and finished.json()["id"] == job_id
    assert finished.json()["downloadUrl"]
    assert await job_ids(storage) - before == {job_id}


async def test_the_same_key_with_another_body_is_a_422_naming_the_key(api, storage):
    key = f"reuse-{time.time_ns()}"
    assert post(api, BODY, key).status_code == 202
    before = await job_ids(storage)
    other = post(api, {**BODY, "fileName": "other.csv"}, key)
    assert other.status_code == 422, other.text
    assert other.headers["Content-Type"].startswith("application/problem+json")
    assert other.json()["field"] == "Idempotency-Key"
    assert await job_ids(storage) == before


async def test_identical_posts_at_once_make_one_export(api, storage):
    key = f"race-{time.time_ns()}"
    before = await job_ids(storage)
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: post(api, BODY, key), range(8)))
    assert {a.status_code for a in answers} <= {200, 202}, [a.text for a in answers]
    ids = {a.json()["id"] for a in answers}
    assert len(ids) == 1
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 7
    assert await job_ids(storage) - before == ids
    wait_for_export(api, answers[0].headers["Location"])


async def test_a_key_starts_a_new_export_once_24_hours_have_passed(stack):
    """The store's own rule, against Table Storage: a key older than its lifetime, or one whose
    first POST never wrote its job (it crashed in between), is taken over."""
    with app_settings(stack):
        clients = build_clients(Settings.from_env())
    try:
        await clients.ensure_resources()
        store, now = clients.idempotency, utcnow()
        key, fingerprint = f"old-{time.time_ns()}", idempotency.fingerprint(BODY)

        async def exists(_: str) -> bool:
            return True

        async def missing(_: str) -> bool:
            return False

        assert (
            await store.claim(key, fingerprint=fingerprint, job_id="a", now=now, job_exists=exists)
            == "a"
        )
        later = now + timedelta(hours=23)
        assert (
            await store.claim(
                key, fingerprint=fingerprint, job_id="b", now=later, job_exists=exists
            )
            == "a"
        )
        expired = now + idempotency.LIFETIME
        assert (
            await store.claim(key, fingerprint="other", job_id="c", now=expired, job_exists=exists)
            == "c"
        )

        orphan = f"orphan-{time.time_ns()}"
        assert (
            await store.claim(
                orphan, fingerprint=fingerprint, job_id="d", now=now, job_exists=missing
            )
            == "d"
        )
        # Its writer may still be at work: the key keeps naming its job for a while ...
        assert (
            await store.claim(
                orphan, fingerprint=fingerprint, job_id="e", now=now, job_exists=missing
            )
            == "d"
        )
        # ... then a retry takes it over.
        after = now + idempotency.ORPHAN_AFTER
        assert (
            await store.claim(
                orphan, fingerprint=fingerprint, job_id="f", now=after, job_exists=missing
            )
            == "f"
        )
    finally:
        await clients.close()


# Cancel: a 50,000-user export whose pages take a few seconds each, so it is mid-run when
# cancelled.
BIG = 50_000


@pytest.fixture(scope="module")
def big_stack(tmp_path_factory):
    with running_stack(
        tmp_path_factory.mktemp("cancel"),
        users=BIG,
        seed=3,
        sim_args=["--latency-per-user-ms", "3"],
    ) as running:
        yield running


def sim_users_returned(stack) -> int:
    return httpx.get(stack.sim["stats"], timeout=30).json()["usersReturned"]


async def test_cancel_stops_a_running_export_within_seconds_and_commits_nothing(big_stack):
    storage = Storage(big_stack)
    try:
        with httpx.Client(base_url=big_stack.api_url, timeout=60) as client:
            started = client.post("/api/exports", json={"columns": ["objectId"]})
            assert started.status_code == 202
            job_id, location = started.json()["id"], started.headers["Location"]
            deadline = time.monotonic() + 120
            while client.get(location).json()["usersWritten"] == 0:
                assert time.monotonic() < deadline, "the export never started writing"
                time.sleep(0.5)

            cancelled = client.delete(location)
            assert cancelled.status_code == 202, cancelled.text
            assert cancelled.json()["status"] == "cancelled"
            again = client.delete(location)
            assert again.status_code == 200 and again.json()["status"] == "cancelled"

            # Every partition stops at its next look at the job (2 s) or at the end of the
            # page it is reading (3 s): Graph is asked for nothing more after that.
            stopped_at = None
            deadline = time.monotonic() + 60
            previous = sim_users_returned(big_stack)
            while stopped_at is None or time.monotonic() - stopped_at < 10:
                assert time.monotonic() < deadline, "the workers did not stop"
                time.sleep(1)
                now = sim_users_returned(big_stack)
                if now != previous:
                    stopped_at, previous = None, now
                elif stopped_at is None:
                    stopped_at = time.monotonic()
            assert previous < BIG, "the workers stopped before listing everyone"

            final = client.get(location)
            assert final.status_code == 200
            body = final.json()
            assert body["status"] == "cancelled" and "downloadUrl" not in body
            assert client.delete(location).status_code == 200
        # Nothing committed: the staged blocks stay uncommitted and Azure discards them.
        assert {b async for b in storage.exports.list_blobs(name_starts_with=job_id)} == set()
        with pytest.raises(ResourceNotFoundError):
            await storage.exports.get_blob_client(f"{job_id}/users.csv").get_blob_properties()
    finally:
        await storage.close()


def test_a_finished_export_cannot_be_cancelled(api):
    started = api.post("/api/exports", json={"columns": ["objectId"]})
    done = wait_for_export(api, started.headers["Location"])[-1].json()
    assert done["status"] == "succeeded"
    refused = api.delete(started.headers["Location"])
    assert refused.status_code == 409
    assert refused.headers["Content-Type"].startswith("application/problem+json")
    assert api.get(started.headers["Location"]).json()["status"] == "succeeded"
    assert api.delete("/api/exports/0000000000000-nothere").status_code == 404
