"""An adaptive limiter for one Graph throttling bucket: it paces before the 429, shares what it
learnt with the other instances, backs off on 429 and probes upward again.

Two controls, both learnt from Graph's answers. A pace (resource units per second), unknown
until Graph first says the bucket runs low: `x-ms-throttle-limit-percentage` on an answer (sent
past 80 % of the budget) or a 429. Graph's buckets refill over 10 s, so what this instance was
served since the bucket was last full gives the bucket's rate (served / (elapsed + 10 x used)).
From then on, while answers say the bucket runs low, how fast its use rises says by how much
the callers together overshoot its rate, and the pace comes down by as much (pace.py's peers
do the same, so together they land on the rate); a second of answers without the header, at
a pace that is used, raises the pace by 5 %. The bucket stays just under its limit: no 429,
no refill wasted. A
concurrency that doubles every round trip until Graph first throttles (a slow start), then
halves on a throttled answer and grows by one after a run of clean ones.

A throttled answer also pauses every caller until its Retry-After has passed (or, without one,
an exponential backoff with jitter), so parallel batches do not stampede a spent bucket. Server
errors pause and halve the same way, but teach no rate: an outage says nothing about a budget.
Every wait counts against the invocation's time budget (budget.check).

With a PaceBoard (pace.py), the limiter shares its bucket with the other instances: before its
first request and every few seconds while it sends, it publishes its pace, reads the bucket's
learnt rate and how many instances draw on it, and keeps to its share; what it learns about the
bucket it writes back, so an instance that starts later starts at the known pace.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager

from .. import budget
from .pace import PaceBoard

log = logging.getLogger(__name__)

_WINDOW = 10.0  # seconds: Graph's buckets refill over 10 s, and rates are measured over it
WARN = 0.8  # Graph sends x-ms-throttle-limit-percentage past this share of the budget
STEER_SECONDS = 1.0  # the pace changes at most this often
SYNC_SECONDS = 5.0  # how often an instance shares its pace while it sends
BURST = 8.0  # seconds of pace a full bucket allows at once (Graph warns past 80 % of 10 s)
CEILING = 1.25  # an instance goes at most this far over its share of the learnt rate


def _forget(task: asyncio.Future[None]) -> None:
    """A background sync's outcome: its failures are storage's, already logged (pacestore.py)."""
    if not task.cancelled():
        task.exception()


def used_share(headers: Mapping[str, object] | None) -> float | None:
    """x-ms-throttle-limit-percentage (any casing): the share of the budget used, 0.8 to 1.8;
    None when absent (under 80 %) or not a number."""
    for name, value in (headers or {}).items():
        if name.lower() == "x-ms-throttle-limit-percentage":
            if isinstance(value, set | list | tuple):  # kiota's HeadersCollection keeps sets
                value = next(iter(value), None)
            try:
                used = float(str(value))
            except ValueError:
                return None
            if not math.isfinite(used):
                return None
            return used / 100 if used > 5 else used  # a percentage written as 85
    return None


def about_budget(headers: Mapping[str, object] | None) -> bool:
    """Whether a 429 is about the resource-unit budget, the only throttling a pace can learn
    from. `x-ms-throttle-information` gives the reason and "can have any value", such as
    CPULimitExceeded or WriteLimitExceeded, and Graph also throttles on a tenant's data volume
    (throttling-limits.md): those say nothing about the bucket's rate. Absent, it is assumed
    to be the budget."""
    for name, value in (headers or {}).items():
        if name.lower() == "x-ms-throttle-information":
            if isinstance(value, set | list | tuple):
                value = next(iter(value), None)
            text = str(value or "").strip()
            return not text or "resourceunit" in text.lower()
    return True


class AdaptiveLimiter:
    def __init__(
        self,
        *,
        bucket: str = "listing",
        shared: PaceBoard | None = None,
        initial: int = 4,
        minimum: int = 1,
        maximum: int = 64,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.bucket, self._shared = bucket, shared
        self.limit = initial
        self._rate: float | None = None  # RU per second; None: not learnt yet
        # A mirror of Graph's bucket at this instance's pace: a burst is allowed while Graph's
        # would have room (BURST seconds of pace, 80 % of its 10 s), pacing after that.
        self._tokens, self._tokens_at = 0.0, clock()
        self._minimum, self._maximum = minimum, maximum
        self._base_delay, self._max_delay = base_delay, max_delay
        self._clock, self._sleep = clock, sleep
        self._in_flight = 0
        self._clean = 0  # clean answers since the limit last changed
        self._slow_start = True  # until the first throttled answer, the limit doubles
        self._throttled_in_a_row = 0
        self._congested_at = float("-inf")
        self._resume_at = 0.0
        self._served: deque[tuple[float, int]] = deque()  # (when, RU) served cleanly
        self._first_sent: float | None = None
        # The first warning of the current spell (when, share used): what the next one, a
        # second or more later, is compared with.
        self._warning: tuple[float, float] = (float("-inf"), 0.0)
        self._steered_at = float("-inf")
        self._warned = False  # Graph said the bucket ran low since the last sync
        self._learnt = False  # ... and this instance slowed down: the bucket's rate to share
        self._share: float | None = None  # this instance's share of the bucket, when known
        self._sync_at = 0.0
        self._synced = 0
        self._syncing: asyncio.Future[None] | None = None
        self.seconds_per_user: float | None = None  # listing pages: latency per user
        self._latency_fresh = False
        self.last_success = float("-inf")  # when Graph last served a request cleanly
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> AdaptiveLimiter:
        await self._acquire(lambda: 1)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._release()

    @asynccontextmanager
    async def slot(self, cost: int) -> AsyncIterator[None]:
        """A turn for a request that costs `cost` RU."""
        await self._acquire(lambda: cost)
        try:
            yield
        finally:
            await self._release()

    @asynccontextmanager
    async def batch(self, wanted: int, *, most: int) -> AsyncIterator[int]:
        """A turn for a $batch of up to `wanted` requests of 1 RU; yields how many to send:
        what two seconds of the pace allow (at most `most`), as known when the turn comes, so
        a small budget (5 RU per 10 s) is not spent by one batch and throttled by the next."""
        size = await self._acquire(lambda: min(wanted, self.batch_size(most)))
        try:
            yield size
        finally:
            await self._release()

    def batch_size(self, most: int) -> int:
        return most if not self.rate else max(1, min(most, int(self.rate * 2)))

    async def _acquire(self, cost_of: Callable[[], int]) -> int:
        if self._shared is not None and self._clock() >= self._sync_at:
            self._sync_at = self._clock() + (1.0 if self._synced < 2 else SYNC_SECONDS)
            self._synced += 1
            # In the background, so callers keep their order; but the first time, everyone
            # waits for what the other instances know before sending anything.
            self._syncing = asyncio.ensure_future(self._sync())
            if self._synced > 1:
                self._syncing.add_done_callback(_forget)
        if self._synced == 1 and self._syncing is not None and not self._syncing.done():
            await asyncio.shield(self._syncing)
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
            now = self._clock()
            if self._first_sent is None:
                self._first_sent = now
            cost = cost_of()
            if self._rate:
                self._refill()
                wait = max(0.0, -self._tokens / self._rate)
                budget.check(wait)  # before the debit: a turn not taken costs nothing
                self._tokens -= cost
                try:
                    if wait:
                        await self._sleep(wait)
                except BaseException:  # cancelled while waiting: nothing was sent
                    self._tokens += cost
                    raise
        except BaseException:
            await self._release()
            raise
        return cost

    async def _release(self) -> None:
        async with self._changed:
            self._in_flight -= 1
            self._changed.notify_all()

    async def _sync(self) -> None:
        """Publishes this instance's pace, reads the bucket's, and keeps to its share."""
        assert self._shared is not None
        await self._shared.publish(self.bucket, rate=self.rate, served=self._served_rate() or 0)
        shared = await self._shared.read(self.bucket)
        if shared is None:
            return
        learn: dict[str, float] = {}
        if self._latency_fresh and self.seconds_per_user:
            learn["secondsPerUser"], self._latency_fresh = self.seconds_per_user, False
        if self._learnt and self.rate:
            # Everyone slows down at the same warnings: their paces together are the bucket's.
            learn["rate"] = shared.paces  # this instance's pace, as just published, included
            self._learnt = False
        elif shared.bucket_rate:
            share = shared.bucket_rate / shared.instances
            if self.rate is None:
                self.rate = share  # start at the known pace, not with a burst: unless
                if await self._shared.claim_burst(self.bucket):  # the bucket is full, and ours
                    self._tokens = BURST * shared.bucket_rate
            elif not self._warned and self.rate >= CEILING * share:
                learn["rate"] = shared.bucket_rate * 1.1  # no warnings at the ceiling: more
            self.rate = min(self.rate, CEILING * share)
            self._share = share
        self._warned = False
        log.info(
            "Graph pace %s: %s RU/s, %d instance(s), bucket %s RU/s, limit %d.",
            self.bucket,
            f"{self.rate:.1f}" if self.rate else "unknown",
            shared.instances,
            f"{shared.bucket_rate:.1f}" if shared.bucket_rate else "unknown",
            self.limit,
        )
        if learn:
            await self._shared.learn(self.bucket, **learn)

    def throttled(
        self, retry_after: float | None, *, learn_rate: bool = True, used: float | None = None
    ) -> float:
        """Records a throttled answer (429), or with learn_rate=False a server error or a lost
        connection; returns how long every caller now pauses. Answers that arrive while callers
        are already paused were sent before it: they add no step to the backoff, the limit or
        the pace, or a burst of failures at one moment would escalate like a long outage."""
        self._clean, self._slow_start = 0, False
        if self._clock() >= self._resume_at:
            self._throttled_in_a_row += 1
            self.limit = max(self._minimum, self.limit // 2)
            if learn_rate:
                self._warned = True
                if self.rate is None:
                    self._learn(self._burst_rate(used if used is not None else 1.0))
                else:
                    self.rate *= 0.8
                    self._learnt = True
                self._spent()
        if retry_after is None:
            retry_after = self._jittered(self._throttled_in_a_row)
        self._resume_at = max(self._resume_at, self._clock() + retry_after)
        return retry_after

    def congested(self) -> None:
        """A 429 that is not about the budget (CPU, data volume: limiter.about_budget): fewer
        requests at once (halved, at most once a STEER_SECONDS, so a burst of such answers is
        one step), nobody paused and no rate learnt; the throttled request waits alone."""
        now = self._clock()
        self._clean, self._slow_start = 0, False
        if now - self._congested_at >= STEER_SECONDS:
            self._congested_at = now
            self.limit = max(self._minimum, self.limit // 2)

    async def backoff(self, attempt: int, retry_after: float | None = None) -> None:
        """Waits before retrying something that failed on its own (a few items of a batch that
        Graph otherwise served): Retry-After, or exponential backoff with jitter. Unlike
        throttled(), nobody else pauses."""
        if retry_after is None:
            retry_after = self._jittered(attempt)
        budget.check(retry_after)
        await self._sleep(retry_after)

    def _jittered(self, attempt: int) -> float:
        """Exponential backoff for the nth attempt, capped, with "equal jitter" (half fixed,
        half random) so that callers throttled together do not come back together."""
        ceiling = min(self._max_delay, self._base_delay * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)

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
            if self._first_sent is None:
                self._first_sent = self._clock()

    def succeeded(self, cost: int = 1, *, used: float | None = None) -> None:
        """Records a clean answer worth `cost` RU, and the budget's share Graph said was used;
        steers the pace and probes the limit upward."""
        self._throttled_in_a_row = 0
        self.served(cost)
        self._steer(used)
        self._clean += 1
        if self._slow_start:  # a clean answer each: twice the limit per round trip
            self.limit = min(self._maximum, self.limit + 1)
        elif self._clean >= self.limit and self.limit < self._maximum:
            self.limit += 1
            self._clean = 0

    def listed(self, users: int, seconds: float) -> None:
        """A page of `users` took `seconds` to answer: what the estimate of a listing uses."""
        if users:
            per_user = seconds / users
            old = self.seconds_per_user
            self.seconds_per_user = per_user if old is None else 0.8 * old + 0.2 * per_user
            self._latency_fresh = True

    def _steer(self, used: float | None) -> None:
        now = self._clock()
        if used is not None and used >= WARN:  # the bucket runs low: slow down before a 429
            self._warned, self._slow_start = True, False
            self._spent()
            if self.rate is None:
                self._learn(self._burst_rate(used))
                self._warning = (now, used)
            elif now - self._warning[0] > 5 * STEER_SECONDS:
                self._warning = (now, used)  # a new spell of warnings: its first reading
            elif now - self._warning[0] >= STEER_SECONDS:
                self._slow_down(now, used)
            return
        self._warning = (float("-inf"), 0.0)
        if self.rate and now - self._steered_at >= STEER_SECONDS:
            self._steered_at = now
            served = self._served_rate()
            if served and served >= 0.8 * self.rate:  # only a pace that is used is probed
                ceiling = CEILING * self._share if self._share else math.inf
                self.rate = min(self.rate * 1.05, max(ceiling, self.rate))

    def _slow_down(self, now: float, used: float) -> None:
        """The bucket's use rose from one reading to this one: the callers together take
        more than its rate. Over 10 s buckets, use rising by `slope` per second means they
        take (1 + 10 x slope) times its rate, so this instance divides its pace by that."""
        assert self.rate is not None
        since, before = self._warning
        slope = (used - before) / (now - since)
        if slope > 0:
            served = sum(cost for at, cost in self._served if at > since) / (now - since)
            target = served / (1 + _WINDOW * slope)
            self.rate = max(0.8 * self.rate, min(self.rate, target))
            self._learnt = True
        elif used >= 0.95:  # holding just under the limit: leave some room
            self.rate *= 0.95
            self._learnt = True
        self._warning, self._steered_at = (now, used), now

    def _learn(self, rate: float | None) -> None:
        if rate:
            self.rate, self._learnt = rate, True
            self._spent()

    @property
    def rate(self) -> float | None:
        """The pace, RU per second (None: not learnt yet)."""
        return self._rate

    @rate.setter
    def rate(self, value: float | None) -> None:
        self._refill()  # what the old pace earned is kept
        self._rate = value

    def _refill(self) -> None:
        now = self._clock()
        if self._rate:
            earned = self._tokens + (now - self._tokens_at) * self._rate
            self._tokens = min(BURST * self._rate, earned)
        self._tokens_at = now

    def _spent(self) -> None:
        """Graph says its bucket has no room left: neither has the mirror."""
        self._refill()
        self._tokens = min(self._tokens, 0.0)

    def _burst_rate(self, used: float) -> float | None:
        """The bucket's refill rate from what this instance was served since it was full: over
        t seconds it served S = used x 10 x rate + t x rate. Others drawing on it too make
        this an underestimate, which the probing corrects."""
        now = self._clock()
        self._served_rate()  # drops what is older than the window
        served = sum(cost for _, cost in self._served)
        if not served or self._first_sent is None:
            return None
        elapsed = min(max(now - self._first_sent, 0.0), _WINDOW)
        return served / (elapsed + _WINDOW * min(max(used, WARN), 1.0))

    def _served_rate(self) -> float | None:
        """RU per second served cleanly over the last window, once there is one."""
        now = self._clock()
        while self._served and self._served[0][0] < now - _WINDOW:
            self._served.popleft()
        if not self._served:
            return None
        span = max(now - self._served[0][0], 1.0)
        return sum(cost for _, cost in self._served) / span
