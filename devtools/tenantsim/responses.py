"""Graph's answer shapes: the Answer record, error bodies, standard headers."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

JSON_ODATA = (
    "application/json;odata.metadata=minimal;odata.streaming=true;"
    "IEEE754Compatible=false;charset=utf-8"
)
JSON_PLAIN = "application/json"
TEXT_PLAIN = "text/plain"
GRAPH_METADATA = "https://graph.microsoft.com/v1.0/$metadata"


@dataclass
class Answer:
    """One Graph answer, before it becomes an HTTP response or a $batch item."""

    status: int
    body: Any  # a JSON-able object, or str for text/plain
    headers: dict[str, str] = field(default_factory=dict)
    reset: bool = False  # close the connection without answering


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())


def error_answer(
    status: int, code: str, message: str, client_request_id: str | None = None
) -> Answer:
    """Graph's error body: {"error": {"code", "message", "innerError": {...}}}."""
    rid = str(uuid.uuid4())
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": _now(),
                "request-id": rid,
                "client-request-id": client_request_id or rid,
            },
        }
    }
    return Answer(status, body, {"Content-Type": JSON_PLAIN, "request-id": rid})


def throttled_answer(retry_after: int | None, client_request_id: str | None) -> Answer:
    """Graph's 429 (concepts/throttling.md), Retry-After unless the field variant is on."""
    rid = str(uuid.uuid4())
    body = {
        "error": {
            "code": "TooManyRequests",
            "innerError": {
                "code": "429",
                "date": _now(),
                "message": "Please retry after",
                "request-id": rid,
                "status": "429",
                "client-request-id": client_request_id or rid,
            },
            "message": "Please retry again later.",
        }
    }
    headers = {"Content-Type": JSON_PLAIN, "request-id": rid}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return Answer(429, body, headers)


def ok_answer(body: Any, content_type: str = JSON_ODATA) -> Answer:
    headers = {"Content-Type": content_type, "Cache-Control": "no-cache"}
    if content_type == JSON_ODATA:
        headers["OData-Version"] = "4.0"
    headers["request-id"] = str(uuid.uuid4())
    return Answer(200, body, headers)
