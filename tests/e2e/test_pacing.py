"""What an export costs in Graph requests, and the pace the instances share, through the real
stack: tenantsim over HTTP (its token buckets, its x-ms-throttle-limit-percentage header past
80 % of a bucket, its 429s), Azurite's table for the shared pace, devhost running the worker."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devtools.stack import LocalStack
from userexport.plan import PROBE_USERS

from .conftest import Storage, app_settings, export, running_stack

# The app's own defaults, not the always-split settings the other e2e tests use.
APP_DEFAULTS = {"USEREXPORT_SMALL_TENANT_USERS": "1000", "USEREXPORT_PARTITION_SECONDS": "10"}
BOTH = ["authenticationAlternativePhoneNumber", "authenticationEmail"]  # one methods lookup
AUTH_BUDGET = 200  # RU per 10 s for authentication methods: 20 lookups a second


def sim_stats(stack: LocalStack) -> dict[str, Any]:
    return httpx.get(stack.sim["stats"], timeout=30).json()


def succeeded(stack: LocalStack, body: dict[str, Any]) -> dict[str, Any]:
    done = export(stack, body, timeout=240)
    assert done["status"] == "succeeded", done
    return done


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with running_stack(tmp_path_factory.mktemp("small"), users=1000, app_env=APP_DEFAULTS) as s:
        yield s


def test_a_tenant_of_1000_users_costs_a_count_a_page_and_its_lookups(small):
    before = sim_stats(small)["requests"]
    done = succeeded(small, {})  # the 25 columns: one methods lookup per user
    after = sim_stats(small)["requests"]
    spent = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert done["userCount"] == 1000 and done["partitions"] == 1
    listing = {k: n for k, n in spent.items() if n and k not in ("methods", "batch", "batchItems")}
    listing.pop("identity", None)  # managed identity tokens, not Graph
    assert sum(listing.values()) <= 3, f"planning and listing: {listing}"
    # One lookup per user, the plan step's check, and its probe of the authentication limit.
    assert spent["methods"] <= 1000 + 1 + PROBE_USERS
    assert done["estimate"]["partitions"] == 1 and done["estimate"]["listingRequests"] == 2


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with running_stack(
        tmp_path_factory.mktemp("tight"),
        users=600,
        sim_args=["--auth-budget", str(AUTH_BUDGET)],
        app_env=APP_DEFAULTS,
    ) as s:
        yield s


async def pace_rows(stack: LocalStack) -> dict[str, dict[str, Any]]:
    """The auth bucket's rows of the shared pace (pace.py), read with the managed identity."""
    with app_settings(stack):
        store = Storage(stack)
        try:
            rows = store.table.query_entities("PartitionKey eq 'pace-default-auth'")
            return {row["RowKey"]: dict(row) async for row in rows}
        finally:
            await store.close()


async def test_the_pace_learnt_from_graph_is_shared_and_the_next_export_starts_at_it(tight):
    """600 lookups under a bucket of 200 RU per 10 s: the worker learns the rate from
    Graph's headers (before its 429s pile up), writes it to the table, and the next export's
    estimate goes by it."""
    before = sim_stats(tight)
    first = succeeded(tight, {"columns": ["userPrincipalName", *BOTH]})
    after = sim_stats(tight)
    assert first["estimate"]["paceSource"] == "default"
    throttled = after["throttled"] - before["throttled"]
    lookups = after["requests"]["methods"] - before["requests"].get("methods", 0)
    assert throttled <= 0.1 * lookups, f"{throttled} of {lookups} lookups throttled"

    rows = await pace_rows(tight)
    learnt = rows["bucket"]["rate"]
    assert 0.5 * AUTH_BUDGET / 10 <= learnt <= 1.25 * AUTH_BUDGET / 10, rows
    assert [k for k in rows if k.startswith("instance-")], "the instance published its pace"

    second = succeeded(tight, {"columns": ["userPrincipalName", *BOTH]})
    assert second["estimate"]["paceSource"] == "learned"
    # 600 lookups at the learnt rate after a full bucket's 10 s: the estimate says so.
    assert second["estimate"]["durationSeconds"] >= (600 - 10 * learnt) / learnt
