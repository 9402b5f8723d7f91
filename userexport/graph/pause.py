"""The pause every caller of a bucket keeps after a throttled answer or a server error: until
its Retry-After has passed or, without one, an exponential backoff with jitter, so parallel
requests do not stampede a spent bucket. Every wait counts against the invocation's time
budget (budget.check).
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable

from .. import budget


class Pause:
    def __init__(
        self,
        *,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self._base_delay, self._max_delay = base_delay, max_delay
        self._clock, self._sleep = clock, sleep
        self.resume_at = 0.0
        self.in_a_row = 0  # throttled answers in a row, each outside a pause: the backoff step

    def remaining(self) -> float:
        return self.resume_at - self._clock()

    def over(self) -> bool:
        return self.resume_at <= self._clock()

    async def wait(self) -> None:
        """Until the pause is over (at once when there is none)."""
        while (left := self.remaining()) > 0:
            budget.check(left)
            await self._sleep(left)

    def step(self) -> bool:
        """A throttled answer: True when it comes outside a pause, a new step of the backoff.
        Answers arriving during a pause were sent before it and add no step, or a burst of
        failures at one moment would escalate like a long outage."""
        if not self.over():
            return False
        self.in_a_row += 1
        return True

    def until(self, retry_after: float | None) -> float:
        """Pauses everyone for `retry_after` seconds or, without one, the backoff of this step;
        returns that wait."""
        if retry_after is None:
            retry_after = self.jittered(self.in_a_row)
        self.resume_at = max(self.resume_at, self._clock() + retry_after)
        return retry_after

    async def backoff(self, attempt: int, retry_after: float | None = None) -> None:
        """Waits before retrying something that failed on its own (a few items of a batch that
        Graph otherwise served): Retry-After, or the backoff. Nobody else pauses."""
        if retry_after is None:
            retry_after = self.jittered(attempt)
        budget.check(retry_after)
        await self._sleep(retry_after)

    def jittered(self, attempt: int) -> float:
        """Exponential backoff for the nth attempt, capped, with "equal jitter" (half fixed,
        half random) so that callers throttled together do not come back together."""
        ceiling = min(self._max_delay, self._base_delay * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)

    def resume_in(self) -> int:
        """Whole seconds until paused callers may go on (0 when not paused), at most 600: how
        long a continuation waits unseen before it tries again."""
        return math.ceil(min(max(0.0, self.remaining()), 600.0))
