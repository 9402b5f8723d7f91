"""Continuing in a new message: the one protocol every step that runs out of time follows
(the plan step while Graph keeps failing, a partition, a changes run).

Past USEREXPORT_FAILURE_CAP_MINUTES of failures the job fails instead. Otherwise the step
saves where it is (given the pause Graph imposes on every caller, so its row can say until
when and the sweep does not take it for lost), then queues its next message, hidden for that
pause: a crash in between leaves the current message undeleted, so it comes back and carries
on itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from . import budget, reasons
from .messages import ExportMessage, Outcome

if TYPE_CHECKING:
    from .clients import Clients


async def continue_later(
    clients: Clients,
    message: ExportMessage,
    spent: budget.Budget,
    *,
    save: Callable[[float], Awaitable[object]],
    before_failing: Callable[[], Awaitable[object]] | None = None,
) -> Outcome:
    """FINISHED when the failures outlasted the cap (the job failed, `before_failing` run
    first), else CONTINUED once `save(pause)` is done and `message` is queued."""
    cap = clients.settings.failure_cap
    if spent.outlasted(cap):
        if before_failing is not None:
            await before_failing()
        await clients.jobs.fail(
            message.job_id, reason=reasons.failures_outlasted(spent.last_error, cap)
        )
        return Outcome.FINISHED
    pause = clients.graph.resume_in()
    await save(pause)
    await clients.queue.send_message(message.encode(), visibility_timeout=pause or None)
    return Outcome.CONTINUED
