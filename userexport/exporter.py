"""The worker: each queue message runs one step of its job, the plan step (plan.py) or one
partition, and what a caller is told when the step fails.

A partition's message claims it (a lease and a new epoch, ETag-guarded) and hands it, with the
job resolved once (resolved.py), to PartitionRun (partition.py) or, for a delta series'
changes run, to ChangesRun (delta.py); the last partition done commits the files (commit.py).
"""

from __future__ import annotations

import logging

from . import reasons
from .clients import Clients
from .commit import finish_if_complete
from .delta import ChangesRun
from .errors import CannotExport, JobConflict
from .graph import GraphError, metered
from .jobs import PartitionStatus, Status, utcnow
from .messages import ExportMessage, Outcome
from .partition import PartitionRun
from .plan import plan_job
from .resolved import Resolved

log = logging.getLogger(__name__)


async def run_message(clients: Clients, message: ExportMessage, *, message_id: str) -> Outcome:
    """Runs one queue message: the plan step when it names no partition. Graph's transient
    failures never escape (they are waited out within the budget, then continued); Graph's
    refusals fail the job with what to do; anything else is noted on the job and raised, so
    the host delivers the message again."""
    with metered():  # what this invocation asks of Graph: each step saves it on its row
        try:
            if message.partition is None:
                return await plan_job(clients, message.job_id)
            return await _run_partition(clients, message.job_id, message.partition, message_id)
        except CannotExport as error:
            await clients.jobs.fail(message.job_id, reason=error.reason)
            return Outcome.FINISHED
        except GraphError as error:
            if error.transient:  # not expected here: waited out below; kept as a safety net
                await _record_error(clients, message.job_id, error)
                raise
            await clients.jobs.fail(message.job_id, reason=reasons.graph_refused(error))
            return Outcome.FINISHED
        except Exception as error:
            await _record_error(clients, message.job_id, error)
            raise


async def _run_partition(clients: Clients, job_id: str, index: int, message_id: str) -> Outcome:
    job = await clients.jobs.get(job_id)
    part = await clients.jobs.get_partition(job_id, index)
    if job is None or part is None or job.status is not Status.RUNNING or job.plan is None:
        return Outcome.SKIPPED
    if part.status is PartitionStatus.DONE:
        return await finish_if_complete(clients, job.id)  # in case its finisher crashed
    now = utcnow()
    if part.leased(now=now) and part.lease_owner != message_id:
        log.info("Job %s partition %d is leased by another message; skipped.", job_id, index)
        return Outcome.SKIPPED
    # A new epoch for every claim: whoever held it before can only stage blocks that no
    # checkpoint of this owner names, and its next save fails on the ETag.
    part.lease_owner, part.lease_until = message_id, now + clients.settings.lease_seconds
    part.resume_at = None
    part.epoch += 1
    part.attempts += 1
    try:
        part = await clients.jobs.save(part)
    except JobConflict:
        log.info("Job %s partition %d was claimed by another invocation.", job_id, index)
        return Outcome.SKIPPED
    if job.plan.changes:
        return await ChangesRun(clients, job, part, Resolved.job(job)).run()
    return await PartitionRun(clients, job, part, Resolved.job(job)).run()


async def _record_error(clients: Clients, job_id: str, error: BaseException) -> None:
    """Keeps the last error on the job, so the poison handler can say why it gave up."""
    log.error("Export job %s: %s", job_id, error, exc_info=error)
    try:
        job = await clients.jobs.get(job_id)
        if job is not None and not job.status.finished:
            job.last_error = reasons.last_error(error)
            await clients.jobs.save(job)
    except Exception:
        log.exception("Could not record the last error of job %s.", job_id)
