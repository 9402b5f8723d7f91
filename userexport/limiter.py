"""An adaptive limiter for requests Graph throttles: it backs off on 429 and probes upward again.

Concurrency follows AIMD (halved on a throttled answer, one more after a run of clean ones),
and a throttled answer pauses every caller until its Retry-After has passed (or, without one,
an exponential backoff with jitter), so parallel batches do not stampede a spent bucket.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable


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
        self._minimum, self._maximum = minimum, maximum
        self._base_delay, self._max_delay = base_delay, max_delay
        self._clock, self._sleep = clock, sleep
        self._in_flight = 0
        self._clean = 0  # clean answers since the limit last changed
        self._throttled_in_a_row = 0
        self._resume_at = 0.0
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> AdaptiveLimiter:
        while True:
            pause = self._resume_at - self._clock()
            if pause > 0:
                await self._sleep(pause)
                continue
            async with self._changed:
                if self._in_flight < self.limit and self._resume_at <= self._clock():
                    self._in_flight += 1
                    return self
                if self._in_flight >= self.limit:
                    await self._changed.wait()

    async def __aexit__(self, *exc: object) -> None:
        async with self._changed:
            self._in_flight -= 1
            self._changed.notify_all()

    def throttled(self, retry_after: float | None) -> float:
        """Records a 429 (or 503); returns how long every caller now pauses."""
        self._throttled_in_a_row += 1
        self._clean = 0
        self.limit = max(self._minimum, self.limit // 2)
        if retry_after is None:
            ceiling = min(self._max_delay, self._base_delay * 2 ** (self._throttled_in_a_row - 1))
            retry_after = random.uniform(ceiling / 2, ceiling)
        self._resume_at = max(self._resume_at, self._clock() + retry_after)
        return retry_after

    def succeeded(self) -> None:
        """Records a clean answer; after as many as the limit, allows one more in flight."""
        self._throttled_in_a_row = 0
        self._clean += 1
        if self._clean >= self.limit and self.limit < self._maximum:
            self.limit += 1
            self._clean = 0
