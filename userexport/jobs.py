"""Export jobs: the model, its state machine and the Table Storage store behind it.

Every change is ETag-guarded, so two invocations working on one job (a queue message
delivered twice) can never both win.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson
from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
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
    """Someone else changed the job since it was read (its ETag moved on)."""


@dataclass
class Checkpoint:
    """How far the worker got: everything before next_link is staged in blob blocks."""

    next_link: str | None = None
    started: bool = False  # the first page was requested (next_link None then means "done")
    blocks: int = 0
    error_blocks: int = 0
    users: int = 0
    last_id: str | None = None  # the last user written, to check a restarted listing
    errors: int = 0
    lookups_succeeded: int = 0
    lookups_denied: str | None = None  # set once every lookup was refused: no more are made


@dataclass
class Job:
    id: str
    status: Status
    trigger: str
    created_at: datetime
    request: dict[str, Any]
    started_at: datetime | None = None
    finished_at: datetime | None = None
    user_count: int | None = None
    error_count: int | None = None
    reason: str | None = None
    last_error: str | None = None
    lease_owner: str | None = None
    lease_until: datetime | None = None
    attempts: int = 0
    checkpoint: Checkpoint = field(default_factory=Checkpoint)
    etag: str | None = None

    @property
    def blob_name(self) -> str:
        return f"{self.id}/{self.request['fileName']}"

    @property
    def errors_blob_name(self) -> str:
        return f"{self.id}/errors.csv"

    def to_entity(self) -> dict[str, Any]:
        entity: dict[str, Any] = {"PartitionKey": PARTITION, "RowKey": self.id}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("id", "etag") or value is None:
                continue
            if f.name == "request":
                value = orjson.dumps(value).decode()
            elif f.name == "checkpoint":
                value = orjson.dumps(asdict(value)).decode()
            elif isinstance(value, Status):
                value = value.value
            entity[_camel(f.name)] = value
        return entity

    @classmethod
    def from_entity(cls, entity: dict[str, Any]) -> Job:
        values: dict[str, Any] = {"id": entity["RowKey"]}
        for f in fields(cls):
            key = _camel(f.name)
            if key in entity and f.name != "id":
                values[f.name] = entity[key]
        values["status"] = Status(values["status"])
        values["request"] = orjson.loads(values["request"])
        values["checkpoint"] = Checkpoint(**orjson.loads(values.get("checkpoint", "{}")))
        for name in ("user_count", "error_count", "attempts"):
            if name in values:
                values[name] = int(values[name])
        values["etag"] = entity.metadata.get("etag") if hasattr(entity, "metadata") else None
        return cls(**values)


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

    async def save(self, job: Job) -> Job:
        """Replaces the job if nobody changed it since it was read; returns it with its new ETag."""
        try:
            metadata = await self._table.update_entity(
                job.to_entity(),
                mode="replace",
                etag=job.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError) as error:
            raise JobConflict(job.id) from error
        job.etag = metadata.get("etag")
        return job

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
