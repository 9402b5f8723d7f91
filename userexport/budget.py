"""The time budget of one invocation, and how long Graph has been failing.

Every wait an invocation takes (a throttling pause, the limiter's pace, a backoff after a
server error) is checked against its deadline first: a wait that would run past it raises
OutOfTime instead, and the caller checkpoints and continues in a new queue message, so no
invocation runs into functionTimeout whatever Graph does. The same record keeps the current
run of failures, which the worker turns into the job's "failing since" and, past the
documented cap, into a failure with a reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from .errors import OutOfTime

T = TypeVar("T")


@dataclass
class Budget:
    deadline: float  # time.monotonic() past which nothing new starts
    failing_since: datetime | None = None  # start of the current run of failures
    last_error: str | None = None  # what the last failure was, fit to show a caller
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    def remaining(self) -> float:
        return self.deadline - self.clock()

    def failed(self, summary: str) -> None:
        self.failing_since = self.failing_since or datetime.now(UTC)
        self.last_error = summary

    def succeeded(self) -> None:
        self.failing_since = None

    def outlasted(self, cap: timedelta) -> bool:
        """Whether the current run of failures has lasted `cap` (the job should fail)."""
        return self.failing_since is not None and datetime.now(UTC) - self.failing_since >= cap


_current: ContextVar[Budget | None] = ContextVar("userexport_budget", default=None)


@contextmanager
def budget(
    seconds: float,
    *,
    failing_since: datetime | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Budget]:
    """Runs the body under a budget of `seconds`; what it awaits shares it (tasks included)."""
    current = Budget(clock() + seconds, failing_since, clock=clock)
    token = _current.set(current)
    try:
        yield current
    finally:
        _current.reset(token)


def check(wait: float = 0.0) -> None:
    """Raises OutOfTime if waiting `wait` seconds now would end past the deadline."""
    current = _current.get()
    if current is not None and wait >= current.remaining():
        raise OutOfTime


def failed(summary: str) -> None:
    current = _current.get()
    if current is not None:
        current.failed(summary)


def succeeded() -> None:
    current = _current.get()
    if current is not None:
        current.succeeded()


async def gather_all(*awaitables: Awaitable[T]) -> list[T]:
    """asyncio.gather, except that when one fails (OutOfTime, say) the others are cancelled
    instead of running on unawaited."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
