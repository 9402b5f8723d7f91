"""Graph's "no premium licence" 403 on signInActivity, which premium tenants get now and then
(microsoft-graph-docs #14118, microsoft-graph-docs-contrib #3033): retried until this process's
sign-in requests were refused without a break for the patience, then believed."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.credentials import AccessToken
from msgraph import GraphServiceClient

from userexport import budget
from userexport.graph import NON_PREMIUM, AdaptiveLimiter, GraphError, GraphReader

REFUSED = GraphError(403, NON_PREMIUM, "Neither tenant is B2C or tenant doesn't have premium")


class Credential:
    async def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        return AccessToken("token", 2**31)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


class ScriptedReader(GraphReader):
    """Answers each request from a script: an error to raise, or a body."""

    def __init__(self, clock: FakeClock, script: list[Any], *, patience: float = 120) -> None:
        client = GraphServiceClient(credentials=Credential(), scopes=["https://x/.default"])
        signin = AdaptiveLimiter(bucket="signIn", clock=clock.clock, sleep=clock.sleep)
        super().__init__(client, sign_in_limiter=signin, storm_seconds=patience)
        self.script = script
        self.sent = 0

    async def send(self, info: Any, headers: Any = None, *, raw: bool = False) -> Any:
        self.sent += 1
        answer = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(answer, GraphError):
            raise answer
        return answer


def page(reader: GraphReader, **options: Any) -> Any:
    return reader.users_page_bytes(next_link=None, select=["id", "signInActivity"], **options)


async def test_a_refusal_that_passes_is_retried_and_forgotten():
    clock = FakeClock()
    reader = ScriptedReader(clock, [REFUSED, REFUSED, REFUSED, b'{"value": []}'])
    assert (await page(reader)).parse().users == []
    assert reader.sent == 4 and 0 < clock.now < 120


async def test_a_refusal_that_lasts_the_patience_is_believed():
    clock = FakeClock()
    reader = ScriptedReader(clock, [REFUSED], patience=30)
    with pytest.raises(GraphError) as refused:
        await page(reader)
    assert refused.value.premium_refused and clock.now >= 30
    # Never a wait long enough to break the run of refusals (a third of the patience).
    assert reader.sent > 5


async def test_the_plan_check_believes_it_sooner_and_a_later_export_starts_again():
    clock = FakeClock()
    reader = ScriptedReader(clock, [REFUSED])
    with pytest.raises(GraphError):
        await page(reader, patience=6)
    assert 6 <= clock.now < 20
    clock.now += 600  # a later export: the old run of refusals says nothing about now
    sent = reader.sent
    with pytest.raises(GraphError):
        await page(reader, patience=6)
    assert reader.sent - sent > 1, "not decided from one answer"


async def test_every_wait_counts_against_the_budget():
    clock = FakeClock()
    reader = ScriptedReader(clock, [REFUSED])
    with budget.budget(10, clock=clock.clock), pytest.raises(budget.OutOfTime):
        await page(reader)
    assert clock.now <= 10
