"""The worker's core: one queue message runs (or continues) one export job.

The way of the data: Graph pages -> CSV rows -> staged blocks -> committed blob. After every
staged block the job row records a checkpoint (the next page's link, the block count, the
counts), so a crash, a redelivery or a time budget running out resumes from there without
losing or repeating a user.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from enum import StrEnum

import orjson

from .authmethods import LookupFailure, LookupResult
from .blobsink import StagedBlob
from .clients import Clients
from .columns import graph_expand, graph_select, lookups, resolve
from .csvfile import CsvEncoder, encode_rows
from .filters import to_graph_query
from .graph import GraphError, UsersPage
from .jobs import Checkpoint, Job, JobConflict, Status, utcnow

log = logging.getLogger(__name__)

BLOCK_BYTES = 4 * 1024 * 1024  # stage a block once this much CSV is buffered
PROGRESS_SECONDS = 5.0  # ... or this long after the last checkpoint, so progress shows
LEASE_GRACE = timedelta(minutes=2)  # a lease outlives its invocation's budget by this much

EXPIRED_PAGE_TOKEN = "Directory_ExpiredPageToken"
ERRORS_HEADER = ["objectId", "userPrincipalName", "failed", "httpStatus", "errorCode", "message"]


class Outcome(StrEnum):
    FINISHED = "finished"  # the job reached a final state in this invocation
    CONTINUED = "continued"  # the time budget ran out; a new message carries on
    SKIPPED = "skipped"  # nothing to do: unknown, already finished, or another invocation has it


def queue_message(job_id: str) -> str:
    return orjson.dumps({"jobId": job_id}).decode()


async def run_job(clients: Clients, job_id: str, *, message_id: str) -> Outcome:
    job = await clients.jobs.get(job_id)
    if job is None:
        log.warning("Export job %s does not exist; message %s dropped.", job_id, message_id)
        return Outcome.SKIPPED
    now = utcnow()
    if job.status.finished:
        return Outcome.SKIPPED
    held = job.lease_owner not in (None, message_id) and job.lease_until and job.lease_until > now
    if held:
        log.info(
            "Job %s is being exported by message %s; %s skipped.",
            job_id,
            job.lease_owner,
            message_id,
        )
        return Outcome.SKIPPED
    budget = clients.settings.time_budget_seconds
    job.lease_owner, job.lease_until = message_id, now + timedelta(seconds=budget) + LEASE_GRACE
    job.attempts += 1
    if job.status is Status.QUEUED:
        job.status, job.started_at = Status.RUNNING, now
    try:
        job = await clients.jobs.save(job)
    except JobConflict:
        log.info("Job %s was claimed by another invocation; %s skipped.", job_id, message_id)
        return Outcome.SKIPPED
    try:
        return await _Export(clients, job, deadline=time.monotonic() + budget).run()
    except JobConflict:
        log.info("Job %s was taken over by another invocation; %s stops.", job_id, message_id)
        return Outcome.SKIPPED
    except GraphError as error:
        if error.transient:
            await _record_error(clients, job_id, str(error))
            raise
        await fail_job(clients, job_id, reason=_graph_reason(error))
        return Outcome.FINISHED
    except Exception as error:
        await _record_error(clients, job_id, f"{type(error).__name__}: {error}")
        raise


async def fail_job(clients: Clients, job_id: str, *, reason: str) -> None:
    """Marks a job failed, whatever its state, unless it already finished."""
    for _ in range(5):
        job = await clients.jobs.get(job_id)
        if job is None or job.status.finished:
            return
        job.status, job.reason, job.finished_at = Status.FAILED, reason, utcnow()
        job.lease_owner = job.lease_until = None
        try:
            await clients.jobs.save(job)
            log.error("Export job %s failed: %s", job_id, reason)
            return
        except JobConflict:
            continue


async def _record_error(clients: Clients, job_id: str, message: str) -> None:
    """Keeps the last error on the job, so the poison handler can say why it gave up."""
    try:
        job = await clients.jobs.get(job_id)
        if job is not None and not job.status.finished:
            job.last_error = message[:2000]
            await clients.jobs.save(job)
    except Exception:
        log.exception("Could not record the last error of job %s.", job_id)


def _graph_reason(error: GraphError) -> str:
    if error.status == 403:
        return (
            f"Microsoft Graph refused to list users ({error.status} {error.code}). Grant the "
            "app's managed identity the User.Read.All application permission (admin consent)."
        )
    if error.status == 401:
        return (
            f"Microsoft Graph did not accept the app's token ({error.status} {error.code}). "
            "Check the managed identity (AZURE_CLIENT_ID) and the tenant."
        )
    return f"Microsoft Graph rejected the request ({error.status} {error.code}): {error.message}"


_LOOKUP_ADVICE = {
    403: "Graph refused this lookup: check the UserAuthenticationMethod.Read.All permission and "
    "any policy that restricts this user.",
    404: "The user was deleted after it was listed; its row holds what the listing returned.",
    429: "Graph kept throttling this lookup after every retry; export again later.",
}


def _error_rows(failures: list[LookupFailure], users: list[dict]) -> list[list[str]]:
    names = {u["id"]: u.get("userPrincipalName") or "" for u in users} if failures else {}
    return [
        [
            f.user_id,
            names.get(f.user_id, ""),
            f"authentication/{f.lookup}",
            str(f.status),
            f.code,
            _LOOKUP_ADVICE.get(
                f.status,
                f"Graph failed on this lookup ({f.message or 'no message'}); the user's "
                "authentication columns are empty. Export again to retry.",
            ),
        ]
        for f in failures
    ]


def _listing_changed_row() -> list[str]:
    return [
        "",
        "",
        "listing",
        "400",
        EXPIRED_PAGE_TOKEN,
        "Graph's page token expired, so the listing started again and passed over the users "
        "already written; the directory changed in between, so users created or deleted during "
        "the export may be missing or repeated. Export again for an exact snapshot.",
    ]


def _everything_denied(found: LookupResult, progress: Checkpoint) -> list[str] | None:
    """One error row for the whole tenant when no lookup has ever been allowed."""
    if progress.lookups_succeeded or found.succeeded or not found.failures:
        return None
    if any(f.status != 403 for f in found.failures):
        return None
    lookups_ = sorted({f.lookup for f in found.failures})
    return [
        "",
        "",
        "authentication/" + ",".join(lookups_),
        "403",
        found.failures[0].code,
        "Graph refused every authentication-method lookup, so the columns "
        "authenticationAlternativePhoneNumber and authenticationEmail are empty for all users. "
        "Grant the app's managed identity the Microsoft Graph application permission "
        "UserAuthenticationMethod.Read.All (admin consent), then export again.",
    ]


@dataclass
class _Export:
    clients: Clients
    job: Job
    deadline: float

    async def run(self) -> Outcome:
        job, clients = self.job, self.clients
        columns = resolve(job.request["columns"])
        encoder = CsvEncoder(columns, formula_guard=job.request["formulaGuard"])
        select, expand = graph_select(columns), graph_expand(columns)
        query = to_graph_query(job.request.get("filter"))
        wanted_lookups = lookups(columns)
        progress = job.checkpoint
        users_blob = StagedBlob(
            clients.exports.get_blob_client(job.blob_name), count=progress.blocks
        )
        errors_blob = StagedBlob(
            clients.exports.get_blob_client(job.errors_blob_name), count=progress.error_blocks
        )
        buffer = bytearray(encoder.header() if progress.blocks == 0 else b"")
        error_rows: list[list[str]] = []
        last_checkpoint = time.monotonic()

        def fetch(next_link: str | None) -> Awaitable[UsersPage]:
            return clients.graph.users_page(
                next_link=next_link,
                select=select,
                expand=expand,
                filter=query.filter,
                advanced=query.advanced,
            )

        async def checkpoint() -> None:
            nonlocal buffer, error_rows, last_checkpoint
            await users_blob.stage(bytes(buffer))
            await errors_blob.stage(
                encode_rows(ERRORS_HEADER, error_rows, with_header=errors_blob.count == 0)
                if error_rows
                else b""
            )
            buffer, error_rows = bytearray(), []
            self.job.checkpoint = replace(
                progress, blocks=users_blob.count, error_blocks=errors_blob.count
            )
            self.job.lease_until = (
                utcnow() + timedelta(seconds=clients.settings.time_budget_seconds) + LEASE_GRACE
            )
            self.job = await clients.jobs.save(self.job)
            last_checkpoint = time.monotonic()

        while not progress.started or progress.next_link:
            users, next_link, relisted = await self._next_page(progress, fetch)
            found = LookupResult()
            if wanted_lookups and not progress.lookups_denied:
                found = await clients.auth_methods.read([u["id"] for u in users], wanted_lookups)
            denied = _everything_denied(found, progress)
            new_errors = relisted + ([denied] if denied else _error_rows(found.failures, users))
            buffer += encoder.rows(users, found.methods)
            error_rows += new_errors
            progress = replace(
                progress,
                started=True,
                next_link=next_link,
                last_id=users[-1]["id"] if users else progress.last_id,
                users=progress.users + len(users),
                errors=progress.errors + len(new_errors),
                lookups_succeeded=progress.lookups_succeeded + found.succeeded,
                lookups_denied=denied[-1] if denied else progress.lookups_denied,
            )
            out_of_time = time.monotonic() >= self.deadline
            if (
                len(buffer) >= BLOCK_BYTES
                or time.monotonic() - last_checkpoint >= PROGRESS_SECONDS
                or (out_of_time and progress.next_link)
            ):
                await checkpoint()
            if out_of_time and progress.next_link:
                return await self._continue()

        await checkpoint()
        if errors_blob.count == 0:  # the errors file always exists, if only as its header
            await errors_blob.stage(encode_rows(ERRORS_HEADER, [], with_header=True))
        file_name = self.job.request["fileName"]
        await users_blob.commit(file_name=file_name)
        await errors_blob.commit(file_name=f"{file_name.removesuffix('.csv')}-errors.csv")
        job = self.job
        job.checkpoint = replace(job.checkpoint, error_blocks=errors_blob.count)
        job.user_count, job.error_count = progress.users, progress.errors
        job.status = Status.COMPLETED_WITH_ERRORS if progress.errors else Status.SUCCEEDED
        job.reason = progress.lookups_denied
        job.finished_at, job.lease_owner, job.lease_until = utcnow(), None, None
        await clients.jobs.save(job)
        log.info(
            "Export job %s finished: %d users, %d errors.", job.id, job.user_count, job.error_count
        )
        return Outcome.FINISHED

    async def _next_page(
        self, progress: Checkpoint, fetch: Callable[[str | None], Awaitable[UsersPage]]
    ) -> tuple[list[dict], str | None, list[list[str]]]:
        """The next page's new users and link. When Graph says the page token expired, the
        listing starts again from the top and passes over the users already written (Graph
        lists in a stable order); a row in the errors file says so if the directory changed."""
        try:
            page = await fetch(progress.next_link)
        except GraphError as error:
            if error.code != EXPIRED_PAGE_TOKEN or not progress.next_link:
                raise
            log.warning("Job %s: page token expired; listing again from the start.", self.job.id)
            skip, passed_last = progress.users, None
            page = await fetch(None)
            while skip >= len(page.users) and page.next_link:
                skip -= len(page.users)
                passed_last = page.users[-1]["id"] if page.users else passed_last
                page = await fetch(page.next_link)
            if skip and page.users:
                passed_last = page.users[min(skip, len(page.users)) - 1]["id"]
            notes = [_listing_changed_row()] if passed_last != progress.last_id else []
            return page.users[skip:], page.next_link, notes
        return page.users, page.next_link, []

    async def _continue(self) -> Outcome:
        # Release first, then enqueue: the next message must find the job free. A crash in
        # between leaves this message undeleted, so it comes back and carries on itself.
        self.job.lease_owner = self.job.lease_until = None
        self.job = await self.clients.jobs.save(self.job)
        await self.clients.queue.send_message(queue_message(self.job.id))
        log.info(
            "Export job %s continues in a new message (%d users so far).",
            self.job.id,
            self.job.checkpoint.users,
        )
        return Outcome.CONTINUED


__all__ = ["Checkpoint", "Outcome", "fail_job", "queue_message", "run_job"]
