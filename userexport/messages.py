"""The queue messages of an export, written by the API, the worker and the sweep alike.

A message names a job, and a partition of it or none (the plan step). Anything else on the
queue is refused by `parse` with a reason, never guessed at.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from .errors import InvalidMessage


@dataclass(frozen=True)
class ExportMessage:
    job_id: str
    partition: int | None = None  # None: plan the job

    def encode(self) -> str:
        body: dict[str, Any] = {"jobId": self.job_id}
        if self.partition is not None:
            body["partition"] = self.partition
        return orjson.dumps(body).decode()


def parse(body: bytes | str) -> ExportMessage:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidMessage("not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("jobId"), str):
        raise InvalidMessage("no jobId")
    partition = data.get("partition")
    if partition is not None and (type(partition) is not int or partition < 0):
        raise InvalidMessage("partition is not a whole number")
    return ExportMessage(data["jobId"], partition)


class Outcome(StrEnum):
    """What became of one message."""

    PLANNED = "planned"  # the partitions' messages are queued
    PARTITION_DONE = "partitionDone"  # this partition is written; others are still running
    FINISHED = "finished"  # the job reached a final state in this invocation
    CONTINUED = "continued"  # the time budget ran out; a new message carries on
    WAITING = "waiting"  # planned, it waits queued for a place (admission.py); it asks again
    SKIPPED = "skipped"  # nothing to do: unknown, already done, or another invocation has it
