"""Never a wrong "succeeded": each property of issue 9 through the real stack (Azurite, tenantsim
and devhost, or the worker called in-process with the real SDK clients), with the expected
bytes built by an oracle that does not use the app's encoder."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest
from azure.core.exceptions import ResourceNotFoundError

from devtools.stack import ROOT, LocalStack
from devtools.tenantsim import SimConfig, dump_tenant, iter_users
from userexport import api as api_logic
from userexport.clients import build_clients, close_clients, get_clients
from userexport.exporter import run_message
from userexport.jobs import utcnow
from userexport.messages import ExportMessage, Outcome
from userexport.settings import Settings
from userexport.sweep import MAX_REVIVALS, sweep

from .conftest import (
    ORACLE_BODY,
    ORACLE_COLUMNS,
    SEED,
    USERS,
    Storage,
    app_settings,
    download,
    emails,
    export,
    job_events,
    oracle_csv,
    parse,
    running_stack,
    set_faults,
    wait_for_export,
)

# 1. The files of one job never share a blob.


@pytest.mark.parametrize("file_name", ["errors.csv", "ERRORS.csv", "users.csv", "Users.csv"])
def test_a_file_name_like_the_errors_files_never_shares_its_blob(stack, file_name):
    done = export(stack, {**ORACLE_BODY, "fileName": file_name})
    assert done["status"] == "succeeded"
    users = parse(download(stack, done["downloadUrl"]))
    errors = parse(download(stack, done["errorsUrl"]))
    assert users[0] == list(ORACLE_COLUMNS)
    assert sorted(r[0] for r in users[1:]) == sorted(
        u["id"] for u in iter_users(SimConfig(users=USERS, seed=SEED))
    )
    assert errors[0][:2] == ["objectId", "userPrincipalName"] and len(errors) == 1
    with httpx.Client(
        verify=ssl.create_default_context(cafile=stack.env["SSL_CERT_FILE"])
    ) as client:
        disposition = client.get(done["downloadUrl"]).headers["content-disposition"]
    assert f'filename="{file_name}"' in disposition


# 2. Fenced writes, and 3. bounded steps: one listing of 6000 users, pages of about a second.

FENCE_USERS, FENCE_SEED = 6000, 31


@pytest.fixture(scope="module")
def slow_stack(tmp_path_factory) -> Iterator[LocalStack]:
    with running_stack(
        tmp_path_factory.mktemp("fenced"),
        users=FENCE_USERS,
        seed=FENCE_SEED,
        sim_args=["--latency-per-user-ms", "1"],
        devhost_args=["--message-lease-seconds", "3"],
        # A lease is the budget plus the grace: 4 s here.
        app_env={
            "USEREXPORT_TIME_BUDGET_SECONDS": "3",
            "USEREXPORT_LEASE_GRACE_SECONDS": "1",
            "USEREXPORT_PARTITIONS": "1",
        },
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def fence_oracle() -> bytes:
    return oracle_csv(
        list(iter_users(SimConfig(users=FENCE_USERS, seed=FENCE_SEED))), prefixes=[""]
    )


async def claimed(storage: Storage, job_id: str, *, timeout: float = 60) -> datetime:
    """When the lease of the invocation that claimed partition 0 runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            row = await storage.table.get_entity(f"parts-{job_id}", "0000")
        except ResourceNotFoundError:
            row = {}
        if row.get("leaseOwner") and row.get("leaseUntil"):
            return row["leaseUntil"]
        await asyncio.sleep(0.1)
    raise AssertionError(f"partition 0 of job {job_id} was never claimed")


async def test_a_stale_invocation_that_wakes_after_a_takeover_changes_nothing(
    slow_stack, fence_oracle
):
    stack = slow_stack
    # The listing's first page takes 7 s: its invocation loses its 4 s lease meanwhile.
    set_faults(stack, {"slowPages": {"next": 1, "seconds": 7}})
    with httpx.Client(base_url=stack.api_url, timeout=60) as client:
        started = client.post("/api/exports", json=ORACLE_BODY)
        job_id = started.json()["id"]
        # Once the first invocation holds the partition (and sleeps on its first page) and its
        # lease has run out, a second delivery of the partition's message takes it over and
        # writes on; the first invocation wakes while it does, with a page to stage and a
        # checkpoint to save. (A second delivery within the lease would only be skipped.)
        storage = Storage(stack)
        try:
            lease_until = await claimed(storage, job_id)
            await asyncio.sleep(max(0.0, (lease_until - datetime.now(UTC)).total_seconds()) + 0.2)
            await storage.send_job_message(job_id, partition=0)
        finally:
            await storage.close()
        done = wait_for_export(client, started.headers["Location"], timeout=180)[-1].json()
    assert done["status"] == "succeeded", done
    assert download(stack, done["downloadUrl"]) == fence_oracle
    log = (stack.log_dir or stack.workdir or ROOT).joinpath("devhost.log").read_text()
    assert "was taken over by another invocation" in log, "the stale invocation tried to save"


async def test_two_invocations_of_one_partition_at_once_give_the_clean_bytes(
    slow_stack, fence_oracle
):
    """The same message delivered twice and run at once (the host's lease on it lapsed)."""
    stack = slow_stack
    stack.kill_devhost()  # this test is the host, until the invocations under test are done
    try:
        with app_settings(stack):
            clients = build_clients(Settings.from_env())
            job_id = await create_unqueued(clients)
            assert await run_message(clients, ExportMessage(job_id), message_id="plan") is (
                Outcome.PLANNED
            )
            await drain(clients)
            first = asyncio.create_task(
                run_message(clients, ExportMessage(job_id, 0), message_id="twice")
            )
            await asyncio.sleep(1.5)  # the first is mid-listing when the second starts
            second = await run_message(clients, ExportMessage(job_id, 0), message_id="twice")
            outcomes = {await first, second}
            await clients.close()
        assert Outcome.SKIPPED in outcomes, "one of the two stopped: it lost the partition"
    finally:
        stack.start_devhost()  # carries on from the checkpoints
    with httpx.Client(base_url=stack.api_url, timeout=60) as client:
        done = wait_for_export(client, f"/api/exports/{job_id}", timeout=180)[-1].json()
    assert done["status"] == "succeeded", done
    assert download(stack, done["downloadUrl"]) == fence_oracle


async def create_unqueued(clients) -> str:
    """A job created as POST does, whose queue message is then lost (deleted)."""
    await clients.ensure_resources()
    created = await api_logic.create_export(
        clients, body=orjson.dumps(ORACLE_BODY), trigger="http", links=api_logic.Links("")
    )
    await drain(clients)
    return created.body["id"]


async def drain(clients) -> None:
    """Deletes the queued messages: the test runs them itself."""
    async for message in clients.queue.receive_messages(max_messages=32):
        await clients.queue.delete_message(message)


async def test_a_relist_longer_than_the_budget_continues_across_invocations(
    slow_stack, fence_oracle
):
    stack = slow_stack
    with httpx.Client(base_url=stack.api_url, timeout=60) as client:
        started = client.post("/api/exports", json=ORACLE_BODY)
        location = started.headers["Location"]
        while client.get(location).json().get("usersWritten", 0) < 4000:
            time.sleep(0.2)
        # Passing over 4000 users again is 4 s of pages: more than one 3 s budget.
        set_faults(stack, {"expirePageTokens": True})
        done = wait_for_export(client, location, timeout=180)[-1].json()
    assert done["status"] == "succeeded", done
    assert httpx.get(stack.sim["stats"]).json()["faults"].get("expiredPageToken", 0) >= 1
    assert download(stack, done["downloadUrl"]) == fence_oracle


@pytest.mark.parametrize(
    ("value", "says"),
    [("nan", "positive number"), ("inf", "positive number"), ("600", "functionTimeout")],
)
def test_a_bad_setting_stops_the_app_at_start_naming_it(value, says):
    env = {
        **os.environ,
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "USEREXPORT_TIME_BUDGET_SECONDS": value,
    }
    started = subprocess.run(
        [sys.executable, "-m", "devtools.devhost", "--port", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 2
    assert "USEREXPORT_TIME_BUDGET_SECONDS" in started.stderr and says in started.stderr


# 3. A page whose lookups outlast the budget is checkpointed mid-page.


def test_a_page_whose_lookups_outlast_the_budget_is_split_across_invocations(tmp_path_factory):
    config = SimConfig(users=300, seed=17)
    expected = emails(iter_users(config))
    # One page of 300 users, 600 lookups against 200 a 10 s: about 30 s, in 1 s invocations.
    with running_stack(
        tmp_path_factory.mktemp("lookups"),
        users=300,
        seed=17,
        sim_args=["--auth-budget", "200"],
        app_env={"USEREXPORT_TIME_BUDGET_SECONDS": "1", "USEREXPORT_PARTITIONS": "1"},
    ) as stack:
        done = export(stack, {"columns": ["objectId", "authenticationEmail"]}, timeout=240)
        rows = parse(download(stack, done["downloadUrl"]))
        stats = httpx.get(stack.sim["stats"]).json()
    assert done["status"] == "succeeded", done
    assert {r[0]: r[1] for r in rows[1:] if r[1]} == expected
    assert len(rows) == 301
    # The one page was read again by each invocation that went on from mid-page.
    assert stats["requests"]["users"] >= 3, stats["requests"]


# 5. Every job reaches a final state.


async def test_a_job_whose_message_was_lost_is_moved_on_by_the_sweep(slow_stack, fence_oracle):
    stack = slow_stack
    stack.kill_devhost()
    with app_settings(stack):
        clients = build_clients(Settings.from_env())
        job_id = await create_unqueued(clients)  # nothing would ever run it
        await clients.close()
    stack.env["USEREXPORT_STALL_MINUTES"] = "0.05"  # 3 s
    try:
        stack.start_devhost()
        time.sleep(3.5)
        with httpx.Client(base_url=stack.api_url, timeout=60) as client:
            assert client.get(f"/api/exports/{job_id}").json()["status"] == "queued"
            assert client.post("/admin/functions/sweep_stalled_exports", json={}).is_success
            done = wait_for_export(client, f"/api/exports/{job_id}", timeout=180)[-1].json()
    finally:
        del stack.env["USEREXPORT_STALL_MINUTES"]
        stack.kill_devhost()
        stack.start_devhost()
    assert done["status"] == "succeeded", done
    assert download(stack, done["downloadUrl"]) == fence_oracle
    told = [(e["event"], e["status"]) for e in job_events(stack, job_id)]
    assert ("exportRevived", "queued") in told and told[-1] == ("exportFinished", "succeeded")


async def test_a_job_that_never_moves_is_failed_by_the_sweep_with_a_reason(slow_stack):
    stack = slow_stack
    stack.kill_devhost()
    try:
        with app_settings(stack), pytest.MonkeyPatch.context() as patch:
            patch.setenv("USEREXPORT_STALL_MINUTES", "0.01")
            clients = build_clients(Settings.from_env())
            job_id = await create_unqueued(clients)
            for _ in range(MAX_REVIVALS + 1):
                await asyncio.sleep(0.8)
                assert job_id in await sweep(clients)
                await drain(clients)  # what it was given is lost again
            job = await clients.jobs.get(job_id)
            await clients.close()
    finally:
        stack.start_devhost()
    assert job is not None and job.status.value == "failed"
    assert "no progress" in (job.reason or "")


async def test_the_sweep_spares_a_continuation_waiting_out_a_pause_and_counts_progress(
    slow_stack,
):
    stack = slow_stack
    stack.kill_devhost()
    try:
        with app_settings(stack), pytest.MonkeyPatch.context() as patch:
            patch.setenv("USEREXPORT_STALL_MINUTES", "0.01")
            clients = build_clients(Settings.from_env())
            job_id = await create_unqueued(clients)
            assert await run_message(clients, ExportMessage(job_id), message_id="plan") is (
                Outcome.PLANNED
            )
            await drain(clients)
            # Its continuation waits out a Graph pause, unseen, for another minute.
            part = await clients.jobs.get_partition(job_id, 0)
            assert part is not None
            part.resume_at = utcnow() + timedelta(minutes=1)
            part = await clients.jobs.save(part)
            await asyncio.sleep(0.8)
            assert job_id not in await sweep(clients)
            # The pause ended and nothing came: revived. Then it writes users and stalls
            # again: revived, counting from one again.
            part.resume_at = None
            part = await clients.jobs.save(part)
            await asyncio.sleep(0.8)
            assert job_id in await sweep(clients)
            part.checkpoint = replace(part.checkpoint, users=10)
            await clients.jobs.save(part)
            await asyncio.sleep(0.8)
            assert job_id in await sweep(clients)
            job = await clients.jobs.get(job_id)
            await drain(clients)
            await clients.close()
    finally:
        stack.start_devhost()
    assert job is not None and (job.revivals, job.revived_at_users) == (1, 10)


# 6. One set of clients per instance.


async def test_invocations_starting_together_share_one_set_of_clients(stack):
    with app_settings(stack):
        got = await asyncio.gather(*(get_clients() for _ in range(20)))
        assert all(clients is got[0] for clients in got)
        assert got[0].auth_methods._limiter is got[0].graph.auth_limiter
        await close_clients()


# 7. Honest error reporting.

REFUSED_USERS, REFUSED_SEED = 1300, 41


@pytest.fixture(scope="module")
def refusing_stack(tmp_path_factory) -> Iterator[tuple[LocalStack, list[dict], set[str]]]:
    """A tenant where Graph refuses the lookups of the first 999 users (a whole first page) and
    of every user whose UPN starts with 'a' (a whole partition at 44 partitions), and allows
    the others: a policy, not a missing permission."""
    path = tmp_path_factory.mktemp("refusing") / "tenant.jsonl"
    dump_tenant(SimConfig(users=REFUSED_USERS, seed=REFUSED_SEED), path, users_only=True)
    users = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    refused = set()
    for index, user in enumerate(users):
        if index < 999 or user["userPrincipalName"].lower().startswith("a"):
            user["_sim"] = {"authenticationStatus": 403}
            refused.add(user["id"])
    path.write_bytes(b"".join(orjson.dumps(u) + b"\n" for u in users))
    with running_stack(
        tmp_path_factory.mktemp("refusing-stack"),
        tenant_file=path,
        app_env={"USEREXPORT_PARTITIONS": "1"},
    ) as stack:
        yield stack, users, refused


def restart_with(stack: LocalStack, **settings: str) -> None:
    stack.kill_devhost()
    stack.env.update(settings)
    stack.start_devhost()


@pytest.mark.parametrize("partitions", ["1", "44"])
def test_refusals_that_are_not_everywhere_get_a_row_per_user(refusing_stack, partitions):
    stack, users, refused = refusing_stack
    restart_with(stack, USEREXPORT_PARTITIONS=partitions)
    done = export(stack, {"columns": ["objectId", "authenticationEmail"]}, timeout=240)
    assert done["status"] == "completedWithErrors", done
    assert "reason" not in done, "Graph did not refuse every lookup"
    errors = parse(download(stack, done["errorsUrl"]))
    header, rows = errors[0], errors[1:]
    assert header[:3] == ["objectId", "userPrincipalName", "failed"]
    assert sorted(r[0] for r in rows) == sorted(refused)  # one row per refused user
    upns = {u["id"]: u["userPrincipalName"] for u in users}
    assert all(r[1] == upns[r[0]] and r[3] == "403" for r in rows)
    assert done["errorCount"] == len(refused)
    written = {r[0]: r[1] for r in parse(download(stack, done["downloadUrl"]))[1:]}
    allowed = emails(u for u in users if u["id"] not in refused)
    assert {k: v for k, v in written.items() if v} == allowed


@pytest.mark.parametrize(
    "target",
    [
        "/api/exports?pageSize=%C2%B2",  # '²': a digit to str.isdigit, not to int()
        "/api/exports?pageSize=%D9%A1%D9%A2",
        "/api/exports?cursor=%F0%9F%92%A5",
        "/api/exports?cursor=eyJSb3dLZXkiOiAxfQ",  # valid base64 JSON, not a cursor
        "/api/exports?whatever=1",
        "/api/exports/%F0%9F%92%A5" + "x" * 3000,
    ],
)
def test_any_query_answers_a_short_problem_never_a_500(api, target):
    answer = api.get(target)
    assert answer.status_code in (400, 404)
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert len(answer.text) < 600, "no more than a short excerpt of the input"
