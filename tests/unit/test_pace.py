"""The limiter's use of the shared pace (pace.py), with a fake store and a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from userexport.graph import SharedPace
from userexport.graph.bucket import BURST
from userexport.graph.limiter import CEILING, AdaptiveLimiter

from .test_authmethods import FakeClock


class FakeStore:
    """What pace.PaceStore answers: the bucket's learnt rate and the active instances."""

    def __init__(self, rate: float | None, instances: int, *, burst: bool = False) -> None:
        self.rate, self.instances, self.burst = rate, instances, burst
        self.published: list[float | None] = []
        self.learnt: list[dict[str, float]] = []

    async def publish(self, bucket: str, *, rate: float | None, served: float) -> None:
        self.published.append(rate)

    async def read(self, bucket: str) -> SharedPace:
        paces = sum(r or 0.0 for r in self.published[-1:])
        return SharedPace(self.rate, self.instances, paces)

    async def claim_burst(self, bucket: str) -> bool:
        return self.burst

    async def learn(self, bucket: str, **values: float) -> None:
        self.learnt.append(values)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def test_a_new_instance_starts_at_its_share_without_a_burst(clock):
    store = FakeStore(100.0, 4)
    limiter = AdaptiveLimiter(bucket="auth", shared=store, clock=clock.clock, sleep=clock.sleep)  # type: ignore[arg-type]
    async with limiter.slot(20):
        pass
    assert limiter.rate == pytest.approx(25.0), "100 RU/s shared by 4 instances"
    async with limiter.slot(20):  # no burst: the first 20 RU wait their turn at 25 RU/s
        pass
    assert clock.now == pytest.approx(20 / 25)


async def test_the_first_instance_on_an_idle_bucket_spends_it_at_once(clock):
    store = FakeStore(100.0, 1, burst=True)
    limiter = AdaptiveLimiter(bucket="auth", shared=store, clock=clock.clock, sleep=clock.sleep)  # type: ignore[arg-type]
    for _ in range(int(BURST * 100 / 20)):
        async with limiter.slot(20):
            pass
    assert clock.now == pytest.approx(0.0), "8 s of pace at once, as Graph's full bucket allows"


async def test_what_an_instance_learns_is_written_for_the_others(clock):
    store = FakeStore(None, 1)
    limiter = AdaptiveLimiter(bucket="auth", shared=store, clock=clock.clock, sleep=clock.sleep)  # type: ignore[arg-type]
    async with limiter.slot(1):
        pass
    limiter.served(500)
    limiter.throttled(1.0)  # 500 RU in no time, then a 429: about 50 RU/s
    clock.now += 5
    async with limiter.slot(1):
        pass
    await settle()  # later syncs run in the background
    assert store.learnt and store.learnt[-1]["rate"] == pytest.approx(limiter.rate)
    assert limiter.rate == pytest.approx(50.0)


async def test_an_instance_keeps_to_its_share_when_others_arrive(clock):
    store = FakeStore(100.0, 1)
    limiter = AdaptiveLimiter(bucket="auth", shared=store, clock=clock.clock, sleep=clock.sleep)  # type: ignore[arg-type]
    async with limiter.slot(1):
        pass
    assert limiter.rate == pytest.approx(100.0)
    store.instances = 4
    clock.now += 10
    async with limiter.slot(1):
        pass
    await settle()  # later syncs run in the background
    assert limiter.rate == pytest.approx(CEILING * 25.0)


async def test_a_turn_the_budget_cannot_wait_for_costs_nothing(clock):
    """Out of time before its turn, a caller leaves the pace as it found it: the next
    invocation does not inherit a debt for requests never sent."""
    from userexport import budget

    limiter = AdaptiveLimiter(clock=clock.clock, sleep=clock.sleep)
    limiter.served(10)
    limiter.throttled(0.0)  # learns 1 RU/s, the mirror empty
    async with limiter.slot(5):
        pass
    for _ in range(10):
        with budget.budget(1, clock=clock.clock), pytest.raises(budget.OutOfTime):
            async with limiter.slot(5):
                pass
    clock.now += 5  # the 5 RU sent are paid for
    with budget.budget(1, clock=clock.clock):
        async with limiter.slot(5):
            pass
