"""Blob output: block blobs assembled from staged blocks, and read-only SAS URLs for them.

Staged blocks stay invisible until the block list is committed, so a half-written export
never looks like a finished one. A block's id names its stream, its partition, the epoch of
the invocation that owned the partition, and its position: staging it again after a crash
overwrites it, and an invocation that lost its partition can only stage blocks nobody commits.
"""

from __future__ import annotations

import asyncio
import base64
from collections import deque
from datetime import datetime, timedelta
from enum import StrEnum

from azure.storage.blob import (
    BlobBlock,
    BlobSasPermissions,
    ContentSettings,
    UserDelegationKey,
    generate_blob_sas,
)
from azure.storage.blob.aio import BlobClient, BlobServiceClient

from .filefacts import FileFacts, Tally

CSV_CONTENT = "text/csv; charset=utf-8"


MAX_BLOCKS = 50_000  # committed blocks a block blob may have
READ_BYTES = 4 * 1024 * 1024  # a committed file is read back for its facts this much at a time
READ_AHEAD = 4  # ... with this many ranges in flight


class Stream(StrEnum):
    """The block streams of a job, one letter each: no two share a block id."""

    CSV_HEADER = "H"
    CSV_ROWS = "U"
    ERRORS_HEADER = "G"
    ERROR_ROWS = "E"
    HELD_ROWS = "K"  # error rows kept or dropped at the commit (see errorsfile)
    NOTICES = "D"  # rows said once for the whole job (a refusal that empties columns)
    CHANGES_RUN = "C"  # a delta changes run's blocks, in each of its three files


def block_id(stream: Stream, partition: int, epoch: int, seq: int) -> str:
    """The id of a staged block: which stream, whose partition, which owner's epoch, which
    position. Ids within a blob must all have the same length, hence the fixed widths."""
    return base64.b64encode(f"{stream}{partition:04d}{epoch:06d}{seq:06d}".encode()).decode()


async def stage(blob: BlobClient, block: str, data: bytes) -> None:
    await blob.stage_block(block, data, length=len(data))


class BlockStream:
    """One stream's blocks in one blob, staged in order as its bytes fill `block_bytes`: the
    partitions and the changes run stage through it, and a commit lists its `ids`. `staged`
    starts where an earlier invocation's checkpoint left the stream."""

    def __init__(
        self,
        blob: BlobClient,
        stream: Stream,
        *,
        partition: int = 0,
        epoch: int,
        staged: int = 0,
        block_bytes: int,
    ) -> None:
        self._blob, self._stream, self._partition = blob, stream, partition
        self._epoch, self._first, self._block_bytes = epoch, staged, block_bytes
        self._buffer = bytearray()
        self.ids: list[str] = []

    @property
    def staged(self) -> int:
        """The stream's blocks staged so far in this epoch (the checkpoint's count)."""
        return self._first + len(self.ids)

    async def add(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= self._block_bytes:
            await self.flush()

    async def flush(self) -> None:
        """Stages what is buffered as the stream's next block."""
        if self._buffer:
            block = block_id(self._stream, self._partition, self._epoch, self.staged)
            await stage(self._blob, block, bytes(self._buffer))
            self.ids.append(block)
            self._buffer = bytearray()


async def commit(blob: BlobClient, block_ids: list[str], *, file_name: str) -> FileFacts:
    """Makes these blocks, in this order, the blob (until now none of it was visible); then
    reads it back for its facts (filefacts.py) and puts them on its metadata."""
    await blob.commit_block_list(
        [BlobBlock(block) for block in block_ids],
        content_settings=ContentSettings(
            content_type=CSV_CONTENT,
            content_disposition=f'attachment; filename="{file_name}"',
        ),
    )
    facts = await _read_facts(blob)
    await blob.set_blob_metadata(facts.metadata())
    return facts


async def _read_facts(blob: BlobClient) -> FileFacts:
    """The committed blob's facts, read in ranges of READ_BYTES (the downloader's first GET
    alone would hold 32 MB) with READ_AHEAD of them in flight while one is hashed, so reading
    back a million users' file adds seconds, not tens of them, and a few MB of memory."""
    size = (await blob.get_blob_properties()).size

    async def read(offset: int) -> bytes:
        length = min(READ_BYTES, size - offset)
        return await (await blob.download_blob(offset=offset, length=length)).readall()

    tally, ahead = Tally(), deque[asyncio.Future[bytes]]()
    try:
        for offset in range(0, size, READ_BYTES):
            ahead.append(asyncio.ensure_future(read(offset)))
            if len(ahead) >= READ_AHEAD:
                tally.add(await ahead.popleft())
        while ahead:
            tally.add(await ahead.popleft())
    finally:
        for pending in ahead:
            pending.cancel()
    return tally.facts()


class SasMinter:
    """Mints read-only SAS URLs: from a user delegation key with a token credential (no
    account key anywhere), from the account key only for local connection strings."""

    def __init__(self, service: BlobServiceClient, *, lifetime: timedelta) -> None:
        self._service = service
        self._lifetime = lifetime
        self._key: UserDelegationKey | None = None
        self._key_expiry: datetime | None = None

    async def read_url(self, blob: BlobClient, *, now: datetime, file_name: str) -> str:
        expiry = now + self._lifetime
        account_key = getattr(self._service.credential, "account_key", None)
        delegation_key = None if account_key else await self._delegation_key(now, expiry)
        sas = generate_blob_sas(
            # The service's name: a blob client on an IP-style URL (Azurite) misreads it.
            account_name=self._service.account_name or "",
            container_name=blob.container_name,
            blob_name=blob.blob_name,
            account_key=account_key,
            user_delegation_key=delegation_key,
            permission=BlobSasPermissions(read=True),
            start=now - timedelta(minutes=5),  # tolerate clock skew
            expiry=expiry,
            content_disposition=f'attachment; filename="{file_name}"',
            protocol="https" if delegation_key else None,
        )
        return f"{blob.url}?{sas}"

    async def _delegation_key(self, now: datetime, expiry: datetime) -> UserDelegationKey:
        # A SAS may not outlive its key; one key (up to 7 days) serves many SAS.
        if self._key is None or self._key_expiry is None or self._key_expiry < expiry:
            key_expiry = now + max(self._lifetime, timedelta(hours=1)) + timedelta(hours=1)
            key_expiry = min(key_expiry, now + timedelta(days=7))
            self._key = await self._service.get_user_delegation_key(
                key_start_time=now - timedelta(minutes=5), key_expiry_time=key_expiry
            )
            self._key_expiry = key_expiry
        return self._key
