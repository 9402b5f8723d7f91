"""The commit: exactly the blocks the checkpoints list, and a final state that a conflicting
write delays but never loses."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from userexport.commit import finish_if_complete
from userexport.jobs import (
    Checkpoint,
    Job,
    JobConflict,
    JobStore,
    Partition,
    PartitionStatus,
    Plan,
    Segment,
    Status,
)
from userexport.messages import Outcome
from userexport.request import ExportRequest

REQUEST = ExportRequest(("objectId",), None, "x.csv")


@dataclass
class FakeBlob:
    staged: dict[str, bytes] = field(default_factory=dict)
    committed: list[str] | None = None

    async def stage_block(self, block: str, data: bytes, **_: Any) -> None:
        self.staged[block] = data

    metadata: dict[str, str] = field(default_factory=dict)

    async def commit_block_list(self, blocks: list[Any], **_: Any) -> None:
        self.committed = [b.id for b in blocks]

    def _bytes(self) -> bytes:  # the test stages only the headers
        return b"".join(self.staged.get(block, b"") for block in self.committed or [])

    async def get_blob_properties(self) -> Any:
        return type("Properties", (), {"size": len(self._bytes())})()

    async def download_blob(self, *, offset: int = 0, length: int | None = None) -> Any:
        data = self._bytes()[offset : None if length is None else offset + length]

        class Downloaded:
            async def readall(self) -> bytes:
                return data

        return Downloaded()

    async def set_blob_metadata(self, metadata: dict[str, str]) -> None:
        self.metadata = metadata


@dataclass
class FakeExports:
    blobs: dict[str, FakeBlob] = field(default_factory=dict)

    def get_blob_client(self, name: str) -> FakeBlob:
        return self.blobs.setdefault(name, FakeBlob())


class FakeStore:
    """A job whose first `conflicts` saves meet a write of someone else (progress, an error)."""

    def __init__(self, job: Job, parts: list[Partition], *, conflicts: int) -> None:
        self.job, self.parts, self.conflicts = job, parts, conflicts
        self.saved: list[Job] = []

    async def get(self, job_id: str) -> Job:
        return Job(**{**self.job.__dict__})

    async def partitions(self, job_id: str) -> list[Partition]:
        return self.parts

    mark_committing = JobStore.mark_committing  # the real one, on this store's save

    async def save(self, job: Job) -> Job:
        if self.conflicts:
            self.conflicts -= 1
            raise JobConflict(job.id)
        self.saved.append(Job(**job.__dict__))  # as saved, not as changed later
        return job


@dataclass
class FakeClients:
    jobs: FakeStore
    exports: FakeExports = field(default_factory=FakeExports)


def done(index: int, segments: list[list[int]], users: int) -> Partition:
    checkpoint = Checkpoint(segments=segments, users=users)
    return Partition("j", index, [str(index)], status=PartitionStatus.DONE, checkpoint=checkpoint)


def decoded(ids: list[str]) -> list[str]:
    return [base64.b64decode(i).decode() for i in ids]


async def test_a_conflicting_write_is_read_again_and_the_job_still_finishes():
    job = Job("j", Status.RUNNING, "http", datetime.now(UTC), REQUEST, plan=Plan([["a"], ["b"]]))
    parts = [done(0, [[1, 2, 0, 0], [3, 1, 0, 0]], 5), done(1, [[1, 1, 0, 0]], 2)]
    clients = FakeClients(FakeStore(job, parts, conflicts=2))
    assert await finish_if_complete(clients, "j") is Outcome.FINISHED  # type: ignore[arg-type]
    # First the mark that makes a cancel too late, then the outcome.
    [marked, final] = clients.jobs.saved
    assert marked.committing and marked.status is Status.RUNNING
    assert final.status is Status.SUCCEEDED and final.user_count == 7
    # The header, then the blocks of each owner's segment, partition by partition: epoch 2
    # staged nothing that was saved, so no block of it is committed.
    assert decoded(clients.exports.blobs["j/users.csv"].committed or []) == [
        "H0000000000000000",
        "U0000000001000000",
        "U0000000001000001",
        "U0000000003000000",
        "U0001000001000000",
    ]


async def test_finishing_waits_for_every_partition():
    job = Job("j", Status.RUNNING, "http", datetime.now(UTC), REQUEST, plan=Plan([["a"], ["b"]]))
    parts = [done(0, [], 0), Partition("j", 1, ["b"])]
    clients = FakeClients(FakeStore(job, parts, conflicts=0))
    assert await finish_if_complete(clients, "j") is Outcome.PARTITION_DONE  # type: ignore[arg-type]
    assert clients.jobs.saved == [] and clients.exports.blobs == {}


async def test_a_cancelled_job_is_never_committed():
    job = Job("j", Status.CANCELLED, "http", datetime.now(UTC), REQUEST, plan=Plan([["a"]]))
    clients = FakeClients(FakeStore(job, [done(0, [[1, 2, 0, 0]], 5)], conflicts=0))
    assert await finish_if_complete(clients, "j") is Outcome.SKIPPED  # type: ignore[arg-type]
    assert clients.jobs.saved == [] and clients.exports.blobs == {}


def test_a_checkpoint_is_stored_as_rows_already_written_hold_it():
    """Segments are stored as [epoch, rows, errors, held], the shape rows already in tables
    have: a row written before Segment existed reads back the same."""
    stored = {"segments": [[3, 2, 1, 0], [5, 1, 0, 4]], "users": 9}
    checkpoint = Checkpoint.from_json(stored)
    assert checkpoint.segments == [Segment(3, 2, 1, 0), Segment(5, rows=1, held=4)]
    assert checkpoint.segments[1].held == 4
    assert orjson.loads(orjson.dumps(checkpoint.to_json()))["segments"] == stored["segments"]
