"""At-least-once and crashes: the CSV is exactly that of an uninterrupted run, whatever happens."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from devtools.stack import LocalStack
from devtools.tenantsim import SimConfig

from .conftest import (
    SEED,
    USERS,
    Storage,
    download,
    expected_csv,
    running_stack,
    wait_for_export,
)


async def test_a_partitioned_export_gives_the_exact_bytes(api, stack, storage: Storage):
    started = api.post("/api/exports")
    done = wait_for_export(api, started.headers["Location"])[-1].json()
    assert done["status"] == "succeeded"
    assert done["partitions"] > 1, "the session stack partitions its exports"
    assert download(stack, done["downloadUrl"]) == expected_csv(
        SimConfig(users=USERS, seed=SEED), prefixes=await storage.plan_prefixes(done["id"])
    )


CRASH_USERS, CRASH_SEED = 6000, 21


@pytest.fixture(scope="module")
def crashing_stack(tmp_path_factory) -> Iterator[LocalStack]:
    with running_stack(
        tmp_path_factory.mktemp("crash"),
        users=CRASH_USERS,
        seed=CRASH_SEED,
        # Page tokens live 5 s: long enough for a running export (pages take about 0.5 s, and a
        # continuation starts within about 2 s), too short to outlive a crash. A relist that
        # must cross invocations can only finish while tokens outlive that gap.
        sim_args=["--latency-per-user-ms", "0.5", "--page-token-ttl", "5"],
        # A short message lease (renewed while a function runs) brings a crashed message back
        # in seconds instead of the host's ten minutes.
        devhost_args=["--message-lease-seconds", "3"],
        # One sequential listing: its pages are chained by page tokens (a partition's prefix
        # listings are too short to need them here).
        app_env={"USEREXPORT_TIME_BUDGET_SECONDS": "1.5", "USEREXPORT_PARTITIONS": "1"},
    ) as stack:
        yield stack


def status(stack: LocalStack, location: str) -> dict:
    return httpx.get(f"{stack.api_url}{location}", timeout=30).json()


def wait_until(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


async def test_a_chain_of_small_time_budgets_gives_the_exact_bytes(crashing_stack):
    # Every invocation of the crashing stack has a 1.5 s budget: the export continues across
    # several queue messages.
    stack = crashing_stack
    with httpx.Client(base_url=stack.api_url, timeout=30) as api:
        started = api.post("/api/exports")
        done = wait_for_export(api, started.headers["Location"], timeout=180)[-1].json()
    assert done["status"] == "succeeded"
    storage = Storage(stack)
    rows = storage.table.query_entities(
        "PartitionKey eq @pk", parameters={"pk": f"parts-{done['id']}"}
    )
    attempts = [row["attempts"] async for row in rows]
    await storage.close()
    assert attempts[0] >= 3, "the listing ran in several invocations"
    assert download(stack, done["downloadUrl"]) == expected_csv(
        SimConfig(users=CRASH_USERS, seed=CRASH_SEED), prefixes=[""]
    )


def test_sigkill_at_several_points_gives_the_exact_csv(crashing_stack):
    """Crashes before the first checkpoint, after one and past the middle; the page tokens of
    the checkpoints expire while the crashed messages wait to come back."""
    stack = crashing_stack
    started = httpx.post(f"{stack.api_url}/api/exports", timeout=30)
    location = "/api/exports/" + started.json()["id"]

    stack.kill_devhost()
    stack.start_devhost()
    for written in (1, CRASH_USERS // 2):
        wait_until(lambda w=written: status(stack, location)["usersWritten"] >= w)
        stack.kill_devhost()
        time.sleep(5.5)  # down longer than a page token lives
        stack.start_devhost()

    with httpx.Client(base_url=stack.api_url, timeout=30) as api:
        done = wait_for_export(api, location, timeout=180)[-1].json()
    assert done["status"] == "succeeded", done
    assert done["userCount"] == CRASH_USERS
    assert httpx.get(stack.sim["stats"]).json()["faults"].get("expiredPageToken", 0) >= 1
    assert download(stack, done["downloadUrl"]) == expected_csv(
        SimConfig(users=CRASH_USERS, seed=CRASH_SEED), prefixes=[""]
    )


async def test_partitioned_and_sequential_exports_hold_the_same_rows(crashing_stack):
    stack = crashing_stack
    config = SimConfig(users=CRASH_USERS, seed=CRASH_SEED)
    files = {}
    for partitions in ("1", "8"):
        stack.kill_devhost()
        stack.env["USEREXPORT_PARTITIONS"] = partitions
        stack.start_devhost()
        with httpx.Client(base_url=stack.api_url, timeout=30) as api:
            started = api.post("/api/exports")
            done = wait_for_export(api, started.headers["Location"], timeout=180)[-1].json()
        assert done["status"] == "succeeded"
        assert done["partitions"] == int(partitions)
        assert done["estimatedTotal"] == CRASH_USERS
        files[partitions] = download(stack, done["downloadUrl"])
        storage = Storage(stack)
        prefixes = await storage.plan_prefixes(done["id"])
        await storage.close()
        assert (prefixes == [""]) == (partitions == "1")
        assert files[partitions] == expected_csv(config, prefixes=prefixes)
    sequential, partitioned = (f.decode("utf-8-sig").split("\r\n") for f in files.values())
    assert sequential[0] == partitioned[0]
    assert sorted(sequential[1:]) == sorted(partitioned[1:])
    assert sequential != partitioned, "partitions come in UPN prefix order"
