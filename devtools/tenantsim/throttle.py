"""Token buckets in Graph resource units (RU), refilled continuously over a 10 s window."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_SECONDS = 10.0


def documented_cost(base: int, has_select: bool, has_expand: bool, small_top: bool = False) -> int:
    """A cost by throttling-limits.md's identity and access table: the path's base cost, -1
    with $select, +1 with $expand, -1 with a $top below 20; never below 1."""
    return max(1, base - int(has_select) + int(has_expand) - int(small_top))


def list_users_cost(has_select: bool, has_expand: bool) -> int:
    """Graph's documented cost of GET /users: 2, -1 with $select, +1 with $expand, min 1."""
    return documented_cost(2, has_select, has_expand)


@dataclass
class Decision:
    """Outcome of a charge: allowed, or the seconds until enough units have refilled."""

    allowed: bool
    retry_after: int
    used_fraction: float  # of the tightest bucket involved, after the charge


class TokenBucket:
    """`budget` RU per 10 s; starts full; refills at budget/10 RU per second."""

    def __init__(self, budget: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(budget)
        self.rate = self.capacity / WINDOW_SECONDS
        self.tokens = self.capacity
        self._clock = clock
        self._last = clock()

    def refill(self) -> None:
        now = self._clock()
        self.tokens = min(self.capacity, self.tokens + (now - self._last) * self.rate)
        self._last = now

    def wait_for(self, cost: float) -> float:
        """Seconds until `cost` units are available (0 if they are now)."""
        missing = min(cost, self.capacity) - self.tokens
        return 0.0 if missing <= 0 else missing / self.rate

    def used_fraction(self) -> float:
        return 1.0 - self.tokens / self.capacity


class Throttle:
    """The app+tenant bucket for every request, a separate one for auth-method reads and one
    for requests that select signInActivity."""

    def __init__(
        self,
        budget: float,
        auth_budget: float,
        signin_budget: float = 8000.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.main = TokenBucket(budget, clock)
        self.auth = TokenBucket(auth_budget, clock)
        self.signin = TokenBucket(signin_budget, clock)

    def _buckets(self, auth_method: bool, signin: bool) -> list[TokenBucket]:
        buckets = [self.main]
        if auth_method:
            buckets.append(self.auth)
        if signin:
            buckets.append(self.signin)
        return buckets

    def used_fraction(self, auth_method: bool, signin: bool = False) -> float:
        """How much of the tightest bucket a request of this kind draws on is used now."""
        buckets = self._buckets(auth_method, signin)
        for b in buckets:
            b.refill()
        return max(max(b.used_fraction() for b in buckets), 0.0)

    def charge(self, cost: int, auth_method: bool, signin: bool = False) -> Decision:
        """Take `cost` units from the buckets involved, all or nothing."""
        buckets = self._buckets(auth_method, signin)
        wait = 0.0
        for b in buckets:
            b.refill()
            wait = max(wait, b.wait_for(cost))
        if wait > 0:
            used = max(b.used_fraction() for b in buckets)
            return Decision(False, max(1, math.ceil(wait)), used)
        for b in buckets:
            b.tokens -= cost
        return Decision(True, 0, max(b.used_fraction() for b in buckets))
