"""JobStore.while_running: work stops wherever it is once its job is no longer running."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

import pytest

from userexport import jobs
from userexport.errors import JobStopped
from userexport.jobs import Job, JobStore, Status
from userexport.request import ExportRequest


class OneJob(JobStore):
    def __init__(self, status: Status) -> None:
        self.job = Job(
            "j", status, "http", datetime.now(UTC), ExportRequest(("objectId",), None, "x.csv")
        )

    async def get(self, job_id: str) -> Job | None:
        return self.job


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch):
    monkeypatch.setattr(jobs, "JOB_POLL_SECONDS", 0.01)


async def test_work_of_a_running_job_runs_to_its_end():
    async def work() -> int:
        await asyncio.sleep(0.05)
        return 7

    assert await OneJob(Status.RUNNING).while_running("j", work()) == 7


async def test_failures_of_the_work_are_raised_as_they_are():
    async def work() -> None:
        raise TimeoutError("out of time")

    with pytest.raises(TimeoutError):
        await OneJob(Status.RUNNING).while_running("j", work())


async def test_a_cancel_stops_the_work_mid_wait():
    store = OneJob(Status.RUNNING)
    reached: list[str] = []

    async def work() -> None:
        try:
            await asyncio.sleep(60)  # a long throttling wait
        except asyncio.CancelledError:
            reached.append("cancelled")
            raise
        reached.append("finished")

    async def cancel_soon() -> None:
        await asyncio.sleep(0.05)
        store.job.status = Status.CANCELLED

    canceller = asyncio.ensure_future(cancel_soon())
    with pytest.raises(JobStopped, match="cancelled"):
        await asyncio.wait_for(store.while_running("j", work()), timeout=10)
    await canceller
    assert reached == ["cancelled"]


class EverMoving(OneJob):
    """A row another writer moves on between every read and save (an ETag that never holds)."""

    saves = 0

    async def get(self, job_id: str) -> Job | None:
        return dataclasses.replace(self.job)  # as read from the table: a change is not saved

    async def save(self, row):  # type: ignore[override]
        self.saves += 1
        raise jobs.JobConflict("moved")


async def test_a_row_that_moves_on_every_time_is_read_again_then_said():
    store = EverMoving(Status.RUNNING)
    with pytest.raises(jobs.JobConflict, match="cancelling job j: the row changed on every one"):
        await store.cancel("j", reason="by a caller")
    assert store.saves == jobs.ATTEMPTS
    with pytest.raises(jobs.JobConflict, match="failing job j"):
        await EverMoving(Status.RUNNING).fail("j", reason="broken")
