"""Authentication-method batches and the adaptive limiter, with a fake Graph and a fake clock."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from kiota_abstractions.request_information import RequestInformation

from userexport import budget
from userexport.graph import (
    AdaptiveLimiter,
    AuthMethodsReader,
    GraphError,
    GraphReader,
    LookupsCutShort,
)


class FakeGraph:
    """Answers each $batch from a script: per request url, the statuses to give in turn."""

    def __init__(self, script: dict[str, list[tuple[int, dict[str, str]]]]) -> None:
        self.script = script
        self.batches: list[list[str]] = []

    async def send(self, info: Any) -> dict[str, Any]:
        requests = orjson.loads(info.content)["requests"]
        assert len(requests) <= 20
        self.batches.append([r["url"] for r in requests])
        responses = []
        for r in reversed(requests):  # Graph may answer in any order
            status, headers = self.script[r["url"]].pop(0)
            body = (
                {"value": [{"emailAddress": "a@example.com"}]}
                if status == 200
                else {"error": {"code": f"E{status}", "message": "x"}}
            )
            responses.append({"id": r["id"], "status": status, "headers": headers, "body": body})
        return {"responses": responses}


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


PATIENCE = 120.0  # USEREXPORT_STORM_SECONDS


def reader(graph: FakeGraph, clock: FakeClock) -> AuthMethodsReader:
    limiter = AdaptiveLimiter(clock=clock.clock, sleep=clock.sleep)
    return AuthMethodsReader(  # type: ignore[arg-type]
        graph, limiter=limiter, storm_seconds=PATIENCE, wall_clock=clock.clock
    )


def url(user: str) -> str:
    return f"/users/{user}/authentication/emailMethods"


async def test_throttled_items_wait_their_retry_after(clock):
    graph = FakeGraph(
        {
            url("a"): [(200, {})],
            url("b"): [(429, {"Retry-After": "3"}), (200, {})],
            url("c"): [(429, {"retry-after": "7"}), (429, {"Retry-After": "1"}), (200, {})],
        }
    )
    result = await reader(graph, clock).read(["a", "b", "c"], ["emailMethods"])
    assert not result.failures and result.succeeded == 3 and result.throttled == 3
    assert set(result.methods) == {"a", "b", "c"}
    # One RU served before the bucket ran dry: a bucket of about 1 RU (0.1 RU/s), so the
    # retries go one per $batch, at that pace.
    assert graph.batches == [[url("a"), url("b"), url("c")], [url("b")], [url("c")], [url("c")]]
    assert clock.now >= 8.0, "7 s for the longest Retry-After, then 1 s (then the pace)"


async def test_without_retry_after_it_backs_off_exponentially_with_jitter(clock):
    graph = FakeGraph({url("a"): [(429, {})] * 4 + [(200, {})]})
    result = await reader(graph, clock).read(["a"], ["emailMethods"])
    assert result.succeeded == 1
    assert len(clock.sleeps) == 4
    for attempt, waited in enumerate(clock.sleeps, start=1):
        ceiling = 2 ** (attempt - 1)
        assert ceiling / 2 <= waited <= ceiling


async def test_refusals_are_reported_and_server_errors_waited_out(clock):
    graph = FakeGraph(
        {
            url("a"): [(403, {})],
            url("b"): [(503, {"Retry-After": "1"})] * 3 + [(200, {})],
            url("c"): [(500, {}), (502, {}), (504, {}), (200, {})],
        }
    )
    result = await reader(graph, clock).read(["a", "b", "c"], ["emailMethods"])
    assert [(f.user_id, f.status) for f in result.failures] == [("a", 403)]
    assert result.succeeded == 2


async def test_an_outage_of_every_lookup_is_waited_out_not_written_off(clock):
    graph = FakeGraph({url("a"): [(503, {})] * 30})
    with budget.budget(600, clock=clock.clock), pytest.raises(budget.OutOfTime):
        await reader(graph, clock).read(["a"], ["emailMethods"])
    assert len(graph.batches) > 5, "no give-up while nothing succeeds"


async def test_lasting_throttling_runs_out_of_time_instead_of_failing_rows(clock):
    graph = FakeGraph({url("a"): [(429, {"Retry-After": "100"})] * 20})
    with budget.budget(300, clock=clock.clock) as spent, pytest.raises(budget.OutOfTime):
        await reader(graph, clock).read(["a"], ["emailMethods"])
    assert clock.now <= 300, "no wait ran past the deadline"
    assert spent.failing_since is not None and "429" in (spent.last_error or "")


async def test_batches_hold_at_most_20_requests(clock):
    users = [f"u{i}" for i in range(45)]
    script = {url(u): [(200, {})] for u in users}
    script.update({f"/users/{u}/authentication/phoneMethods": [(200, {})] for u in users})
    graph = FakeGraph(script)
    result = await reader(graph, clock).read(users, ["phoneMethods", "emailMethods"])
    assert result.succeeded == 90
    assert sorted(len(b) for b in graph.batches) == [10, 20, 20, 20, 20]


async def test_limiter_halves_on_throttling_and_probes_upward(clock):
    limiter = AdaptiveLimiter(initial=8, maximum=10, clock=clock.clock, sleep=clock.sleep)
    limiter.throttled(2.0)
    assert limiter.limit == 4
    for _ in range(4):
        limiter.succeeded()
    assert limiter.limit == 5
    async with limiter:  # waits out the pause first
        assert clock.now == pytest.approx(2.0)


def test_failures_answered_during_a_pause_do_not_escalate_it(clock):
    """Ten requests in flight that all fail at one moment are one failure, not ten: the
    backoff, the limit and the pace step once (a run of ten would pause up to 60 s)."""
    limiter = AdaptiveLimiter(initial=8, clock=clock.clock, sleep=clock.sleep)
    pauses = [limiter.throttled(None, learn_rate=False) for _ in range(10)]
    assert pauses[0] <= 1.0 and limiter.limit == 4
    assert limiter.resume_in() <= 1
    clock.now += 5  # the pause is over; the next failure is a new burst
    assert 1.0 <= limiter.throttled(None, learn_rate=False) <= 2.0 and limiter.limit == 2


class ScriptedReader(GraphReader):
    """A GraphReader whose sends answer from a script of errors, then a page."""

    def __init__(self, errors: list[GraphError], clock: FakeClock) -> None:
        super().__init__(
            None,  # type: ignore[arg-type]
            limiter=AdaptiveLimiter(clock=clock.clock, sleep=clock.sleep),
        )
        self.errors = errors
        self.sent: list[Any] = []

    async def send(
        self, info: Any, headers: dict[str, str] | None = None, *, raw: bool = False
    ) -> dict[str, Any]:
        self.sent.append(info)
        if self.errors:
            raise self.errors.pop(0)
        return {"value": [{"id": "u1"}]}


async def test_page_reads_wait_out_every_transient_failure_through_the_shared_limiter(clock):
    reader = ScriptedReader(
        [
            GraphError(429, "TooManyRequests", "x", retry_after=4),
            GraphError(503, "serviceNotAvailable", "y"),
            GraphError(500, "generalException", "y"),
            GraphError(502, "BadGateway", "y"),
            GraphError(None, "RemoteProtocolError", "no answer"),
        ],
        clock,
    )
    info = RequestInformation()
    assert await reader.paced(info) == {"value": [{"id": "u1"}]}
    assert len(reader.sent) == 6
    assert clock.now >= 4, "the Retry-After was honoured"
    assert reader.limiter.limit < 4, "failures lowered the shared concurrency"
    assert reader.limiter.rate is None, "server errors teach no rate"


async def test_page_reads_raise_refusals_at_once_and_run_out_of_time_on_an_outage(clock):
    with pytest.raises(GraphError):
        await ScriptedReader([GraphError(403, "Forbidden", "no")], clock).paced(
            RequestInformation()
        )
    reader = ScriptedReader([GraphError(503, "serviceNotAvailable", "y")] * 1000, clock)
    with budget.budget(120, clock=clock.clock) as spent, pytest.raises(budget.OutOfTime):
        await reader.paced(RequestInformation())
    assert clock.now <= 120
    assert spent.last_error == "Microsoft Graph answered 503 serviceNotAvailable"


async def test_limiter_learns_the_buckets_rate_from_what_was_served_before_the_429(clock):
    """A bucket of 1,000 RU per 10 s (100 RU/s) serves 1,000 RU in the first second, then
    throttles: 1,000 RU in 1 s + 10 s of refill gives about 91 RU/s, just under its rate."""
    limiter = AdaptiveLimiter(clock=clock.clock, sleep=clock.sleep)
    for _ in range(10):
        limiter.succeeded(100)
        clock.now += 0.1
    limiter.throttled(1.0)
    assert limiter.rate == pytest.approx(1000 / 11)
    rate = 1000 / 11
    for _ in range(3):  # the pause, then what a second's refill allows at once (91 RU)...
        async with limiter.slot(45):
            pass
    assert clock.now == pytest.approx(2.0)
    async with limiter.slot(45):  # ...then the pace
        pass
    assert clock.now == pytest.approx(2.0 + (3 * 45 - rate) / rate)
    assert limiter.batch_size(20) == 20


class Bucket:
    """Graph's token bucket: `budget` RU per 10 s, full at first."""

    def __init__(self, budget: float) -> None:
        self.capacity = self.tokens = budget
        self.rate = budget / 10

    def take(self, cost: int, seconds: float) -> float | None:
        """Refills for `seconds`, takes `cost`; the share used past 80 % (None: under), or
        raises when a 429 would answer."""
        self.tokens = min(self.capacity, self.tokens + seconds * self.rate)
        if self.tokens < cost:
            raise AssertionError("Graph would have answered 429")
        self.tokens -= cost
        used = 1 - self.tokens / self.capacity
        return used if used > 0.8 else None


@pytest.mark.parametrize("budget", [1000.0, 8000.0, 50.0])
def test_the_pace_settles_under_the_budget_without_a_429(clock, budget):
    """An instance that would take 3 times the bucket's rate learns it from the header Graph
    sends past 80 %, before any 429, and then uses (nearly) all of it."""
    bucket, limiter = Bucket(budget), AdaptiveLimiter(clock=clock.clock, sleep=clock.sleep)
    step, served, owed = 0.05, [], 0.0
    for _ in range(int(60 / step)):
        clock.now += step
        owed += (limiter.rate or 3 * bucket.rate) * step  # whole requests, as slots send them
        whole = int(owed)
        owed -= whole
        if whole:
            limiter.succeeded(whole, used=bucket.take(whole, step))
        else:
            bucket.take(0, step)
        served.append(whole)
    last_30s = sum(served[-int(30 / step) :]) / 30
    assert last_30s >= 0.9 * bucket.rate, f"{last_30s:.1f} RU/s of {bucket.rate:.1f}"


async def test_a_tight_bucket_gets_batches_it_can_serve(clock):
    """5 RU per 10 s: one $batch of 20 gets 5 answers and 15 429s; from then on, one lookup
    per $batch, one every two seconds."""
    limiter = AdaptiveLimiter(clock=clock.clock, sleep=clock.sleep)
    limiter.served(5)
    limiter.throttled(2.0)
    assert limiter.rate == pytest.approx(0.5)
    assert limiter.batch_size(20) == 1


async def test_cut_short_by_the_budget_it_hands_over_what_was_answered(clock):
    graph = FakeGraph(
        {
            url("a"): [(200, {})],
            url("b"): [(403, {})],
            url("c"): [(429, {"Retry-After": "100"})] * 5,
            url("d"): [(200, {})],
        }
    )
    users = [{"id": u} for u in "abcd"]
    with budget.budget(50, clock=clock.clock), pytest.raises(LookupsCutShort) as cut:
        await reader(graph, clock).read([u["id"] for u in users], ["emailMethods"])
    partial = cut.value.partial
    assert partial.complete(users, ["emailMethods"]) == 2, "a answered, b refused, c not yet"
    first_two = partial.only({"a", "b"})
    assert set(first_two.methods) == {"a"} and [f.user_id for f in first_two.failures] == ["b"]
    assert first_two.succeeded == 1


async def test_a_storm_of_failures_is_outlasted_however_many_there_are(clock):
    """Graph's 5xx come in storms of seconds: a lookup failing 6 times in a row while Graph
    serves the others (5 used to be the end of it) is retried while its failures span less
    than the patience."""
    graph = FakeGraph(
        {url("a"): [(503, {})] * 3 + [(500, {})] * 3 + [(200, {})], url("b"): [(200, {})]}
    )
    result = await reader(graph, clock).read(["a", "b"], ["emailMethods"])
    assert not result.failures and set(result.methods) == {"a", "b"}
    assert clock.now < PATIENCE and len(graph.batches) == 7


async def test_a_lookup_failing_for_the_patience_becomes_a_failure(clock):
    """... and one failing for that long while Graph answers others is that user's problem:
    an errors-file row."""
    graph = FakeGraph({url("a"): [(500, {})] * 100, url("b"): [(200, {})]})
    result = await reader(graph, clock).read(["a", "b"], ["emailMethods"])
    assert [(f.user_id, f.status) for f in result.failures] == [("a", 500)]
    assert result.failing_since == {} and clock.now >= PATIENCE


async def test_failures_in_earlier_invocations_carry_over(clock):
    """Under a budget far shorter than the patience, each invocation goes on with the span
    from when the lookup first failed."""
    key = "a/emailMethods"
    since: dict[str, float] = {}
    invocations = 0
    while True:
        invocations += 1
        graph = FakeGraph({url("a"): [(500, {})] * 10, url("b"): [(200, {})]})
        try:
            with budget.budget(10, clock=clock.clock):
                result = await reader(graph, clock).read(
                    ["a", "b"], ["emailMethods"], failing_since=since
                )
            break
        except LookupsCutShort as cut:
            since = cut.partial.failing_since
            assert since == {key: 0.0} and not cut.partial.failures
        clock.now += 5.0  # the next message comes a little later
    assert [(f.user_id, f.status) for f in result.failures] == [("a", 500)]
    assert invocations > 3 and clock.now >= PATIENCE


async def test_failures_during_an_outage_are_not_counted_towards_giving_up(clock):
    graph = FakeGraph({url("a"): [(503, {})] * 30})
    with budget.budget(600, clock=clock.clock), pytest.raises(LookupsCutShort) as cut:
        await reader(graph, clock).read(
            ["a"], ["emailMethods"], failing_since={"a/emailMethods": -1000.0}
        )
    assert cut.value.partial.failing_since == {"a/emailMethods": -1000.0}
    assert not cut.value.partial.failures


async def test_a_429_about_cpu_is_waited_out_but_teaches_no_pace(clock):
    """x-ms-throttle-information names the reason, "CPULimitExceeded" among others
    (throttling-limits.md): only a 429 about the resource-unit budget says what its rate is."""
    cpu = {"Retry-After": "2", "x-ms-throttle-information": "CPULimitExceeded"}
    budget_429 = {"Retry-After": "2", "x-ms-throttle-information": "ResourceUnitLimitExceeded"}
    graph = FakeGraph({url("a"): [(200, {})], url("b"): [(429, cpu), (200, {})]})
    limiter = AdaptiveLimiter(clock=clock.clock, sleep=clock.sleep)
    reader_ = AuthMethodsReader(graph, limiter=limiter)  # type: ignore[arg-type]
    assert (await reader_.read(["a", "b"], ["emailMethods"])).succeeded == 2
    assert limiter.rate is None and clock.now >= 2
    assert limiter.resume_in() == 0, "the throttled lookups waited alone: nobody was paused"
    graph = FakeGraph({url("a"): [(200, {})], url("b"): [(429, budget_429), (200, {})]})
    await AuthMethodsReader(graph, limiter=limiter).read(["a", "b"], ["emailMethods"])  # type: ignore[arg-type]
    assert limiter.rate is not None, "a 429 about the budget teaches its rate"


async def test_answers_a_cut_short_chunk_could_not_write_are_not_asked_again(clock):
    """d was answered while c was not: the chunk writes a and b; the next invocation in this
    process asks Graph for c alone (and d comes from what was kept)."""
    graph = FakeGraph(
        {
            url("a"): [(200, {})],
            url("b"): [(200, {})],
            url("c"): [(429, {"Retry-After": "100"})] * 5 + [(200, {})],
            url("d"): [(200, {})],
        }
    )
    methods = reader(graph, clock)
    with budget.budget(50, clock=clock.clock), pytest.raises(LookupsCutShort) as cut:
        await methods.read(["a", "b", "c", "d"], ["emailMethods"])
    methods.keep(cut.value.partial, ["c", "d"])
    graph.batches.clear()
    graph.script[url("c")] = [(200, {})]
    result = await methods.read(["c", "d"], ["emailMethods"])
    assert set(result.methods) == {"c", "d"} and result.succeeded == 2
    assert graph.batches == [[url("c")]], "d was not asked again"
    graph.script[url("d")] = [(200, {})]
    await methods.read(["d"], ["emailMethods"])
    assert graph.batches[-1] == [url("d")], "a kept answer is used once"
