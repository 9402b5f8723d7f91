"""Each job's life as events (userexport/telemetry.py): JSON lines in devhost's log, as the
Functions host would send them to Application Insights' traces. A succeeded, a failed and a
cancelled export each say what happened, once, with counts equal to the job's own and the Graph
requests the simulated tenant served."""

from __future__ import annotations

import time
from typing import Any

import httpx

from devtools.stack import LocalStack
from userexport.jobs import JOB_POLL_SECONDS

from .conftest import USERS, finished, job_events, run_export


def served(stack: LocalStack) -> dict[str, Any]:
    return httpx.get(stack.sim["stats"], timeout=30).json()


def graph_requests(stats: dict[str, Any]) -> int:
    return sum(n for endpoint, n in stats["requests"].items() if endpoint != "identity")


def quiet(api: httpx.Client, *, timeout: float = 120) -> None:
    """Waits until no export on this (shared) stack is queued or running: the simulator's
    counters then move for the next export alone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = api.get("/api/exports", params={"pageSize": 100}).json()["value"]
        if all(job["status"] not in ("queued", "running") for job in jobs):
            # A cancelled export's work stops within the job poll (2 s) of its status.
            time.sleep(JOB_POLL_SECONDS + 1)
            return
        time.sleep(0.5)
    raise AssertionError("exports of earlier tests are still going")


def test_a_succeeded_export_tells_its_life_with_its_graph_usage(stack, api):
    quiet(api)
    before = served(stack)
    job = run_export(api, {"columns": ["objectId", "displayName", "authenticationEmail"]})
    after = served(stack)
    assert job["status"] == "succeeded" and job["userCount"] == USERS, job
    names = [e["event"] for e in job_events(stack, job["id"])]
    assert names == ["exportCreated", "exportPlanned", "exportFinished"], names
    created, planned, end = job_events(stack, job["id"])
    assert created["trigger"] == "http" and created["caller"] == {"kind": "anonymous", "id": None}
    assert planned["partitions"] == job["partitions"] and planned["estimatedUsers"] == USERS
    assert planned["bindingLimit"] == job["estimate"]["bindingLimit"]
    assert end["status"] == "succeeded"
    assert (end["users"], end["errors"], end["partitions"]) == (
        job["userCount"],
        job["errorCount"],
        job["partitions"],
    )
    assert end["durationSeconds"] > 0 and end["queuedSeconds"] >= 0
    # What the app counted is what the simulated tenant served: its resource units exactly
    # (the x-ms-resource-unit of each answer), its requests with a $batch's items one each.
    assert end["resourceUnits"] == after["resourceUnits"] - before["resourceUnits"]
    assert end["throttled"] == after["throttled"] - before["throttled"]
    lookups = after["authMethodsReturned"] - before["authMethodsReturned"]
    assert 0 < end["graphRequests"] <= graph_requests(after) - graph_requests(before)
    assert lookups >= 0


def test_a_failed_export_tells_its_end_once(stack, api):
    job = run_export(api, {"filter": {"group": "0f3b5d4e-1a2b-4c3d-8e9f-001122334455"}})
    assert job["status"] == "failed", job
    ends = [e for e in job_events(stack, job["id"]) if e["event"] == "exportFinished"]
    assert len(ends) == 1 and ends[0]["status"] == "failed" and ends[0]["users"] == 0
    assert ends[0]["graphRequests"] >= 1  # the group's lookup, answered 404


def test_a_cancelled_export_tells_who_cancelled_nothing_more(stack, api):
    started = api.post("/api/exports", json={"columns": ["objectId"]})
    assert api.delete(started.headers["Location"]).status_code in (200, 202)
    job = finished(api, started)
    assert job["status"] == "cancelled", job
    deadline = time.monotonic() + 10  # a plan message already taken may still be running
    while time.monotonic() < deadline:
        names = [e["event"] for e in job_events(stack, job["id"])]
        if names[-1:] == ["exportFinished"]:
            break
        time.sleep(0.2)
    assert names[0] == "exportCreated" and names.count("exportFinished") == 1, names
    end = next(e for e in job_events(stack, job["id"]) if e["event"] == "exportFinished")
    assert end["status"] == "cancelled" and end["users"] == 0
