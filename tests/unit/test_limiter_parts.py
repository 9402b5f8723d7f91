"""The limiter's parts, each alone: concurrency, the pause, the bucket mirror, what was served,
latency, and what the headers say."""

from __future__ import annotations

import asyncio

import pytest

from userexport.graph.bucket import BURST, WINDOW, BucketMirror, ServedLog
from userexport.graph.concurrency import Concurrency
from userexport.graph.headers import about_budget, resource_units, retry_after_seconds, used_share
from userexport.graph.latency import Latency
from userexport.graph.pause import Pause


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_concurrency_doubles_per_round_trip_until_throttled_then_adds_one_per_run() -> None:
    c = Concurrency(initial=4, maximum=64)
    for _ in range(4):  # a round trip of 4 clean answers: 8 at once
        c.clean()
    assert c.limit == 8
    c.halve()
    assert c.limit == 4
    for _ in range(3):
        c.clean()
    assert c.limit == 4, "after the slow start, one more only after `limit` clean answers"
    c.clean()
    assert c.limit == 5
    c.hold()
    for _ in range(4):
        c.clean()
    assert c.limit == 5, "a failure restarts the run of clean answers"


def test_concurrency_never_goes_under_its_minimum_or_over_its_maximum() -> None:
    c = Concurrency(initial=2, minimum=1, maximum=3)
    c.halve()
    c.halve()
    assert c.limit == 1
    c = Concurrency(initial=2, maximum=3)
    for _ in range(10):
        c.clean()
    assert c.limit == 3


async def test_concurrency_gives_a_slot_only_when_there_is_room_and_callers_are_not_paused() -> (
    None
):
    c = Concurrency(initial=1)
    assert not await c.take(lambda: False), "paused: no slot"
    assert await c.take(lambda: True)
    waiting = asyncio.ensure_future(c.take(lambda: True))
    await asyncio.sleep(0)
    assert not waiting.done(), "no room: it waits for a slot to be given back"
    await c.give_back()
    assert await waiting is False  # woken: it asks again
    assert await c.take(lambda: True) and c.in_flight == 1


async def test_the_pause_steps_once_per_spell_and_honours_retry_after() -> None:
    clock = Clock()
    pause = Pause(base_delay=1.0, max_delay=60.0, clock=clock, sleep=clock.sleep)
    assert pause.step() and pause.in_a_row == 1
    assert pause.until(7.0) == 7.0 and pause.remaining() == 7.0
    assert not pause.step(), "an answer sent before the pause adds no step"
    assert pause.resume_in() == 7
    await pause.wait()
    assert pause.over() and clock.now == 107.0
    assert pause.step() and pause.in_a_row == 2
    wait = pause.until(None)
    assert 1.0 <= wait <= 2.0, "without Retry-After, the second step's backoff with jitter"


def test_the_backoff_is_capped_and_jittered() -> None:
    pause = Pause(base_delay=1.0, max_delay=60.0, clock=Clock(), sleep=Clock().sleep)
    waits = [pause.jittered(20) for _ in range(50)]
    assert all(30.0 <= w <= 60.0 for w in waits) and len(set(waits)) > 1


def test_the_mirror_allows_a_burst_then_paces() -> None:
    clock = Clock()
    mirror = BucketMirror(clock)
    assert mirror.wait() == 0.0, "no pace learnt: nothing to wait for"
    mirror.rate = 10.0
    mirror.fill()
    for _ in range(int(BURST * 10)):
        assert mirror.wait() == 0.0
        mirror.debit(1)
    mirror.debit(10)
    assert mirror.wait() == pytest.approx(1.0), "10 RU over at 10 RU/s"
    clock.now += 0.5
    assert mirror.wait() == pytest.approx(0.5)
    mirror.debit(-10)
    assert mirror.wait() == 0.0, "a turn given back"
    clock.now += 100
    mirror.spent()
    assert mirror.wait() == 0.0, "spent: no room left, but none owed"
    mirror.debit(5)
    assert mirror.wait() == pytest.approx(0.5)


def test_what_was_served_gives_the_rate_over_the_window_and_the_bucket_rate() -> None:
    clock = Clock()
    served = ServedLog(clock)
    assert served.rate() is None and served.burst_rate(1.0) is None
    for _ in range(10):
        served.add(20)
        clock.now += 0.5
    # 200 RU over 5 s while the bucket went from full to its limit: rate x (5 + 10) = 200.
    assert served.burst_rate(1.0) == pytest.approx(200 / (5 + WINDOW))
    assert served.rate() == pytest.approx(200 / 5)
    assert served.since(clock.now - 1.1) == 40  # the last two answers, 0.5 s apart
    clock.now += WINDOW + 1
    assert served.rate() is None, "older than the window: forgotten"


def test_latency_is_a_moving_average_shared_once_per_change() -> None:
    latency = Latency()
    latency.listed(0, 5.0)
    assert latency.seconds_per_user is None and latency.to_share() is None
    latency.listed(100, 1.0)
    latency.listed(100, 2.0)
    assert latency.seconds_per_user == pytest.approx(0.8 * 0.01 + 0.2 * 0.02)
    assert latency.to_share() == pytest.approx(0.012)
    assert latency.to_share() is None


@pytest.mark.parametrize(
    ("headers", "used", "budget", "cost", "retry"),
    [
        ({}, None, True, 1, None),
        ({"X-MS-Throttle-Limit-Percentage": "85"}, 0.85, True, 1, None),
        ({"x-ms-throttle-limit-percentage": {"1.2"}}, 1.2, True, 1, None),
        ({"x-ms-throttle-limit-percentage": "nan"}, None, True, 1, None),
        ({"x-ms-throttle-information": "CPULimitExceeded"}, None, False, 1, None),
        ({"x-ms-throttle-information": "ResourceUnitLimitExceeded"}, None, True, 1, None),
        ({"x-ms-resource-unit": "2", "Retry-After": "7"}, None, True, 2, 7.0),
        ({"x-ms-resource-unit": "x", "retry-after": "Wed, 21 Oct 2026"}, None, True, 1, None),
        ({"retry-after": "99999"}, None, True, 1, 3600.0),
    ],
)
def test_what_the_headers_say(
    headers: dict[str, object], used: float | None, budget: bool, cost: int, retry: float | None
) -> None:
    assert used_share(headers) == (pytest.approx(used) if used is not None else None)
    assert about_budget(headers) is budget
    assert resource_units(headers) == cost
    assert retry_after_seconds(headers) == retry
