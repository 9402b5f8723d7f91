"""Delta mode: a series' runs read only what changed since the last one.

The plan step (plan_delta) decides the run's kind. A full run takes a deltaLink for "now"
from Graph first ($deltatoken=latest), then lists the tenant as any export does (partitioned,
as fast); its CSV becomes the series' snapshot. A changes run (ChangesRun, the job's one
partition) follows the series' deltaLink:

    /users/delta pages -> changed users (in memory: as many as changed) and removed ids
    -> their authentication methods (only theirs) -> their CSV rows
    -> the previous snapshot streamed from Blob Storage, record by record: a changed user's
       row replaced, a removed one dropped, the others copied byte for byte (their
       authentication columns too, which delta does not track); the users it did not hold are
       appended -> the new snapshot (users.csv), the changes file (changes.csv), the errors file

and commits the three, then moves the series on to its new deltaLink (series.py). Out of time,
it starts again in a new message from the same deltaLink: nothing moved on yet.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from . import budget, errorsfile, reasons
from .blobsink import BlockStream, Stream, commit
from .clients import Clients
from .columns import AuthMethods
from .commit import commit_job
from .continuation import continue_later
from .csvfile import encode_rows
from .errors import CannotExport, JobConflict, JobStopped, OutOfTime, Resync, SnapshotUnusable
from .errorsfile import ERRORS_HEADER, lookup_rows, methods_missing_row
from .exportrequest import ID_COLUMN
from .graph import ID_BATCH, GraphError, LookupResult, api_missing, meter
from .jobs import (
    DeltaPlan,
    Job,
    Partition,
    Status,
    attempts,
    iso,
    utcnow,
)
from .messages import ExportMessage, Outcome
from .resolved import Resolved
from .series import SeriesState

log = logging.getLogger(__name__)

# Graph's answers to a deltaLink it no longer has (delta query overview): "a 40X-series error
# with error codes such as syncStateNotFound" (7 days for directory objects), resyncRequired,
# or "410 Gone and a Location header" to start again from; spellings differ by workload
# (SyncStateNotFound), so codes are compared without case.
RESYNC_CODES = frozenset({"syncstatenotfound", "resyncrequired"})
CHANGES_COLUMNS = ["changeType", "changeReason"]
LOOKUP_USERS = 100
# Invocations a changes run may start before it gives up: it keeps nothing between them.
MAX_ATTEMPTS = 5
BLOCK_BYTES = 4 * 1024 * 1024
FILES = ("csv", "changes", "errors")  # Job.files' keys for users.csv, changes.csv, errors.csv


def expired(error: GraphError) -> bool:
    return error.status == 410 or error.code.lower() in RESYNC_CODES


def select_refused(error: GraphError) -> bool:
    """Graph refuses a property in the delta $select: 400 BadRequest "Invalid request for delta
    query: for this entity set, $expand/$select is not supported for the following
    properties: signInActivity" (graph-explorer-v4 #3189)."""
    return error.status == 400 and "not supported for the following properties" in error.message


async def plan_delta(
    clients: Clients, job: Job, *, select: list[str], notices: list[list[str]]
) -> DeltaPlan:
    """The delta run's kind, why, and the deltaLink it starts from (a changes run) or takes over
    once it has committed (a full run). A deltaLink Graph gave up adds a row to `notices`."""
    request = job.request
    state = await clients.series.get(request.series or "")
    # A changes run of this job that could not stand (Resync) made it a full run.
    reason = job.resync or await _full_reason(clients, job, state)
    if state is not None and reason is None:
        try:
            await clients.graph.users_delta(state.delta_link)  # does Graph still have it?
        except GraphError as error:
            if not (expired(error) or select_refused(error)):
                raise
            reason = reasons.delta_link_unusable(error, select_refused=select_refused(error))
            notices.append(["", "", "users/delta", str(error.status or ""), error.code, reason])
    if state is not None and reason is None:
        return DeltaPlan(
            kind="changes",
            reason=reasons.changes_since(state.snapshot_job),
            since=state.snapshot_job,
            link=state.delta_link,
            authentication_columns_from={"jobId": state.full_job, "at": iso(state.full_at)},
        )
    # Taken before the listing: a change made while it lists is read again by the next run.
    try:
        latest = await clients.graph.users_delta(select=select)
    except GraphError as error:
        if error.transient or error.status not in (400, 403, 501):
            raise
        # A property refused in its $select (select_refused), or no delta at all: "Change
        # enumeration is not supported for requested tenant" in Azure AD B2C.
        refused = reasons.delta_refused(error, select_refused=select_refused(error))
        raise CannotExport(refused) from None
    return DeltaPlan(
        kind="full",
        reason=reason,
        since=state.snapshot_job if state else None,
        link=latest["@odata.deltaLink"],
        authentication_columns_from={"jobId": job.id, "at": iso(job.started_at)},
    )


async def _full_reason(clients: Clients, job: Job, state: SeriesState | None) -> str | None:
    request, name = job.request, job.request.series
    if state is None:
        return reasons.first_delta_run(name)
    if state.columns != list(request.columns) or state.formula_guard != request.formula_guard:
        return reasons.SNAPSHOT_COLUMNS_DIFFER
    days = clients.settings.delta_full_days
    if utcnow() - state.full_at > timedelta(days=days):
        return reasons.full_run_due(state.full_job, days)
    snapshot = clients.exports.get_blob_client(f"{state.snapshot_job}/users.csv")
    if not await snapshot.exists():
        return reasons.snapshot_gone_full_run(state.snapshot_job)
    return None


@dataclass
class Changes:
    users: dict[str, dict[str, Any]] = field(default_factory=dict)  # added or updated, by id
    removed: dict[str, str] = field(default_factory=dict)  # id -> Graph's reason
    link: str = ""  # the deltaLink after them


async def read_changes(clients: Clients, link: str) -> Changes:
    """Every page from `link` to the next deltaLink; a user reported twice counts as its last."""
    changes = Changes()
    while True:
        page = await clients.graph.users_delta(link)
        for item in page.get("value", []):
            user_id = item["id"]
            if "@removed" in item:
                changes.users.pop(user_id, None)
                changes.removed[user_id] = (item["@removed"] or {}).get("reason") or "changed"
            else:
                changes.removed.pop(user_id, None)
                changes.users[user_id] = item
        if "@odata.deltaLink" in page:
            changes.link = page["@odata.deltaLink"]
            return changes
        link = page["@odata.nextLink"]


@dataclass
class Counts:
    users: int = 0
    added: int = 0
    updated: int = 0
    removed: int = 0


class ChangesRun:
    def __init__(self, clients: Clients, job: Job, part: Partition, resolved: Resolved) -> None:
        self._clients, self._job, self._part = clients, job, part
        plan = job.plan
        assert plan is not None and plan.delta is not None
        self._delta = plan.delta
        self._resolved = resolved
        self._columns = resolved.columns
        self._encoder = resolved.encoder()
        self._id_at = list(job.request.columns).index(ID_COLUMN)
        self._select = resolved.select(sign_in=True)  # what a changed user's item may carry
        self._source = clients.exports.get_blob_client(f"{self._delta.since}/users.csv")
        self._counts = Counts()
        self._notices: list[list[str]] = list(plan.notices)
        self._errors: list[list[str]] = []
        self._kept: set[str] = set()  # users whose authentication cells stay the snapshot's
        self._blocks: dict[str, list[str]] = {"users": [], "changes": [], "errors": []}

    def _staged(self, name: str, file: str) -> BlockStream:
        # A stream of its own: a Resync's full run stages under other block ids in the same
        # blobs, whatever its partitions' epochs.
        blob = self._clients.exports.get_blob_client(name)
        blocks = BlockStream(
            blob, Stream.CHANGES_RUN, epoch=self._part.epoch, block_bytes=BLOCK_BYTES
        )
        self._blocks[file] = blocks.ids
        return blocks

    async def run(self) -> Outcome:
        settings = self._clients.settings
        try:
            with budget.budget(
                settings.time_budget_seconds, failing_since=self._part.failing_since
            ) as spent:
                try:
                    link = await self._clients.jobs.while_running(self._job.id, self._write())
                except OutOfTime:
                    return await self._again(spent)
                except GraphError as error:
                    if not (expired(error) or select_refused(error)):
                        raise
                    return await self._resync(
                        reasons.delta_link_unusable(error, select_refused=select_refused(error))
                    )
                except Resync as resync:
                    return await self._resync(resync.reason)
            return await self._commit(link)
        except SnapshotUnusable as unusable:
            await self._clients.jobs.fail(self._job.id, reason=unusable.reason)
            return Outcome.FINISHED
        except (JobConflict, JobStopped) as stopped:
            log.info("Export job %s changes run stops: %s", self._job.id, stopped)
            return Outcome.SKIPPED

    async def _write(self) -> str:
        """Reads the changes, then stages the three files; the deltaLink after the changes."""
        if not await self._source.exists():  # before any Graph request
            raise SnapshotUnusable(reasons.snapshot_gone(self._delta.since))
        changes = await read_changes(self._clients, self._delta.link)
        users = list(changes.users.values())
        found = await self._look_up(users)
        self._errors += lookup_rows(found.failures, users)
        failed = {f.user_id for f in found.failures}
        await self._rebuild(changes.users, found.methods, changes.removed, failed)
        await self._verify()
        await self._write_errors()
        return changes.link

    async def _look_up(self, users: list[dict[str, Any]]) -> LookupResult:
        """The authentication methods of the changed users only. Where Graph has no such API
        (authmethods.api_missing), their lookups count as failed (the snapshot's cells stay)
        and one notice says so."""
        lookups = self._resolved.lookups
        found = LookupResult()
        if not lookups:
            return found
        for start in range(0, len(users), LOOKUP_USERS):
            ids = [u["id"] for u in users[start : start + LOOKUP_USERS]]
            part = await self._clients.auth_methods.read(ids, lookups)
            found.methods.update(part.methods)
            found.failures += part.failures
        missing = [f for f in found.failures if api_missing(f.status, f.message)]
        if missing:
            self._notices.append(methods_missing_row(missing[0].status, missing[0].code, lookups))
            found.failures = [f for f in found.failures if f not in missing]
            self._kept |= {f.user_id for f in missing}
        return found

    async def _rebuild(
        self,
        items: dict[str, dict[str, Any]],
        methods: AuthMethods,
        removed: dict[str, str],
        failed: set[str],
    ) -> None:
        """Streams the previous snapshot into the new one and writes the changes file.

        A changed user's row is its snapshot row with the cells Graph sent anew: delta items
        carry "at least the properties that have been updated" and leave out properties never
        set (delta query overview, user-delta), and selected properties have gone missing
        (microsoft-graph-docs-contrib #7935, #6975), so a property absent from the item keeps
        the snapshot's cell and an explicit null clears it. A user whose lookup failed keeps
        the authentication cells the snapshot had (the errors file says what failed): a
        passing failure must not empty them until the next full run. Users the snapshot did
        not hold (created, restored) are appended; those whose item lacks a selected property
        are read again by id, so every cell is one Graph gave."""
        users = self._staged(self._job.blob_name, "users")
        changes = self._staged(self._job.changes_blob_name, "changes")
        header = self._encoder.header()
        await users.add(header)
        names = CHANGES_COLUMNS + [c.name for c in self._columns]
        await changes.add(encode_rows(names, [], with_header=True))
        counts = self._counts
        items = dict(items)
        records = _records((await self._source.download_blob()).chunks())
        if await anext(records, None) != header:
            raise SnapshotUnusable(reasons.snapshot_other_columns(self._delta.since))
        keep_auth = failed | self._kept
        async for record in records:
            user_id = _field(record, self._id_at)
            if user_id in removed:
                counts.removed += 1
                await changes.add(_change("removed", removed[user_id]) + record)
                continue
            item = items.pop(user_id, None)
            row = None if item is None else self._merged(item, methods, record, keep_auth)
            if row is not None and row != record:
                counts.updated += 1
                await changes.add(_change("updated") + row)
            await users.add(row or record)
            counts.users += 1
            budget.check()
        added = await self._completed(list(items.values()))
        for user in added:  # users the snapshot did not hold: new, or restored
            row = self._encoder.rows([user], methods)
            counts.added += 1
            counts.users += 1
            await changes.add(_change("added") + row)
            await users.add(row)
        await users.flush()
        await changes.flush()

    def _merged(
        self, item: dict[str, Any], methods: AuthMethods, record: bytes, keep_auth: set[str]
    ) -> bytes:
        """The snapshot's row (`record`) with the cells `item` gives anew (see _rebuild)."""
        [new] = self._encoder.cells([item], methods)
        old = next(csv.reader([record.decode("utf-8")]))
        for index, column in enumerate(self._columns):
            if column.lookup:
                fresh = item["id"] not in keep_auth
            else:
                fresh = all(key in item for key in column.select)
            if not fresh:
                new[index] = old[index]
        return self._encoder.encode([new])

    async def _completed(self, users: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Added users, each with every selected property: those whose item lacks one are read
        again by id (Graph's order kept); one Graph no longer lists is left out."""
        lacking = [u["id"] for u in users if any(key not in u for key in self._select)]
        if not lacking:
            return users
        found: dict[str, Any] = {}
        for start in range(0, len(lacking), ID_BATCH):
            ids = lacking[start : start + ID_BATCH]
            found |= await self._clients.graph.users_by_id(ids, self._select)
        short = set(lacking)
        return [
            found.get(u["id"]) if u["id"] in short else u
            for u in users
            if u["id"] not in short or u["id"] in found
        ]

    async def _verify(self) -> None:
        """The rebuilt snapshot against Graph's count of users (one request): with $select, a
        restored user may not appear in delta at all (microsoft-graph-docs-contrib #6555), so a
        snapshot that holds another number of users than Graph lists makes this a full run."""
        try:
            listed = await self._clients.graph.count_users(filter=None)
        except GraphError as error:
            raise Resync(
                f"Graph did not count the users ({error.status} {error.code}), so the rebuilt "
                "snapshot could not be checked against it: this run lists in full."
            ) from None
        if listed != self._counts.users:
            raise Resync(
                f"The snapshot rebuilt from Graph's changes holds {self._counts.users} users "
                f"where Graph counts {listed}: /users/delta with $select may leave a restored "
                "user out (microsoft-graph-docs-contrib #6555), so this run lists in full."
            )

    async def _resync(self, reason: str) -> Outcome:
        """Makes the job a full run: its plan step runs again, and plan_delta takes `reason`.
        What this run staged is never committed (its blocks are of its own stream)."""
        clients = self._clients
        for _ in attempts(f"resyncing job {self._job.id}"):
            job = await clients.jobs.get(self._job.id)
            if job is None or job.status is not Status.RUNNING or job.committing:
                return Outcome.SKIPPED
            job.plan = job.plan_counts = job.preflight = None
            job.resync = reason
            try:
                await clients.jobs.save(job)
                break
            except JobConflict:
                continue
        # The new plan's partitions start afresh (the sweep re-adds them if this stops here).
        await clients.jobs.delete_partitions(job.id)
        await clients.queue.send_message(ExportMessage(job.id).encode())
        log.warning("Export job %s: the changes run gives way to a full run: %s", job.id, reason)
        return Outcome.CONTINUED

    async def _write_errors(self) -> None:
        errors = self._staged(self._job.errors_blob_name, "errors")
        rows = self._notices + self._errors
        await errors.add(encode_rows(ERRORS_HEADER, rows, with_header=True))
        await errors.flush()

    async def _again(self, spent: budget.Budget) -> Outcome:
        """Out of time: the same run again in a new message, from the same deltaLink."""
        clients, job, part = self._clients, self._job, self._part
        if part.attempts >= MAX_ATTEMPTS and not spent.outlasted(clients.settings.failure_cap):
            await clients.jobs.fail(
                job.id,
                reason=reasons.changes_out_of_time(part.attempts),
            )
            return Outcome.FINISHED

        async def save(pause: float) -> None:
            part.failing_since, part.last_error = spent.failing_since, spent.last_error
            part.lease_owner = part.lease_until = None
            part.resume_at = utcnow() + timedelta(seconds=pause) if pause else None
            await clients.jobs.save(part)

        message = ExportMessage(job.id, part.index)
        outcome = await continue_later(clients, message, spent, save=save)
        if outcome is Outcome.CONTINUED:
            log.info("Export job %s: the changes run starts again in a new message.", job.id)
        return outcome

    async def _commit(self, link: str) -> Outcome:
        """Marks the job committing (a cancel saved first wins), commits the files, moves the
        series on, then records the outcome; a conflict is read again and retried."""
        clients = self._clients
        # Fenced as a partition's checkpoint is: another invocation that claimed this run since
        # (a redelivered message) makes this save fail, and this one stops.
        checkpoint = self._part.checkpoint
        self._part.checkpoint = replace(checkpoint, graph=meter.saved(checkpoint.graph))
        self._part = await clients.jobs.save(self._part)

        async def write(job: Job) -> None:
            self._outcome(job)
            names = (job.blob_name, job.changes_blob_name, job.errors_blob_name)
            request = job.request
            files = (request.file_name, request.changes_file_name, request.errors_file_name)
            job.files = {}
            blocks = self._blocks.values()
            for kind, name, staged, file_name in zip(FILES, names, blocks, files, strict=True):
                blob = clients.exports.get_blob_client(name)
                job.files[kind] = (await commit(blob, staged, file_name=file_name)).to_json()
            try:
                await clients.series.advance(job, delta_link=link, planned_on=self._delta.since)
            except JobConflict as moved:
                job.status = Status.FAILED
                job.reason = reasons.changes_run_overtaken(job.request.series, moved)
            log.info(
                "Export job %s changes: %d added, %d updated, %d removed.",
                job.id,
                self._counts.added,
                self._counts.updated,
                self._counts.removed,
            )

        return await commit_job(clients, self._job.id, write)

    def _outcome(self, job: Job) -> None:
        counts = self._counts
        assert job.plan is not None and job.plan.delta is not None
        job.plan.delta = replace(
            job.plan.delta, added=counts.added, updated=counts.updated, removed=counts.removed
        )
        job.user_count = counts.users
        job.error_count = len(self._errors) + len(self._notices)
        job.status = Status.COMPLETED_WITH_ERRORS if job.error_count else Status.SUCCEEDED
        job.reason = errorsfile.reason(self._notices)
        job.finished_at = utcnow()


async def _records(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """A CSV file's records, each with its CRLF, from its bytes: a CRLF ends a record when the
    record's quotes so far are balanced (RFC 4180: a quoted field may hold line breaks)."""
    buffer = bytearray()
    start = scan = 0
    async for chunk in chunks:
        buffer += chunk
        while (end := buffer.find(b"\r\n", scan)) >= 0:
            scan = end + 2
            if buffer.count(b'"', start, end) % 2 == 0:
                yield bytes(buffer[start:scan])
                start = scan
        del buffer[:start]
        scan -= start
        start = 0
    if buffer:
        yield bytes(buffer)


def _field(record: bytes, index: int) -> str:
    return next(csv.reader([record.decode("utf-8")]))[index]


def _change(kind: str, reason: str = "") -> bytes:
    """The changes file's first two cells of a row, and the comma before the user's."""
    return encode_rows([], [[kind, reason]], with_header=False).removesuffix(b"\r\n") + b","
