"""Export jobs and their partitions: the models, their states and the Table Storage store.

A job row holds the request, the plan and the outcome; each partition of the listing has a row
of its own (its checkpoint and lease), so partitions running on different instances never
contend for one row. Every change is ETag-guarded: of two invocations working on the same row
(a queue message delivered twice), only one can win.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple, Self, TypeVar

import orjson
from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables.aio import TableClient

from .errors import JobConflict, JobStopped
from .request import ExportRequest, camel_case

log = logging.getLogger(__name__)

PARTITION = "job"
_RUNNING_SET = ("admission", "running")  # the one row of admission.py's running exports
JOB_POLL_SECONDS = 2.0  # how often running work looks whether its job was cancelled
# Row keys sort newest first: Table Storage lists in ascending RowKey order.
_MAX_MS = 10**13 - 1


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    COMPLETED_WITH_ERRORS = "completedWithErrors"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ESTIMATED = "estimated"  # a dry run: planned and estimated, nothing exported (no files)

    @property
    def finished(self) -> bool:
        return self not in (Status.QUEUED, Status.RUNNING)

    @property
    def has_files(self) -> bool:
        return self in (Status.SUCCEEDED, Status.COMPLETED_WITH_ERRORS)


ATTEMPTS = 20


def attempts(what: str) -> Iterator[int]:
    """The loop of every read, change and ETag-guarded save: `continue` reads again after a
    conflict, and when another writer moved the row on ATTEMPTS times in a row, JobConflict
    says what could not be done (`what`)."""
    yield from range(ATTEMPTS)
    raise JobConflict(f"{what}: the row changed on every one of {ATTEMPTS} attempts")


@dataclass(frozen=True)
class DeltaPlan:
    """A delta-mode job's run (delta.py, series.py), as the plan step chose it; recorded (and
    shown, but its deltaLink) as camelCase JSON."""

    kind: str  # "full" (lists the tenant, takes the series over) or "changes"
    reason: str | None  # why this kind
    since: str | None  # the run whose snapshot it builds on (a full run: the one it follows)
    link: str  # the deltaLink a changes run starts from, or a full run takes over
    authentication_columns_from: dict[str, Any] | None = None  # {"jobId", "at"}
    # What a changes run found, once it has run
    added: int | None = None
    updated: int | None = None
    removed: int | None = None

    def to_json(self) -> dict[str, Any]:
        """Its fields in camelCase; the counts only once known."""
        counts = ("added", "updated", "removed")
        return {
            camel_case(f.name): getattr(self, f.name)
            for f in fields(self)
            if f.name not in counts or getattr(self, f.name) is not None
        }

    def shown(self) -> dict[str, Any]:
        """What the API shows: everything but the deltaLink, which is a credential of sorts."""
        return {k: v for k, v in self.to_json().items() if k != "link"}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeltaPlan:
        names = {camel_case(f.name): f.name for f in fields(cls)}
        return cls(**{names[k]: v for k, v in data.items() if k in names})


@dataclass
class Plan:
    """How the listing is split: each partition lists the users whose UPN starts with one of
    its prefixes, in order ("" lists everyone: the sequential plan)."""

    partitions: list[list[str]]
    estimated_total: int | None = None
    note: str | None = None  # why the plan is sequential although partitions were asked for
    skus: dict[str, str] | None = None  # the tenant's SKU part numbers by id, read once
    notices: list[list[str]] = field(default_factory=list)  # errors-file rows, said once
    # Graph requests, resource units and expected duration it will take (api.py shows it whole)
    estimate: dict[str, Any] | None = None
    # The authentication-method lists read per user (preflight's choice); None: the columns'.
    lookups: list[str] | None = None
    delta: DeltaPlan | None = None  # a delta-mode job's run (delta.py)
    # How signInActivity is read: "listing" (selected in the listing), "byId" (a plain query
    # by id beside a listing that cannot give it: an advanced query or a member list), or
    # None (no sign-in column, or Graph refused it: a notice says so).
    sign_in: str | None = None
    # Whether the partitions read the registration report: None (no column or fewerLookups
    # needs it), True, or False (Graph refused it: a notice says so).
    report: bool | None = None

    @property
    def changes(self) -> bool:
        """A run that reads the series' changes instead of listing the tenant."""
        return self.delta is not None and self.delta.kind == "changes"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "delta": self.delta.to_json() if self.delta else None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        delta = data.get("delta")
        return cls(**{**data, "delta": DeltaPlan.from_json(delta) if delta else None})


class Segment(NamedTuple):
    """The blocks one owner of a partition (its epoch) staged, per stream: a block's id holds
    its owner's epoch, so the commit takes exactly these. Stored as [epoch, rows, errors, held]."""

    epoch: int
    rows: int = 0  # CSV blocks
    errors: int = 0  # errors-file blocks
    held: int = 0  # errors-file blocks held apart until the job knows every lookup was refused


@dataclass
class Checkpoint:
    """How far a partition got: every user before `position` in prefixes[prefix] is staged,
    in the blocks that `segments` lists and no others."""

    prefix: int = 0  # index of the prefix being listed
    # Where that prefix's listing stands: a graph.Position's fields (storage keeps no Graph type)
    position: dict[str, Any] = field(default_factory=dict)
    segments: list[Segment] = field(default_factory=list)  # by each owner in turn
    users: int = 0
    errors: int = 0
    held_errors: int = 0  # rows kept apart until the job knows whether every lookup was refused
    lookups_succeeded: int = 0
    lookups_refused: int = 0  # answered 403
    refused_code: str | None = None  # Graph's error code of the first refusal
    lookups_stopped: bool = False  # refused DENY_AFTER times and never allowed: no more asked
    relists: int = 0  # expired page tokens since a user was last written
    # When each failing lookup of the users at `position` first failed ("user id/lookup":
    # epoch seconds), so that one failing for USEREXPORT_STORM_SECONDS is given up on even
    # under a budget shorter than that.
    lookups_failing_since: dict[str, float] = field(default_factory=dict)
    # Graph refused signInActivity (NON_PREMIUM) for USEREXPORT_STORM_SECONDS after serving it:
    # the users written since have empty sign-in columns, and the commit says so once.
    sign_in_stopped: bool = False
    users_without_sign_in: int = 0
    # Graph said it has no authentication-methods API ("<status> <code>", authmethods.
    # api_missing): no more lookups; the users written since are counted, said once.
    lookups_missing: str | None = None
    users_not_looked_up: int = 0
    # The registration report (graph/registration.py): its oldest row's time, the users it
    # has no row for because they are disabled (said once), and Graph's refusal of it while
    # the partition ran ("<status> <code>": no more read; its columns empty, said once).
    report_time: str | None = None
    users_disabled: int = 0
    report_refused: str | None = None
    # What its invocations asked of Graph, as graph.GraphUsage records it: requests, 429s and
    # resource units (the job's telemetry sums them).
    graph: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "segments": [list(segment) for segment in self.segments]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checkpoint:
        data = {k: v for k, v in data.items() if k != "lookup_server_errors"}  # older rows
        return cls(
            **{
                **data,
                "segments": [Segment(*segment) for segment in data.get("segments", [])],
            }
        )


class _Row:
    """Entity mapping shared by jobs and partitions: snake_case fields <-> camelCase props."""

    etag: str | None
    _json_fields: tuple[str, ...] = ()
    _not_stored: tuple[str, ...] = ()

    def _properties(self) -> dict[str, Any]:
        entity: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name in ("etag", *self._keys(), *self._not_stored) or value is None:
                continue
            if f.name in self._json_fields:
                if hasattr(value, "to_json"):
                    value = value.to_json()
                elif hasattr(value, "__dataclass_fields__"):
                    value = asdict(value)
                value = orjson.dumps(value).decode()
            elif isinstance(value, StrEnum):
                value = value.value
            entity[camel_case(f.name)] = value
        return entity

    @classmethod
    def _keys(cls) -> tuple[str, ...]:
        return ()

    @classmethod
    def _values(cls, entity: dict[str, Any], known: dict[str, Any]) -> dict[str, Any]:
        values = dict(known)
        for f in fields(cls):  # type: ignore[arg-type]
            key = camel_case(f.name)
            if key in entity and f.name not in values:
                value = entity[key]
                if f.name in cls._json_fields:
                    value = orjson.loads(value)
                values[f.name] = value
        values["etag"] = entity.metadata.get("etag") if hasattr(entity, "metadata") else None
        return values


@dataclass
class Job(_Row):
    id: str
    status: Status
    trigger: str
    created_at: datetime
    request: ExportRequest
    started_at: datetime | None = None
    finished_at: datetime | None = None
    plan: Plan | None = None
    user_count: int | None = None
    error_count: int | None = None
    reason: str | None = None
    last_error: str | None = None
    plan_counts: dict[str, int] | None = None  # users per UPN prefix counted so far
    preflight: dict[str, Any] | None = None  # what the plan step checked, while it plans
    failing_since: datetime | None = None  # the plan step's current run of failures
    revivals: int = 0  # times in a row the sweep found it stalled and queued it again
    revived_at_users: int = 0  # users written when it was last revived
    committing: bool = False  # its files are being committed: too late to cancel
    series: str | None = None  # the request's series, as a column the table can filter on
    # Why a delta job's changes run gave way to a full run (delta.Resync), which its new plan
    # step then makes.
    resync: str | None = None
    caller: dict[str, Any] | None = None  # who started it (caller.Caller as JSON)
    cancelled_by: dict[str, Any] | None = None  # ... and who cancelled it
    # Each committed file's rows, bytes and sha256 (filefacts.FileFacts), by kind: "csv",
    # "errors", "changes".
    files: dict[str, Any] | None = None
    graph: dict[str, int] | None = None  # what its plan step asked of Graph (Checkpoint.graph)
    report_time: str | None = None  # the oldest registration report row it used (commit)
    updated_at: datetime | None = None
    etag: str | None = None
    # Whether it was finished when read or last saved: the save that finishes it tells the
    # store's observer once (JobStore(on_finished=...): the job's telemetry).
    was_finished: bool = field(default=False, repr=False, compare=False)
    _json_fields = (
        "request",
        "plan",
        "plan_counts",
        "preflight",
        "caller",
        "cancelled_by",
        "files",
        "graph",
    )
    _not_stored = ("was_finished",)

    def __post_init__(self) -> None:
        self.series = self.request.series
        self.was_finished = self.was_finished or self.status.finished

    # The files' blob names are fixed, whatever the request's fileName (that name reaches the
    # caller's browser through Content-Disposition): the two files can never share a blob.
    @property
    def blob_name(self) -> str:
        return f"{self.id}/users.csv"

    @property
    def errors_blob_name(self) -> str:
        return f"{self.id}/errors.csv"

    @property
    def changes_blob_name(self) -> str:
        return f"{self.id}/changes.csv"

    @property
    def has_snapshot(self) -> bool:
        """Whether its users.csv is a download: every full run's, a changes run's on request."""
        return self.plan is None or not self.plan.changes or self.request.snapshot

    @classmethod
    def _keys(cls) -> tuple[str, ...]:
        return ("id",)

    def to_entity(self) -> dict[str, Any]:
        return {"PartitionKey": PARTITION, "RowKey": self.id, **self._properties()}

    @classmethod
    def from_entity(cls, entity: dict[str, Any]) -> Self:
        values = cls._values(entity, {"id": entity["RowKey"]})
        values["status"] = Status(values["status"])
        values["request"] = ExportRequest.from_json(values["request"])
        if values.get("plan") is not None:
            values["plan"] = Plan.from_json(values["plan"])
        return cls(**values)


class PartitionStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"


@dataclass
class Partition(_Row):
    job_id: str
    index: int
    prefixes: list[str]
    status: PartitionStatus = PartitionStatus.PENDING
    checkpoint: Checkpoint = field(default_factory=Checkpoint)
    lease_owner: str | None = None  # the queue message whose invocation owns it
    lease_until: datetime | None = None
    epoch: int = 0  # raised by every claim: the fence in the block ids
    resume_at: datetime | None = None  # its continuation waits, unseen, until then
    attempts: int = 0
    failing_since: datetime | None = None  # Graph's current run of failures for it
    last_error: str | None = None
    updated_at: datetime | None = None
    etag: str | None = None
    _json_fields = ("prefixes", "checkpoint")

    @classmethod
    def _keys(cls) -> tuple[str, ...]:
        return ("job_id", "index")

    def to_entity(self) -> dict[str, Any]:
        return {
            "PartitionKey": _partitions_key(self.job_id),
            "RowKey": f"{self.index:04d}",
            **self._properties(),
        }

    @classmethod
    def from_entity(cls, entity: dict[str, Any]) -> Self:
        job_id = entity["PartitionKey"].removeprefix("parts-")
        values = cls._values(entity, {"job_id": job_id, "index": int(entity["RowKey"])})
        values["status"] = PartitionStatus(values["status"])
        values["checkpoint"] = Checkpoint.from_json(values.get("checkpoint", {}))
        return cls(**values)

    def leased(self, *, now: datetime) -> bool:
        """Whether an invocation holds it now (an expired lease can be taken over)."""
        return self.lease_owner is not None and bool(self.lease_until and self.lease_until > now)


R = TypeVar("R", Job, Partition)
T = TypeVar("T")


def _partitions_key(job_id: str) -> str:
    return f"parts-{job_id}"


def new_job_id(now: datetime) -> str:
    """A job id that sorts newest first and is unique without coordination."""
    inverted = _MAX_MS - int(now.timestamp() * 1000)
    return f"{inverted:013d}-{secrets.token_hex(4)}"


def plausible_job_id(job_id: str) -> bool:
    """Whether `job_id` has the shape of new_job_id's ids (keeps odd text out of lookups)."""
    head, _, tail = job_id.partition("-")
    return len(head) == 13 and head.isdigit() and len(tail) == 8 and tail.isalnum()


def _cursor(job_id: str) -> str:
    return base64.urlsafe_b64encode(job_id.encode()).decode()


def _parse_cursor(cursor: str) -> str:
    """The job a cursor names: the last job of the page before."""
    try:
        job_id = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("ascii")
    except (ValueError, UnicodeError):
        raise ValueError("not a cursor") from None
    if not plausible_job_id(job_id) or _cursor(job_id) != cursor:
        raise ValueError("not a cursor")
    return job_id


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    """A time as the API shows it: ISO 8601 in UTC with a Z."""
    return value.isoformat().replace("+00:00", "Z") if value else None


# Told once of each job, by the save that finished it (its status, counts and rows as saved).
JobFinished = Callable[["JobStore", "Job"], Awaitable[None]]


class JobStore:
    def __init__(self, table: TableClient, *, on_finished: JobFinished | None = None) -> None:
        self._table = table
        self._on_finished = on_finished

    async def create(self, job: Job) -> Job:
        await self._table.create_entity(job.to_entity())
        return await self.get(job.id)  # type: ignore[return-value]

    async def get(self, job_id: str) -> Job | None:
        try:
            entity = await self._table.get_entity(PARTITION, job_id)
        except ResourceNotFoundError:
            return None
        return Job.from_entity(entity)

    async def save(self, row: R) -> R:
        """Replaces the row if nobody changed it since it was read; returns it with its ETag."""
        row.updated_at = utcnow()
        try:
            metadata = await self._table.update_entity(
                row.to_entity(),
                mode="replace",
                etag=row.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError) as error:
            raise JobConflict(getattr(row, "id", None) or getattr(row, "job_id", "")) from error
        row.etag = metadata.get("etag")
        if isinstance(row, Job) and row.status.finished and not row.was_finished:
            row.was_finished = True  # the ETag makes this save the one that finished it
            if self._on_finished is not None:
                try:
                    await self._on_finished(self, row)
                except Exception:  # telemetry never fails a job
                    log.exception("Telemetry of job %s failed.", row.id)
        return row

    async def fail(self, job_id: str, *, reason: str) -> None:
        """Marks a job failed, whatever its state, unless it already finished. A conflicting
        write is read again and retried; only a job that cannot be saved at all raises."""
        for _ in attempts(f"failing job {job_id}"):
            job = await self.get(job_id)
            if job is None or job.status.finished:
                return
            job.status, job.reason, job.finished_at = Status.FAILED, reason, utcnow()
            try:
                await self.save(job)
                log.error("Export job %s failed: %s", job_id, reason)
                return
            except JobConflict:
                continue

    async def mark_committing(self, job: Job) -> Job | None:
        """Marks the job as committing its files, ETag-guarded: from then on a cancel answers
        409, so a cancelled job never has committed files. None: the row moved on, read it
        again."""
        if job.committing:
            return job
        job.committing = True
        try:
            return await self.save(job)
        except JobConflict:
            return None

    async def cancel(
        self, job_id: str, *, reason: str, by: dict[str, Any] | None = None
    ) -> tuple[Job | None, bool]:
        """Cancels a queued or running job, unless its files are being committed, recording
        who did (`by`, a caller as JSON). Returns the job as it is now and whether this call
        cancelled it."""
        for _ in attempts(f"cancelling job {job_id}"):
            job = await self.get(job_id)
            if job is None or job.status.finished or job.committing:
                return job, False
            job.status, job.reason, job.finished_at = Status.CANCELLED, reason, utcnow()
            job.cancelled_by = by
            try:
                job = await self.save(job)
            except JobConflict:
                continue
            log.info("Export job %s cancelled.", job_id)
            return job, True

    async def while_running(self, job_id: str, work: Coroutine[Any, Any, T]) -> T:
        """Runs `work` while the job's row says running. Once it says otherwise (cancelled, or
        failed by another partition), cancels the work wherever it is, a throttling wait
        included, and raises JobStopped: what it staged is never committed."""
        task = asyncio.ensure_future(work)
        watcher = asyncio.ensure_future(self._stopped(job_id))
        try:
            done, _ = await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for running in (task, watcher):
                running.cancel()
            await asyncio.gather(task, watcher, return_exceptions=True)
        if task in done:
            return task.result()  # OutOfTime and every other failure, as raised
        raise JobStopped(watcher.result())

    async def _stopped(self, job_id: str) -> str:
        """The job's status, once it is no longer running (read every JOB_POLL_SECONDS)."""
        while True:
            await asyncio.sleep(JOB_POLL_SECONDS)
            try:
                job = await self.get(job_id)
            except Exception as error:  # noqa: BLE001 - a storage blip: the work goes on
                log.warning("Job %s: could not read its status (%s).", job_id, error)
                continue
            if job is None or job.status is not Status.RUNNING:
                return job.status.value if job else "deleted"

    async def unfinished(self) -> list[Job]:
        """The jobs still queued or running (the sweep looks at these)."""
        entities = self._table.query_entities(
            "PartitionKey eq @pk and (status eq 'queued' or status eq 'running')",
            parameters={"pk": PARTITION},
        )
        return [Job.from_entity(e) async for e in entities]

    async def add_partition(self, partition: Partition) -> None:
        """Creates the partition's row unless it exists (a replayed plan step)."""
        try:
            await self._table.create_entity(partition.to_entity())
        except ResourceExistsError:
            pass

    async def get_partition(self, job_id: str, index: int) -> Partition | None:
        try:
            entity = await self._table.get_entity(_partitions_key(job_id), f"{index:04d}")
        except ResourceNotFoundError:
            return None
        return Partition.from_entity(entity)

    async def partitions(self, job_id: str) -> list[Partition]:
        """The job's partition rows, in index order."""
        entities = self._table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": _partitions_key(job_id)}
        )
        return [Partition.from_entity(e) async for e in entities]

    async def series_runs(
        self, series: str | None, *, with_files: bool = False
    ) -> AsyncIterator[Job]:
        """The series' jobs (every series' for None), newest first; only those whose files
        were committed, if asked."""
        query, parameters = "PartitionKey eq @pk", {"pk": PARTITION}
        if series is not None:
            query, parameters = f"{query} and series eq @series", {**parameters, "series": series}
        if with_files:
            query += " and (status eq 'succeeded' or status eq 'completedWithErrors')"
        async for entity in self._table.query_entities(query, parameters=parameters):
            if entity.get("series"):
                yield Job.from_entity(entity)

    async def delete_partitions(self, job_id: str) -> None:
        for part in await self.partitions(job_id):
            await self._table.delete_entity(_partitions_key(job_id), f"{part.index:04d}")

    async def delete(self, job_id: str) -> None:
        """Deletes a job's partition rows, then its row (retention)."""
        await self.delete_partitions(job_id)
        await self._table.delete_entity(PARTITION, job_id)

    async def queued(self) -> list[Job]:
        """Every queued job, oldest first: the backlog admission.py orders and limits."""
        entities = self._table.query_entities(
            "PartitionKey eq @pk and status eq @status",
            parameters={"pk": PARTITION, "status": Status.QUEUED.value},
        )
        jobs = [Job.from_entity(entity) async for entity in entities]
        return sorted(jobs, key=lambda job: job.created_at)

    async def running_set(self) -> tuple[list[str], str | None]:
        """The ids of the exports admission.py let run, and the row's ETag (None: no row)."""
        try:
            entity = await self._table.get_entity(*_RUNNING_SET)
        except ResourceNotFoundError:
            return [], None
        return orjson.loads(entity["jobIds"]), entity.metadata.get("etag")

    async def save_running_set(self, job_ids: list[str], etag: str | None) -> bool:
        """Replaces the running set if nobody changed it since it was read (created, when
        `etag` is None); False when another writer did first."""
        entity = {
            "PartitionKey": _RUNNING_SET[0],
            "RowKey": _RUNNING_SET[1],
            "jobIds": orjson.dumps(job_ids).decode(),
        }
        try:
            if etag is None:
                await self._table.create_entity(entity)
            else:
                await self._table.update_entity(
                    entity, mode="replace", etag=etag, match_condition=MatchConditions.IfNotModified
                )
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            return False
        return True

    async def list(self, *, page_size: int, cursor: str | None) -> tuple[list[Job], str | None]:
        """One page of jobs, newest first, and the cursor of the next page (None at the end).
        A cursor names the last job of the page before; one that names no job was not handed
        out by this store, and raises ValueError."""
        query, parameters = "PartitionKey eq @pk", {"pk": PARTITION}
        if cursor:
            after = _parse_cursor(cursor)
            if await self.get(after) is None:
                raise ValueError("the cursor names no job")
            query, parameters = f"{query} and RowKey gt @after", {**parameters, "after": after}
        jobs: list[Job] = []
        # One more than a page tells whether another page follows.
        entities = self._table.query_entities(
            query, parameters=parameters, results_per_page=page_size + 1
        )
        async for entity in entities:
            jobs.append(Job.from_entity(entity))
            if len(jobs) > page_size:
                break
        if len(jobs) > page_size:
            return jobs[:page_size], _cursor(jobs[page_size - 1].id)
        return jobs, None
