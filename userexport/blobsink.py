"""Blob output: block blobs assembled from staged blocks, and read-only SAS URLs for them.

Staged blocks stay invisible until the block list is committed, so a half-written export
never looks like a finished one. Block ids are derived from their position, so staging the
same block again after a crash or a duplicate delivery overwrites it instead of adding one.
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta

from azure.storage.blob import (
    BlobBlock,
    BlobSasPermissions,
    ContentSettings,
    UserDelegationKey,
    generate_blob_sas,
)
from azure.storage.blob.aio import BlobClient, BlobServiceClient

CSV_CONTENT = "text/csv; charset=utf-8"


def block_id(tag: str, index: int) -> str:
    # Ids within a blob must all have the same length: 5-character tags, 8-digit positions.
    return base64.b64encode(f"{tag}{index:08d}".encode()).decode()


class StagedBlob:
    """Stages numbered blocks under a tag (a partition's, say) into one blob."""

    def __init__(self, blob: BlobClient, tag: str, *, count: int = 0) -> None:
        self._blob = blob
        self._tag = tag
        self.count = count

    async def stage(self, data: bytes) -> None:
        if data:
            await self._blob.stage_block(block_id(self._tag, self.count), data, length=len(data))
            self.count += 1

    @staticmethod
    async def put(blob: BlobClient, tag: str, data: bytes) -> str:
        """Stages one block of its own (a header, say); its id, for the block list."""
        await blob.stage_block(block_id(tag, 0), data, length=len(data))
        return block_id(tag, 0)

    @staticmethod
    def ids(tag: str, count: int) -> list[str]:
        return [block_id(tag, i) for i in range(count)]

    @staticmethod
    async def commit(blob: BlobClient, block_ids: list[str], *, file_name: str) -> None:
        """Makes these blocks, in this order, the blob; until now none of it was visible."""
        await blob.commit_block_list(
            [BlobBlock(block_id) for block_id in block_ids],
            content_settings=ContentSettings(
                content_type=CSV_CONTENT,
                content_disposition=f'attachment; filename="{file_name}"',
            ),
        )


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
