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

A throttled answer also pauses every caller (pause.py). Server errors pause and halve the same
way, but teach no rate: an outage says nothing about a budget.

The parts, each testable alone: concurrency.py (how many at once), bucket.py (the mirror of
Graph's bucket and what it served), pause.py (the shared pause and backoff), latency.py (per
user, for estimates). This class steers the pace from Graph's answers and shares it.

With a PaceBoard (pace.py), the limiter shares its bucket with the other instances: before its
first request and every few seconds while it sends, it publishes its pace, reads the bucket's
learnt rate and how many instances draw on it, and keeps to its share; what it learns about the
bucket it writes back, so an instance that starts later starts at the known pace.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from .. import budget
from .bucket import WINDOW, BucketMirror, ServedLog
from .concurrency import Concurrency
from .headers import WARN
from .latency import Latency
from .pace import PaceBoard
from .pause import Pause

log = logging.getLogger(__name__)

STEER_SECONDS = 1.0  # the pace changes at most this often
SYNC_SECONDS = 5.0  # how often an instance shares its pace while it sends
CEILING = 1.25  # an instance goes at most this far over its share of the learnt rate


def _forget(task: asyncio.Future[None]) -> None:
    """A background sync's outcome: its failures are storage's, already logged (pacestore.py)."""
    if not task.cancelled():
        task.exception()


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
        self._clock, self._sleep = clock, sleep
        self.concurrency = Concurrency(initial=initial, minimum=minimum, maximum=maximum)
        self.pause = Pause(base_delay=base_delay, max_delay=max_delay, clock=clock, sleep=sleep)
        self.mirror = BucketMirror(clock)
        self.served_log = ServedLog(clock)
        self.latency = Latency()
        self._congested_at = float("-inf")
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
        self.last_success = float("-inf")  # when Graph last served a request cleanly

    @property
    def limit(self) -> int:
        """Requests at once."""
        return self.concurrency.limit

    @property
    def rate(self) -> float | None:
        """The pace, RU per second (None: not learnt yet)."""
        return self.mirror.rate

    @rate.setter
    def rate(self, value: float | None) -> None:
        self.mirror.rate = value

    @property
    def seconds_per_user(self) -> float | None:
        """Listing pages: latency per user."""
        return self.latency.seconds_per_user

    async def __aenter__(self) -> AdaptiveLimiter:
        await self._acquire(lambda: 1)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.concurrency.give_back()

    @asynccontextmanager
    async def slot(self, cost: int) -> AsyncIterator[None]:
        """A turn for a request that costs `cost` RU."""
        await self._acquire(lambda: cost)
        try:
            yield
        finally:
            await self.concurrency.give_back()

    @asynccontextmanager
    async def batch(self, wanted: int, *, most: int) -> AsyncIterator[int]:
        """A turn for a $batch of up to `wanted` requests of 1 RU; yields how many to send:
        what two seconds of the pace allow (at most `most`), as known when the turn comes, so
        a small budget (5 RU per 10 s) is not spent by one batch and throttled by the next."""
        size = await self._acquire(lambda: min(wanted, self.batch_size(most)))
        try:
            yield size
        finally:
            await self.concurrency.give_back()

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
            await self.pause.wait()
            if await self.concurrency.take(self.pause.over):
                break
        try:  # a slot taken must be given back, whatever stops the wait (OutOfTime, a cancel)
            self.served_log.sent()
            cost = cost_of()
            wait = self.mirror.wait()
            budget.check(wait)  # before the debit: a turn not taken costs nothing
            self.mirror.debit(cost)
            try:
                if wait:
                    await self._sleep(wait)
            except BaseException:  # cancelled while waiting: nothing was sent
                self.mirror.debit(-cost)
                raise
        except BaseException:
            await self.concurrency.give_back()
            raise
        return cost

    async def _sync(self) -> None:
        """Publishes this instance's pace, reads the bucket's, and keeps to its share."""
        assert self._shared is not None
        await self._shared.publish(self.bucket, rate=self.rate, served=self.served_log.rate() or 0)
        shared = await self._shared.read(self.bucket)
        if shared is None:
            return
        learn: dict[str, float] = {}
        if (per_user := self.latency.to_share()) is not None:
            learn["secondsPerUser"] = per_user
        if self._learnt and self.rate:
            # Everyone slows down at the same warnings: their paces together are the bucket's.
            learn["rate"] = shared.paces  # this instance's pace, as just published, included
            self._learnt = False
        elif shared.bucket_rate:
            share = shared.bucket_rate / shared.instances
            if self.rate is None:
                self.rate = share  # start at the known pace, not with a burst: unless
                if await self._shared.claim_burst(self.bucket):  # the bucket is full, and ours
                    self.mirror.fill()
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
        the pace."""
        if not self.pause.step():
            self.concurrency.hold()
        else:
            self.concurrency.halve()
            if learn_rate:
                self._warned = True
                if self.rate is None:
                    self._learn(self.served_log.burst_rate(used if used is not None else 1.0))
                else:
                    self.rate *= 0.8
                    self._learnt = True
                self.mirror.spent()
        return self.pause.until(retry_after)

    def congested(self) -> None:
        """A 429 that is not about the budget (CPU, data volume: headers.about_budget): fewer
        requests at once (halved, at most once a STEER_SECONDS, so a burst of such answers is
        one step), nobody paused and no rate learnt; the throttled request waits alone."""
        now = self._clock()
        if now - self._congested_at >= STEER_SECONDS:
            self._congested_at = now
            self.concurrency.halve()
        else:
            self.concurrency.hold()

    async def backoff(self, attempt: int, retry_after: float | None = None) -> None:
        """Waits before retrying something that failed on its own; nobody else pauses."""
        await self.pause.backoff(attempt, retry_after)

    def now(self) -> float:
        return self._clock()

    def resume_in(self) -> int:
        return self.pause.resume_in()

    def served(self, cost: int) -> None:
        """Records requests Graph served (part of a batch, say), for the served rate."""
        if cost:
            self.last_success = self._clock()
            self.served_log.add(cost)

    def succeeded(self, cost: int = 1, *, used: float | None = None) -> None:
        """Records a clean answer worth `cost` RU, and the budget's share Graph said was used;
        steers the pace and probes the limit upward."""
        self.pause.in_a_row = 0
        self.served(cost)
        self._steer(used)
        self.concurrency.clean()

    def listed(self, users: int, seconds: float) -> None:
        """A page of `users` took `seconds` to answer: what the estimate of a listing uses."""
        self.latency.listed(users, seconds)

    def _steer(self, used: float | None) -> None:
        now = self._clock()
        if used is not None and used >= WARN:  # the bucket runs low: slow down before a 429
            self._warned = True
            self.concurrency.warned()
            self.mirror.spent()
            if self.rate is None:
                self._learn(self.served_log.burst_rate(used))
                self._warning = (now, used)
            elif now - self._warning[0] > 5 * STEER_SECONDS:
                self._warning = (now, used)  # a new spell of warnings: its first reading
            elif now - self._warning[0] >= STEER_SECONDS:
                self._slow_down(now, used)
            return
        self._warning = (float("-inf"), 0.0)
        if self.rate and now - self._steered_at >= STEER_SECONDS:
            self._steered_at = now
            served = self.served_log.rate()
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
            served = self.served_log.since(since) / (now - since)
            target = served / (1 + WINDOW * slope)
            self.rate = max(0.8 * self.rate, min(self.rate, target))
            self._learnt = True
        elif used >= 0.95:  # holding just under the limit: leave some room
            self.rate *= 0.95
            self._learnt = True
        self._warning, self._steered_at = (now, used), now

    def _learn(self, rate: float | None) -> None:
        if rate:
            self.rate, self._learnt = rate, True
            self.mirror.spent()
