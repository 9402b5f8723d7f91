"""Authentication methods per user, read in Graph JSON batches of 20.

Graph throttles each request inside a batch on its own and answers a throttled one with its
own 429 inside a 200 batch response; the SDK does not retry those, so this module does:
after the item's Retry-After, or with exponential backoff and jitter when it has none.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation

from .graph import GraphReader

BATCH_SIZE = 20  # Graph's limit of requests per $batch
RETRIED_STATUSES = frozenset({429, 503, 504})


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


@dataclass(frozen=True)
class _Item:
    user_id: str
    lookup: str


class AuthMethodsReader:
    def __init__(
        self,
        graph: GraphReader,
        *,
        concurrency: int = 4,
        max_attempts: int = 8,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
    ) -> None:
        self._graph = graph
        self._limit = asyncio.Semaphore(concurrency)
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._max_delay = max_delay

    async def read(self, user_ids: Iterable[str], lookups: Sequence[str]) -> LookupResult:
        """The methods of these users, and a failure for every lookup that did not succeed."""
        items = [_Item(uid, lookup) for uid in user_ids for lookup in lookups]
        result = LookupResult()
        chunks = [items[i : i + BATCH_SIZE] for i in range(0, len(items), BATCH_SIZE)]
        await asyncio.gather(*(self._read_chunk(chunk, result) for chunk in chunks))
        return result

    async def _read_chunk(self, items: list[_Item], result: LookupResult) -> None:
        pending = items
        for attempt in range(1, self._max_attempts + 1):
            async with self._limit:
                answers = await self._send(pending)
            retry: list[_Item] = []
            wait = 0.0
            for item, answer in zip(pending, answers, strict=True):
                status = int(answer.get("status", 0))
                body = answer.get("body") or {}
                if 200 <= status < 300:
                    user = result.methods.setdefault(item.user_id, {})
                    user[item.lookup] = body.get("value", [])
                    result.succeeded += 1
                elif status in RETRIED_STATUSES and attempt < self._max_attempts:
                    retry.append(item)
                    wait = max(wait, self._delay(answer, attempt))
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
            if not retry:
                return
            pending = retry
            await asyncio.sleep(wait)

    def _delay(self, answer: dict[str, Any], attempt: int) -> float:
        headers = {k.lower(): v for k, v in (answer.get("headers") or {}).items()}
        try:
            return max(0.0, float(headers["retry-after"]))
        except (KeyError, TypeError, ValueError):
            ceiling = min(self._max_delay, self._base_delay * 2 ** (attempt - 1))
            return random.uniform(ceiling / 2, ceiling)

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
            "body": {
                "error": {
                    "code": "missingResponse",
                    "message": "Graph's batch answer left this request out.",
                }
            },
        }
        return [by_id.get(str(i), missing) for i in range(len(items))]
