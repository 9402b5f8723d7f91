"""Authentication methods per user, read in Graph JSON batches of 20.

Graph throttles each request inside a batch on its own and answers a throttled one with its
own 429 inside a 200 batch response; the SDK does not retry those, so this module does,
through the adaptive limiter every Graph request shares: after the item's Retry-After, or with
exponential backoff and jitter when it has none. Items that fail with a server error, and the
$batch envelope itself, are retried the same way, within the invocation's time budget.

A lookup that keeps failing while Graph serves the others is given up on (an errors-file row)
only once its failures span USEREXPORT_STORM_SECONDS: Graph's 5xx come in storms of seconds, in
which one item can fail many times in a row, and a count of failures would give up inside one.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation

from .. import budget
from . import meter
from .errors import GraphError
from .headers import about_budget, retry_after_seconds, used_share
from .limiter import AdaptiveLimiter
from .reader import GraphReader

BATCH_SIZE = 20  # Graph's limit of requests per $batch
# Answers kept for users a cut-short chunk could not write yet (AuthMethodsReader.keep): at most
# this many, for at most this long (the next invocation often runs in this process).
KEPT_MOST, KEPT_SECONDS = 5000, 600.0
THROTTLED = 429
# Answers to wait out: throttling, timeouts, server errors (every 5xx Graph gives) and 424
# Failed Dependency, which the throttling page describes for requests of a batch that failed
# because another did.
RETRIED = frozenset({408, 424, 429, 500, 502, 503, 504})


def api_missing(status: int, message: str) -> bool:
    """Whether a lookup's failure says that this Graph has no authentication-methods API at
    all, as Microsoft Graph China operated by 21Vianet has not (authentication-list-methods.md,
    national cloud availability). Its answer there is not documented: a path segment Graph
    does not have is 400 BadRequest "Resource not found for the segment 'authentication'",
    and a user's own lookup never answers 400 or 501."""
    return status in (400, 501) or (status == 404 and "segment" in message.lower())


@dataclass(frozen=True)
class LookupFailure:
    user_id: str
    lookup: str
    status: int
    code: str
    message: str


@dataclass
class LookupResult:
    methods: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    failures: list[LookupFailure] = field(default_factory=list)
    succeeded: int = 0
    throttled: int = 0
    # When each lookup not answered yet first failed on its own (epoch seconds), by
    # "user id/lookup": kept in the checkpoint, so the span goes on across invocations.
    failing_since: dict[str, float] = field(default_factory=dict)

    def complete(self, users: Sequence[dict[str, Any]], lookups: Sequence[str]) -> int:
        """How many of these users, from the first, have every lookup answered."""
        failed = {(f.user_id, f.lookup) for f in self.failures}
        for count, user in enumerate(users):
            answered = self.methods.get(user["id"], {})
            if any(k not in answered and (user["id"], k) not in failed for k in lookups):
                return count
        return len(users)

    def only(self, user_ids: set[str]) -> LookupResult:
        """The answers about these users alone."""
        methods = {uid: m for uid, m in self.methods.items() if uid in user_ids}
        return LookupResult(
            methods,
            [f for f in self.failures if f.user_id in user_ids],
            sum(len(m) for m in methods.values()),
            failing_since={
                k: t for k, t in self.failing_since.items() if k.split("/")[0] in user_ids
            },
        )


def _failure(item: _Item, answer: dict[str, Any]) -> LookupFailure:
    error = (answer.get("body") or {}).get("error") or {}
    return LookupFailure(
        item.user_id,
        item.lookup,
        int(answer.get("status", 0)),
        str(error.get("code", "")),
        str(error.get("message", "")),
    )


def _give_up_on_failing_items(
    retry: list[tuple[_Item, dict[str, Any]]],
    result: LookupResult,
    *,
    own: set[_Item],
    patience: float,
    now: float,
) -> list[tuple[_Item, dict[str, Any]]]:
    """Notes when each item that failed on its own (`own`) first did (`now`, epoch seconds);
    one whose failures span `patience` seconds, this invocation or earlier ones, becomes a
    failure. The rest, to retry."""
    kept = []
    for item, answer in retry:
        if int(answer.get("status", 0)) != THROTTLED and item in own:
            since = result.failing_since.setdefault(item.key, now)
            if now - since >= patience:
                del result.failing_since[item.key]
                result.failures.append(_failure(item, answer))
                continue
        kept.append((item, answer))
    return kept


class LookupsCutShort(budget.OutOfTime):
    """The budget ran out before every lookup was answered; `partial` holds what was."""

    def __init__(self, partial: LookupResult) -> None:
        super().__init__()
        self.partial = partial


@dataclass(frozen=True)
class _Item:
    user_id: str
    lookup: str

    @property
    def key(self) -> str:
        return f"{self.user_id}/{self.lookup}"


class AuthMethodsReader:
    def __init__(
        self,
        graph: GraphReader,
        *,
        limiter: AdaptiveLimiter | None = None,
        storm_seconds: float = 120.0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._graph = graph
        self._limiter = limiter or graph.auth_limiter
        self._patience = storm_seconds
        # A wall clock: the span is carried across invocations and instances.
        self._wall_clock = wall_clock
        # (user id, lookup) -> (when answered, monotonic; the methods): see keep().
        self._kept: OrderedDict[tuple[str, str], tuple[float, list[dict[str, Any]]]] = OrderedDict()

    def keep(self, result: LookupResult, user_ids: Iterable[str]) -> None:
        """Keeps Graph's answers about these users, which a chunk cut short by the time budget
        could not write (a user before them was not answered yet): the invocation that goes on
        asks again only for what it lacks, when it runs in this process. Under a tight limit
        (5 per 10 s) that is about a tenth of the lookups otherwise asked twice."""
        now = time.monotonic()
        for uid in user_ids:
            for lookup, methods in result.methods.get(uid, {}).items():
                self._kept[(uid, lookup)] = (now, methods)
                self._kept.move_to_end((uid, lookup))
        while len(self._kept) > KEPT_MOST:
            self._kept.popitem(last=False)

    def _take_kept(self, user_id: str, lookup: str) -> list[dict[str, Any]] | None:
        kept = self._kept.pop((user_id, lookup), None)
        if kept is None or time.monotonic() - kept[0] > KEPT_SECONDS:
            return None
        return kept[1]

    async def read(
        self,
        user_ids: Iterable[str],
        lookups: Sequence[str],
        *,
        failing_since: Mapping[str, float] | None = None,
    ) -> LookupResult:
        """The methods of these users, and a failure for every lookup Graph refused.

        Throttled items, server errors and lost connections are retried until the invocation's
        budget runs out; then LookupsCutShort (an OutOfTime) raises with what was answered and
        when the failing lookups first failed, which the next invocation passes back in."""
        result = LookupResult(failing_since=dict(failing_since or {}))
        items = []
        for uid in user_ids:
            for lookup in lookups:
                kept = self._take_kept(uid, lookup)
                if kept is None:
                    items.append(_Item(uid, lookup))
                else:
                    result.methods.setdefault(uid, {})[lookup] = kept
                    result.succeeded += 1
        chunks = [items[i : i + BATCH_SIZE] for i in range(0, len(items), BATCH_SIZE)]
        kept = bool(result.succeeded)
        # A chunk out of time does not cancel the others: a $batch already sent is answered
        # and kept (under a pace slower than the budget, that is all an invocation gets done).
        # Each chunk stops at its own next look at the deadline.
        ended = await asyncio.gather(
            *(self._read_chunk(chunk, result, kept=kept) for chunk in chunks),
            return_exceptions=True,
        )
        failures = [e for e in ended if isinstance(e, BaseException)]
        for failure in failures:
            if not isinstance(failure, budget.OutOfTime):
                raise failure
        if failures:
            raise LookupsCutShort(result)
        return result

    async def probe(self, urls: Sequence[str]) -> tuple[int, int, float]:
        """One $batch of these GETs (at most BATCH_SIZE: lookups, or registration report
        queries), not retried: how many Graph served, how many it throttled, and how long it
        took (seconds). Graph counts each item against the identity and access reports limit,
        which lists authenticationMethod (throttling-limits.md): a tenant held to the
        documented five per 10 s serves five of twenty and throttles the rest; the limiter
        learns from that as from any lookup."""
        if not urls:
            return 0, 0, 0.0
        async with self._limiter.batch(len(urls), most=BATCH_SIZE) as size:
            began = time.monotonic()
            answers = await self._send_urls(list(urls)[:size])
            took = time.monotonic() - began
        statuses = [int(a.get("status", 0)) for a in answers]
        served = sum(200 <= s < 300 for s in statuses)
        # Only a 429 about the budget says what the limit is; one about CPU or data volume
        # (x-ms-throttle-information) teaches nothing (throttling-limits.md).
        throttled = sum(
            s == THROTTLED and about_budget(a.get("headers"))
            for s, a in zip(statuses, answers, strict=True)
        )
        meter.count(resource_units=served, throttled=statuses.count(THROTTLED))
        self._limiter.served(served)
        if throttled:
            waits = [retry_after_seconds(a.get("headers")) or 0.0 for a in answers]
            self._limiter.throttled(max(waits) or None, learn_rate=True)
        elif THROTTLED in statuses:
            self._limiter.congested()
        return served, throttled, took

    async def _read_chunk(self, items: list[_Item], result: LookupResult, *, kept: bool) -> None:
        """Reads these items; `kept`: answers kept from an earlier invocation stand in for the
        rest, so Graph served others while these fail (they fail on their own)."""
        pending = items
        attempts = 0  # retries of items that failed among served ones
        first_failed: dict[_Item, float] = {}  # when each item first failed in this invocation
        while pending:
            budget.check()
            # As many as the pace allows in one $batch; the rest wait for the next turn.
            failed: GraphError | None = None
            async with self._limiter.batch(len(pending), most=BATCH_SIZE) as size:
                sending, later = pending[:size], pending[size:]
                sent_at = self._limiter.now()
                try:
                    answers = await self._send(sending)
                except GraphError as error:  # the envelope itself failed
                    failed = error
            if failed is not None:
                if self._graph.wait_out(failed, self._limiter):
                    attempts += 1
                    await self._limiter.backoff(attempts, failed.retry_after)
                continue
            retry: list[tuple[_Item, dict[str, Any]]] = []
            retry_after: float | None = None
            statuses: set[int] = set()
            learn = False  # a 429 about the budget: one about CPU or data volume teaches no pace
            used = max((used_share(a.get("headers")) or 0.0 for a in answers), default=0.0)
            for item, answer in zip(sending, answers, strict=True):
                status = int(answer.get("status", 0))
                if 200 <= status < 300:
                    user = result.methods.setdefault(item.user_id, {})
                    user[item.lookup] = (answer.get("body") or {}).get("value", [])
                    result.failing_since.pop(item.key, None)
                    result.succeeded += 1
                elif status in RETRIED:
                    retry.append((item, answer))
                    wait = retry_after_seconds(answer.get("headers"))
                    retry_after = max(retry_after or 0.0, wait or 0.0) or None
                    result.throttled += status == THROTTLED
                    meter.count(throttled=int(status == THROTTLED))
                    learn |= status == THROTTLED and about_budget(answer.get("headers"))
                    statuses.add(status)
                else:
                    result.failures.append(_failure(item, answer))
            # One batch is one signal to the limiter, however many of its items failed:
            # counting each item would collapse the concurrency and then overshoot again. Only
            # throttling, or a batch that failed whole while Graph served nothing else (an
            # outage), pauses everyone; items failing while others are served wait on their own.
            served = len(sending) - len(retry)
            meter.count(resource_units=served)  # a lookup costs 1 (throttling-limits.md)
            outage = bool(retry) and not served and self._limiter.last_success < sent_at
            for item, _ in retry:
                first_failed.setdefault(item, sent_at)
            # An item failing while Graph serves others (in its batch, or anywhere since it
            # first failed) fails on its own: given up on once that has lasted the patience.
            last_success = self._limiter.last_success
            own = {i for i, _ in retry if served or kept or last_success >= first_failed[i]}
            retry = _give_up_on_failing_items(
                retry, result, own=own, patience=self._patience, now=self._wall_clock()
            )
            warned = used or None  # Graph's share of the budget used, past 80 %
            if learn or outage:
                self._limiter.served(served)
                self._limiter.throttled(retry_after, learn_rate=learn, used=warned)
                if outage:
                    budget.failed(f"Microsoft Graph answered {max(statuses)} to every lookup")
            elif THROTTLED in statuses:  # about CPU or data volume: slower, nobody paused
                self._limiter.served(served)
                self._limiter.congested()
                attempts += 1
                await self._limiter.backoff(attempts, retry_after)
            else:
                self._limiter.succeeded(served, used=warned)
                budget.succeeded()
                if retry:
                    attempts += 1
                    await self._limiter.backoff(attempts, retry_after)
            pending = [item for item, _ in retry] + later

    async def _send(self, items: list[_Item]) -> list[dict[str, Any]]:
        """One $batch of these lookups; the answers in the order of the items."""
        return await self._send_urls(
            [f"/users/{item.user_id}/authentication/{item.lookup}" for item in items]
        )

    async def _send_urls(self, urls: list[str]) -> list[dict[str, Any]]:
        """One $batch of GETs; the answers in the order of the urls."""
        requests = [{"id": str(i), "method": "GET", "url": url} for i, url in enumerate(urls)]
        info = RequestInformation(Method.POST, "{+baseurl}/$batch")
        info.headers.try_add("Accept", "application/json")
        info.set_stream_content(orjson.dumps({"requests": requests}), "application/json")
        body = await self._graph.send(info)
        by_id = {str(r.get("id")): r for r in body.get("responses", [])}
        missing = {
            "status": 500,
            "body": {"error": {"code": "missingResponse", "message": "Not in the batch answer."}},
        }
        return [by_id.get(str(i), missing) for i in range(len(urls))]
