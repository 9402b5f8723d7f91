"""Queue triggers: the export worker, and the poison handler that fails what it gave up on."""

from __future__ import annotations

import logging

import azure.functions as func

from .. import reasons
from ..clients import get_clients
from ..errors import InvalidMessage
from ..exporter import run_message
from ..messages import ExportMessage, parse
from ..settings import JOBS_QUEUE, POISON_QUEUE

bp = func.Blueprint()
log = logging.getLogger(__name__)


def _parse(msg: func.QueueMessage) -> ExportMessage | None:
    """The job (and partition) a message names; None, and a log line, for anything else."""
    try:
        return parse(msg.get_body())
    except InvalidMessage as error:
        log.error("Queue message %s names no job (%s); dropped.", msg.id, error)
        return None


@bp.queue_trigger(arg_name="msg", queue_name=JOBS_QUEUE, connection="AzureWebJobsStorage")
async def export_worker(msg: func.QueueMessage) -> None:
    message = _parse(msg)
    if message is not None:
        clients = await get_clients()
        outcome = await run_message(clients, message, message_id=msg.id or "")
        log.info(
            "Job %s partition %s: %s (message %s, delivery %s).",
            message.job_id,
            message.partition,
            outcome,
            msg.id,
            msg.dequeue_count,
        )


@bp.queue_trigger(arg_name="msg", queue_name=POISON_QUEUE, connection="AzureWebJobsStorage")
async def export_poison(msg: func.QueueMessage) -> None:
    """Fails the job of a message the worker gave up on. If that fails too (storage down), this
    raises: the host delivers the poison message again, and the sweep is the last resort."""
    message = _parse(msg)
    if message is None:
        return
    clients = await get_clients()
    job = await clients.jobs.get(message.job_id)
    await clients.jobs.fail(
        message.job_id, reason=reasons.poisoned(job.last_error if job else None)
    )
