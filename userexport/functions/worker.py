"""Queue triggers: the export worker, and the poison handler that fails what it gave up on."""

from __future__ import annotations

import logging

import azure.functions as func
import orjson

from ..clients import get_clients
from ..exporter import fail_job, run_message
from ..settings import JOBS_QUEUE, POISON_QUEUE

bp = func.Blueprint()
log = logging.getLogger(__name__)


def _parse(msg: func.QueueMessage) -> tuple[str, int | None] | None:
    """The job id and partition a message names; None (and a log line) for anything else."""
    try:
        body = orjson.loads(msg.get_body())
        job_id, partition = body["jobId"], body.get("partition")
    except (orjson.JSONDecodeError, TypeError, KeyError, AttributeError):
        job_id = partition = None
    if not isinstance(job_id, str) or not (partition is None or isinstance(partition, int)):
        log.error("Queue message %s names no job; dropped.", msg.id)
        return None
    return job_id, partition


@bp.queue_trigger(arg_name="msg", queue_name=JOBS_QUEUE, connection="AzureWebJobsStorage")
async def export_worker(msg: func.QueueMessage) -> None:
    parsed = _parse(msg)
    if parsed is not None:
        job_id, partition = parsed
        clients = await get_clients()
        outcome = await run_message(clients, job_id, partition, message_id=msg.id or "")
        log.info(
            "Job %s partition %s: %s (message %s, delivery %s).",
            job_id,
            partition,
            outcome,
            msg.id,
            msg.dequeue_count,
        )


@bp.queue_trigger(arg_name="msg", queue_name=POISON_QUEUE, connection="AzureWebJobsStorage")
async def export_poison(msg: func.QueueMessage) -> None:
    parsed = _parse(msg)
    if parsed is None:
        return
    job_id, _ = parsed
    clients = await get_clients()
    job = await clients.jobs.get(job_id)
    last_error = job.last_error if job and job.last_error else "no error was recorded"
    await fail_job(
        clients,
        job_id,
        reason=f"The export failed on every attempt and was given up. Last error: {last_error}",
    )
