"""Reads users from Microsoft Graph through msgraph-sdk's request adapter, as raw JSON.

The SDK keeps its auth provider and error mapping; we skip its Kiota models (about 4-5 ms per
user) and parse the bytes with orjson instead. Its retry middleware is off for our requests:
every retry goes through the shared adaptive limiter and the invocation's time budget.

UsersListing walks one listing page by page from a Position a checkpoint can keep: the page
to read, how many of its users were already written, and what to check when passing over them
(after an expired page token the listing starts again and passes over what was written).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
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

from . import budget
from .filters import GraphQuery, Scope
from .limiter import AdaptiveLimiter, about_budget, used_share

PAGE_SIZE = 999  # Graph's maximum $top for users
SIGN_IN_PAGE_SIZE = 120  # ... and with signInActivity selected (user-list example 11)
# ... and with $expand: "Max page size with $expand is 100" (microsoft-graph-docs PR #21506;
# whether a larger $top is capped or refused is not documented, so it is never asked).
EXPAND_PAGE_SIZE = 100
EXPIRED_PAGE_TOKEN = "Directory_ExpiredPageToken"
# Graph's answer to signInActivity in a tenant without Entra ID P1/P2, which premium tenants
# also get "occasionally" (9 times in 10 for one reporter: microsoft-graph-docs #14118,
# microsoft-graph-docs-contrib #3033): retried for USEREXPORT_STORM_SECONDS before believed.
NON_PREMIUM = "Authentication_RequestFromNonPremiumTenantOrB2CTenant"
# Ids in one `$filter=id in (...)`: "limited to 15 expressions in the filter clause by default"
# (microsoft-graph-docs-contrib concepts/includes/known-issues/query-parameters.md).
ID_BATCH = 15
_ERROR_MAP: dict[str, Any] = {"XXX": ODataError}


class GraphError(Exception):
    """Graph answered with an error after the SDK's retries."""

    def __init__(
        self,
        status: int | None,
        code: str,
        message: str,
        *,
        retry_after: float | None = None,
        used: float | None = None,
        budget: bool = True,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.used = used  # x-ms-throttle-limit-percentage of a 429, when Graph sent it
        self.budget = budget  # a 429 about the resource-unit budget (limiter.about_budget)

    @property
    def transient(self) -> bool:
        """Worth another attempt later: throttling, timeouts, server errors, lost connections,
        and 424 Failed Dependency (json-batching.md: a batch's request failed because another
        did)."""
        return self.status is None or self.status in (408, 424, 429) or self.status >= 500

    @property
    def premium_refused(self) -> bool:
        """Graph's "no Entra ID P1/P2" for signInActivity, which it may not mean (NON_PREMIUM)."""
        return self.status == 403 and self.code == NON_PREMIUM

    @property
    def summary(self) -> str:
        """What happened, fit to show a caller: no host names, no SDK dump."""
        if self.status is None:
            return f"Microsoft Graph could not be reached ({self.code})"
        return f"Microsoft Graph answered {self.status} {self.code}"

    @classmethod
    def from_api_error(cls, error: APIError) -> GraphError:
        status = getattr(error, "response_status_code", None)
        code, message = "unknown", str(error.message or error)
        main = getattr(error, "error", None)
        if main is not None:
            code = main.code or code
            message = main.message or message
        headers = error.response_headers
        return cls(
            status,
            code,
            message,
            retry_after=retry_after_seconds(headers),
            used=used_share(headers),
            budget=about_budget(headers),
        )


def resource_units(headers: Mapping[str, str] | None) -> int:
    """x-ms-resource-unit: what the request cost (1 when Graph did not say)."""
    for name, value in (headers or {}).items():
        if name.lower() == "x-ms-resource-unit":
            try:
                return max(1, int(float(value)))
            except (TypeError, ValueError):
                return 1
    return 1


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Seconds a Retry-After header asks to wait (any casing); None when absent or not a number
    (an HTTP date is rare from Graph: backing off instead is safe)."""
    for name, value in (headers or {}).items():
        if name.lower() == "retry-after":
            try:
                seconds = float(value)
            except (TypeError, ValueError):
                return None
            return min(max(0.0, seconds), 3600.0) if math.isfinite(seconds) else None
    return None


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
        body = orjson.loads(self.body) if self.body else {}
        users = body.get("value", [])
        self.limiter.listed(len(users), self.seconds)
        return UsersPage(users, body.get("@odata.nextLink"), body.get("@odata.count"))


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
        # The current run of NON_PREMIUM refusals of this process's signInActivity requests
        # (monotonic: its first and its last; None: the last request was served), across
        # invocations, so that a short budget still comes to believe a refusal that lasts.
        self._premium_refused: tuple[float, float] | None = None

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
        body = await self._paced(info, limiter, raw=True, patience=patience)
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
        body = await self._paced(info, limiter)
        return {u["id"]: u for u in body.get("value", [])}

    async def count_users(self, *, filter: str | None, scope: Scope | None = None) -> int:
        """GET /users/$count (or the scope's): an advanced query, so eventually consistent."""
        counter = self._users(scope).count
        query = _query_parameters(counter, filter=filter)
        info = counter.to_get_request_information(RequestConfiguration(query_parameters=query))
        info.headers.try_add("ConsistencyLevel", "eventual")
        return int(await self._paced(info))  # a bare number is a JSON document too

    async def check_scope(self, scope: Scope) -> None:
        """Reads the group or administrative unit itself: GraphError (404) when there is none."""
        if scope.kind == "group":
            item: Any = self._client.groups.by_group_id(scope.id)
        else:
            item = self._client.directory.administrative_units.by_administrative_unit_id(scope.id)
        query = _query_parameters(item, select=["id"])
        await self._paced(
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
        body = await self._paced(builder.to_get_request_information())
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
        return dict(await self._paced(info))

    async def subscribed_skus(self) -> dict[str, str]:
        """The tenant's SKU part numbers by SKU id (GET /subscribedSkus, one page)."""
        info = self._client.subscribed_skus.to_get_request_information()
        body = await self._paced(info)
        return {
            str(sku["skuId"]): str(sku["skuPartNumber"])
            for sku in body.get("value", [])
            if sku.get("skuId") and sku.get("skuPartNumber")
        }

    async def _paced(
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
                limiter.succeeded(resource_units(headers), used=used_share(headers))
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
        try:
            body = await self._client.request_adapter.send_primitive_async(
                info, "bytes", _ERROR_MAP
            )
        except APIError as error:
            raise GraphError.from_api_error(error) from error
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


@dataclass(frozen=True)
class Position:
    """Where a listing stands, as a checkpoint keeps it."""

    link: str | None = None  # the page to read next; None: the listing's first page
    started: bool = False  # a page was read, so a None link means the listing is done
    skip: int = 0  # users at the head of that page already written (or to pass over)
    written: int = 0  # users of this listing written so far
    last_id: str | None = None  # the last user written, to check a passing over against

    @property
    def done(self) -> bool:
        return self.started and self.link is None

    def after(self, users: list[dict[str, Any]]) -> Position:
        """The position once these users, read at this one, are written too."""
        if not users:
            return self
        return replace(
            self,
            skip=self.skip + len(users),
            written=self.written + len(users),
            last_id=users[-1]["id"],
        )


@dataclass(frozen=True)
class ListingStep:
    users: list[dict[str, Any]]  # the page's users not written yet (none while passing over)
    at: Position  # the position of users[0]
    next: Position  # the position after the whole page
    changed: bool = False  # passing over did not end on the last user written
    relisted: bool = False  # the page token had expired: the listing starts again


class UsersListing:
    """One listing (a filter, $select, $expand), read a page at a time from a Position."""

    def __init__(
        self,
        graph: GraphReader,
        *,
        select: list[str],
        expand: list[str] | None,
        query: GraphQuery,
    ) -> None:
        self._graph = graph
        self._query = {
            "select": select,
            "expand": expand,
            "filter": query.filter,
            "advanced": query.advanced,
            "scope": query.scope,
            "page_size": page_size(select, expand),
        }

    async def read(self, position: Position) -> ListingStep:
        """Reads the page at `position`. An expired page token gives a step that starts the
        listing again, to pass over the users written so far (Graph lists in a stable order);
        each page passed over is a step of its own, so a long relist checkpoints like any."""
        return self.step(position, await self.fetch(position))

    async def fetch(self, position: Position) -> RawPage | None:
        """The page at `position` as Graph sent it; None when its page token expired."""
        link = position.link if position.started else None
        try:
            return await self._graph.users_page_bytes(next_link=link, **self._query)
        except GraphError as error:
            if error.code != EXPIRED_PAGE_TOKEN or link is None:
                raise
            return None

    def step(self, position: Position, fetched: RawPage | None) -> ListingStep:
        """The step a page fetched at `position` makes (see read)."""
        if fetched is None:
            written, last_id = position.written, position.last_id
            again = Position(skip=written, written=written, last_id=last_id)
            return ListingStep([], again, again, relisted=True)
        page = fetched.parse()
        skip = min(position.skip, len(page.users))
        rest = position.skip - skip  # still to pass over on the pages after this one
        changed = False
        if skip and not rest:  # passing over ends in this page: on the last user written?
            changed = page.users[skip - 1]["id"] != position.last_id
        elif rest and not page.next_link:  # the listing ended before the users written
            changed, rest = True, 0
        users = page.users[skip:]
        at = replace(position, skip=skip)
        following = Position(
            page.next_link,
            started=True,
            skip=rest,
            written=position.written + len(users),
            last_id=users[-1]["id"] if users else position.last_id,
        )
        return ListingStep(users, at, following, changed)
