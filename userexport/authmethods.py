"""Authentication methods per user, read in Graph JSON batches of 20.

Graph throttles each request inside a batch on its own and answers a throttled one with its
own 429 inside a 200 batch response; the SDK does not retry those, so this module does,
through the adaptive limiter every Graph request shares: after the item's Retry-After, or with
exponential backoff and jitter when it has none. Items that fail with a server error, and the
$batch envelope itself, are retried the same way, within the invocation's time budget.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation

from . import budget
from .graph import GraphError, GraphReader, retry_after_seconds
from .limiter import AdaptiveLimiter

BATCH_SIZE = 20  # Graph's limit of requests per $batch
THROTTLED = 429
# Answers to wait out: throttling, timeouts and server errors (every 5xx Graph gives).
RETRIED = frozenset({408, 429, 500, 502, 503, 504})
# A lookup that failed this often while Graph answered others is that user's problem, not an
# outage: it becomes a row in the errors file instead of holding the export up.
MAX_ITEM_FAILURES = 5


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
        )


class LookupsCutShort(budget.OutOfTime):
    """The budget ran out before every lookup was answered; `partial` holds what was."""

    def __init__(self, partial: LookupResult) -> None:
        super().__init__()
        self.partial = partial


@dataclass(frozen=True)
class _Item:
    user_id: str
    lookup: str


class AuthMethodsReader:
    def __init__(self, graph: GraphReader, *, limiter: AdaptiveLimiter | None = None) -> None:
        self._graph = graph
        self._limiter = limiter or graph.limiter

    async def read(self, user_ids: Iterable[str], lookups: Sequence[str]) -> LookupResult:
        """The methods of these users, and a failure for every lookup Graph refused.

        Throttled items, server errors and lost connections are retried until the invocation's
        budget runs out; then LookupsCutShort (an OutOfTime) raises with what was answered."""
        items = [_Item(uid, lookup) for uid in user_ids for lookup in lookups]
        result = LookupResult()
        chunks = [items[i : i + BATCH_SIZE] for i in range(0, len(items), BATCH_SIZE)]
        try:
            await budget.gather_all(*(self._read_chunk(chunk, result) for chunk in chunks))
        except budget.OutOfTime:
            raise LookupsCutShort(result) from None
        return result

    async def _read_chunk(self, items: list[_Item], result: LookupResult) -> None:
        pending = items
        failures: dict[_Item, tuple[float, int]] = {}  # server errors: first one's time, count
        attempts = 0  # retries of items that failed among served ones
        while pending:
            budget.check()
            async with self._limiter.slot(len(pending)):
                sent_at = self._limiter.now()
                try:
                    answers = await self._send(pending)
                except GraphError as error:  # the envelope itself failed
                    self._graph.wait_out(error)
                    continue
            retry: list[_Item] = []
            retry_after: float | None = None
            statuses: set[int] = set()
            for item, answer in zip(pending, answers, strict=True):
                status = int(answer.get("status", 0))
                body = answer.get("body") or {}
                if 200 <= status < 300:
                    user = result.methods.setdefault(item.user_id, {})
                    user[item.lookup] = body.get("value", [])
                    result.succeeded += 1
                elif status in RETRIED and not self._gives_up(item, status, failures):
                    retry.append(item)
                    wait = retry_after_seconds(answer.get("headers"))
                    retry_after = max(retry_after or 0.0, wait or 0.0) or None
                    result.throttled += status == THROTTLED
                    statuses.add(status)
                else:
                    error = body.get("error") or {}
                    result.failures.append(
                        LookupFailure(
                            item.user_id,
                            item.lookup,
                            status,
                            str(error.get("code", "")),
                            str(error.get("message", "")),
                        )
                    )
            # One batch is one signal to the limiter, however many of its items failed:
            # counting each item would collapse the concurrency and then overshoot again. Only
            # throttling, or a batch that failed whole while Graph served nothing else (an
            # outage), pauses everyone; items failing while others are served wait on their own.
            served = len(pending) - len(retry)
            outage = bool(retry) and not served and self._limiter.last_success < sent_at
            if THROTTLED in statuses or outage:
                self._limiter.served(served)
                self._limiter.throttled(retry_after, learn_rate=THROTTLED in statuses)
                if outage:
                    budget.failed(f"Microsoft Graph answered {max(statuses)} to every lookup")
            else:
                self._limiter.succeeded(served)
                budget.succeeded()
                if retry:
                    attempts += 1
                    await self._limiter.backoff(attempts, retry_after)
            pending = retry

    def _gives_up(self, item: _Item, status: int, failures: dict[_Item, tuple[float, int]]) -> bool:
        """Whether a server error of this item is final: it failed MAX_ITEM_FAILURES times and
        Graph answered other requests cleanly since its first failure (no outage, then)."""
        if status == THROTTLED:
            return False
        first, count = failures.get(item, (self._limiter.now(), 0))
        failures[item] = (first, count + 1)
        return count + 1 >= MAX_ITEM_FAILURES and self._limiter.last_success >= first

    async def _send(self, items: list[_Item]) -> list[dict[str, Any]]:
        """One $batch; the answers in the order of the items."""
        requests = [
            {
                "id": str(i),
                "method": "GET",
                "url": f"/users/{item.user_id}/authentication/{item.lookup}",
            }
            for i, item in enumerate(items)
        ]
        info = RequestInformation(Method.POST, "{+baseurl}/$batch")
        info.headers.try_add("Accept", "application/json")
        info.set_stream_content(orjson.dumps({"requests": requests}), "application/json")
        body = await self._graph.send(info)
        by_id = {str(r.get("id")): r for r in body.get("responses", [])}
        missing = {
            "status": 500,
            "body": {"error": {"code": "missingResponse", "message": "Not in the batch answer."}},
        }
        return [by_id.get(str(i), missing) for i in range(len(items))]
