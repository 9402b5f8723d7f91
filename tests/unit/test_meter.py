"""graph/meter.py: each invocation counts its own Graph usage, its child tasks' included, and a
row saves each usage once."""

from __future__ import annotations

import asyncio

from userexport.graph import GraphUsage, meter, metered


async def test_concurrent_invocations_count_apart_and_their_tasks_count_in():
    async def invocation(requests: int) -> GraphUsage:
        with metered() as usage:

            async def batch() -> None:
                await asyncio.sleep(0)
                meter.count(requests=1, resource_units=20)

            await asyncio.gather(*(batch() for _ in range(requests)))
            meter.count(throttled=1)
            return GraphUsage(usage.requests, usage.throttled, usage.resource_units)

    first, second = await asyncio.gather(invocation(3), invocation(5))
    assert first == GraphUsage(3, 1, 60) and second == GraphUsage(5, 1, 100)


def test_nothing_is_counted_outside_an_invocation():
    meter.count(requests=7)
    assert meter.saved(None) == GraphUsage().to_json()


def test_a_row_saves_each_usage_once():
    with metered():
        meter.count(requests=2, throttled=1, resource_units=4)
        recorded = meter.saved({"graphRequests": 10, "throttled": 0, "resourceUnits": 10})
        assert recorded == {"graphRequests": 12, "throttled": 1, "resourceUnits": 14}
        assert meter.saved(recorded) == recorded  # nothing new since


def test_what_is_not_saved_yet_is_pending():
    with metered():
        meter.count(requests=1, resource_units=1)
        assert meter.pending() == GraphUsage(1, 0, 1)
        meter.saved(None)
        assert meter.pending() == GraphUsage()
    assert meter.pending() == GraphUsage()
