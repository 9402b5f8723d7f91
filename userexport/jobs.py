"""Export jobs and their partitions: the models, their states and the Table Storage store.

A job row holds the request, the plan and the outcome; each partition of the listing has a row
of its own (its checkpoint and lease), so partitions running on different instances never
contend for one row. Every change is ETag-guarded: of two invocations working on the same row
(a queue message delivered twice), only one can win.
"""

from __future__ import annotations

import base64
import logging
import secrets
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Self, TypeVar

import orjson
from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables.aio import TableClient

from .exportrequest import ExportRequest
from .graph import Position

log = logging.getLogger(__name__)

PARTITION = "job"
# Row keys sort newest first: Table Storage lists in ascending RowKey order.
_MAX_MS = 10**13 - 1


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    COMPLETED_WITH_ERRORS = "completedWithErrors"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (Status.SUCCEEDED, Status.COMPLETED_WITH_ERRORS, Status.FAILED)


class JobConflict(Exception):
    """Someone else changed the row since it was read (its ETag moved on)."""


@dataclass
class Plan:
    """How the listing is split: each partition lists the users whose UPN starts with one of
    its prefixes, in order ("" lists everyone: the sequential plan)."""

    partitions: list[list[str]]
    estimated_total: int | None = None
    note: str | None = None  # why the plan is sequential although partitions were asked for


@dataclass
class Checkpoint:
    """How far a partition got: every user before `position` in prefixes[prefix] is staged,
    in the blocks that `segments` lists and no others."""

    prefix: int = 0  # index of the prefix being listed
    position: Position = field(default_factory=Position)  # in that prefix's listing
    # [epoch, CSV blocks, error blocks, held error blocks] staged by each owner in turn: a
    # block's id holds its owner's epoch, so the commit takes exactly these.
    segments: list[list[int]] = field(default_factory=list)
    users: int = 0
    errors: int = 0
    held_errors: int = 0  # rows kept apart until the job knows whether every lookup was refused
    lookups_succeeded: int = 0
    lookups_refused: int = 0  # answered 403
    refused_code: str | None = None  # Graph's error code of the first refusal
    lookups_stopped: bool = False  # refused DENY_AFTER times and never allowed: no more asked
    relists: int = 0  # expired page tokens since a user was last written

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checkpoint:
        return cls(**{**data, "position": Position(**data.get("position", {}))})


class _Row:
    """Entity mapping shared by jobs and partitions: snake_case fields <-> camelCase props."""

    etag: str | None
    _json_fields: tuple[str, ...] = ()

    def _properties(self) -> dict[str, Any]:
        entity: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name in ("etag", *self._keys()) or value is None:
                continue
            if f.name in self._json_fields:
                if hasattr(value, "to_json"):
                    value = value.to_json()
                elif hasattr(value, "__dataclass_fields__"):
                    value = asdict(value)
                value = orjson.dumps(value).decode()
            elif isinstance(value, StrEnum):
                value = value.value
            entity[_camel(f.name)] = value
        return entity

    @classmethod
    def _keys(cls) -> tuple[str, ...]:
        return ()

    @classmethod
    def _values(cls, entity: dict[str, Any], known: dict[str, Any]) -> dict[str, Any]:
        values = dict(known)
        for f in fields(cls):  # type: ignore[arg-type]
            key = _camel(f.name)
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
    failing_since: datetime | None = None  # the plan step's current run of failures
    revivals: int = 0  # times in a row the sweep found it stalled and queued it again
    revived_at_users: int = 0  # users written when it was last revived
    updated_at: datetime | None = None
    etag: str | None = None
    _json_fields = ("request", "plan", "plan_counts")

    # The files' blob names are fixed, whatever the request's fileName (that name reaches the
    # caller's browser through Content-Disposition): the two files can never share a blob.
    @property
    def blob_name(self) -> str:
        return f"{self.id}/users.csv"

    @property
    def errors_blob_name(self) -> str:
        return f"{self.id}/errors.csv"

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
            values["plan"] = Plan(**values["plan"])
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


def _partitions_key(job_id: str) -> str:
    return f"parts-{job_id}"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def new_job_id(now: datetime) -> str:
    """A job id that sorts newest first and is unique without coordination."""
    inverted = _MAX_MS - int(now.timestamp() * 1000)
    return f"{inverted:013d}-{secrets.token_hex(4)}"


def _parse_cursor(cursor: str) -> dict[str, str]:
    """A continuation token, as Table Storage handed it out: RowKey and PartitionKey, text."""
    try:
        token = orjson.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
    except (ValueError, UnicodeEncodeError):
        raise ValueError("not a cursor") from None
    if (
        not isinstance(token, dict)
        or not token
        or set(token) - {"PartitionKey", "RowKey"}
        or not all(isinstance(v, str) and 0 < len(v) <= 256 for v in token.values())
    ):
        raise ValueError("not a cursor")
    return token


def utcnow() -> datetime:
    return datetime.now(UTC)


class JobStore:
    def __init__(self, table: TableClient) -> None:
        self._table = table

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
        return row

    async def fail(self, job_id: str, *, reason: str) -> None:
        """Marks a job failed, whatever its state, unless it already finished. A conflicting
        write is read again and retried; only a job that cannot be saved at all raises."""
        for _ in range(20):
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
        raise JobConflict(f"job {job_id} changed on every one of 20 attempts to fail it")

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

    async def list(self, *, page_size: int, cursor: str | None) -> tuple[list[Job], str | None]:
        """One page of jobs, newest first, and the cursor of the next page (None at the end).
        A cursor this store did not hand out raises ValueError."""
        token = _parse_cursor(cursor) if cursor else None
        pages = self._table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": PARTITION}, results_per_page=page_size
        ).by_page(continuation_token=token)
        jobs: list[Job] = []
        try:
            async for page in pages:
                jobs = [Job.from_entity(entity) async for entity in page]
                break
        except HttpResponseError as error:
            if token is None or error.status_code != 400:
                raise
            raise ValueError("the table refused the cursor") from error
        next_token = pages.continuation_token
        next_cursor = (
            base64.urlsafe_b64encode(orjson.dumps(next_token)).decode() if next_token else None
        )
        return jobs, next_cursor
