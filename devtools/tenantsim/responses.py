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


# Codes and messages Graph sends with these statuses: generalException as in concepts/errors.md
# and answers seen in the field (500), BadGateway (502, msgraph-sdk-dotnet#1167),
# serviceNotAvailable as documented (503), UnknownError with 504 (microsoft-graph-docs#2505).
SERVER_ERRORS: dict[int, tuple[str, str]] = {
    500: ("generalException", "An unspecified error has occurred."),
    502: ("BadGateway", "Failed to execute backend request."),
    503: (
        "serviceNotAvailable",
        "The service is not available. Try the request again after a delay.",
    ),
    504: ("UnknownError", "The gateway did not receive a timely response."),
}


def server_error_answer(status: int, retry_after: int, client_request_id: str | None) -> Answer:
    """A 500/502/503/504 in Graph's error shape; `Retry-After` only when retry_after > 0."""
    code, message = SERVER_ERRORS[status]
    ans = error_answer(status, code, message, client_request_id)
    if retry_after:
        ans.headers["Retry-After"] = str(retry_after)
    return ans


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
