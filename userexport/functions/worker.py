"""Queue triggers: the export worker, and the poison handler that fails what it gave up on."""

from __future__ import annotations

import logging

import azure.functions as func
import orjson

from ..clients import get_clients
from ..exporter import fail_job, run_job
from ..settings import JOBS_QUEUE, POISON_QUEUE

bp = func.Blueprint()
log = logging.getLogger(__name__)


def _job_id(msg: func.QueueMessage) -> str | None:
    try:
        job_id = orjson.loads(msg.get_body()).get("jobId")
    except (orjson.JSONDecodeError, AttributeError):
        job_id = None
    if not isinstance(job_id, str):
        log.error("Queue message %s has no jobId; dropped.", msg.id)
        return None
    return job_id


@bp.queue_trigger(arg_name="msg", queue_name=JOBS_QUEUE, connection="AzureWebJobsStorage")
async def export_worker(msg: func.QueueMessage) -> None:
    job_id = _job_id(msg)
    if job_id is not None:
        clients = await get_clients()
        outcome = await run_job(clients, job_id, message_id=msg.id or "")
        log.info(
            "Job %s: %s (message %s, delivery %s).", job_id, outcome, msg.id, msg.dequeue_count
        )


@bp.queue_trigger(arg_name="msg", queue_name=POISON_QUEUE, connection="AzureWebJobsStorage")
async def export_poison(msg: func.QueueMessage) -> None:
    job_id = _job_id(msg)
    if job_id is None:
        return
    clients = await get_clients()
    job = await clients.jobs.get(job_id)
    last_error = job.last_error if job and job.last_error else "no error was recorded"
    await fail_job(
        clients,
        job_id,
        reason=f"The export failed on every attempt and was given up. Last error: {last_error}",
    )
