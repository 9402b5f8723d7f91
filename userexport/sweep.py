"""The sweep: moves on every unfinished job that nothing is moving any more.

Every message-driven step can be lost in a way no retry sees: a plan message that never left,
a continuation whose send failed after the lease was released, a poison handler that could not
save. A job none of whose partitions holds a live lease, and whose rows have not changed for
USEREXPORT_STALL_MINUTES, is queued again from its checkpoints (everything is idempotent), at
most MAX_REVIVALS times; then it fails with a reason instead of staying "running" for ever.
"""

from __future__ import annotations

import logging

from . import reasons, telemetry
from .clients import Clients
from .commit import finish_if_complete
from .errors import JobConflict
from .jobs import Job, PartitionStatus, Status, utcnow
from .messages import ExportMessage

log = logging.getLogger(__name__)

MAX_REVIVALS = 3


async def sweep(clients: Clients) -> list[str]:
    """Queues again (or fails) each stalled job; the ids of those it acted on."""
    acted = []
    for job in await clients.jobs.unfinished():
        try:
            if await _revive_if_stalled(clients, job):
                acted.append(job.id)
        except JobConflict:
            continue  # it moved while we looked: not stalled
    return acted


async def _revive_if_stalled(clients: Clients, job: Job) -> bool:
    now = utcnow()
    parts = await clients.jobs.partitions(job.id) if job.plan else []
    # The last sign of life: a write, or a continuation that waits out a pause until then.
    alive = [job.updated_at or job.created_at]
    alive += [t for p in parts for t in (p.updated_at, p.resume_at) if t]
    if now - max(alive) < clients.settings.stall or any(p.leased(now=now) for p in parts):
        return False
    written = sum(p.checkpoint.users for p in parts)
    if written > job.revived_at_users:  # it moved since the last revival: count afresh
        job.revivals = 0
    if job.revivals >= MAX_REVIVALS:
        minutes = clients.settings.stall.total_seconds() / 60
        errors = [job.last_error] + [p.last_error for p in parts]
        last_error = next((e for e in reversed(errors) if e), None)
        await clients.jobs.fail(job.id, reason=reasons.stalled(minutes, job.revivals, last_error))
        return True
    job.revivals, job.revived_at_users = job.revivals + 1, written
    job = await clients.jobs.save(job)
    log.warning("Export job %s stalled; queued again (revival %d).", job.id, job.revivals)
    telemetry.revived(job)
    # A plan some of whose partition rows are missing (a delta Resync stopped between deleting
    # the old rows and queueing its plan step): the plan step's replay adds them.
    if job.status is Status.QUEUED or job.plan is None or len(parts) < len(job.plan.partitions):
        await clients.queue.send_message(ExportMessage(job.id).encode())
    elif parts and all(p.status is PartitionStatus.DONE for p in parts):
        await finish_if_complete(clients, job.id)
    else:
        for part in parts:
            if part.status is not PartitionStatus.DONE:
                await clients.queue.send_message(ExportMessage(job.id, part.index).encode())
    return True
