"""Each job's life as events Application Insights can chart: one log line per event, `event `
and a JSON object, as audit.py writes its lines (the Python worker sends a record's message,
not its extra fields; docs/deploy.md has the KQL, and infra/app/alerts.bicep alerts on them).

- exportCreated: a job was queued (by a caller, or the nightly timer);
- exportPlanned: its plan step made its partitions and estimate;
- exportRevived: the sweep queued a stalled job again;
- exportFinished: it ended (succeeded, completedWithErrors, failed, cancelled or estimated),
  with its counts, its duration and what it asked of Graph (graph/meter.py), once: the save
  that finished it tells (jobs.JobStore's on_finished).

Ids, kinds and counts only: no names, no user data, no reason texts.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from .graph import GraphUsage, meter
from .jobs import Job, JobStore

log = logging.getLogger("userexport.telemetry")

CREATED, PLANNED, REVIVED, FINISHED = (
    "exportCreated",
    "exportPlanned",
    "exportRevived",
    "exportFinished",
)


def emit(name: str, job: Job, **dimensions: Any) -> None:
    entry = {
        "event": name,
        "jobId": job.id,
        "trigger": job.trigger,
        "caller": {k: (job.caller or {}).get(k) for k in ("kind", "id")},
        "series": job.series,
        "mode": job.request.mode,
        "status": job.status.value,
        **dimensions,
    }
    log.info("event %s", orjson.dumps(entry).decode())


def created(job: Job) -> None:
    emit(CREATED, job, dryRun=job.request.dry_run, columns=len(job.request.columns))


def planned(job: Job) -> None:
    plan = job.plan
    assert plan is not None
    emit(
        PLANNED,
        job,
        partitions=len(plan.partitions),
        estimatedUsers=plan.estimated_total,
        bindingLimit=(plan.estimate or {}).get("bindingLimit"),
        estimatedSeconds=(plan.estimate or {}).get("durationSeconds"),
    )


def revived(job: Job) -> None:
    emit(REVIVED, job, revivals=job.revivals, usersWritten=job.revived_at_users)


async def finished(jobs: JobStore, job: Job) -> None:
    """The job's end: what it wrote and what that took, its Graph usage summed over the plan
    step, every partition and what the invocation that ended it has not saved yet."""
    usage = GraphUsage.from_json(job.graph) + meter.pending()
    for part in await jobs.partitions(job.id):
        usage += GraphUsage.from_json(part.checkpoint.graph)
    started = job.started_at or job.created_at
    end = job.finished_at or started
    emit(
        FINISHED,
        job,
        users=job.user_count or 0,
        errors=job.error_count or 0,
        partitions=len(job.plan.partitions) if job.plan else 0,
        durationSeconds=round((end - started).total_seconds(), 3),
        queuedSeconds=round((started - job.created_at).total_seconds(), 3),
        revivals=job.revivals,
        bindingLimit=((job.plan.estimate or {}) if job.plan else {}).get("bindingLimit"),
        **usage.to_json(),
    )
