"""Reads users from Microsoft Graph through msgraph-sdk's request adapter, as raw JSON.

The SDK keeps its auth provider and error mapping; we skip its Kiota models (about 4-5 ms per
user) and parse the bytes with orjson instead. Its retry middleware is off for our requests:
every retry goes through the shared adaptive limiter and the invocation's time budget.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from kiota_abstractions.api_error import APIError
from kiota_abstractions.base_request_builder import BaseRequestBuilder
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.request_information import RequestInformation
from kiota_http.middleware.options import HeadersInspectionHandlerOption, RetryHandlerOption
from msgraph import GraphServiceClient
from msgraph.generated.models.o_data_errors.o_data_error import ODataError

from .. import budget
from ..filters import Scope
from . import meter
from .errors import GraphError
from .headers import resource_units, used_share
from .limiter import AdaptiveLimiter

PAGE_SIZE = 999  # Graph's maximum $top for users
SIGN_IN_PAGE_SIZE = 120  # ... and with signInActivity selected (user-list example 11)
# ... and with $expand: "Max page size with $expand is 100" (microsoft-graph-docs PR #21506;
# whether a larger $top is capped or refused is not documented, so it is never asked).
EXPAND_PAGE_SIZE = 100
# Ids in one `$filter=id in (...)`: "limited to 15 expressions in the filter clause by default"
# (microsoft-graph-docs-contrib concepts/includes/known-issues/query-parameters.md).
ID_BATCH = 15
_ERROR_MAP: dict[str, Any] = {"XXX": ODataError}
REPORT_PAGES_AT_ONCE = 4  # a parsed report page is a few MB: a few at once per process


def page_size(select: list[str], expand: list[str] | None) -> int:
    """The $top a listing asks for: Graph's most for what it selects and expands."""
    size = SIGN_IN_PAGE_SIZE if "signInActivity" in select else PAGE_SIZE
    return min(size, EXPAND_PAGE_SIZE) if expand else size


@dataclass(frozen=True)
class UsersPage:
    users: list[dict[str, Any]]
    next_link: str | None
    count: int | None = None  # @odata.count, on the first page of an advanced query


@dataclass(frozen=True)
class RawPage:
    """A page as Graph sent it: a prefetched page waits as bytes, a third of its parsed size."""

    body: bytes
    seconds: float  # how long Graph took to answer it
    limiter: AdaptiveLimiter  # its bucket's, which learns the seconds per user

    def parse(self) -> UsersPage:
        """The page's users and links; no side effect (UsersListing tells the limiter how
        long the page took per user)."""
        body = orjson.loads(self.body) if self.body else {}
        return UsersPage(
            body.get("value", []), body.get("@odata.nextLink"), body.get("@odata.count")
        )


class GraphReader:
    """Lists and counts users; a page is addressed by the nextLink of the one before.

    Every request goes through the adaptive limiter of the Graph bucket it draws on: the
    listing's (pages, counts, the plan step's reads), the sign-in listing's (pages with
    signInActivity, which Graph budgets apart) or the authentication lookups' (authmethods.py).
    Every 429 then slows every reader of that bucket, instead of each retrying alone. Transient
    failures are retried until the invocation's budget runs out (OutOfTime); others raise
    GraphError.
    """

    def __init__(
        self,
        client: GraphServiceClient,
        *,
        limiter: AdaptiveLimiter | None = None,
        sign_in_limiter: AdaptiveLimiter | None = None,
        auth_limiter: AdaptiveLimiter | None = None,
        storm_seconds: float = 120.0,
    ) -> None:
        self._client = client
        self.limiter = limiter or AdaptiveLimiter()
        self.sign_in_limiter = sign_in_limiter or AdaptiveLimiter(bucket="signIn")
        self.auth_limiter = auth_limiter or AdaptiveLimiter(bucket="auth")
        self.storm_seconds = storm_seconds
        # Registration report pages parsed at once (graph/registration.py).
        self.report_pages = asyncio.Semaphore(REPORT_PAGES_AT_ONCE)
        # The current run of NON_PREMIUM refusals of this process's signInActivity requests
        # (monotonic: its first and its last; None: the last request was served), across
        # invocations, so that a short budget still comes to believe a refusal that lasts.
        self._premium_refused: tuple[float, float] | None = None

    @property
    def client(self) -> GraphServiceClient:
        """The SDK client whose request builders make each request's URL."""
        return self._client

    def resume_in(self) -> int:
        """Whole seconds until every bucket's paused callers may go on (0: none paused)."""
        return max(x.resume_in() for x in (self.limiter, self.sign_in_limiter, self.auth_limiter))

    def _users(self, scope: Scope | None) -> Any:
        """The request builder of the user list: /users, or the scope's member list."""
        if scope is None:
            return self._client.users
        if scope.kind == "group":
            return self._client.groups.by_group_id(scope.id).transitive_members.graph_user
        units = self._client.directory.administrative_units
        return units.by_administrative_unit_id(scope.id).members.graph_user

    async def users_page(self, **options: Any) -> UsersPage:
        """One page of users (users_page_bytes's options), parsed."""
        return (await self.users_page_bytes(**options)).parse()

    async def users_page_bytes(
        self,
        *,
        next_link: str | None,
        select: list[str],
        filter: str | None = None,
        advanced: bool = False,
        expand: list[str] | None = None,
        page_size: int = PAGE_SIZE,
        scope: Scope | None = None,
        patience: float | None = None,
    ) -> RawPage:
        """One page of users. `advanced` marks an advanced query (ConsistencyLevel: eventual and
        $count=true); Graph wants the header on every page, and the SDK does not carry it.
        With signInActivity selected, a NON_PREMIUM refusal is retried for `patience` seconds
        (default USEREXPORT_STORM_SECONDS) before it raises."""
        users = self._users(scope)
        if next_link:
            info = users.with_url(next_link).to_get_request_information()
        else:
            query = _query_parameters(
                users,
                select=select,
                top=page_size,
                filter=filter,
                count=True if advanced else None,
                expand=expand,
            )
            info = users.to_get_request_information(RequestConfiguration(query_parameters=query))
        if advanced:
            info.headers.try_add("ConsistencyLevel", "eventual")
        sign_in = "signInActivity" in select
        limiter = self.sign_in_limiter if sign_in else self.limiter
        began = limiter.now()
        body = await self.paced(info, limiter, raw=True, patience=patience)
        return RawPage(body, limiter.now() - began, limiter)

    async def users_by_id(self, user_ids: list[str], select: list[str]) -> dict[str, Any]:
        """These users (at most ID_BATCH) by id, with these properties, through a plain query
        (`$filter=id in (...)`), which returns every selected property, null or not; with
        signInActivity selected, it returns it where an advanced query or a member list does
        not (msgraph-sdk-powershell #1898, microsoft-graph-docs-contrib #5593). A user Graph
        does not list (deleted since) is left out."""
        ids = ",".join("'" + uid.replace("'", "''") + "'" for uid in user_ids)
        users = self._client.users
        query = _query_parameters(users, select=select, filter=f"id in ({ids})", top=len(user_ids))
        info = users.to_get_request_information(RequestConfiguration(query_parameters=query))
        sign_in = "signInActivity" in select
        limiter = self.sign_in_limiter if sign_in else self.limiter
        body = await self.paced(info, limiter)
        return {u["id"]: u for u in body.get("value", [])}

    async def count_users(self, *, filter: str | None, scope: Scope | None = None) -> int:
        """GET /users/$count (or the scope's): an advanced query, so eventually consistent."""
        counter = self._users(scope).count
        query = _query_parameters(counter, filter=filter)
        info = counter.to_get_request_information(RequestConfiguration(query_parameters=query))
        info.headers.try_add("ConsistencyLevel", "eventual")
        return int(await self.paced(info))  # a bare number is a JSON document too

    async def check_scope(self, scope: Scope) -> None:
        """Reads the group or administrative unit itself: GraphError (404) when there is none."""
        if scope.kind == "group":
            item: Any = self._client.groups.by_group_id(scope.id)
        else:
            item = self._client.directory.administrative_units.by_administrative_unit_id(scope.id)
        query = _query_parameters(item, select=["id"])
        await self.paced(
            item.to_get_request_information(RequestConfiguration(query_parameters=query))
        )

    async def authentication_methods(self, user_id: str, lookup: str) -> list[dict[str, Any]]:
        """One user's methods list (`methods`, `phoneMethods` or `emailMethods`)."""
        authentication = self._client.users.by_user_id(user_id).authentication
        builder = {
            "methods": authentication.methods,
            "phoneMethods": authentication.phone_methods,
            "emailMethods": authentication.email_methods,
        }[lookup]
        body = await self.paced(builder.to_get_request_information())
        return list(body.get("value", []))

    async def users_delta(
        self, link: str | None = None, *, select: list[str] | None = None
    ) -> dict[str, Any]:
        """One page of /users/delta: from a nextLink or deltaLink, or (no link) a deltaLink for
        now, with no users ($deltatoken=latest), for these properties."""
        delta = self._client.users.delta
        if link:
            info = delta.with_url(link).to_get_request_information()
        else:
            query = _query_parameters(delta, select=select)
            info = delta.to_get_request_information(RequestConfiguration(query_parameters=query))
            # The adapter fills in the base URL only when it sends: fill it in to read the URL.
            base = str(self._client.request_adapter.base_url).rstrip("/")
            info.path_parameters["baseurl"] = base
            info.url = f"{info.url}&$deltatoken=latest"
        return dict(await self.paced(info))

    async def subscribed_skus(self) -> dict[str, str]:
        """The tenant's SKU part numbers by SKU id (GET /subscribedSkus, one page)."""
        info = self._client.subscribed_skus.to_get_request_information()
        body = await self.paced(info)
        return {
            str(sku["skuId"]): str(sku["skuPartNumber"])
            for sku in body.get("value", [])
            if sku.get("skuId") and sku.get("skuPartNumber")
        }

    async def paced(
        self,
        info: RequestInformation,
        limiter: AdaptiveLimiter | None = None,
        *,
        raw: bool = False,
        patience: float | None = None,
    ) -> Any:
        limiter = limiter or self.limiter
        refusals = attempts = 0
        while True:
            budget.check()
            headers: dict[str, str] = {}
            failure: GraphError | None = None
            async with limiter:
                try:
                    body = await self.send(info, headers, raw=raw)
                except GraphError as error:
                    failure = error
            if failure is None:
                if limiter is self.sign_in_limiter:
                    self._premium_refused = None
                units = resource_units(headers)
                limiter.succeeded(units, used=used_share(headers))
                meter.count(resource_units=units)
                budget.succeeded()
                return body
            if failure.premium_refused and limiter is self.sign_in_limiter:
                wait = self._believe_after(failure, patience)
                refusals += 1
                # Exponential backoff with jitter, never a gap that would start the run again.
                ceiling = min(wait / 3, 2.0 ** (refusals - 1))
                await limiter.backoff(refusals, random.uniform(ceiling / 2, ceiling))
                continue
            attempts += 1
            if self.wait_out(failure, limiter):
                await limiter.backoff(attempts, failure.retry_after)

    def _believe_after(self, refusal: GraphError, patience: float | None) -> float:
        """Raises the NON_PREMIUM refusal once this process's sign-in requests were refused
        without a break for `patience` seconds (USEREXPORT_STORM_SECONDS by default); else
        the patience. A run whose last refusal is older than that (nothing asked since) starts
        again: a later export's first answer alone decides nothing."""
        now = self.sign_in_limiter.now()
        patience = self.storm_seconds if patience is None else patience
        since, last = self._premium_refused or (now, now)
        if now - last > patience:
            since = now
        self._premium_refused = (since, now)
        if now - since >= patience:
            raise refusal
        budget.failed(refusal.summary)
        return patience

    async def close(self) -> None:
        # The SDK exposes no close; its request adapter owns one httpx client.
        await self._client.request_adapter._http_client.aclose()

    def wait_out(self, error: GraphError, limiter: AdaptiveLimiter | None = None) -> bool:
        """Re-raises an error that is Graph's final word; for a transient one (throttling,
        a server error, a lost connection), pauses every caller of the bucket and lets the
        caller retry. A 429 about no budget (CPU, data volume) slows the bucket's callers
        but pauses none of them, and a 424 (a request failed because another did) is that
        request's alone: True, the caller waits alone (its Retry-After, else a backoff)
        before it retries."""
        if not error.transient:
            raise error
        budget.failed(error.summary)
        limiter = limiter or self.limiter
        if error.status == 424:
            return True
        if error.status == 429 and not error.budget:
            limiter.congested()
            return True
        limiter.throttled(error.retry_after, learn_rate=error.status == 429, used=error.used)
        return False

    async def send(
        self, info: RequestInformation, headers: dict[str, str] | None = None, *, raw: bool = False
    ) -> Any:
        """Sends one request through the SDK's pipeline, once; the JSON answer as a dict (with
        `raw`, its bytes). `headers` receives the answer's throttling headers (x-ms-*)."""
        inspect = HeadersInspectionHandlerOption(inspect_request_headers=False)
        info.add_request_options([RetryHandlerOption(max_retries=0, should_retry=False), inspect])
        meter.count(requests=1)
        try:
            body = await self._client.request_adapter.send_primitive_async(
                info, "bytes", _ERROR_MAP
            )
        except APIError as error:
            failure = GraphError.from_api_error(error)
            meter.count(throttled=int(failure.status == 429))
            raise failure from error
        except httpx.TransportError as error:  # reset, refused, timed out
            raise GraphError(None, type(error).__name__, "no answer") from error
        if headers is not None:
            answer = inspect.response_headers
            headers.update(
                {k: next(iter(v), "") for k, v in answer.get_all().items() if k.startswith("x-ms-")}
            )
        if raw:
            return body or b""
        return orjson.loads(body) if body else {}


def _query_parameters(builder: BaseRequestBuilder, **values: Any) -> Any:
    """The builder's own GET query-parameter class (it maps select to $select, and so on)."""
    name = type(builder).__name__
    return getattr(type(builder), f"{name}GetQueryParameters")(**values)
