"""Finishing a job: once every partition is done, commit both files and record the outcome.

Whichever partition finishes last gets here. It first marks the job as committing, ETag-guarded:
a cancel saved before that mark stops the job with nothing committed, one after it is refused.
Two finishing at once both commit the same block lists (only the blocks the partitions'
checkpoints name, so no stale invocation's block), and the job's ETag lets one of them record
the final state. A conflicting write (progress, an error being noted) is read again and
retried, never taken for a twin's success.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from . import errorsfile, reasons
from .blobsink import MAX_BLOCKS, Stream, block_id, commit, stage
from .clients import Clients
from .csvfile import encode_rows
from .errorsfile import (
    ERRORS_HEADER,
    denied_everywhere,
    denied_row,
    methods_missing_everywhere,
    report_once_rows,
    sign_in_stopped_row,
)
from .graph import NON_PREMIUM
from .jobs import (
    DeltaPlan,
    Job,
    JobConflict,
    Partition,
    PartitionStatus,
    Status,
    attempts,
    utcnow,
)
from .messages import Outcome
from .resolved import Resolved

log = logging.getLogger(__name__)


async def commit_job(
    clients: Clients,
    job_id: str,
    write: Callable[[Job], Awaitable[None]],
    *,
    ready: Callable[[Job], Awaitable[Outcome | None]] | None = None,
) -> Outcome:
    """The one commit protocol, of the partitions' last finisher and of a changes run: read the
    job; stop unless it runs (or `ready` says to); mark it committing, so a cancel saved first
    wins; `write` commits its files and sets its final state; save it. A row moved on by
    someone else is read again and the whole commit retried (its block lists are the same)."""
    for _ in attempts(f"finishing job {job_id}"):
        job = await clients.jobs.get(job_id)
        if job is None or job.status is not Status.RUNNING or job.plan is None:
            return Outcome.SKIPPED
        if ready is not None and (not_yet := await ready(job)) is not None:
            return not_yet
        marked = await clients.jobs.mark_committing(job)
        if marked is None:
            continue
        await write(marked)
        try:
            await clients.jobs.save(marked)
        except JobConflict:
            continue
        log.info(
            "Export job %s finished (%s): %d users, %d errors.",
            marked.id,
            marked.status.value,
            marked.user_count or 0,
            marked.error_count or 0,
        )
        return Outcome.FINISHED
    raise AssertionError("attempts() raises when it runs out")


async def finish_if_complete(clients: Clients, job_id: str) -> Outcome:
    """Commits the job once every partition is done (whichever partition finishes last)."""
    parts: list[Partition] = []

    async def ready(job: Job) -> Outcome | None:
        nonlocal parts
        assert job.plan is not None
        parts = await clients.jobs.partitions(job_id)
        waiting = any(p.status is not PartitionStatus.DONE for p in parts)
        return Outcome.PARTITION_DONE if waiting or len(parts) < len(job.plan.partitions) else None

    async def write(job: Job) -> None:
        await _commit(clients, job, parts)
        if job.plan and job.plan.delta and job.status.has_files:
            await _advance_series(clients, job, job.plan.delta)

    return await commit_job(clients, job_id, write, ready=ready)


async def _advance_series(clients: Clients, job: Job, delta: DeltaPlan) -> None:
    """A delta series' full run, committed: its CSV is the snapshot the next run builds on."""
    try:
        await clients.series.advance(job, delta_link=delta.link, planned_on=delta.since)
    except JobConflict as moved:
        note = reasons.full_run_overtaken(job.request.series, moved)
        job.reason = f"{job.reason} {note}" if job.reason else note


async def _commit(clients: Clients, job: Job, parts: list[Partition]) -> None:
    """Commits the CSV and the errors file, and sets the job's final state (not saved yet)."""
    users_blob = clients.exports.get_blob_client(job.blob_name)
    errors_blob = clients.exports.get_blob_client(job.errors_blob_name)
    denied = denied_everywhere(parts)
    header = block_id(Stream.CSV_HEADER, 0, 0, 0)
    resolved = Resolved.job(job)
    await stage(users_blob, header, resolved.encoder().header())
    errors_header = block_id(Stream.ERRORS_HEADER, 0, 0, 0)
    await stage(errors_blob, errors_header, encode_rows(ERRORS_HEADER, [], with_header=True))
    users_blocks, error_blocks = [header], [errors_header]
    notices = list(job.plan.notices) if job.plan else []
    if denied:
        notices.append(denied_row(denied, resolved.lookups))
    for once in (
        sign_in_stopped_row(parts, resolved.columns, NON_PREMIUM),
        methods_missing_everywhere(parts, resolved.lookups),
    ):
        if once:
            notices.append(once)
    notices += report_once_rows(parts, resolved.columns, fewer_lookups=resolved.fewer_lookups)
    job.report_time = min(
        (p.checkpoint.report_time for p in parts if p.checkpoint.report_time), default=None
    )
    if notices:
        error_blocks.append(block_id(Stream.NOTICES, 0, 0, 0))
        await stage(errors_blob, error_blocks[-1], encode_rows([], notices, with_header=False))
    for p in parts:
        for epoch, rows, errors, held in p.checkpoint.segments:  # Segment, in its order
            users_blocks += [block_id(Stream.CSV_ROWS, p.index, epoch, i) for i in range(rows)]
            error_blocks += [block_id(Stream.ERROR_ROWS, p.index, epoch, i) for i in range(errors)]
            if not denied:
                error_blocks += [block_id(Stream.HELD_ROWS, p.index, epoch, i) for i in range(held)]
    job.user_count = sum(p.checkpoint.users for p in parts)
    job.error_count = sum(p.checkpoint.errors for p in parts) + len(notices)
    if not denied:
        job.error_count += sum(p.checkpoint.held_errors for p in parts)
    job.finished_at = utcnow()
    if max(len(users_blocks), len(error_blocks)) > MAX_BLOCKS:
        job.status = Status.FAILED
        job.reason = reasons.too_many_blocks(MAX_BLOCKS)
        return
    file_name = job.request.file_name
    users = await commit(users_blob, users_blocks, file_name=file_name)
    errors = await commit(errors_blob, error_blocks, file_name=job.request.errors_file_name)
    job.files = {"csv": users.to_json(), "errors": errors.to_json()}
    job.status = Status.COMPLETED_WITH_ERRORS if job.error_count else Status.SUCCEEDED
    job.reason = errorsfile.reason(notices)
