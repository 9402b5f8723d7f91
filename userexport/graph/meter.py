"""What one job's work asks of Graph: requests sent, 429s answered and resource units served.

Counted where the requests are sent and the answers read (reader.py, authmethods.py), into the
meter of the running task (a ContextVar): invocations of several jobs in one instance share the
readers but count apart, and the tasks an invocation starts (a page's $batches) count into its
meter. Outside `metered()` nothing is counted. The export steps add each invocation's usage to
the job's rows, so a job's telemetry (telemetry.py) gives its totals.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class GraphUsage:
    requests: int = 0  # HTTP requests sent (a $batch is one)
    throttled: int = 0  # answers 429, a $batch item's own included
    resource_units: int = 0  # what the served answers cost (x-ms-resource-unit; 1 a lookup)

    def __add__(self, other: GraphUsage) -> GraphUsage:
        return GraphUsage(
            self.requests + other.requests,
            self.throttled + other.throttled,
            self.resource_units + other.resource_units,
        )

    def to_json(self) -> dict[str, int]:
        """As a job's rows record it and its telemetry shows it."""
        return {
            "graphRequests": self.requests,
            "throttled": self.throttled,
            "resourceUnits": self.resource_units,
        }

    @classmethod
    def from_json(cls, data: dict[str, int] | None) -> GraphUsage:
        data = data or {}
        return cls(
            data.get("graphRequests", 0), data.get("throttled", 0), data.get("resourceUnits", 0)
        )


_meter: ContextVar[GraphUsage | None] = ContextVar("graph_usage", default=None)


@contextmanager
def metered() -> Iterator[GraphUsage]:
    """Counts this task's Graph usage (and its child tasks') while the block runs."""
    usage = GraphUsage()
    token = _meter.set(usage)
    try:
        yield usage
    finally:
        _meter.reset(token)


def count(*, requests: int = 0, throttled: int = 0, resource_units: int = 0) -> None:
    usage = _meter.get()
    if usage is not None:
        usage.requests += requests
        usage.throttled += throttled
        usage.resource_units += resource_units


def pending() -> GraphUsage:
    """This task's usage not saved on a row yet (a job failed mid-step tells it this way)."""
    usage = _meter.get() or GraphUsage()
    return GraphUsage(usage.requests, usage.throttled, usage.resource_units)


def saved(recorded: dict[str, int] | None) -> dict[str, int]:
    """What a row records once this task's usage since its last save is added to it; the meter
    starts again from zero, so a usage is saved once."""
    taken = pending()
    usage = _meter.get()
    if usage is not None:
        usage.requests = usage.throttled = usage.resource_units = 0
    return (GraphUsage.from_json(recorded) + taken).to_json()
