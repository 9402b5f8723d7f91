"""The worker's core: each queue message plans a job, or runs (or continues) one partition.

The way of the data: the plan message counts the users and splits the listing into
partitions, one message each; a partition reads its Graph pages -> CSV rows -> staged blocks
of its own, and records a checkpoint in its row after every staged block (the next page's
link, the block count, the counts), so a crash, a redelivery or a time budget running out
resumes from there without losing or repeating a user. The last partition to finish commits
every block, in partition order, into the CSV and the errors file, and finishes the job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from enum import StrEnum
from typing import Any

import orjson

from .authmethods import LookupFailure, LookupResult
from .blobsink import StagedBlob
from .clients import Clients
from .columns import graph_expand, graph_select, lookups, resolve
from .csvfile import CsvEncoder, encode_rows
from .filters import GraphQuery, to_graph_query, with_upn_prefix
from .graph import GraphError, UsersPage
from .jobs import Checkpoint, Job, JobConflict, Partition, PartitionStatus, Status, utcnow
from .planning import plan_listing

log = logging.getLogger(__name__)

BLOCK_BYTES = 4 * 1024 * 1024  # stage a block once this much CSV is buffered
PROGRESS_SECONDS = 5.0  # ... or this long after the last checkpoint, so progress shows
LEASE_GRACE = timedelta(minutes=2)  # a lease outlives its invocation's budget by this much
HEADER_TAG, DENIED_TAG = "H0000", "D0000"  # block tags besides the partitions' P0000...

EXPIRED_PAGE_TOKEN = "Directory_ExpiredPageToken"
ERRORS_HEADER = ["objectId", "userPrincipalName", "failed", "httpStatus", "errorCode", "message"]


class Outcome(StrEnum):
    PLANNED = "planned"  # the partitions' messages are queued
    PARTITION_DONE = "partitionDone"  # this partition is written; others are still running
    FINISHED = "finished"  # the job reached a final state in this invocation
    CONTINUED = "continued"  # the time budget ran out; a new message carries on
    SKIPPED = "skipped"  # nothing to do: unknown, already done, or another invocation has it


def queue_message(job_id: str, partition: int | None = None) -> str:
    body: dict[str, Any] = {"jobId": job_id}
    if partition is not None:
        body["partition"] = partition
    return orjson.dumps(body).decode()


async def run_message(
    clients: Clients, job_id: str, partition: int | None, *, message_id: str
) -> Outcome:
    """Runs one queue message: the plan step when it names no partition."""
    try:
        if partition is None:
            return await _plan(clients, job_id)
        return await _run_partition(clients, job_id, partition, message_id=message_id)
    except GraphError as error:
        if error.transient:
            await _record_error(clients, job_id, str(error))
            raise
        await fail_job(clients, job_id, reason=_graph_reason(error))
        return Outcome.FINISHED
    except Exception as error:
        await _record_error(clients, job_id, f"{type(error).__name__}: {error}")
        raise


async def _plan(clients: Clients, job_id: str) -> Outcome:
    job = await clients.jobs.get(job_id)
    if job is None or job.status.finished:
        log.info("Export job %s is unknown or finished; plan message dropped.", job_id)
        return Outcome.SKIPPED
    if job.status is Status.QUEUED:
        job.status, job.started_at = Status.RUNNING, utcnow()
        job = await _save_or_reload(clients, job)
    if job.plan is None:
        query = to_graph_query(job.request.get("filter"))
        job.plan = await plan_listing(clients.graph, query, partitions=clients.settings.partitions)
        job = await _save_or_reload(clients, job)
        if job.plan is None:
            raise RuntimeError(f"job {job_id} has no plan after planning")
    # Replayed (a crash, a duplicate), this only adds what is missing and re-queues what is
    # not done; a partition message that finds its partition leased or done does nothing.
    for index, prefixes in enumerate(job.plan.partitions):
        await clients.jobs.add_partition(Partition(job.id, index, prefixes))
    for part in await clients.jobs.partitions(job.id):
        if part.status is not PartitionStatus.DONE:
            await clients.queue.send_message(queue_message(job.id, part.index))
    log.info("Export job %s planned: %d partition(s).", job.id, len(job.plan.partitions))
    return Outcome.PLANNED


async def _save_or_reload(clients: Clients, job: Job) -> Job:
    """Saves the job; if a twin invocation saved first, carries on with what it saved."""
    try:
        return await clients.jobs.save(job)
    except JobConflict:
        fresh = await clients.jobs.get(job.id)
        if fresh is None:
            raise
        return fresh


async def _run_partition(clients: Clients, job_id: str, index: int, *, message_id: str) -> Outcome:
    job = await clients.jobs.get(job_id)
    part = await clients.jobs.get_partition(job_id, index)
    if job is None or part is None or job.status is not Status.RUNNING or job.plan is None:
        return Outcome.SKIPPED
    if part.status is PartitionStatus.DONE:
        return await _finish_if_complete(clients, job.id)  # in case its finisher crashed
    now = utcnow()
    held = (
        part.lease_owner not in (None, message_id) and part.lease_until and part.lease_until > now
    )
    if held:
        log.info(
            "Job %s partition %d is leased by another message; %s skipped.",
            job_id,
            index,
            message_id,
        )
        return Outcome.SKIPPED
    budget = clients.settings.time_budget_seconds
    part.lease_owner, part.lease_until = message_id, now + timedelta(seconds=budget) + LEASE_GRACE
    part.attempts += 1
    try:
        part = await clients.jobs.save(part)
        return await _PartitionRun(clients, job, part, deadline=time.monotonic() + budget).run()
    except JobConflict:
        log.info(
            "Job %s partition %d was taken by another invocation; %s stops.",
            job_id,
            index,
            message_id,
        )
        return Outcome.SKIPPED


async def fail_job(clients: Clients, job_id: str, *, reason: str) -> None:
    """Marks a job failed, whatever its state, unless it already finished."""
    for _ in range(5):
        job = await clients.jobs.get(job_id)
        if job is None or job.status.finished:
            return
        job.status, job.reason, job.finished_at = Status.FAILED, reason, utcnow()
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


async def _finish_if_complete(clients: Clients, job_id: str) -> Outcome:
    """Commits both files and finishes the job once every partition is done. Two partitions
    finishing at once may both get here: the commits are the same, the job's ETag picks one."""
    job = await clients.jobs.get(job_id)
    if job is None or job.status is not Status.RUNNING or job.plan is None:
        return Outcome.SKIPPED
    parts = await clients.jobs.partitions(job_id)
    if len(parts) < len(job.plan.partitions) or any(
        p.status is not PartitionStatus.DONE for p in parts
    ):
        return Outcome.PARTITION_DONE
    columns = resolve(job.request["columns"])
    users_blob = clients.exports.get_blob_client(job.blob_name)
    errors_blob = clients.exports.get_blob_client(job.errors_blob_name)
    denied, denied_rows = _denials(parts)

    users_blocks = [await StagedBlob.put(users_blob, HEADER_TAG, CsvEncoder(columns).header())]
    error_blocks = [
        await StagedBlob.put(
            errors_blob, HEADER_TAG, encode_rows(ERRORS_HEADER, [], with_header=True)
        )
    ]
    if denied_rows:
        error_blocks.append(
            await StagedBlob.put(
                errors_blob, DENIED_TAG, encode_rows([], denied_rows, with_header=False)
            )
        )
    for p in parts:
        users_blocks += StagedBlob.ids(_tag(p.index), p.checkpoint.blocks)
        error_blocks += StagedBlob.ids(_tag(p.index), p.checkpoint.error_blocks)
    file_name = job.request["fileName"]
    await StagedBlob.commit(users_blob, users_blocks, file_name=file_name)
    await StagedBlob.commit(
        errors_blob, error_blocks, file_name=f"{file_name.removesuffix('.csv')}-errors.csv"
    )
    job.user_count = sum(p.checkpoint.users for p in parts)
    job.error_count = sum(p.checkpoint.errors for p in parts) + len(denied_rows)
    job.status = Status.COMPLETED_WITH_ERRORS if job.error_count else Status.SUCCEEDED
    job.reason, job.finished_at = (DENIED_MESSAGE if denied else None), utcnow()
    try:
        await clients.jobs.save(job)
    except JobConflict:
        return Outcome.SKIPPED  # the twin finisher won
    log.info(
        "Export job %s finished: %d users, %d errors.", job.id, job.user_count, job.error_count
    )
    return Outcome.FINISHED


def _tag(index: int) -> str:
    return f"P{index:04d}"


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


DENIED_MESSAGE = (
    "Graph refused every authentication-method lookup, so the columns "
    "authenticationAlternativePhoneNumber and authenticationEmail are empty for all users. "
    "Grant the app's managed identity the Microsoft Graph application permission "
    "UserAuthenticationMethod.Read.All (admin consent), then export again."
)


def _everything_denied(found: LookupResult, progress: Checkpoint) -> str | None:
    """The error code when no lookup has ever been allowed: said once for the whole job."""
    if progress.lookups_succeeded or found.succeeded or not found.failures:
        return None
    if any(f.status != 403 for f in found.failures):
        return None
    return found.failures[0].code or "Forbidden"


def _denials(parts: list[Partition]) -> tuple[bool, list[list[str]]]:
    """Whether Graph refused every lookup of the job, and the error rows that say so: once
    when the permission is missing (refused everywhere), else one per refused partition."""
    refused = [p for p in parts if p.checkpoint.lookups_denied]
    if refused and not any(p.checkpoint.lookups_succeeded for p in parts):
        return True, [_denied_row(refused[0].checkpoint.lookups_denied or "Forbidden")]
    return False, [_partly_denied_row(p) for p in refused]


def _denied_row(code: str) -> list[str]:
    return ["", "", "authentication/phoneMethods,emailMethods", "403", code, DENIED_MESSAGE]


def _partly_denied_row(part: Partition) -> list[str]:
    prefixes = ", ".join(repr(p) for p in part.prefixes)
    return [
        "",
        "",
        "authentication/phoneMethods,emailMethods",
        "403",
        part.checkpoint.lookups_denied or "Forbidden",
        "Graph refused every authentication-method lookup for the users whose "
        f"userPrincipalName starts with {prefixes} (it allowed others), so their "
        "authenticationAlternativePhoneNumber and authenticationEmail are empty. Check the "
        "policies that restrict access to those users, then export again.",
    ]


@dataclass
class _PartitionRun:
    clients: Clients
    job: Job
    part: Partition
    deadline: float

    async def run(self) -> Outcome:
        job, clients, part = self.job, self.clients, self.part
        columns = resolve(job.request["columns"])
        encoder = CsvEncoder(columns, formula_guard=job.request["formulaGuard"])
        select, expand = graph_select(columns), graph_expand(columns)
        base_query = to_graph_query(job.request.get("filter"))
        wanted_lookups = lookups(columns)
        progress = part.checkpoint
        users_blob = StagedBlob(
            clients.exports.get_blob_client(job.blob_name), _tag(part.index), count=progress.blocks
        )
        errors_blob = StagedBlob(
            clients.exports.get_blob_client(job.errors_blob_name),
            _tag(part.index),
            count=progress.error_blocks,
        )
        buffer = bytearray()
        error_rows: list[list[str]] = []
        last_checkpoint = time.monotonic()

        async def checkpoint(*, done: bool = False) -> None:
            nonlocal buffer, error_rows, last_checkpoint
            await users_blob.stage(bytes(buffer))
            await errors_blob.stage(encode_rows(ERRORS_HEADER, error_rows, with_header=False))
            buffer, error_rows = bytearray(), []
            self.part.checkpoint = replace(
                progress, blocks=users_blob.count, error_blocks=errors_blob.count
            )
            self.part.lease_until = (
                utcnow() + timedelta(seconds=clients.settings.time_budget_seconds) + LEASE_GRACE
            )
            if done:
                self.part.status = PartitionStatus.DONE
                self.part.lease_owner = self.part.lease_until = None
            self.part = await clients.jobs.save(self.part)
            last_checkpoint = time.monotonic()

        while progress.prefix < len(part.prefixes):
            query = with_upn_prefix(base_query, part.prefixes[progress.prefix])
            users, next_link, relisted = await self._next_page(
                progress, self._fetcher(query, select, expand)
            )
            found = LookupResult()
            if wanted_lookups and not progress.lookups_denied:
                found = await clients.auth_methods.read([u["id"] for u in users], wanted_lookups)
            denied = _everything_denied(found, progress)
            new_errors = relisted + ([] if denied else _error_rows(found.failures, users))
            buffer += encoder.rows(users, found.methods)
            error_rows += new_errors
            progress = replace(
                progress,
                started=True,
                next_link=next_link,
                prefix_users=progress.prefix_users + len(users),
                last_id=users[-1]["id"] if users else progress.last_id,
                users=progress.users + len(users),
                errors=progress.errors + len(new_errors),
                lookups_succeeded=progress.lookups_succeeded + found.succeeded,
                lookups_denied=denied or progress.lookups_denied,
            )
            if not next_link:  # this prefix is listed; on to the next one
                progress = replace(
                    progress, prefix=progress.prefix + 1, started=False, prefix_users=0
                )
            more = progress.prefix < len(part.prefixes)
            out_of_time = time.monotonic() >= self.deadline
            if (
                len(buffer) >= BLOCK_BYTES
                or time.monotonic() - last_checkpoint >= PROGRESS_SECONDS
                or (out_of_time and more)
            ):
                await checkpoint()
            if out_of_time and more:
                return await self._continue()

        await checkpoint(done=True)
        log.info("Job %s partition %d written: %d users.", job.id, part.index, progress.users)
        return await _finish_if_complete(clients, job.id)

    def _fetcher(
        self, query: GraphQuery, select: list[str], expand: list[str] | None
    ) -> Callable[[str | None], Awaitable[UsersPage]]:
        def fetch(next_link: str | None) -> Awaitable[UsersPage]:
            return self.clients.graph.users_page(
                next_link=next_link,
                select=select,
                expand=expand,
                filter=query.filter,
                advanced=query.advanced,
            )

        return fetch

    async def _next_page(
        self, progress: Checkpoint, fetch: Callable[[str | None], Awaitable[UsersPage]]
    ) -> tuple[list[dict], str | None, list[list[str]]]:
        """The next page's new users and link. When Graph says the page token expired, the
        prefix's listing starts again and passes over the users already written (Graph lists
        in a stable order); a row in the errors file says so if the directory changed."""
        link = progress.next_link if progress.started else None
        try:
            page = await fetch(link)
        except GraphError as error:
            if error.code != EXPIRED_PAGE_TOKEN or not link:
                raise
            log.warning("Job %s: page token expired; listing again from the start.", self.job.id)
            skip, passed_last = progress.prefix_users, None
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
        # Release first, then enqueue: the next message must find the partition free. A crash
        # in between leaves this message undeleted, so it comes back and carries on itself.
        self.part.lease_owner = self.part.lease_until = None
        self.part = await self.clients.jobs.save(self.part)
        await self.clients.queue.send_message(queue_message(self.job.id, self.part.index))
        log.info(
            "Job %s partition %d continues in a new message (%d users so far).",
            self.job.id,
            self.part.index,
            self.part.checkpoint.users,
        )
        return Outcome.CONTINUED
