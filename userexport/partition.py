"""One partition's run: Graph pages -> CSV rows and error rows -> staged blocks, checkpointed.

The data's way: the listing (graph.UsersListing) reads the page at the checkpoint's position
(and starts reading the next one at once, so Graph's latency overlaps the work below); its
users are taken LOOKUP_USERS at a time: their authentication methods are read
(authmethods), their CSV rows encoded (csvfile) and buffered with their error rows
(errorsfile), and the position moves past them. From time to time the buffers are staged as
blocks whose ids carry this invocation's epoch, and the checkpoint (position, block segments,
counts) is saved in the partition's row, ETag-guarded: once another invocation has claimed the
partition, that save fails and this run stops, its blocks never committed.

When the time budget runs out, wherever that happens (a page, a lookup batch, a throttling
wait), the run saves what it has written and continues in a new queue message. When the job
is cancelled, the run stops within seconds, wherever it is, and saves nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import asdict, replace
from datetime import timedelta
from typing import Any

from . import budget, reasons
from .blobsink import BlockStream, Stream
from .budget import gather_all
from .clients import Clients
from .columns import REGISTRATION, REGISTRATION_COLUMN_NAMES, SIGN_IN_ACTIVITY, reads_report
from .commit import finish_if_complete
from .continuation import continue_later
from .csvfile import encode_rows
from .errors import CannotExport, JobConflict, JobStopped, OutOfTime, TokensOutpaced
from .errorsfile import (
    DENY_AFTER,
    ERRORS_HEADER,
    listing_changed_row,
    lookup_rows,
    not_looked_up_rows,
    report_no_row_rows,
    sign_in_missing_rows,
)
from .filters import with_upn_prefix
from .graph import (
    EXPIRED_PAGE_TOKEN,
    ID_BATCH,
    GraphError,
    ListingStep,
    LookupResult,
    LookupsCutShort,
    Position,
    RawPage,
    RegistrationRefused,
    Report,
    UsersListing,
    api_missing,
    meter,
    needs_lookup,
    read_report,
)
from .jobs import Job, Partition, PartitionStatus, Segment, utcnow
from .messages import ExportMessage, Outcome
from .preflight import limited_members, limited_members_reason
from .resolved import Resolved

log = logging.getLogger(__name__)

LOOKUP_USERS = 100  # users looked up between two looks at the deadline (10 $batch requests)
PROBE_EVERY = 100  # chunks: once lookups stopped, one chunk in this many is looked up anyway
MAX_RELISTS = 10  # page tokens expiring again and again before a user is written: give up


SIGN_IN_SELECT = ["id", SIGN_IN_ACTIVITY]


# Stage a block once this much CSV is buffered: with 32 partitions at once on an instance,
# their buffers stay a few tens of MB.
BLOCK_BYTES = 1024 * 1024
PROGRESS_SECONDS = 5.0  # ... or this long after the last checkpoint, so progress shows
# A blob holds at most 50,000 blocks: past this many, a partition checkpoints once a minute,
# which keeps a long (throttled) export within the limit for days, not hours.
MANY_BLOCKS, SLOW_PROGRESS_SECONDS = 1000, 60.0


class PartitionRun:
    def __init__(self, clients: Clients, job: Job, part: Partition, resolved: Resolved) -> None:
        self._clients, self._job, self._part = clients, job, part
        self._resolved = resolved
        self._columns = resolved.columns
        self._encoder = resolved.encoder()
        self._progress = part.checkpoint  # the saved checkpoint plus what the buffers hold
        self._lookups = () if self._progress.lookups_missing else resolved.lookups
        # How signInActivity is read (Plan.sign_in), unless Graph stopped serving it.
        self._sign_in = None if self._progress.sign_in_stopped else resolved.sign_in
        self._select = resolved.select(sign_in=self._sign_in == "listing")
        self._expand = resolved.expand
        self._query = resolved.query
        # The registration report's rows for the prefix being listed (`_report_at`), read once
        # per prefix and invocation.
        self._report: Report | None = None
        self._report_at: int | None = None
        self._joins_report = reads_report(self._columns)  # its columns (not fewerLookups alone)
        self._rows = bytearray()
        self._errors: list[list[str]] = []
        self._held: list[list[str]] = []
        self._saved_at = time.monotonic()

    async def run(self) -> Outcome:
        settings = self._clients.settings
        try:
            with budget.budget(
                settings.time_budget_seconds, failing_since=self._part.failing_since
            ) as spent:
                try:
                    await self._clients.jobs.while_running(self._job.id, self._write_all())
                    finished = True
                except OutOfTime:
                    finished = False
                except TokensOutpaced:
                    await self._clients.jobs.fail(
                        self._job.id, reason=reasons.tokens_outpaced(MAX_RELISTS)
                    )
                    return Outcome.FINISHED
            # The last error stays while Graph is failing, even through an invocation that
            # only waited; a success clears both.
            self._part.failing_since = spent.failing_since
            failing = spent.failing_since is not None
            self._part.last_error = (spent.last_error or self._part.last_error) if failing else None
            if not finished:
                return await self._continue(spent)
            await self._save(done=True)
        except JobConflict:
            log.info(
                "Job %s partition %d was taken over by another invocation; this one stops.",
                self._job.id,
                self._part.index,
            )
            return Outcome.SKIPPED
        except JobStopped as stopped:
            log.info(
                "Job %s partition %d stops: the job is %s.", self._job.id, self._part.index, stopped
            )
            return Outcome.SKIPPED
        log.info(
            "Job %s partition %d written: %d users.",
            self._job.id,
            self._part.index,
            self._progress.users,
        )
        return await finish_if_complete(self._clients, self._job.id)

    async def _write_all(self) -> None:
        prefixes = self._part.prefixes
        ahead: tuple[Position, asyncio.Task[RawPage | None]] | None = None
        try:
            while self._progress.prefix < len(prefixes):
                listing = UsersListing(
                    self._clients.graph,
                    select=self._select,
                    expand=self._expand,
                    query=with_upn_prefix(self._query, prefixes[self._progress.prefix]),
                )
                position = self._position
                await self._read_report()
                try:
                    if ahead is not None and ahead[0] == position:
                        step = listing.step(position, await ahead[1])
                    else:
                        step = await listing.read(position)
                except GraphError as error:
                    if not error.premium_refused or self._sign_in is None:
                        raise
                    ahead = None
                    self._stop_sign_in()
                    continue
                # The next page is fetched (kept as bytes until its turn) while this one is
                # looked up, encoded and staged.
                ahead = None
                if not step.relisted and not step.next.done:
                    ahead = (step.next, asyncio.ensure_future(listing.fetch(step.next)))
                await self._write_step(step)
        finally:
            if ahead is not None:
                ahead[1].cancel()
                with contextlib.suppress(BaseException):
                    await ahead[1]

    async def _write_step(self, step: ListingStep) -> None:
        """Writes one page's users (checkpointing on the way) and moves past the page."""
        if step.relisted:
            log.warning("Job %s: a page token expired; listing again.", self._job.id)
            self._progress = replace(self._progress, relists=self._progress.relists + 1)
            if self._progress.relists > MAX_RELISTS:
                raise TokensOutpaced
        # Said with the first users written after it, so a page read again cannot say it twice.
        note = [listing_changed_row(EXPIRED_PAGE_TOKEN)] if step.changed else []
        position, users = step.at, step.users
        while users:
            chunk = users[:LOOKUP_USERS]
            position = await self._write(chunk, position, note)
            del users[: len(chunk)]  # written: let the page's memory go as it is
            note = []
            await self._save_if_due()
            budget.check()  # past the deadline: stop mid-page, at this position
        self._errors += note
        self._progress = replace(self._progress, position=asdict(step.next))
        if step.next.done:  # this prefix is listed; on to the next one
            self._progress = replace(self._progress, prefix=self._progress.prefix + 1, position={})
        await self._save_if_due()
        budget.check()

    def _stop_sign_in(self) -> None:
        """Graph refused signInActivity for USEREXPORT_STORM_SECONDS after serving it: the rest
        is exported without it (its columns empty, which the commit says once). The listing
        starts its prefix again without it, passing over the users written (the page token
        holds the old $select)."""
        log.warning(
            "Job %s partition %d: Graph refused signInActivity for good; going on without it.",
            self._job.id,
            self._part.index,
        )
        listed = self._sign_in == "listing"
        self._sign_in = None
        self._select = self._resolved.select(sign_in=False)
        position = self._position
        if listed and position.started:
            position = Position(
                skip=position.written, written=position.written, last_id=position.last_id
            )
        self._progress = replace(self._progress, position=asdict(position), sign_in_stopped=True)

    async def _read_report(self) -> None:
        """The registration report's rows for the prefix being listed, when the export reads it
        (its columns, or fewerLookups). Graph refusing it while the export runs (a permission
        withdrawn) stops the reading: the columns stay empty and the commit says so once."""
        index = self._progress.prefix
        if not self._resolved.report or self._progress.report_refused or self._report_at == index:
            return
        prefix = self._part.prefixes[index]
        # A filtered or scoped listing holds few of the range's users: only theirs are kept.
        keep = await self._listed_ids(prefix) if self._query.filter or self._query.scope else None
        try:
            # Each report column is named after the property it shows (methodsRegistered, which
            # fewerLookups reads, among them).
            report = await read_report(
                self._clients.graph, prefix, properties=REGISTRATION_COLUMN_NAMES, keep=keep
            )
        except RegistrationRefused as error:
            log.warning("Job %s: Graph refused the registration report.", self._job.id)
            self._report, self._report_at = None, index
            self._progress = replace(self._progress, report_refused=f"{error.status} {error.code}")
            return
        self._report, self._report_at = report, index
        times = [t for t in (self._progress.report_time, report.oldest) if t]
        self._progress = replace(self._progress, report_time=min(times, default=None))

    async def _listed_ids(self, prefix: str) -> set[str]:
        """The ids this partition's listing holds under `prefix` (ids only: 999 a page)."""
        query = with_upn_prefix(self._query, prefix)
        ids: set[str] = set()
        link: str | None = None
        while True:
            page = await self._clients.graph.users_page(
                next_link=link,
                select=["id"],
                filter=query.filter,
                advanced=query.advanced,
                scope=query.scope,
            )
            ids.update(str(u["id"]) for u in page.users)
            link = page.next_link
            if not link:
                return ids

    def _joined(
        self, users: list[dict[str, Any]], found: LookupResult
    ) -> tuple[int, list[dict[str, Any]]]:
        """Each user's report row, put beside its lookups for the encoder; how many disabled
        users had none (said once by the commit), and the enabled ones without a row."""
        report = self._report
        if report is None or not self._joins_report:
            return 0, []
        disabled, missing = 0, []
        for user in users:
            row = report.row(user["id"])
            if row is not None:
                found.methods.setdefault(user["id"], {})[REGISTRATION] = [row]
            elif user.get("accountEnabled") is False:
                disabled += 1
            else:
                missing.append(user)
        return disabled, missing

    async def _read_sign_ins(self, users: list[dict[str, Any]]) -> set[str]:
        """signInActivity of users listed without it (Plan.sign_in "byId"), into their dicts;
        the ids of those Graph no longer lists (deleted since they were)."""
        ids = [u["id"] for u in users]
        try:
            found: dict[str, Any] = {}
            for part in await gather_all(
                *(
                    self._clients.graph.users_by_id(ids[i : i + ID_BATCH], SIGN_IN_SELECT)
                    for i in range(0, len(ids), ID_BATCH)
                )
            ):
                found |= part
        except GraphError as error:
            if not error.premium_refused:
                raise
            self._stop_sign_in()
            return set()
        for user in users:
            user[SIGN_IN_ACTIVITY] = (found.get(user["id"]) or {}).get(SIGN_IN_ACTIVITY)
        return {u["id"] for u in users if u["id"] not in found}

    async def _write(
        self, users: list[dict[str, Any]], at: Position, notes: list[list[str]]
    ) -> Position:
        """Looks these users (read at `at`) up, encodes their rows and buffers them with their
        error rows; the position after them. Out of time while looking up, it writes the users
        whose lookups all finished, from the first, then raises: under a budget too short for
        a whole chunk, each invocation still gets further."""
        if limited_members(self._query.scope, users):
            raise CannotExport(limited_members_reason(self._query.scope))
        gone = await self._read_sign_ins(users) if self._sign_in == "byId" else set()
        progress = self._progress
        found = LookupResult()
        cut_short: LookupsCutShort | None = None
        # A partition that stopped asking still probes now and then: access may be granted
        # (or a policy's scope end) while it runs.
        probe = progress.users // LOOKUP_USERS % PROBE_EVERY == 0
        looked_up = bool(self._lookups) and (not progress.lookups_stopped or probe)
        carried: dict[str, float] = {}  # failing lookups to finish in a later invocation
        # fewerLookups: users whose report row rules out a phone and an email are not asked.
        asked = users
        if self._resolved.fewer_lookups and self._report is not None:
            asked = [u for u in users if needs_lookup(self._report.row(u["id"]))]
        if looked_up:
            try:
                found = await self._clients.auth_methods.read(
                    [u["id"] for u in asked],
                    self._lookups,
                    failing_since=progress.lookups_failing_since,
                )
            except LookupsCutShort as error:
                answered = error.partial.complete(asked, self._lookups)
                stop = asked[answered]["id"] if answered < len(asked) else None
                cut = next((i for i, u in enumerate(users) if u["id"] == stop), len(users))
                users = users[:cut]
                written = {u["id"] for u in users}
                self._clients.auth_methods.keep(
                    error.partial, (u["id"] for u in asked if u["id"] not in written)
                )
                carried = {
                    key: since
                    for key, since in error.partial.failing_since.items()
                    if key.split("/")[0] not in written
                }
                if not users:
                    self._progress = replace(progress, lookups_failing_since=carried)
                    raise
                found, cut_short = error.partial.only(written), error
            skipped = {u["id"] for u in users} - {u["id"] for u in asked}
            found.methods.update({uid: {key: [] for key in self._lookups} for uid in skipped})
        missing = next((f for f in found.failures if api_missing(f.status, f.message)), None)
        if missing is not None:  # no such API here: no more lookups, and no row per user
            log.warning("Job %s: Graph has no authentication-methods API.", self._job.id)
            found.failures = [f for f in found.failures if not api_missing(f.status, f.message)]
            progress = replace(progress, lookups_missing=f"{missing.status} {missing.code}")
            self._lookups = ()
        refused = [f for f in found.failures if f.status == 403]
        allowed = progress.lookups_succeeded + found.succeeded
        errors = notes + lookup_rows([f for f in found.failures if f.status != 403], users)
        errors += sign_in_missing_rows([u for u in users if u["id"] in gone], self._columns)
        disabled, unreported = self._joined(users, found)
        errors += report_no_row_rows(unreported, self._progress.report_time)
        held: list[list[str]] = []
        (errors if allowed else held).extend(lookup_rows(refused, users))
        code = progress.refused_code or (refused[0].code if refused else None)
        if self._lookups and not looked_up:
            held += not_looked_up_rows(users, code or "Forbidden", self._lookups)
        self._rows += self._encoder.rows(users, found.methods)
        self._errors += errors
        self._held += held
        self._progress = replace(
            progress,
            position=asdict(at.after(users)),
            relists=0,
            users=progress.users + len(users),
            errors=progress.errors + len(errors),
            held_errors=progress.held_errors + len(held),
            lookups_succeeded=allowed,
            lookups_refused=progress.lookups_refused + len(refused),
            refused_code=code,
            lookups_stopped=progress.lookups_stopped and not found.succeeded,
            lookups_failing_since=carried,
            users_without_sign_in=progress.users_without_sign_in
            + (len(users) if progress.sign_in_stopped else 0),
            users_not_looked_up=progress.users_not_looked_up
            + (len(users) if progress.lookups_missing else 0),
            users_disabled=progress.users_disabled + disabled,
        )
        if (
            looked_up
            and not allowed
            and self._progress.lookups_refused >= DENY_AFTER
            and not self._progress.lookups_stopped
            and not await self._others_allowed()
        ):
            log.warning(
                "Job %s partition %d: %d lookups refused, none allowed; asking no more.",
                self._job.id,
                self._part.index,
                self._progress.lookups_refused,
            )
            self._progress = replace(self._progress, lookups_stopped=True)
        if cut_short:
            raise cut_short
        return self._position

    @property
    def _position(self) -> Position:
        """Where the listing of the current prefix stands (the checkpoint keeps its fields)."""
        return Position(**self._progress.position)

    async def _others_allowed(self) -> bool:
        parts = await self._clients.jobs.partitions(self._job.id)
        return any(p.checkpoint.lookups_succeeded for p in parts if p.index != self._part.index)

    async def _save_if_due(self) -> None:
        staged = sum(segment.rows for segment in self._progress.segments)
        every = SLOW_PROGRESS_SECONDS if staged >= MANY_BLOCKS else PROGRESS_SECONDS
        if len(self._rows) >= BLOCK_BYTES or time.monotonic() - self._saved_at >= every:
            await self._save()

    async def _save(self, *, done: bool = False, release: bool = False) -> None:
        """Stages the buffers as blocks of this epoch and saves the checkpoint that lists them;
        raises JobConflict when another invocation has claimed the partition since."""
        part, epoch = self._part, self._part.epoch
        segments = list(self._progress.segments)
        if not segments or segments[-1].epoch != epoch:
            segments.append(Segment(epoch))
        current = segments[-1]
        users_blob = self._clients.exports.get_blob_client(self._job.blob_name)
        errors_blob = self._clients.exports.get_blob_client(self._job.errors_blob_name)
        streams = (  # the segment's count of each stream's blocks
            (Stream.CSV_ROWS, users_blob, bytes(self._rows), "rows"),
            (Stream.ERROR_ROWS, errors_blob, _error_bytes(self._errors), "errors"),
            (Stream.HELD_ROWS, errors_blob, _error_bytes(self._held), "held"),
        )
        for kind, blob, data, count in streams:
            blocks = BlockStream(
                blob,
                kind,
                partition=part.index,
                epoch=epoch,
                staged=getattr(current, count),
                block_bytes=BLOCK_BYTES,
            )
            await blocks.add(data)
            await blocks.flush()
            current = current._replace(**{count: blocks.staged})
        segments[-1] = current
        if current == Segment(epoch):
            segments.pop()
        part.checkpoint = replace(
            self._progress, segments=segments, graph=meter.saved(self._progress.graph)
        )
        part.lease_until = utcnow() + self._clients.settings.lease_seconds
        if done:
            part.status = PartitionStatus.DONE
        if done or release:
            part.lease_owner = part.lease_until = None
        self._part = await self._clients.jobs.save(part)
        self._progress = self._part.checkpoint
        self._rows, self._errors, self._held = bytearray(), [], []
        self._saved_at = time.monotonic()

    async def _continue(self, spent: budget.Budget) -> Outcome:
        """Saves and releases the partition, then queues its next message (continuation.py)."""

        async def save(pause: float) -> None:
            self._part.resume_at = utcnow() + timedelta(seconds=pause) if pause else None
            await self._save(release=True)

        message = ExportMessage(self._job.id, self._part.index)
        outcome = await continue_later(
            self._clients,
            message,
            spent,
            save=save,
            before_failing=lambda: self._save(release=True),
        )
        if outcome is Outcome.CONTINUED:
            log.info(
                "Job %s partition %d continues in a new message (%d users so far).",
                self._job.id,
                self._part.index,
                self._progress.users,
            )
        return outcome


def _error_bytes(rows: list[list[str]]) -> bytes:
    return encode_rows(ERRORS_HEADER, rows, with_header=False)
