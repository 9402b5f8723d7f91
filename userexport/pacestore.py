"""The board the instances share Graph's pace on (graph/pace.py), kept in the jobs table.

Graph's throttling budget is per app and tenant, whatever the number of instances: on Flex
Consumption a big export runs on many at once. Each Graph bucket the app draws on ("listing",
"auth") has one partition of rows here: one row per instance (the pace it goes at and the rate
it was served, refreshed every few seconds while it sends), and one row for the bucket (the
rate the tenant's bucket served all of them together when it last ran low). An instance that
starts reads the bucket's rate and the instances still active, and starts at its share instead
of a burst; instances that keep going re-read them and give up their share to newcomers.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from .graph.pace import SharedPace

log = logging.getLogger(__name__)

ACTIVE_SECONDS = 15.0  # an instance row older than this belongs to an instance that stopped
IDLE_SECONDS = 10.0  # a bucket nobody drew on for this long is full again (Graph's window)
BUCKET_ROW = "bucket"


def instance_id() -> str:
    """This instance's name: Azure's WEBSITE_INSTANCE_ID, else the host and process."""
    return os.environ.get("WEBSITE_INSTANCE_ID") or f"{socket.gethostname()}-{os.getpid()}"


class PaceStore:
    """The rows of one tenant, a PaceBoard; every call is best effort (a storage blip only
    costs sharing)."""

    def __init__(self, table: TableClient, *, tenant: str, instance: str | None = None) -> None:
        self._table, self._tenant = table, tenant
        self.instance = instance or instance_id()

    def _key(self, bucket: str) -> str:
        return f"pace-{self._tenant}-{bucket}"

    async def read(self, bucket: str) -> SharedPace | None:
        """The bucket's learnt rate and its active instances; None when storage fails."""
        try:
            rows = [
                row
                async for row in self._table.query_entities(
                    "PartitionKey eq @pk", parameters={"pk": self._key(bucket)}
                )
            ]
        except AzureError as error:
            log.warning("Could not read the shared Graph pace (%s).", type(error).__name__)
            return None
        now = time.time()
        learnt: dict[str, Any] = next((r for r in rows if r["RowKey"] == BUCKET_ROW), {})
        active = {
            r["RowKey"]: float(r.get("rate") or 0.0)
            for r in rows
            if r["RowKey"] != BUCKET_ROW and now - float(r.get("at", 0)) <= ACTIVE_SECONDS
        }
        active.setdefault(f"instance-{self.instance}", 0.0)
        rate, per_user = learnt.get("rate"), learnt.get("secondsPerUser")
        return SharedPace(
            float(rate) if rate else None,
            len(active),
            sum(active.values()),
            float(per_user) if per_user else None,
        )

    async def publish(self, bucket: str, *, rate: float | None, served: float) -> None:
        """This instance's pace (None: none yet) and the rate it was served lately."""
        await self._upsert(
            bucket,
            f"instance-{self.instance}",
            {"rate": rate or 0.0, "served": served, "at": time.time()},
        )

    async def claim_burst(self, bucket: str) -> bool:
        """Whether this instance may spend the bucket's full 10 s at once: only when nobody
        drew on it lately, and only one of the instances that start together (the first to
        write the bucket row; the others start at their pace)."""
        key, now = self._key(bucket), time.time()
        try:
            rows = [
                row
                async for row in self._table.query_entities(
                    "PartitionKey eq @pk", parameters={"pk": key}
                )
            ]
            mine = f"instance-{self.instance}"
            if any(
                now - float(row.get("at", 0)) < IDLE_SECONDS
                for row in rows
                if row["RowKey"] not in (BUCKET_ROW, mine)
            ):
                return False
            learnt = next((r for r in rows if r["RowKey"] == BUCKET_ROW), None)
            if learnt is None:
                return False  # nothing learnt: the first requests find the pace anyway
            if now - float(learnt.get("burstAt", 0)) < IDLE_SECONDS:
                return False
            await self._table.update_entity(
                {"PartitionKey": key, "RowKey": BUCKET_ROW, "burstAt": now},
                mode=UpdateMode.MERGE,
                etag=learnt.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except AzureError:  # another instance claimed it first, or storage failed: no burst
            return False
        return True

    async def learn(self, bucket: str, **values: float) -> None:
        """The bucket's rate (`rate`, RU/s) or a listing's `secondsPerUser`, as learnt now."""
        await self._upsert(bucket, BUCKET_ROW, {**values, "at": time.time()})

    async def _upsert(self, bucket: str, row: str, values: dict[str, Any]) -> None:
        entity = {"PartitionKey": self._key(bucket), "RowKey": row, **values}
        try:
            await self._table.upsert_entity(entity)
        except AzureError as error:
            log.warning("Could not share the Graph pace (%s).", type(error).__name__)
