"""How many requests to one bucket may be in flight at once (additive increase, multiplicative
decrease): a slow start that doubles the limit every round trip until Graph first throttles,
then halving on a throttled answer and one more after a run of clean ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Concurrency:
    def __init__(self, *, initial: int = 4, minimum: int = 1, maximum: int = 64) -> None:
        self.limit = initial
        self._minimum, self._maximum = minimum, maximum
        self.in_flight = 0
        self._clean = 0  # clean answers since the limit last changed
        self._slow_start = True  # until the first throttled answer, the limit doubles
        self._changed = asyncio.Condition()

    async def take(self, ready: Callable[[], bool]) -> bool:
        """Takes a slot when there is room and `ready()` (callers are not paused); otherwise
        False: after waiting for a slot to be given back when there was no room, at once when
        callers were paused, so the caller waits out the pause and asks again."""
        async with self._changed:
            if self.in_flight < self.limit:
                if not ready():
                    return False
                self.in_flight += 1
                return True
            await self._changed.wait()
            return False

    async def give_back(self) -> None:
        async with self._changed:
            self.in_flight -= 1
            self._changed.notify_all()

    def clean(self) -> None:
        """A clean answer: one more slot per answer in the slow start, else one more after
        `limit` clean answers in a row."""
        self._clean += 1
        if self._slow_start:
            self.limit = min(self._maximum, self.limit + 1)
        elif self._clean >= self.limit and self.limit < self._maximum:
            self.limit += 1
            self._clean = 0

    def warned(self) -> None:
        """Graph said the bucket runs low: the slow start is over, the limit stays."""
        self._slow_start = False

    def halve(self) -> None:
        """A throttled or failed answer: half as many at once, and no more slow start."""
        self._clean, self._slow_start = 0, False
        self.limit = max(self._minimum, self.limit // 2)

    def hold(self) -> None:
        """An answer that fails without a new step down: the run of clean answers restarts."""
        self._clean, self._slow_start = 0, False
