"""Reads users from Microsoft Graph through msgraph-sdk's request adapter, as raw JSON.

The SDK keeps its auth provider, retry middleware and error mapping; we skip its Kiota models
(about 4-5 ms per user) and parse the bytes with orjson instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from kiota_abstractions.api_error import APIError
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.request_information import RequestInformation
from kiota_http.middleware.options import RetryHandlerOption
from msgraph import GraphServiceClient
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.users.count.count_request_builder import CountRequestBuilder
from msgraph.generated.users.users_request_builder import UsersRequestBuilder

from .limiter import AdaptiveLimiter

PAGE_SIZE = 999  # Graph's maximum $top for users
_ERROR_MAP: dict[str, Any] = {"XXX": ODataError}


class GraphError(Exception):
    """Graph answered with an error after the SDK's retries."""

    def __init__(
        self, status: int | None, code: str, message: str, *, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        """Worth another attempt later: throttling, timeouts and server errors."""
        return self.status is None or self.status in (408, 429) or self.status >= 500

    @classmethod
    def from_api_error(cls, error: APIError) -> GraphError:
        status = getattr(error, "response_status_code", None)
        code, message = "unknown", str(error.message or error)
        main = getattr(error, "error", None)
        if main is not None:
            code = main.code or code
            message = main.message or message
        return cls(status, code, message, retry_after=retry_after_seconds(error.response_headers))


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Seconds a Retry-After header asks to wait (any casing); None when absent or not a number
    (an HTTP date is rare from Graph: backing off instead is safe)."""
    for name, value in (headers or {}).items():
        if name.lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                return None
    return None


@dataclass(frozen=True)
class UsersPage:
    users: list[dict[str, Any]]
    next_link: str | None
    count: int | None = None  # @odata.count, on the first page of an advanced query


class GraphReader:
    """Lists users page by page; a page is addressed by the nextLink of the one before.

    Page reads go through the adaptive limiter the authentication lookups share, with the
    SDK's own retries off: every 429 then slows every reader, instead of each retrying alone.
    """

    def __init__(
        self,
        client: GraphServiceClient,
        *,
        limiter: AdaptiveLimiter | None = None,
        max_unavailable: int = 5,
        max_throttled_seconds: float = 900.0,
    ) -> None:
        self._client = client
        self.limiter = limiter or AdaptiveLimiter()
        self._max_unavailable = max_unavailable
        self._max_throttled_seconds = max_throttled_seconds

    async def users_page(
        self,
        *,
        next_link: str | None,
        select: list[str],
        filter: str | None = None,
        advanced: bool = False,
        expand: list[str] | None = None,
        page_size: int = PAGE_SIZE,
    ) -> UsersPage:
        """One page of users. `advanced` marks an advanced query (ConsistencyLevel: eventual and
        $count=true); Graph wants the header on every page, and the SDK does not carry it."""
        users = self._client.users
        if next_link:
            info = users.with_url(next_link).to_get_request_information()
        else:
            query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
                select=select,
                top=page_size,
                filter=filter,
                count=True if advanced else None,
                expand=expand,
            )
            info = users.to_get_request_information(RequestConfiguration(query_parameters=query))
        if advanced:
            info.headers.try_add("ConsistencyLevel", "eventual")
        body = await self._paced(info)
        return UsersPage(
            body.get("value", []), body.get("@odata.nextLink"), body.get("@odata.count")
        )

    async def count_users(self, *, filter: str | None) -> int:
        """GET /users/$count: an advanced query, so eventually consistent."""
        query = CountRequestBuilder.CountRequestBuilderGetQueryParameters(filter=filter)
        info = self._client.users.count.to_get_request_information(
            RequestConfiguration(query_parameters=query)
        )
        info.headers.try_add("ConsistencyLevel", "eventual")
        return int(await self._paced(info))  # a bare number is a JSON document too

    async def _paced(self, info: RequestInformation) -> Any:
        info.add_request_options([RetryHandlerOption(max_retries=0, should_retry=False)])
        unavailable, throttled_for = 0, 0.0
        while True:
            async with self.limiter:
                try:
                    body = await self.send(info)
                except GraphError as error:
                    retry = (
                        error.status == 429 and throttled_for < self._max_throttled_seconds
                    ) or (error.status in (503, 504) and unavailable < self._max_unavailable)
                    if not retry:
                        raise
                    throttled_for += self.limiter.throttled(error.retry_after)
                    unavailable += error.status != 429
                    continue
            self.limiter.succeeded()
            return body

    async def send(self, info: Any) -> dict[str, Any]:
        """Sends a request through the SDK's pipeline; the JSON answer as a dict."""
        raw = await self._send_raw(info)
        return orjson.loads(raw) if raw else {}

    async def _send_raw(self, info: Any) -> bytes:
        try:
            raw = await self._client.request_adapter.send_primitive_async(info, "bytes", _ERROR_MAP)
        except APIError as error:
            raise GraphError.from_api_error(error) from error
        return raw or b""
