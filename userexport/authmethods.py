"""Authentication methods per user, read in Graph JSON batches of 20.

Graph throttles each request inside a batch on its own and answers a throttled one with its
own 429 inside a 200 batch response; the SDK does not retry those, so this module does,
through an adaptive limiter shared by every batch: after the item's Retry-After, or with
exponential backoff and jitter when it has none.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation

from .graph import GraphReader, retry_after_seconds
from .limiter import AdaptiveLimiter

BATCH_SIZE = 20  # Graph's limit of requests per $batch
THROTTLED = 429
UNAVAILABLE = frozenset({503, 504})


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


@dataclass(frozen=True)
class _Item:
    user_id: str
    lookup: str


class AuthMethodsReader:
    def __init__(
        self,
        graph: GraphReader,
        *,
        limiter: AdaptiveLimiter | None = None,
        max_unavailable: int = 5,
        max_throttled_seconds: float = 900.0,
    ) -> None:
        self._graph = graph
        self._limiter = limiter or AdaptiveLimiter()
        self._max_unavailable = max_unavailable
        # Throttling is Graph saying "later", not "no": wait it out, within reason.
        self._max_throttled_seconds = max_throttled_seconds

    async def read(self, user_ids: Iterable[str], lookups: Sequence[str]) -> LookupResult:
        """The methods of these users, and a failure for every lookup that did not succeed."""
        items = [_Item(uid, lookup) for uid in user_ids for lookup in lookups]
        result = LookupResult()
        chunks = [items[i : i + BATCH_SIZE] for i in range(0, len(items), BATCH_SIZE)]
        await asyncio.gather(*(self._read_chunk(chunk, result) for chunk in chunks))
        return result

    async def _read_chunk(self, items: list[_Item], result: LookupResult) -> None:
        pending, unavailable, throttled_for = items, 0, 0.0
        while pending:
            async with self._limiter.slot(len(pending)):
                answers = await self._send(pending)
            retry: list[_Item] = []
            retry_after: float | None = None
            saw_unavailable = False
            for item, answer in zip(pending, answers, strict=True):
                status = int(answer.get("status", 0))
                body = answer.get("body") or {}
                give_up = (
                    status == THROTTLED and throttled_for >= self._max_throttled_seconds
                ) or (status in UNAVAILABLE and unavailable >= self._max_unavailable)
                if 200 <= status < 300:
                    user = result.methods.setdefault(item.user_id, {})
                    user[item.lookup] = body.get("value", [])
                    result.succeeded += 1
                elif (status == THROTTLED or status in UNAVAILABLE) and not give_up:
                    retry.append(item)
                    wait = retry_after_seconds(answer.get("headers"))
                    retry_after = max(retry_after or 0.0, wait or 0.0) or None
                    result.throttled += status == THROTTLED
                    saw_unavailable |= status in UNAVAILABLE
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
            # One batch is one signal to the limiter, however many of its items were throttled:
            # counting each item would collapse the concurrency and then overshoot again.
            if retry:
                self._limiter.served(len(pending) - len(retry))
                throttled_for += self._limiter.throttled(retry_after)
            else:
                self._limiter.succeeded(len(pending))
            unavailable += saw_unavailable
            pending = retry

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
