"""The HTTP API's logic, free of azure.functions: requests in, (status, headers, body) out."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import orjson

from . import admission, audit, idempotency, reasons, telemetry
from .caller import TIMER, Caller
from .clients import Clients
from .columns import CATALOGUE, DEFAULT_COLUMN_NAMES, PRESETS
from .exportrequest import (
    InvalidRequest,
    excerpt,
    export_request,
    request_json,
    series_name,
)
from .jobs import (
    Job,
    Partition,
    PartitionStatus,
    Status,
    iso,
    new_job_id,
    plausible_job_id,
    utcnow,
)
from .messages import ExportMessage
from .request import ExportRequest
from .series import NIGHTLY, Definition
from .settings import Settings

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
LIST_PARAMETERS = ("pageSize", "cursor", "code")  # code: the function key, read by the host
LATEST_PARAMETERS = ("series", "code")
URL_KEYS = {"csv": "downloadUrl", "changes": "changesUrl", "errors": "errorsUrl"}
# GET /api/exports/latest/{file}: the file of the series' latest export it redirects to.
LATEST_FILES = {"users.csv": "csv", "changes.csv": "changes", "errors.csv": "errors"}
ANONYMOUS = Caller("anonymous")  # a local stack without keys or App Service authentication
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


@dataclass(frozen=True)
class Links:
    """The URLs the API hands out. A caller authorised by ?code= in its URL gets that code
    back in every one (as Durable Functions' status URLs do): a Logic Apps action polling the
    Location resends no custom header, so the URL alone must authorise it."""

    base_url: str
    code: str | None = None

    def status(self, job_id: str) -> str:
        return self._url(f"/api/exports/{job_id}", {})

    def page(self, page_size: str, cursor: str) -> str:
        return self._url("/api/exports", {"pageSize": page_size, "cursor": cursor})

    def _url(self, path: str, query: dict[str, str]) -> str:
        if self.code:
            query = {**query, "code": self.code}
        return f"{self.base_url}{path}" + (f"?{urlencode(query)}" if query else "")


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


def _backlog_full(settings: Settings) -> ApiResponse:
    """429: the backlog is full; the nightly run is never refused (admission.py)."""
    wait = max(1, round(settings.admission_seconds))
    refused = problem(
        429,
        "Too many exports queued",
        f"{settings.max_queued_exports} exports are queued already "
        "(USEREXPORT_MAX_QUEUED_EXPORTS); they run a few at a time, sharing the tenant's Graph "
        f"budget. Try again in {wait} seconds (Retry-After), or cancel exports you no longer "
        "need.",
    )
    return ApiResponse(429, refused.body, headers={"Retry-After": str(wait)})


async def create_export(
    clients: Clients,
    *,
    body: bytes,
    trigger: str,
    links: Links,
    caller: Caller = ANONYMOUS,
    idempotency_key: str | None = None,
) -> ApiResponse:
    """Records a queued job, then queues its message: a job never runs without a record. With
    an Idempotency-Key, a key already used by this caller answers its first job instead of
    starting one. A run of a series must be of its definition (series.py)."""
    now = utcnow()
    try:
        raw = request_json(body)
        request = export_request(raw, now=now)
        key = idempotency.parse_key(idempotency_key)
    except InvalidRequest as error:
        return problem(400, "Invalid export request", error.detail, field=error.field)
    if request.series is not None:
        refused = await _check_series(clients, request, caller)
        if refused is not None:
            return refused
    if trigger != TIMER.kind and await admission.backlog_full(clients):
        return _backlog_full(clients.settings)
    job_id = new_job_id(now)
    if key is not None:
        try:
            owner = await clients.idempotency.claim(
                key,
                scope=caller.scope,
                fingerprint=idempotency.fingerprint(raw),
                job_id=job_id,
                now=now,
                job_exists=lambda i: _exists(clients, i),
            )
        except idempotency.KeyReused:
            return problem(
                422,
                "Idempotency-Key reused",
                f"This {idempotency.HEADER} started an export with a different body within the "
                "last 24 hours. Send the same body to get that export, or use a new key.",
                field=idempotency.HEADER,
            )
        if owner != job_id:
            return await _replay(clients, owner, links, caller)
    job = Job(
        id=job_id,
        status=Status.QUEUED,
        trigger=trigger,
        created_at=now,
        request=request,
        caller=caller.to_json(),
    )
    job = await clients.jobs.create(job)
    try:
        await clients.queue.send_message(ExportMessage(job.id).encode())
    except Exception:
        # A job row whose message never left would look queued forever: say it failed.
        log.exception("Export job %s could not be queued.", job.id)
        await clients.jobs.fail(job.id, reason=reasons.QUEUE_FAILED)
        return problem(503, "Export not queued", "The queue could not be reached; try again.")
    telemetry.created(job)
    audit.record(
        audit.CREATE,
        job.id,
        caller,
        series=request.series,
        **({"redefine": True} if request.redefine else {}),
    )
    status_url = links.status(job.id)
    return ApiResponse(
        202,
        {"id": job.id, "status": job.status.value, "statusUrl": status_url},
        _polling(clients, status_url),
    )


async def _check_series(
    clients: Clients, request: ExportRequest, caller: Caller
) -> ApiResponse | None:
    """409 for a run of a series that is not of its definition, or of the timer's series by
    anyone but the timer; None when the run may go on (its first run fixes the definition)."""
    name = request.series or ""
    timer = caller.kind == TIMER.kind
    if name == NIGHTLY and not timer:
        return problem(
            409,
            "Series written by the timer",
            f"Series {name!r} is the nightly timer's: only the timer adds runs to it. Name "
            "another series.",
            field="series",
        )

    async def first() -> Definition | None:
        async for job in clients.jobs.series_runs(name):
            return Definition.of(job.request)
        return None

    fixed = await clients.series.define(
        name,
        Definition.of(request),
        by=caller.to_json(),
        redefine=request.redefine or timer,  # the timer follows its settings
        first=first,
    )
    if fixed is None:
        return None
    differs = fixed.differences(Definition.of(request))
    shown = orjson.dumps({k: v for k, v in fixed.to_json().items() if k in differs}).decode()
    return problem(
        409,
        "Another series definition",
        f"Series {name!r} is defined by its first run, and this request differs in "
        f"{', '.join(differs)} (the series has {shown}). Send the series' definition, name "
        'another series, or add "redefine": true to change its definition on purpose: its '
        "`latest` and retention then go by the new one.",
        field="series",
    )


async def _exists(clients: Clients, job_id: str) -> bool:
    return await clients.jobs.get(job_id) is not None


async def _replay(clients: Clients, job_id: str, links: Links, caller: Caller) -> ApiResponse:
    """The answer to a repeated POST: the first job as it is now, never a second export."""
    job = await clients.jobs.get(job_id)
    if job is None:  # its first POST is still writing it
        status_url = links.status(job_id)
        body = {"id": job_id, "status": Status.QUEUED.value, "statusUrl": status_url}
        response = ApiResponse(202, body, _polling(clients, status_url))
    else:
        response = await _job_answer(clients, job, links, caller)
        response.headers["Location"] = links.status(job_id)
    response.headers["Idempotent-Replayed"] = "true"
    return response


async def get_export(
    clients: Clients, job_id: str, *, links: Links, caller: Caller = ANONYMOUS
) -> ApiResponse:
    job = await clients.jobs.get(job_id) if plausible_job_id(job_id) else None
    if job is None:
        return _not_found(job_id)
    return await _job_answer(clients, job, links, caller)


async def cancel_export(
    clients: Clients, job_id: str, *, links: Links, caller: Caller = ANONYMOUS
) -> ApiResponse:
    """Cancels a queued or running export: 200 when nothing was running (or it was cancelled
    already), 202 when its workers are still stopping, 409 when it finished first."""
    job, cancelled = (
        await clients.jobs.cancel(job_id, reason=reasons.CANCELLED, by=caller.to_json())
        if plausible_job_id(job_id)
        else (None, False)
    )
    if job is None:
        return _not_found(job_id)
    if cancelled:
        audit.record(audit.CANCEL, job.id, caller)
    if not cancelled and job.status is not Status.CANCELLED:
        state = f"already {job.status.value}" if job.status.finished else "is committing its files"
        if job.status is Status.ESTIMATED:
            state = "was a dry run and is already estimated"
        return problem(409, "Export finished", f"The export {state}; it cannot be cancelled.")
    # A job that had started may have partitions mid-page: they stop at their next look.
    running = cancelled and job.started_at is not None
    return ApiResponse(
        202 if running else 200,
        await _describe(clients, job, links),
        {"Location": links.status(job.id)},
    )


async def _job_answer(clients: Clients, job: Job, links: Links, caller: Caller) -> ApiResponse:
    """GET's answer for a job: 202 and polling headers until it finishes, then 200 (with the
    files' read-only URLs when it has files: who was handed them is logged)."""
    body = await _describe(clients, job, links)
    if not job.status.finished:
        return ApiResponse(202, body, _polling(clients, body["statusUrl"]))
    if job.status.has_files:
        now, files = utcnow(), _handed_out(job)
        for kind, (blob, file_name) in files.items():
            body[URL_KEYS[kind]] = await clients.sas.read_url(
                clients.exports.get_blob_client(blob), now=now, file_name=file_name
            )
        body["urlsExpireAt"] = iso(now + clients.settings.sas_lifetime)
        facts = {kind: value for kind, value in (job.files or {}).items() if kind in files}
        if facts:
            body["files"] = facts
        audit.record(audit.DOWNLOAD_LINKS, job.id, caller, files=sorted(URL_KEYS[k] for k in files))
    return ApiResponse(200, body)


def _handed_out(job: Job) -> dict[str, tuple[str, str]]:
    """The files a finished job hands out, by kind: (blob name, the download's file name)."""
    request = job.request
    files = {}
    if job.has_snapshot:
        files["csv"] = (job.blob_name, request.file_name)
    if job.plan is not None and job.plan.changes:
        files["changes"] = (job.changes_blob_name, request.changes_file_name)
    files["errors"] = (job.errors_blob_name, request.errors_file_name)
    return files


async def latest_export(
    clients: Clients, *, params: dict[str, str], links: Links, caller: Caller = ANONYMOUS
) -> ApiResponse:
    """The newest export of a series whose files were committed, of the series' definition, as
    GET of its id answers it (its download URLs included): a consumer keeps one URL for "the
    latest file"."""
    found = await _latest_job(clients, params)
    if isinstance(found, ApiResponse):
        return found
    response = await _job_answer(clients, found, links, caller)
    response.headers["Content-Location"] = links.status(found.id)
    return response


async def latest_file(
    clients: Clients,
    name: str,
    *,
    params: dict[str, str],
    links: Links,
    caller: Caller = ANONYMOUS,
) -> ApiResponse:
    """302 to a fresh read-only SAS URL of a file of the series' latest export: one URL that
    Excel ("From Web"), Power BI or `curl -L` refresh, always the newest file."""
    kind = LATEST_FILES.get(name)
    if kind is None:
        return problem(
            404,
            "No such file",
            f"{excerpt(name)!r} is not a file an export has; one of {', '.join(LATEST_FILES)}.",
            field="file",
        )
    found = await _latest_job(clients, params)
    if isinstance(found, ApiResponse):
        return found
    files = _handed_out(found)
    if kind not in files:
        has = "a changes run without snapshot" if kind == "csv" else "not a changes run"
        return problem(
            404,
            "No such file in the latest export",
            f"The series' latest export ({found.id}) has no {name}: it is {has}.",
            field="file",
        )
    blob, file_name = files[kind]
    url = await clients.sas.read_url(
        clients.exports.get_blob_client(blob), now=utcnow(), file_name=file_name
    )
    audit.record(audit.DOWNLOAD_LINKS, found.id, caller, files=[URL_KEYS[kind]])
    status = links.status(found.id)
    return ApiResponse(
        302, {"id": found.id, "statusUrl": status}, {"Location": url, "Content-Location": status}
    )


async def _latest_job(clients: Clients, params: dict[str, str]) -> Job | ApiResponse:
    """The newest run of a series whose files were committed, of the series' definition; or
    the problem that says why there is none."""
    unknown = [name for name in params if name not in LATEST_PARAMETERS]
    if unknown:
        shown = excerpt(unknown[0])
        return problem(
            400, "Invalid query", f"Unknown query parameter {shown!r}; known: series.", field=shown
        )
    try:
        series = series_name(params.get("series"), required=True)
    except InvalidRequest as error:
        return problem(400, "Invalid query", error.detail, field=error.field)
    defined = await clients.series.definition(series)
    async for job in clients.jobs.series_runs(series, with_files=True):
        if defined is not None and Definition.of(job.request) != defined[0]:
            continue  # a run of an earlier definition
        return job
    return problem(
        404,
        "No export in this series",
        f"Series {series!r} has no export that succeeded (or completed with errors) yet.",
        field="series",
    )


def _polling(clients: Clients, status_url: str) -> dict[str, str]:
    return {
        "Location": status_url,
        "Retry-After": str(clients.settings.status_retry_after_seconds),
    }


def _not_found(job_id: str) -> ApiResponse:
    return problem(404, "Export not found", f"There is no export with id {excerpt(job_id)!r}.")


def list_columns() -> ApiResponse:
    """The column catalogue, in order; `default` marks the admin center's 25, `presets` the
    presets a column is in."""
    defaults = set(DEFAULT_COLUMN_NAMES)
    value = [
        {
            "name": name,
            "default": name in defaults,
            "presets": [preset for preset, names in PRESETS.items() if name in names],
            "permission": column.permission,
        }
        for name, column in CATALOGUE.items()
    ]
    return ApiResponse(200, {"value": value, "presets": {k: list(v) for k, v in PRESETS.items()}})


async def list_exports(clients: Clients, *, params: dict[str, str], links: Links) -> ApiResponse:
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
    # The queued jobs' places from one query of the backlog, not one per job of the page.
    queued = await clients.jobs.queued() if any(j.status is Status.QUEUED for j in jobs) else []
    places = {job.id: place for place, job in enumerate(queued, start=1)}
    value = [await _describe(clients, job, links, places=places) for job in jobs]
    body: dict[str, Any] = {"value": value}
    if cursor:
        body["nextLink"] = links.page(raw_size, cursor)
    return ApiResponse(200, body)


async def _describe(
    clients: Clients, job: Job, links: Links, *, places: dict[str, int] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": job.id,
        "status": job.status.value,
        "statusUrl": links.status(job.id),
        "trigger": job.trigger,
        "caller": job.caller or ANONYMOUS.to_json(),
        "createdAt": iso(job.created_at),
        "startedAt": iso(job.started_at),
        "finishedAt": iso(job.finished_at),
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
        if job.plan.estimate:
            body["estimate"] = job.plan.estimate
        if job.plan.delta:
            body["delta"] = job.plan.delta.shown()
    if job.status is Status.QUEUED:
        place = (places or {}).get(job.id)
        body["queuePosition"] = place or await admission.queue_position(clients, job)
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
            body["failingSince"], body["lastError"] = iso(since), error
        elif job.last_error:
            body["lastError"] = job.last_error
    if job.report_time:
        body["registrationReportTime"] = job.report_time
    if job.cancelled_by:
        body["cancelledBy"] = job.cancelled_by
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
        progress["estimatedCompletionAt"] = iso(utcnow() + timedelta(seconds=remaining))
    return progress
