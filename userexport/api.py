"""The HTTP API's logic, free of azure.functions: requests in, (status, headers, body) out."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from .clients import Clients
from .exportrequest import InvalidRequest, excerpt, parse_export_request
from .jobs import Job, Partition, PartitionStatus, Status, new_job_id, utcnow
from .messages import ExportMessage

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
LIST_PARAMETERS = ("pageSize", "cursor", "code")  # code: the function key, read by the host
_PAGE_SIZE = re.compile(r"[0-9]{1,3}")


@dataclass
class ApiResponse:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def content_type(self) -> str:
        return "application/problem+json" if self.status >= 400 else "application/json"

    def json(self) -> bytes:
        return orjson.dumps(self.body)


def problem(status: int, title: str, detail: str, *, field: str | None = None) -> ApiResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if field is not None:
        body["field"] = field
    return ApiResponse(status, body)


async def create_export(
    clients: Clients, *, body: bytes, trigger: str, base_url: str
) -> ApiResponse:
    """Records a queued job, then queues its message: a job never runs without a record."""
    now = utcnow()
    try:
        request = parse_export_request(body, now=now)
    except InvalidRequest as error:
        return problem(400, "Invalid export request", error.detail, field=error.field)
    job = Job(
        id=new_job_id(now), status=Status.QUEUED, trigger=trigger, created_at=now, request=request
    )
    job = await clients.jobs.create(job)
    try:
        await clients.queue.send_message(ExportMessage(job.id).encode())
    except Exception:
        # A job row whose message never left would look queued forever: say it failed.
        log.exception("Export job %s could not be queued.", job.id)
        await clients.jobs.fail(job.id, reason="The export could not be queued; start it again.")
        return problem(503, "Export not queued", "The queue could not be reached; try again.")
    log.info("Export job %s queued by %s.", job.id, trigger)
    status_url = f"{base_url}/api/exports/{job.id}"
    return ApiResponse(
        202,
        {"id": job.id, "status": job.status.value, "statusUrl": status_url},
        {"Location": status_url, "Retry-After": str(clients.settings.status_retry_after_seconds)},
    )


async def get_export(clients: Clients, job_id: str, *, base_url: str) -> ApiResponse:
    job = await clients.jobs.get(job_id) if _plausible_id(job_id) else None
    if job is None:
        return problem(404, "Export not found", f"There is no export with id {excerpt(job_id)!r}.")
    status_url = f"{base_url}/api/exports/{job.id}"
    body = await _describe(clients, job)
    if not job.status.finished:
        headers = {
            "Location": status_url,
            "Retry-After": str(clients.settings.status_retry_after_seconds),
        }
        return ApiResponse(202, body, headers)
    if job.status is not Status.FAILED:
        now = utcnow()
        exports = clients.exports
        body["downloadUrl"] = await clients.sas.read_url(
            exports.get_blob_client(job.blob_name), now=now, file_name=job.request.file_name
        )
        body["errorsUrl"] = await clients.sas.read_url(
            exports.get_blob_client(job.errors_blob_name),
            now=now,
            file_name=job.request.errors_file_name,
        )
        body["urlsExpireAt"] = _iso(now + clients.settings.sas_lifetime)
    return ApiResponse(200, body)


async def list_exports(clients: Clients, *, params: dict[str, str], base_url: str) -> ApiResponse:
    for name in params:
        if name not in LIST_PARAMETERS:
            shown = excerpt(name)
            return problem(
                400,
                "Invalid query",
                f"Unknown query parameter {shown!r}; known: pageSize, cursor.",
                field=shown,
            )
    raw_size = params.get("pageSize", str(DEFAULT_PAGE_SIZE))
    if not _PAGE_SIZE.fullmatch(raw_size) or not 1 <= int(raw_size) <= MAX_PAGE_SIZE:
        return problem(
            400,
            "Invalid query",
            f"pageSize must be a whole number from 1 to {MAX_PAGE_SIZE}.",
            field="pageSize",
        )
    try:
        jobs, cursor = await clients.jobs.list(page_size=int(raw_size), cursor=params.get("cursor"))
    except (ValueError, TypeError):
        return problem(
            400, "Invalid query", "cursor is not one this API handed out.", field="cursor"
        )
    body: dict[str, Any] = {"value": [await _describe(clients, job) for job in jobs]}
    if cursor:
        body["nextLink"] = f"{base_url}/api/exports?pageSize={raw_size}&cursor={cursor}"
    return ApiResponse(200, body)


async def _describe(clients: Clients, job: Job) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": job.id,
        "status": job.status.value,
        "trigger": job.trigger,
        "createdAt": _iso(job.created_at),
        "startedAt": _iso(job.started_at),
        "finishedAt": _iso(job.finished_at),
        "usersWritten": job.user_count or 0,
        "userCount": job.user_count,
        "errorCount": job.error_count,
        **job.request.to_json(),
    }
    if job.plan is not None:
        body["estimatedTotal"] = job.plan.estimated_total
        body["partitions"] = len(job.plan.partitions)
        if job.plan.note:
            body["planNote"] = job.plan.note
    failing = [(job.failing_since, job.last_error)]
    if job.status is Status.RUNNING and job.plan is not None:
        parts = await clients.jobs.partitions(job.id)
        body.update(_progress(job, parts))
        failing += [(p.failing_since, p.last_error) for p in parts]
    if not job.status.finished:
        # What is being waited out, if anything: the longest-running failure.
        waited = [(since, error) for since, error in failing if since is not None]
        if waited:
            since, error = min(waited, key=lambda f: f[0])
            body["failingSince"], body["lastError"] = _iso(since), error
        elif job.last_error:
            body["lastError"] = job.last_error
    if job.reason:
        body["reason"] = job.reason
    return body


def _progress(job: Job, parts: list[Partition]) -> dict[str, Any]:
    """Progress while running: users and errors so far, partitions done, and an estimated
    completion time from the pace so far and Graph's count."""
    written = sum(p.checkpoint.users for p in parts)
    progress: dict[str, Any] = {
        "usersWritten": written,
        "errorCount": sum(p.checkpoint.errors for p in parts),
        "partitionsDone": sum(p.status is PartitionStatus.DONE for p in parts),
    }
    total = job.plan.estimated_total if job.plan else None
    if total and written and job.started_at:
        elapsed = (utcnow() - job.started_at).total_seconds()
        remaining = max(total - written, 0) * elapsed / written
        progress["estimatedCompletionAt"] = _iso(utcnow() + timedelta(seconds=remaining))
    return progress


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _plausible_id(job_id: str) -> bool:
    # Keeps odd characters out of the table lookup; every real id has this shape.
    head, _, tail = job_id.partition("-")
    return len(head) == 13 and head.isdigit() and len(tail) == 8 and tail.isalnum()
