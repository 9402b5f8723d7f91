"""Transient faults are waited out, and past the cap the job fails with a reason: Graph's server
errors and outages (500, 502, 503 with Retry-After, 504, reset connections: Graph's
"best practices" page lists each as transient), a $batch outage, and Azurite restarting,
through the real stack. Split from test_reliability.py so the two run on different workers."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from devtools.stack import LocalStack
from devtools.tenantsim import SimConfig, iter_users

from .conftest import (
    ORACLE_BODY,
    Storage,
    download,
    emails,
    export,
    oracle_csv,
    parse,
    running_stack,
    set_faults,
    wait_for_export,
)

STORM_USERS, STORM_SEED = 3000, 23


@pytest.fixture(scope="module")
def storm_stack(tmp_path_factory) -> Iterator[LocalStack]:
    with running_stack(
        tmp_path_factory.mktemp("storm"),
        users=STORM_USERS,
        seed=STORM_SEED,
        sim_args=["--latency-per-user-ms", "0.3"],
        devhost_args=["--message-lease-seconds", "3"],
        app_env={
            "USEREXPORT_TIME_BUDGET_SECONDS": "1",
            "USEREXPORT_LEASE_GRACE_SECONDS": "1",
            "USEREXPORT_PARTITIONS": "3",
        },
    ) as stack:
        yield stack


async def storm_oracle(stack: LocalStack, job_id: str) -> bytes:
    storage = Storage(stack)
    prefixes = await storage.plan_prefixes(job_id)
    await storage.close()
    users = list(iter_users(SimConfig(users=STORM_USERS, seed=STORM_SEED)))
    return oracle_csv(users, prefixes=prefixes)


async def test_5xx_storms_and_an_outage_slow_an_export_and_lose_nothing(storm_stack):
    stack = storm_stack
    # Every kind of server error Graph gives, and a 12 s outage: far more than five
    # deliveries of a message at the host's 2 s visibility timeout would survive.
    set_faults(stack, {**STORM, "outages": [{"start": 0, "end": 12, "target": "all"}]})
    try:
        done = export(stack, ORACLE_BODY, timeout=240)
    finally:
        httpx.post(f"{stack.sim['faults']}/reset", timeout=10)
    assert done["status"] == "succeeded", done
    assert download(stack, done["downloadUrl"]) == await storm_oracle(stack, done["id"])
    assert await poisoned(stack) == []


async def test_an_outage_of_batch_requests_is_waited_out_and_every_lookup_filled(storm_stack):
    stack = storm_stack
    # Every $batch fails for 12 s, and some pages and lookups answer 503 throughout.
    outage = [{"start": 0, "end": 12, "target": "batch"}]
    set_faults(stack, {"rate503": 0.05, "retryAfter503": 1, "outages": outage})
    try:
        done = export(stack, {"columns": ["objectId", "authenticationEmail"]}, timeout=300)
    finally:
        httpx.post(f"{stack.sim['faults']}/reset", timeout=10)
    assert done["status"] == "succeeded", done
    rows = parse(download(stack, done["downloadUrl"]))
    assert {r[0]: r[1] for r in rows[1:] if r[1]} == emails(
        iter_users(SimConfig(users=STORM_USERS, seed=STORM_SEED))
    )
    assert len(rows) == STORM_USERS + 1
    assert await poisoned(stack) == []


STORM = {
    "rate500": 0.04,
    "rate502": 0.04,
    "rate503": 0.04,
    "retryAfter503": 1,
    "rate504": 0.04,
    "rateReset": 0.03,
}


async def poisoned(stack: LocalStack) -> list:
    storage = Storage(stack)
    messages = await storage.poison.peek_messages(max_messages=32)
    await storage.close()
    return messages


async def test_an_azurite_restart_mid_export_loses_nothing(storm_stack):
    stack = storm_stack
    set_faults(stack, {"slowPages": {"rate": 0.5, "seconds": 1}})
    with httpx.Client(base_url=stack.api_url, timeout=60) as client:
        started = client.post("/api/exports", json=ORACLE_BODY)
        location = started.headers["Location"]
        while client.get(location).json().get("usersWritten", 0) < 1:
            time.sleep(0.2)
        stack.restart_azurite(down_seconds=2)
        httpx.post(f"{stack.sim['faults']}/reset", timeout=10)
        done = wait_for_export(client, location, timeout=240)[-1].json()
    assert done["status"] == "succeeded", done
    assert download(stack, done["downloadUrl"]) == await storm_oracle(stack, done["id"])


def test_an_outage_longer_than_the_cap_fails_the_job_saying_what_to_do(tmp_path_factory):
    with running_stack(
        tmp_path_factory.mktemp("cap"),
        users=300,
        seed=3,
        sim_args=["--outage", "0:600"],
        app_env={
            "USEREXPORT_TIME_BUDGET_SECONDS": "2",
            "USEREXPORT_FAILURE_CAP_MINUTES": "0.2",
        },
    ) as stack:
        done = export(stack, ORACLE_BODY, timeout=180)
    assert done["status"] == "failed"
    reason = done["reason"]
    assert "503" in reason and "USEREXPORT_FAILURE_CAP_MINUTES" in reason
    assert "start the export again" in reason
    assert "127.0.0.1" not in reason and "Traceback" not in reason
