"""Load that starves nobody (admission.py), through the real stack: with one large export
running at a time and a backlog of two, large exports wait `queued` in order with their place
shown, one more is refused with 429 and Retry-After, the nightly timer's run is neither refused
nor kept waiting, and a one-user export finishes while the large ones are still going."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from devtools.stack import LocalStack
from devtools.tenantsim import SimConfig, iter_users

from .conftest import running_stack, start, wait_for_export, wait_until

USERS, SEED = 3000, 23
LARGE = {"columns": ["objectId", "displayName"], "formulaGuard": False}


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    # 5 ms a user in 2 partitions: a large export runs about 8 s, long enough to queue behind.
    with running_stack(
        tmp_path_factory.mktemp("busy"),
        users=USERS,
        seed=SEED,
        sim_args=["--latency-per-user-ms", "5"],
        app_env={
            "USEREXPORT_PARTITIONS": "2",
            "USEREXPORT_SMALL_TENANT_USERS": "10",
            "USEREXPORT_MAX_RUNNING_EXPORTS": "1",
            "USEREXPORT_MAX_QUEUED_EXPORTS": "2",
            "USEREXPORT_ADMISSION_SECONDS": "1",
        },
    ) as stack:
        yield stack


def test_large_exports_queue_in_order_and_a_small_one_is_not_held_behind_them(busy):
    one = next(iter_users(SimConfig(users=USERS, seed=SEED)))["userPrincipalName"]
    with httpx.Client(base_url=busy.api_url, timeout=60) as api:
        first = start(api, LARGE).json()["id"]
        wait_until(api, first, lambda j: j["status"] == "running" and "partitions" in j)
        waiting = [start(api, LARGE).json()["id"] for _ in range(2)]
        places = [
            wait_until(api, job_id, lambda j: j["status"] == "queued" and "partitions" in j)
            for job_id in waiting
        ]
        # Planned, waiting for the one place, in the order they came.
        assert [p["queuePosition"] for p in places] == [1, 2], places

        refused = api.post("/api/exports", json=LARGE)
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["Retry-After"]) >= 1
        assert "USEREXPORT_MAX_QUEUED_EXPORTS" in refused.json()["detail"]

        # The nightly run is never refused, and does not wait for a place.
        assert api.post("/admin/functions/nightly_export", json={}).is_success
        timer = next(j for j in api.get("/api/exports").json()["value"] if j["trigger"] == "timer")
        wait_until(api, timer["id"], lambda j: j["status"] != "queued" and "partitions" in j)
        assert api.get(f"/api/exports/{waiting[1]}").json()["status"] == "queued", (
            "the timer's run went ahead of the waiting exports"
        )

        # A one-user export, posted once the backlog has room again.
        wait_until(api, waiting[0], lambda j: j["status"] != "queued", timeout=120)
        small = start(api, {**LARGE, "filter": {"userPrincipalNamePrefix": one}})
        done = wait_for_export(api, small.headers["Location"], timeout=60)[-1].json()
        assert done["status"] == "succeeded" and done["userCount"] == 1, done
        still = [api.get(f"/api/exports/{i}").json()["status"] for i in waiting]
        assert "queued" in still or "running" in still, ("the large ones are still going", still)

        ends = [
            wait_for_export(api, f"/api/exports/{i}", timeout=180)[-1].json()
            for i in [first, *waiting, timer["id"]]
        ]
    assert [e["status"] for e in ends] == ["succeeded"] * 4, ends
    assert all(e["userCount"] == USERS for e in ends[:3])
    # Admitted in the order they were created: each one's exportPlanned follows the one before.
    lines = busy.devhost_logs[0].read_text(errors="replace").splitlines()
    planned = [
        next(n for n, line in enumerate(lines) if '"exportPlanned"' in line and job_id in line)
        for job_id in [first, *waiting]
    ]
    assert planned == sorted(planned), planned
