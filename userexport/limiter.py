"""An adaptive limiter for requests Graph throttles: it backs off on 429 and probes upward again.

Two controls, both learnt from Graph's answers. A pace (requests per second): unlimited until
the first 429, then a little below the rate Graph was actually serving, and raised by 0.5% per
clean answer, so it settles just under the budget instead of bursting into it. A concurrency
that halves on a throttled answer and grows by one after a run of clean ones. A throttled
answer also pauses every caller until its Retry-After has passed (or, without one, an
exponential backoff with jitter), so parallel batches do not stampede a spent bucket. Server
errors pause and halve the same way, but teach no rate: an outage says nothing about a budget.
Every wait counts against the invocation's time budget (budget.check).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from . import budget

_WINDOW = 10.0  # seconds of answers the served rate is measured over (Graph's bucket period)


class AdaptiveLimiter:
    def __init__(
        self,
        *,
        initial: int = 4,
        minimum: int = 1,
        maximum: int = 16,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.limit = initial
        self.rate: float | None = None  # requests per second; None: not throttled yet
        self._minimum, self._maximum = minimum, maximum
        self._base_delay, self._max_delay = base_delay, max_delay
        self._clock, self._sleep = clock, sleep
        self._in_flight = 0
        self._clean = 0  # clean answers since the limit last changed
        self._throttled_in_a_row = 0
        self._resume_at = 0.0
        self._next_slot = 0.0
        self._served: deque[tuple[float, int]] = deque()  # (when, requests) served cleanly
        self.last_success = float("-inf")  # when Graph last served a request cleanly
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> AdaptiveLimiter:
        await self._acquire(1)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._release()

    @asynccontextmanager
    async def slot(self, cost: int) -> AsyncIterator[None]:
        """A turn for a request that counts as `cost` requests (a $batch of 20 counts 20)."""
        await self._acquire(cost)
        try:
            yield
        finally:
            await self._release()

    async def _acquire(self, cost: int) -> None:
        while True:
            pause = self._resume_at - self._clock()
            if pause > 0:
                budget.check(pause)
                await self._sleep(pause)
                continue
            async with self._changed:
                if self._in_flight < self.limit and self._resume_at <= self._clock():
                    self._in_flight += 1
                    break
                if self._in_flight >= self.limit:
                    await self._changed.wait()
        try:  # a slot taken must be given back, whatever stops the wait (OutOfTime, a cancel)
            if self.rate:
                now = self._clock()
                slot = max(self._next_slot, now)
                budget.check(slot - now)
                self._next_slot = slot + cost / self.rate
                if slot > now:
                    await self._sleep(slot - now)
        except BaseException:
            await self._release()
            raise

    async def _release(self) -> None:
        async with self._changed:
            self._in_flight -= 1
            self._changed.notify_all()

    def throttled(self, retry_after: float | None, *, learn_rate: bool = True) -> float:
        """Records a throttled answer (429), or with learn_rate=False a server error or a lost
        connection; returns how long every caller now pauses. Answers that arrive while callers
        are already paused were sent before it: they add no step to the backoff, the limit or
        the pace, or a burst of failures at one moment would escalate like a long outage."""
        self._clean = 0
        if self._clock() >= self._resume_at:
            self._throttled_in_a_row += 1
            self.limit = max(self._minimum, self.limit // 2)
            served = self._served_rate() if learn_rate else None
            if served:
                self.rate = 0.9 * served if self.rate is None else min(self.rate, 0.9 * served)
            elif self.rate and learn_rate:
                self.rate /= 2
        if retry_after is None:
            ceiling = min(self._max_delay, self._base_delay * 2 ** (self._throttled_in_a_row - 1))
            retry_after = random.uniform(ceiling / 2, ceiling)
        self._resume_at = max(self._resume_at, self._clock() + retry_after)
        self._next_slot = max(self._next_slot, self._resume_at)
        return retry_after

    async def backoff(self, attempt: int, retry_after: float | None = None) -> None:
        """Waits before retrying something that failed on its own (a few items of a batch that
        Graph otherwise served): Retry-After, or exponential backoff with jitter. Unlike
        throttled(), nobody else pauses."""
        if retry_after is None:
            ceiling = min(self._max_delay, self._base_delay * 2 ** (attempt - 1))
            retry_after = random.uniform(ceiling / 2, ceiling)
        budget.check(retry_after)
        await self._sleep(retry_after)

    def now(self) -> float:
        return self._clock()

    def resume_in(self) -> int:
        """Whole seconds until paused callers may go on (0 when not paused), at most 600: how
        long a continuation waits unseen before it tries again."""
        return math.ceil(min(max(0.0, self._resume_at - self._clock()), 600.0))

    def served(self, cost: int) -> None:
        """Records requests Graph served (part of a batch, say), for the served rate."""
        if cost:
            self.last_success = self._clock()
            self._served.append((self._clock(), cost))

    def succeeded(self, cost: int = 1) -> None:
        """Records a clean answer worth `cost` requests; probes the pace and the limit upward."""
        self._throttled_in_a_row = 0
        self.served(cost)
        if self.rate:
            self.rate *= 1.005
        self._clean += 1
        if self._clean >= self.limit and self.limit < self._maximum:
            self.limit += 1
            self._clean = 0

    def _served_rate(self) -> float | None:
        """Requests per second served cleanly over the last window, once there is one."""
        now = self._clock()
        while self._served and self._served[0][0] < now - _WINDOW:
            self._served.popleft()
        if not self._served:
            return None
        span = max(now - self._served[0][0], 1.0)
        return sum(cost for _, cost in self._served) / span
