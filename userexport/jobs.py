"""Export jobs and their partitions: the models, their states and the Table Storage store.

A job row holds the request, the plan and the outcome; each partition of the listing has a row
of its own (its checkpoint and lease), so partitions running on different instances never
contend for one row. Every change is ETag-guarded: of two invocations working on the same row
(a queue message delivered twice), only one can win.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Self, TypeVar

import orjson
from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables.aio import TableClient

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
    """How far a partition got: everything before next_link of prefixes[prefix] is staged."""

    prefix: int = 0  # index of the prefix being listed
    next_link: str | None = None
    started: bool = False  # the prefix's first page was read (next_link None then means done)
    prefix_users: int = 0  # users written for the current prefix (to pass over on a relist)
    last_id: str | None = None  # the last user written, to check a relisting
    blocks: int = 0
    error_blocks: int = 0
    users: int = 0
    errors: int = 0
    lookups_succeeded: int = 0
    lookups_denied: str | None = None  # set once every lookup was refused: no more are made


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
                value = orjson.dumps(
                    asdict(value) if hasattr(value, "__dataclass_fields__") else value
                ).decode()
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
    request: dict[str, Any]
    started_at: datetime | None = None
    finished_at: datetime | None = None
    plan: Plan | None = None
    user_count: int | None = None
    error_count: int | None = None
    reason: str | None = None
    last_error: str | None = None
    etag: str | None = None
    _json_fields = ("request", "plan")

    @property
    def blob_name(self) -> str:
        return f"{self.id}/{self.request['fileName']}"

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
    lease_owner: str | None = None
    lease_until: datetime | None = None
    attempts: int = 0
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
        values["checkpoint"] = Checkpoint(**values.get("checkpoint", {}))
        return cls(**values)


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
        """One page of jobs, newest first, and the cursor of the next page (None at the end)."""
        token = orjson.loads(base64.urlsafe_b64decode(cursor)) if cursor else None
        pages = self._table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": PARTITION}, results_per_page=page_size
        ).by_page(continuation_token=token)
        jobs: list[Job] = []
        async for page in pages:
            jobs = [Job.from_entity(entity) async for entity in page]
            break
        next_token = pages.continuation_token
        next_cursor = (
            base64.urlsafe_b64encode(orjson.dumps(next_token)).decode() if next_token else None
        )
        return jobs, next_cursor
