"""Idempotency-Key on POST /api/exports: one key, one export, for 24 hours.

A key's row (in the jobs table, partition "idempotency", row key a hash of the caller and the
key, so any printable key fits and one caller's key never answers another's) names the job it
started and a fingerprint of the request body. Creating that row is the race's only winner:
two identical POSTs at once both try, one creates it and starts the job, the other reads it
and answers the same job. The winner creates the key's row before the job's, so a crash in
between leaves a key that names no job; a later retry takes the key over once the winner has
had ORPHAN_AFTER to write its job.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables.aio import TableClient

from .errors import InvalidRequest, KeyReused

HEADER = "Idempotency-Key"
PARTITION = "idempotency"
LIFETIME = timedelta(hours=24)
ORPHAN_AFTER = timedelta(seconds=60)  # a key whose job row is still missing after this: taken over
_WAIT_FOR_JOB = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)  # seconds: the winner is writing the job row
_KEY = re.compile(r"[\x21-\x7e][\x20-\x7e]{0,254}")


@dataclass(frozen=True)
class KeyRecord:
    job_id: str
    fingerprint: str
    created_at: datetime
    etag: str


def parse_key(value: str | None) -> str | None:
    """The header's value, checked: 1 to 255 printable ASCII characters."""
    if value is None:
        return None
    if not _KEY.fullmatch(value):
        raise InvalidRequest(
            HEADER,
            f"{HEADER} must be 1 to 255 printable ASCII characters, not starting with a space "
            "(a GUID, or @{workflow().run.name} in Logic Apps).",
        )
    return value


def fingerprint(body: Any) -> str:
    """The request body's identity: the same JSON, whatever its key order or spacing."""
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


class IdempotencyStore:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    async def claim(
        self,
        key: str,
        *,
        scope: str = "",
        fingerprint: str,
        job_id: str,
        now: datetime,
        job_exists: Callable[[str], Awaitable[bool]],
    ) -> str:
        """The id of the job this key starts: `job_id` if this call won the key (the caller
        must then create that job), else the job the key already names. Raises KeyReused
        when the key came with a different body within its lifetime. Keys are the caller's
        own (`scope`, caller.Caller.scope): another caller's same key is another key."""
        row_key = hashlib.sha256(f"{scope}\n{key}".encode()).hexdigest()
        entity = {
            "PartitionKey": PARTITION,
            "RowKey": row_key,
            "jobId": job_id,
            "fingerprint": fingerprint,
            "createdAt": now,
        }
        for _ in range(10):
            try:
                await self._table.create_entity(entity)
                return job_id
            except ResourceExistsError:
                pass
            record = await self._get(row_key)
            if record is None:  # deleted meanwhile: try again
                continue
            expired = now - record.created_at >= LIFETIME
            if not expired and record.fingerprint != fingerprint:
                raise KeyReused
            if not expired and await _appears(job_exists, record.job_id):
                return record.job_id
            if not expired and now - record.created_at < ORPHAN_AFTER:
                # The winner is still writing its job row (or has just crashed): answer its
                # job; the row appears within moments, or the next retry takes the key over.
                return record.job_id
            try:  # expired, or its job was never written: this call takes the key over
                await self._table.update_entity(
                    entity,
                    mode="replace",
                    etag=record.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
                return job_id
            except (ResourceModifiedError, ResourceNotFoundError):
                continue
        raise RuntimeError(f"the {HEADER} row changed on every one of 10 attempts")

    async def _get(self, row_key: str) -> KeyRecord | None:
        try:
            entity = await self._table.get_entity(PARTITION, row_key)
        except ResourceNotFoundError:
            return None
        return KeyRecord(
            entity["jobId"], entity["fingerprint"], entity["createdAt"], entity.metadata["etag"]
        )


async def _appears(job_exists: Callable[[str], Awaitable[bool]], job_id: str) -> bool:
    """Whether the job's row exists, allowing its writer a few seconds to create it."""
    for pause in (0, *_WAIT_FOR_JOB):
        await asyncio.sleep(pause)
        if await job_exists(job_id):
            return True
    return False
