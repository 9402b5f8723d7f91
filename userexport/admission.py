"""Admission: which exports run now, and which wait their turn.

Every export of a tenant shares one Graph budget, so more exports at once are not faster: a
hundred whole-tenant exports at once only put thousands of partition messages ahead of the
next one. So:

- planning goes first: each job's plan step (its checks and counts, seconds) runs as soon as
  its message arrives;
- a small export (at most USEREXPORT_SMALL_TENANT_USERS users: one sequence, a page or two),
  a delta series' changes run (only what changed) and the nightly timer's run start at once;
- any other starts while fewer than USEREXPORT_MAX_RUNNING_EXPORTS run, in the order the jobs
  were created; the rest wait `queued` with their place shown (`queuePosition`), their plan
  message asking again every USEREXPORT_ADMISSION_SECONDS;
- past USEREXPORT_MAX_QUEUED_EXPORTS queued exports, POST answers 429 with Retry-After; the
  timer's run is never refused.

The running exports are one row, changed under its ETag: two plan steps never both take the
last place. A finished export leaves the row at the next admission (read, not told).
"""

from __future__ import annotations

import logging

from .caller import TIMER
from .clients import Clients
from .jobs import Job, attempts

log = logging.getLogger(__name__)


def goes_first(job: Job, *, small_users: int) -> bool:
    """Whether the job starts without waiting for a place: the timer's run, a small one, or a
    delta series' changes run (it reads only what changed: a few requests)."""
    plan = job.plan
    total = plan.estimated_total if plan else None
    small = (total is not None and total <= small_users) or bool(plan and plan.changes)
    return job.trigger == TIMER.kind or small


async def admit(clients: Clients, job: Job) -> bool:
    """Whether the planned job may start its partitions now; True takes (or keeps) its place."""
    settings = clients.settings
    small = goes_first(job, small_users=settings.small_tenant_users)
    if small and job.trigger != TIMER.kind:
        return True  # takes no place: it holds the budget for a page or two
    for _ in attempts(f"admitting job {job.id}"):
        running, etag = await clients.jobs.running_set()
        alive = [i for i in running if i == job.id or await _still_running(clients, i)]
        if job.id in alive:
            return True
        if not small:  # the timer's run takes a place even past the limit
            free = settings.max_running_exports - len(alive)
            if free <= 0:  # the common case while a backlog waits: no query of the queue
                return False
            queued = await clients.jobs.queued()
            ahead = [w for w in queued if _waits_before(w, job, settings.small_tenant_users)]
            if free <= len(ahead):
                return False
        if await clients.jobs.save_running_set([*alive, job.id], etag):
            log.info("Export job %s admitted (%d running).", job.id, len(alive) + 1)
            return True
    raise AssertionError("attempts() raises when it runs out")


async def queue_position(clients: Clients, job: Job) -> int:
    """The job's place among the queued exports, oldest first (1: next)."""
    queued = [w.id for w in await clients.jobs.queued()]
    return queued.index(job.id) + 1 if job.id in queued else 1


async def backlog_full(clients: Clients) -> bool:
    return len(await clients.jobs.queued()) >= clients.settings.max_queued_exports


def _waits_before(other: Job, job: Job, small_users: int) -> bool:
    """An older planned export waiting for a place: it takes one before this job does."""
    return (
        other.id != job.id
        and other.plan is not None
        and other.created_at < job.created_at
        and not goes_first(other, small_users=small_users)
    )


async def _still_running(clients: Clients, job_id: str) -> bool:
    job = await clients.jobs.get(job_id)
    return job is not None and not job.status.finished
