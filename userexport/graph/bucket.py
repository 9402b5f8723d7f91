"""Graph's throttling bucket as one instance sees it: a mirror of the bucket at this instance's
pace (pacing before the 429), and what Graph served it over the bucket's window (what the pace
is learnt from).

Graph's buckets refill over 10 s and warn past 80 % of the budget
(`x-ms-throttle-limit-percentage`): the mirror allows a burst of BURST seconds of pace while
Graph's bucket would have room, pacing after that.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from .headers import WARN

WINDOW = 10.0  # seconds: Graph's buckets refill over 10 s, and rates are measured over it
BURST = 8.0  # seconds of pace a full bucket allows at once (Graph warns past 80 % of 10 s)


class BucketMirror:
    """Tokens at a pace (RU per second, None until learnt); a request takes its cost in
    tokens and waits while they are below zero."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._rate: float | None = None
        self._tokens, self._tokens_at = 0.0, clock()

    @property
    def rate(self) -> float | None:
        return self._rate

    @rate.setter
    def rate(self, value: float | None) -> None:
        self._refill()  # what the old pace earned is kept
        self._rate = value

    def wait(self) -> float:
        """How long the next request waits for its turn at the pace (0 without a pace)."""
        if not self._rate:
            return 0.0
        self._refill()
        return max(0.0, -self._tokens / self._rate)

    def debit(self, cost: int) -> None:
        """A request takes its turn; a negative cost gives back a turn not taken."""
        if self._rate:
            self._tokens -= cost

    def fill(self) -> None:
        """The bucket is full and this instance may spend it: a burst at the pace."""
        if self._rate:
            self._tokens = BURST * self._rate

    def spent(self) -> None:
        """Graph says its bucket has no room left: neither has the mirror."""
        self._refill()
        self._tokens = min(self._tokens, 0.0)

    def _refill(self) -> None:
        now = self._clock()
        if self._rate:
            earned = self._tokens + (now - self._tokens_at) * self._rate
            self._tokens = min(BURST * self._rate, earned)
        self._tokens_at = now


class ServedLog:
    """Requests Graph served cleanly, over its last window."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._served: deque[tuple[float, int]] = deque()  # (when, RU)
        self.first_sent: float | None = None

    def sent(self) -> None:
        if self.first_sent is None:
            self.first_sent = self._clock()

    def add(self, cost: int) -> None:
        self._served.append((self._clock(), cost))
        self.sent()

    def since(self, when: float) -> int:
        """RU served after `when`."""
        return sum(cost for at, cost in self._served if at > when)

    def rate(self) -> float | None:
        """RU per second served over the last window, once there is one."""
        now = self._clock()
        while self._served and self._served[0][0] < now - WINDOW:
            self._served.popleft()
        if not self._served:
            return None
        span = max(now - self._served[0][0], 1.0)
        return sum(cost for _, cost in self._served) / span

    def burst_rate(self, used: float) -> float | None:
        """The bucket's refill rate from what was served since it was full: over t seconds it
        served S = used x 10 x rate + t x rate. Others drawing on it too make this an
        underestimate, which the limiter's probing corrects."""
        self.rate()  # drops what is older than the window
        served = sum(cost for _, cost in self._served)
        if not served or self.first_sent is None:
            return None
        elapsed = min(max(self._clock() - self.first_sent, 0.0), WINDOW)
        return served / (elapsed + WINDOW * min(max(used, WARN), 1.0))
