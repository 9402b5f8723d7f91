"""A series of exports: its definition, its state between runs (the deltaLink, the snapshot a
delta run builds on, when its last full run was) and its retention.

A series has one definition (columns, filter, mode, formulaGuard, snapshot), fixed by its first
run: a run of another definition is refused (api.py, 409), so nobody can make `latest` hand out
a file of their own or push a series' real exports out of its retention. It changes only on
purpose (`"redefine": true`), and the nightly timer's series only by the timer. A row of the
jobs table (PartitionKey `definition`, RowKey the series' name) holds it, with who fixed it.

The state is one row of the jobs table (PartitionKey `series`, RowKey the series' name). Only a
run that committed its files moves it on, ETag-guarded, and only from the snapshot the run was
planned on: of two runs planned on the same state, the second to commit finds it moved.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables.aio import TableClient
from azure.storage.blob.aio import ContainerClient

from .errors import JobConflict
from .jobs import Job, JobStore, attempts, utcnow
from .request import ExportRequest

log = logging.getLogger(__name__)

PARTITION = "series"
DEFINITIONS = "definition"
HISTORY = 20  # the snapshots a series went through, newest last: a retried commit finds its own
NIGHTLY = "nightly"  # the nightly timer's series: written by the timer only


@dataclass(frozen=True)
class Definition:
    """What a series' runs all are: their columns, filter, mode, formula guard and snapshot."""

    columns: tuple[str, ...]
    filter: dict[str, Any] | None
    mode: str
    formula_guard: bool
    snapshot: bool

    @classmethod
    def of(cls, request: ExportRequest) -> Definition:
        return cls(
            tuple(request.columns),
            request.filter,
            request.mode,
            request.formula_guard,
            request.snapshot,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "columns": list(self.columns),
            "filter": self.filter,
            "mode": self.mode,
            "formulaGuard": self.formula_guard,
            "snapshot": self.snapshot,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Definition:
        return cls(
            tuple(data["columns"]),
            data.get("filter"),
            data["mode"],
            data["formulaGuard"],
            data["snapshot"],
        )

    @property
    def key(self) -> bytes:
        """The definition as one value (its filter is a dict): its JSON, keys sorted."""
        return orjson.dumps(self.to_json(), option=orjson.OPT_SORT_KEYS)

    def differences(self, other: Definition) -> list[str]:
        """The request fields in which `other` differs from this definition."""
        mine, theirs = self.to_json(), other.to_json()
        return [name for name in mine if mine[name] != theirs[name]]


@dataclass
class SeriesState:
    name: str
    delta_link: str  # where the next run's changes start
    snapshot_job: str  # the run whose users.csv holds every user as of delta_link
    columns: list[str]  # that snapshot's columns ...
    formula_guard: bool  # ... and formula guard: another request starts a full run
    full_job: str  # the last full run: the authentication columns of unchanged users date from it
    full_at: datetime
    history: list[str] = field(default_factory=list)  # the snapshots before this one
    etag: str | None = None

    def to_entity(self) -> dict[str, object]:
        return {
            "PartitionKey": PARTITION,
            "RowKey": self.name,
            "deltaLink": self.delta_link,
            "snapshotJob": self.snapshot_job,
            "columns": orjson.dumps(self.columns).decode(),
            "formulaGuard": self.formula_guard,
            "fullJob": self.full_job,
            "fullAt": self.full_at,
            "history": orjson.dumps(self.history).decode(),
        }


class SeriesStore:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    async def definition(self, name: str) -> tuple[Definition, str] | None:
        """The series' definition and its row's ETag; None before its first run."""
        try:
            row = await self._table.get_entity(DEFINITIONS, name)
        except ResourceNotFoundError:
            return None
        return Definition.from_json(orjson.loads(row["definition"])), row.metadata["etag"]

    async def define(
        self,
        name: str,
        wanted: Definition,
        *,
        by: dict[str, Any],
        redefine: bool,
        first: Callable[[], Awaitable[Definition | None]],
    ) -> Definition | None:
        """Checks a run of `wanted` against the series' definition: None when it is one (its
        first run fixes it: `first()`, the newest run of a series that ran before
        definitions existed, else `wanted`; `redefine` replaces it), else the definition it
        is not."""
        for _ in attempts(f"defining series {name}"):
            found = await self.definition(name)
            entity = {"PartitionKey": DEFINITIONS, "RowKey": name, "by": orjson.dumps(by).decode()}
            try:
                if found is None:
                    fixed = (None if redefine else await first()) or wanted
                    entity["definition"] = orjson.dumps(fixed.to_json()).decode()
                    await self._table.create_entity(entity)
                    return None if fixed == wanted else fixed
                current, etag = found
                if current == wanted:
                    return None
                if not redefine:
                    return current
                entity["definition"] = orjson.dumps(wanted.to_json()).decode()
                await self._table.update_entity(
                    entity, mode="replace", etag=etag, match_condition=MatchConditions.IfNotModified
                )
                log.warning("Series %s redefined by %s.", name, by.get("kind"))
                return None
            except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
                continue  # another run fixed or changed it meanwhile: look again

    async def get(self, name: str) -> SeriesState | None:
        try:
            row = await self._table.get_entity(PARTITION, name)
        except ResourceNotFoundError:
            return None
        return SeriesState(
            name=name,
            delta_link=row["deltaLink"],
            snapshot_job=row["snapshotJob"],
            columns=orjson.loads(row["columns"]),
            formula_guard=row["formulaGuard"],
            full_job=row["fullJob"],
            full_at=row["fullAt"],
            history=orjson.loads(row.get("history") or "[]"),
            etag=row.metadata.get("etag"),
        )

    async def advance(self, job: Job, *, delta_link: str, planned_on: str | None) -> None:
        """Moves the series on to `job`, a run of it that committed its files, if the series
        is still where the run was planned on (`planned_on`: the snapshot job it built on;
        None: the series had no state). Moved on by this run already (a retried commit, even
        after later runs built on it): nothing to do. Raises JobConflict when another run
        moved the series on."""
        name = job.request.series or ""
        current = await self.get(name)
        if current is not None and job.id in (current.snapshot_job, *current.history):
            return
        found = current.snapshot_job if current else None
        if found != planned_on:
            raise JobConflict(f"series {name} moved on to {found}")
        state = state_after(job, delta_link, current)
        try:
            if current is None:
                await self._table.create_entity(state.to_entity())
            else:
                await self._table.update_entity(
                    state.to_entity(),
                    mode="replace",
                    etag=current.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError) as error:
            raise JobConflict(f"series {name} changed while saving") from error


def state_after(job: Job, delta_link: str, previous: SeriesState | None) -> SeriesState:
    """The series' state once `job` (a run of it) has committed."""
    full = previous is None or not (job.plan and job.plan.changes)
    history = [*previous.history, previous.snapshot_job][-HISTORY:] if previous else []
    return SeriesState(
        name=job.request.series or "",
        delta_link=delta_link,
        snapshot_job=job.id,
        columns=list(job.request.columns),
        formula_guard=job.request.formula_guard,
        full_job=job.id if full or previous is None else previous.full_job,
        full_at=(job.started_at or utcnow()) if full or previous is None else previous.full_at,
        history=history,
    )


async def prune(
    jobs: JobStore, series: SeriesStore, exports: ContainerClient, *, keep: int
) -> list[str]:
    """Deletes every series' finished runs but its newest `keep` with files and its newest
    `keep` without (failed, cancelled, dry runs: these never push out an export with files).
    Their blobs go first, then their rows. A run still queued or running, and the run whose
    snapshot a delta series builds on next, are never deleted. Returns the deleted job ids."""
    # Each series' runs of one definition are kept apart: runs of another (before a redefine,
    # or made before definitions existed) never push its exports out, nor the other way.
    runs: dict[tuple[str, bytes], list[Job]] = {}
    async for job in jobs.series_runs(None):  # newest first
        key = Definition.of(job.request).key
        runs.setdefault((job.series or "", key), []).append(job)
    deleted: list[str] = []
    for (name, _), newest_first in runs.items():
        state = await series.get(name)
        finished = [job for job in newest_first if job.status.finished]
        with_files = [job for job in finished if job.status.has_files]
        without = [job for job in finished if not job.status.has_files]
        for job in with_files[keep:] + without[keep:]:
            if state is not None and job.id == state.snapshot_job:
                continue
            for blob in (job.blob_name, job.errors_blob_name, job.changes_blob_name):
                try:
                    await exports.delete_blob(blob)
                except ResourceNotFoundError:
                    pass
            await jobs.delete(job.id)
            deleted.append(job.id)
    if deleted:
        log.info("Retention deleted %d export(s) of series.", len(deleted))
    return deleted
