"""The Graph v1.0 subset: /users, /users/$count, auth methods, /subscribedSkus, groups and
administrative units with their member lists, and $batch, as Answers.

Everything here works on (method, path, raw query, headers) so top-level requests and
$batch items run through the same code, including throttling, faults and latency.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import heapq
import logging
import re
import time
from array import array
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote, unquote_plus

import orjson

from . import registration
from .config import SimConfig
from .delta import (
    CHANGES,
    DELTA,
    EXPIRED_CODE,
    EXPIRED_MESSAGE,
    INITIAL,
    REFUSED_MESSAGE,
    RESYNC_CODE,
    RESYNC_MESSAGE,
    DeltaToken,
    round_changes,
    round_touched,
)
from .directory import ADMINISTRATIVE_UNIT, GROUP, GUID, DirObject
from .faults import FaultInjector
from .live import Change, LiveTenant
from .odata import Expand, Filter, ODataError, parse_expand, parse_filter, parse_select
from .properties import (
    AU_PROPERTIES,
    DEFAULT_AU_SELECT,
    DEFAULT_GROUP_SELECT,
    DEFAULT_SELECT,
    GROUP_PROPERTIES,
    SKU_PROPERTIES,
)
from .responses import (
    GRAPH_METADATA,
    JSON_PLAIN,
    SERVER_ERRORS,
    TEXT_PLAIN,
    Answer,
    error_answer,
    ok_answer,
    server_error_answer,
    throttled_answer,
)
from .stats import Stats
from .tenant import Tenant
from .throttle import Throttle, documented_cost, list_users_cost

log = logging.getLogger("tenantsim.graph")

MAX_BATCH = 20
USERS_ROLES = frozenset(
    {"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
)
AUTH_ROLES = frozenset(
    {"UserAuthenticationMethod.Read.All", "UserAuthenticationMethod.ReadWrite.All"}
)
NARROW_AUTH_ROLES = {
    "phoneMethods": frozenset({"UserAuthMethod-Phone.Read.All"}),
    "emailMethods": frozenset({"UserAuthMethod-Email.Read.All"}),
    "methods": frozenset(),
}
SIGNIN_ROLE = "AuditLog.Read.All"  # needed besides User.Read.All for signInActivity
SKU_ROLES = frozenset(
    {
        "LicenseAssignment.Read.All",
        "Organization.Read.All",
        "Directory.Read.All",
        "Organization.ReadWrite.All",
        "Directory.ReadWrite.All",
    }
)
GROUP_ROLES = frozenset(
    {
        "GroupMember.Read.All",
        "Group.Read.All",
        "Directory.Read.All",
        "GroupMember.ReadWrite.All",
        "Group.ReadWrite.All",
        "Directory.ReadWrite.All",
    }
)
AU_ROLES = frozenset(
    {
        "AdministrativeUnit.Read.All",
        "Directory.Read.All",
        "AdministrativeUnit.ReadWrite.All",
        "Directory.ReadWrite.All",
    }
)
# x-ms-throttle-scope: Scope/Limit/ApplicationId/ResourceId (the throttling docs' format)
THROTTLE_SCOPE = "Tenant_Application/Read/tenantsim/tenantsim"
SIGNIN_PAGE_CAP = 120  # users per page when signInActivity is selected (user-list.md)
_KNOWN_OPTIONS = frozenset(
    {"$select", "$filter", "$top", "$expand", "$count", "$skiptoken", "$orderby", "$search"}
)
_SCAN_SLICE = 2000  # users scanned between yields to the event loop
_FILTER_CACHE = 16
# A filter that is only startsWith on the UPN: served from the UPN prefix index.
_UPN_KEY = 3  # characters of the UPN index's keys
_UPN_PREFIX = re.compile(r"startsWith\(userPrincipalName,'((?:[^']|'')+)'\)", re.IGNORECASE)
# The type cast of a member list; msgraph-sdk sends the short alias graph.user.
_USER_CASTS = ("microsoft.graph.user", "graph.user")
_COUNT = "$count"
# Delta queries take only these; the others are Graph's "not supported with delta" (400).
_DELTA_OPTIONS = frozenset({"$select", "$filter", "$deltatoken", "$skiptoken"})
_DELTA_REFUSED = frozenset({"$top", "$expand", "$orderby", "$search", "$count"})
_DELTA_ID_FILTER = re.compile(r"\s*id\s+eq\s+'([0-9a-fA-F-]{36})'\s*", re.IGNORECASE)
# A /users filter that is only `id in (...)` or `id eq '...'`: looked up, not scanned.
_QUOTED = r"'(?:[^']|'')*'"
_ID_FILTER = re.compile(
    rf"\s*id\s+(?:in\s*\(\s*{_QUOTED}(?:\s*,\s*{_QUOTED})*\s*\)|eq\s+{_QUOTED})\s*",
    re.IGNORECASE,
)
_LITERAL = re.compile(r"'((?:[^']|'')*)'")
# Values of an `in` list outside advanced queries (known-issues/query-parameters.md)
MAX_IN_VALUES = 15
# An Azure AD B2C tenant's answers (docs #10493, #9477 and #9856; delta: Graph troubleshooting)
B2C_COUNT = "$count is not currently supported."
B2C_ADVANCED = "This request is not supported by the service."
B2C_DELTA = "Change enumeration is not supported for requested tenant."
# Base RU costs of throttling-limits.md's identity and access table (memberListCosts)
MEMBERS_COST, TRANSITIVE_MEMBERS_COST, SKUS_COST = 3, 5, 3
USER_TYPE = "#microsoft.graph.user"


@dataclass(frozen=True)
class MemberSource:
    """Which member list a request reads: a group's (direct or transitive) or an
    administrative unit's direct user members."""

    kind: str  # GROUP or ADMINISTRATIVE_UNIT
    key: str  # the object id as requested
    transitive: bool

    @property
    def endpoint(self) -> str:
        return "groupMembers" if self.kind == GROUP else "auMembers"


class Headers:
    """Case-insensitive view of request headers (plain dicts come from $batch items)."""

    def __init__(self, items: Mapping[str, str]) -> None:
        self._d = {k.lower(): str(v) for k, v in items.items()}

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._d.get(name.lower(), default)


@dataclass
class Query:
    """The query string: raw pairs (kept verbatim for nextLink) and decoded options."""

    raw_pairs: list[tuple[str, str]]  # (decoded lower-case name, raw "name=value")
    options: dict[str, str]

    @classmethod
    def parse(cls, raw: str) -> Query:
        pairs: list[tuple[str, str]] = []
        options: dict[str, str] = {}
        for part in raw.split("&") if raw else ():
            if not part:
                continue
            name, _, value = part.partition("=")
            # msgraph-sdk sends %24select; '+' means space as in any form-encoded query.
            dname = unquote_plus(name).strip().lower()
            pairs.append((dname, part))
            options[dname] = unquote_plus(value)
        return cls(pairs, options)

    def without(self, name: str) -> str:
        return "&".join(raw for n, raw in self.raw_pairs if n != name)


@dataclass(frozen=True)
class PageToken:
    """What a $skiptoken carries: where the next page starts, when and in which order it was
    issued (the serial lets POST /_sim/faults expire every token issued so far)."""

    position: int
    issued: float  # epoch seconds
    serial: int

    def encode(self) -> str:
        payload = orjson.dumps({"v": 1, "p": self.position, "t": self.issued, "s": self.serial})
        return base64.urlsafe_b64encode(payload).rstrip(b"=").decode("ascii")

    @classmethod
    def decode(cls, token: str) -> PageToken:
        try:
            data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            return cls(int(data["p"]), float(data["t"]), int(data["s"]))
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            raise ODataError(400, "BadRequest", "The $skiptoken value is not valid.") from None


def _project(user: Mapping[str, Any], select: list[str] | None) -> dict[str, Any]:
    if select is None:
        return {k: user.get(k) for k in DEFAULT_SELECT}
    out = {k: user.get(k) for k in select}
    if "id" not in out:
        out["id"] = user.get("id")
    return out


def _object_select(text: str | None, known: frozenset[str], type_name: str) -> list[str] | None:
    """$select of a group, administrative unit or SKU (names case-insensitive, id added)."""
    if text is None:
        return None
    canonical = {k.lower(): k for k in known}
    names: list[str] = []
    for part in text.split(","):
        if not part.strip():
            continue
        name = canonical.get(part.strip().lower())
        if name is None:
            raise ODataError(
                400,
                "BadRequest",
                f"Could not find a property named '{part.strip()}' on type "
                f"'microsoft.graph.{type_name}'.",
            )
        if name not in names:
            names.append(name)
    if not names:
        raise ODataError(400, "BadRequest", "The $select query option is empty.")
    return names


def _project_object(obj: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    out = {k: obj.get(k) for k in names}
    out.setdefault("id", obj.get("id"))
    return out


def _wants_signin(select: list[str] | None, expand: Expand | None) -> bool:
    return (select is not None and "signInActivity" in select) or (
        expand is not None and expand.select is not None and "signInActivity" in expand.select
    )


class GraphApi:
    """Graph handlers over one tenant, with the shared throttle, faults and stats."""

    def __init__(
        self,
        config: SimConfig,
        tenant: Tenant,
        stats: Stats,
        throttle: Throttle,
        faults: FaultInjector,
    ) -> None:
        self.config = config
        # The served tenant is always live: writes change it, every read sees the changes.
        self.tenant = tenant if isinstance(tenant, LiveTenant) else LiveTenant(tenant)
        self.stats = stats
        self.throttle = throttle
        self.faults = faults
        self.base_url = ""  # set once the server knows its port
        self._token_serial = 0  # serial of the next $skiptoken
        self._tokens_expired_below = 0  # tokens with a lower serial are expired
        self._scans: OrderedDict[str, asyncio.Task[array]] = OrderedDict()
        # The /users filters among _scans (member-list scans are not here): kept up to date
        # on every change instead of being scanned again.
        self._scan_filters: dict[str, Filter] = {}
        self._upn_index: asyncio.Future[dict[str, array]] | None = None
        self._live_members: dict[str, tuple[int, array]] = {}  # key -> (seq, members)
        self._delta_serial = 0  # serial of the next delta token
        self._delta_expired_below = 0  # delta tokens with a lower serial are expired

    # ------------------------------------------------------------------ dispatch
    async def handle(
        self,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: Headers,
        roles: frozenset[str],
        batch_item: bool = False,
    ) -> Answer:
        """Answer one Graph request; `raw_path` is relative to /v1.0, still %-encoded."""
        crid = headers.get("client-request-id")
        segments = [unquote(s) for s in raw_path.strip("/").split("/")] if raw_path else []
        head = segments[0].lower() if segments else ""
        if head not in ("users", "subscribedskus", "groups", "directory", "reports"):
            name = segments[0] if segments else ""
            self.stats.requests["other"] += 1
            return error_answer(
                400, "BadRequest", f"Resource not found for the segment '{name}'.", crid
            )
        if method != "GET":
            self.stats.requests["other"] += 1
            return error_answer(
                405,
                "Request_BadRequest",
                "Specified HTTP method is not allowed for the request target.",
                crid,
            )
        try:
            query = Query.parse(raw_query)
            ans = await self._route(
                head, segments, raw_path.strip("/"), query, headers, roles, crid, batch_item
            )
            if ans is not None:
                return ans
        except ODataError as exc:
            return error_answer(exc.status, exc.code, exc.message, crid)
        self.stats.requests["other"] += 1
        if head == "groups" and len(segments) == 1:
            return error_answer(
                400, "BadRequest", "Listing groups is not simulated by tenantsim.", crid
            )
        return error_answer(
            400, "BadRequest", f"Resource not found for the segment '{segments[-1]}'.", crid
        )

    async def _route(
        self,
        head: str,
        segments: list[str],
        path: str,
        query: Query,
        headers: Headers,
        roles: frozenset[str],
        crid: str | None,
        batch_item: bool,
    ) -> Answer | None:
        """The handler of a GET path, or None when the simulator does not serve it."""
        n = len(segments)
        lows = [s.lower() for s in segments]
        if head == "users":
            if n == 1:
                return await self._list_users(path, query, headers, roles, crid, batch_item)
            if n == 2 and segments[1] == _COUNT:
                return await self._count_users(query, headers, roles, crid)
            if n == 2 and segments[1] in ("delta", "delta()"):  # the SDK sends delta()
                return await self._delta(query, roles, crid)
            if n == 2:
                return await self._get_user(segments[1], query, roles, crid)
            if (
                n == 4
                and segments[2] == "authentication"
                and segments[3] in ("phoneMethods", "emailMethods", "methods")
            ):
                return await self._auth_methods(segments[1], segments[3], roles, crid)
            return None
        if head == "subscribedskus":
            return await self._subscribed_skus(query, roles, crid) if n == 1 else None
        if head == "reports":
            if tuple(lows) != registration.PATH:
                return None
            return await self._registration_details(path, query, roles, crid)
        if head == "directory" and n == 3 and lows[1] == "deleteditems":
            if lows[2] not in _USER_CASTS:
                return None
            return await self._deleted_items(query, roles, crid)
        if head == "groups":
            kind, rest = GROUP, segments[1:]
        elif n >= 3 and lows[1] == "administrativeunits":
            kind, rest = ADMINISTRATIVE_UNIT, segments[2:]
        else:
            return None
        if len(rest) == 1:
            return await self._get_object(kind, rest[0], query, roles, crid)
        lists = ("members", "transitivemembers") if kind == GROUP else ("members",)
        if len(rest) not in (3, 4) or rest[1].lower() not in lists:
            return None
        if rest[2].lower() not in _USER_CASTS or (len(rest) == 4 and rest[3] != _COUNT):
            return None
        source = MemberSource(kind, rest[0], rest[1].lower() == "transitivemembers")
        if len(rest) == 4:
            return await self._count_members(source, query, headers, roles, crid)
        return await self._member_list(source, path, query, headers, roles, crid)

    def _gate(
        self, endpoint: str, cost: int, target: str, crid: str | None, signin: bool = False
    ) -> Answer | None:
        """Throttle and fault decisions, taken before any await so draws stay in order."""
        self.stats.requests[endpoint] += 1
        cpu = self._cpu_429(target, crid)
        if cpu is not None:
            cpu.headers["x-ms-resource-unit"] = str(cost)
            return cpu
        decision = self.throttle.charge(cost, auth_method=target == "auth", signin=signin)
        if not decision.allowed:
            self.stats.throttled += 1
            self.stats.throttled_by_endpoint[endpoint] += 1
            retry = None if self.config.no_retry_after else decision.retry_after
            ans = throttled_answer(retry, crid)
            ans.headers["x-ms-resource-unit"] = str(cost)
            ans.headers["x-ms-throttle-limit-percentage"] = f"{decision.used_fraction:.2f}"
            ans.headers["x-ms-throttle-scope"] = THROTTLE_SCOPE
            # The reason of a throttled answer (throttling-limits.md, identity and access)
            ans.headers["x-ms-throttle-information"] = "ResourceUnitLimitExceeded"
            return ans
        self.stats.resource_units += cost
        ans = self._fault(target, crid)
        if ans is not None:
            ans.headers["x-ms-resource-unit"] = str(cost)
        return ans

    def _cpu_429(self, target: str, crid: str | None) -> Answer | None:
        """rate429Cpu: a 429 for CPU (x-ms-throttle-information CPULimitExceeded), drawn from a
        stream of its own before any bucket is charged; no x-ms-throttle-limit-percentage."""
        if not self.faults.cpu_429(target):
            return None
        self.stats.faults["429cpu"] += 1
        seconds = self.faults.settings.retry_after_429_cpu
        retry = None if self.config.no_retry_after or not seconds else seconds
        ans = throttled_answer(retry, crid)
        ans.headers["x-ms-throttle-scope"] = THROTTLE_SCOPE
        ans.headers["x-ms-throttle-information"] = "CPULimitExceeded"
        return ans

    def _fault(self, target: str, crid: str | None) -> Answer | None:
        """The drawn fault of the next request of `target` as an answer, or None."""
        fault = self.faults.draw(target)
        if fault is None:
            return None
        self.stats.faults[fault.kind] += 1
        if fault.kind == "reset":
            return Answer(0, None, reset=True)
        return server_error_answer(int(fault.kind), fault.retry_after, crid)

    def outage(self, batch: bool, crid: str | None) -> Answer | None:
        """Graph's answer during an outage window (503 without Retry-After, or a reset)."""
        window = self.faults.outage(batch)
        if window is None:
            return None
        self.stats.faults["outage"] += 1
        if window.mode == "reset":
            return Answer(0, None, reset=True)
        return server_error_answer(503, 0, crid)

    def expire_page_tokens(self) -> None:
        """Every $skiptoken issued so far answers Directory_ExpiredPageToken from now on."""
        self._tokens_expired_below = self._token_serial

    def unexpire_page_tokens(self) -> None:
        self._tokens_expired_below = 0

    def _next_token(self, position: int) -> str:
        serial = self._token_serial
        self._token_serial += 1
        return PageToken(position, round(time.time(), 3), serial).encode()

    def _expired(self, token: PageToken) -> bool:
        ttl = self.faults.settings.page_token_ttl
        return token.serial < self._tokens_expired_below or (
            ttl > 0 and time.time() - token.issued > ttl
        )

    def _finish(
        self, ans: Answer, cost: int, *, auth: bool = False, signin: bool = False
    ) -> Answer:
        """Graph's throttling headers: the RU charged and, past 80 % of the tightest bucket
        the request drew on, how much of it is used (what a client can pace by)."""
        ans.headers["x-ms-resource-unit"] = str(cost)
        used = self.throttle.used_fraction(auth, signin)
        if used > 0.8:
            ans.headers["x-ms-throttle-limit-percentage"] = f"{used:.2f}"
            ans.headers["x-ms-throttle-scope"] = THROTTLE_SCOPE
        return ans

    async def _latency(self, users: int) -> None:
        delay = self.config.latency_ms + users * self.config.latency_per_user_ms
        if delay > 0:
            await asyncio.sleep(delay / 1000.0)

    @staticmethod
    def _check_options(query: Query) -> None:
        for name in query.options:
            if name.startswith("$") and name not in _KNOWN_OPTIONS:
                if name == "$skip":
                    raise ODataError(
                        400, "Request_BadRequest", "'$skip' is not supported by the service."
                    )
                raise ODataError(400, "BadRequest", f"Query option '{name}' is not supported.")
        if "$orderby" in query.options:
            raise ODataError(
                400, "Request_UnsupportedQuery", "Sorting is not simulated by tenantsim."
            )
        if "$search" in query.options:
            raise ODataError(
                400, "Request_UnsupportedQuery", "$search is not simulated by tenantsim."
            )

    @staticmethod
    def _advanced(query: Query, headers: Headers) -> bool:
        eventual = (headers.get("ConsistencyLevel") or "").strip().lower() == "eventual"
        return eventual and query.options.get("$count", "").lower() == "true"

    def _filter(self, query: Query, headers: Headers) -> Filter | None:
        text = query.options.get("$filter")
        if text is None:
            return None
        flt = parse_filter(text)
        advanced = self._advanced(query, headers)
        if flt.advanced and not advanced:
            raise ODataError(
                400,
                "Request_UnsupportedQuery",
                "Unsupported query: this filter needs advanced query capabilities. Try adding "
                "$count with a value of true and the ConsistencyLevel header with a value of "
                "eventual.",
            )
        if flt.in_values > MAX_IN_VALUES and not advanced:
            # Graph's documented limit (known-issues/query-parameters.md), answered as seen in
            # the field; advanced queries are limited by URL length instead (not simulated).
            raise ODataError(
                400,
                "Request_UnsupportedQuery",
                "Too many child clauses specified in search filter expression containing 'OR' "
                f"operators: {flt.in_values}. Max allowed: {MAX_IN_VALUES}.",
            )
        return flt

    # ------------------------------------------------------------------ filtering
    async def _matches(self, flt: Filter) -> array:
        """Indexes of the users matching a filter, computed once per filter text."""
        if _ID_FILTER.fullmatch(flt.text):
            return self._id_matches(flt)
        task = self._scans.get(flt.text)
        if task is None:
            prefix = _UPN_PREFIX.fullmatch(flt.text)
            scan = self._upn_prefix(prefix.group(1)) if prefix else self._scan(flt)
            task = asyncio.ensure_future(scan)
            self._scans[flt.text] = task
            self._scan_filters[flt.text] = flt
            self._trim_scans()
        else:
            self._scans.move_to_end(flt.text)
        return await asyncio.shield(task)

    def _id_matches(self, flt: Filter) -> array:
        """`id in ('a','b',...)` or `id eq 'a'`: each id looked up (no scan, nothing cached),
        the users found in listing order, as a scan would give them."""
        tenant = self.tenant
        found: set[int] = set()
        for literal in _LITERAL.findall(flt.text):
            oid = tenant.find_index(literal.replace("''", "'"))
            if oid is not None and tenant.listed(oid) and flt.predicate(tenant.lite(oid)):
                found.add(oid)
        return array("I", sorted(found, key=tenant.rank))

    async def _upn_prefix(self, literal: str) -> array:
        """startsWith(userPrincipalName,'p') alone, as Graph serves it from an index: one scan
        builds an index of UPNs by their first three characters; every prefix reads from it."""
        needle = literal.replace("''", "'").lower()
        if self._upn_index is None:
            self._upn_index = asyncio.ensure_future(self._build_upn_index())
        index = await asyncio.shield(self._upn_index)
        if len(needle) < _UPN_KEY:
            keys = sorted(k for k in index if k.startswith(needle))
            return array("I", heapq.merge(*(index[k] for k in keys)))
        candidates = index.get(needle[:_UPN_KEY], array("I"))
        if len(needle) == _UPN_KEY:
            return array("I", candidates)  # a copy: the index and the cache update apart
        user = self.tenant.lite
        return array(
            "I", (i for i in candidates if user(i)["userPrincipalName"].lower().startswith(needle))
        )

    async def _build_upn_index(self) -> dict[str, array]:
        index: dict[str, array] = {}
        user = self.tenant.lite
        listing = self.tenant.listing
        n = len(self.tenant)
        for start in range(0, n, _SCAN_SLICE):
            for i in listing(start, start + _SCAN_SLICE):
                key = (user(i).get("userPrincipalName") or "")[:_UPN_KEY].lower()
                index.setdefault(key, array("I")).append(i)
            await asyncio.sleep(0)
        return index

    async def _scan(self, flt: Filter) -> array:
        out = array("I")
        pred = flt.predicate
        user = self.tenant.lite
        listing = self.tenant.listing
        n = len(self.tenant)
        for start in range(0, n, _SCAN_SLICE):
            for i in listing(start, start + _SCAN_SLICE):
                if pred(user(i)):
                    out.append(i)
            await asyncio.sleep(0)  # let other requests in during a long scan
        return out

    async def _member_matches(self, key: str, members: array, flt: Filter) -> array:
        """The members matching a filter, scanned once per (member list, filter text)."""
        task = self._scans.get(key)
        if task is None:
            task = asyncio.ensure_future(self._scan_members(members, flt))
            self._scans[key] = task
            self._trim_scans()
        else:
            self._scans.move_to_end(key)
        return await asyncio.shield(task)

    def _trim_scans(self) -> None:
        while len(self._scans) > _FILTER_CACHE:
            key, _ = self._scans.popitem(last=False)
            self._scan_filters.pop(key, None)

    def changed(self, change: Change) -> None:
        """Bring every cache up to date with one change (the count is the tenant's own)."""
        tenant = self.tenant
        rank = tenant.rank
        oid = change.oid

        def place(arr: array) -> None:  # insert oid where listing order puts it
            arr.insert(bisect.bisect_left(arr, rank(oid), key=rank), oid)

        index = self._upn_index
        if index is not None and not index.done():
            self._upn_index = None  # a build under way read an older listing: build anew
        elif index is not None and not index.cancelled() and index.exception() is None:
            buckets = index.result()
            if change.before is not None:
                old = (change.before.get("userPrincipalName") or "")[:_UPN_KEY].lower()
                if old in buckets and oid in buckets[old]:
                    buckets[old].remove(oid)
            if change.after is not None:
                new = (change.after.get("userPrincipalName") or "")[:_UPN_KEY].lower()
                place(buckets.setdefault(new, array("I")))
        for key, task in list(self._scans.items()):
            flt = self._scan_filters.get(key)
            if flt is None or not task.done() or task.cancelled() or task.exception():
                # Member-list scans and scans under way: dropped, scanned again when asked.
                del self._scans[key]
                self._scan_filters.pop(key, None)
                continue
            matches = task.result()
            if change.before is not None and oid in matches:
                matches.remove(oid)
            if change.after is not None and flt.predicate(change.after):
                place(matches)

    async def _members_now(self, key: str, members: array) -> array:
        """A member list without the users deleted since the directory was built."""
        removed = self.tenant.removed_base
        if not removed:
            return members
        cached = self._live_members.get(key)
        if cached is not None and cached[0] == self.tenant.seq:
            return cached[1]
        out = array("I")
        for start in range(0, len(members), _SCAN_SLICE):
            out.extend(i for i in members[start : start + _SCAN_SLICE] if i not in removed)
            await asyncio.sleep(0)
        self._live_members[key] = (self.tenant.seq, out)
        return out

    async def _scan_members(self, members: array, flt: Filter) -> array:
        out = array("I")
        pred = flt.predicate
        user = self.tenant.lite
        for start in range(0, len(members), _SCAN_SLICE):
            for i in members[start : start + _SCAN_SLICE]:
                if pred(user(i)):
                    out.append(i)
            await asyncio.sleep(0)
        return out

    # ------------------------------------------------------------------ endpoints
    def _need(
        self, roles: frozenset[str], allowed: frozenset[str], crid: str | None
    ) -> Answer | None:
        if roles & allowed:
            return None
        self.stats.forbidden += 1
        return error_answer(
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
            crid,
        )

    def _signin_denied(self, roles: frozenset[str], crid: str | None) -> Answer | None:
        """signInActivity needs AuditLog.Read.All and a tenant with Entra ID P1/P2 that is not
        B2C; signInFlaky403 and signInRefusedAfter answer a premium tenant the same 403."""
        if SIGNIN_ROLE not in roles:
            return self._need(roles, frozenset({SIGNIN_ROLE}), crid)
        settings = self.faults.settings
        if not settings.premium:
            return self._no_premium(crid, None)
        if settings.b2c:
            return self._no_premium(crid, "b2cRefused")
        # signInFlaky403 and signInRefusedAfter: a premium tenant answered the same 403. The
        # draw is made for every request that gets here, so the n-th one is the same per seed.
        flaky = self.faults.signin_flaky()
        left = self.faults.signin_left
        if left is not None and left <= 0:
            return self._no_premium(crid, "signInRefused")
        if flaky:
            return self._no_premium(crid, "signInFlaky403")
        if left is not None:
            self.faults.signin_left = left - 1
        return None

    def _no_premium(self, crid: str | None, kind: str | None) -> Answer:
        """The 403 of a tenant without Entra ID P1/P2 (or B2C) for signInActivity."""
        self.stats.forbidden += 1
        if kind is not None:
            self.stats.faults[kind] += 1
        return error_answer(
            403,
            "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
            "Neither tenant is B2C or tenant doesn't have premium license",
            crid,
        )

    def _b2c_refusal(self, message: str, crid: str | None) -> Answer:
        """An Azure AD B2C tenant's 400 for $count or an advanced query (b2c)."""
        self.stats.faults["b2cRefused"] += 1
        return error_answer(400, "Request_BadRequest", message, crid)

    def _signin_view(self, item: dict[str, Any]) -> None:
        """successfulSignInsSince: lastSuccessfulSignIn* null when the last success is older
        than the date Graph began recording it (signInActivity.md: not backfilled)."""
        since = self.faults.settings.since
        activity = item.get("signInActivity")
        if since is None or not isinstance(activity, dict):
            return
        when = _instant(activity.get("lastSuccessfulSignInDateTime"))
        if when is not None and when < since:
            item["signInActivity"] = activity | {
                "lastSuccessfulSignInDateTime": None,
                "lastSuccessfulSignInRequestId": None,
            }

    def _lookup(self, kind: str, key: str, crid: str | None) -> DirObject | Answer:
        """A group or administrative unit by id; 404 for an unknown GUID, 400 otherwise."""
        obj = self.tenant.directory.find(kind, key)
        if obj is not None:
            return obj
        if GUID.fullmatch(key):
            return _not_found(key, crid)
        return error_answer(400, "Request_BadRequest", f"Invalid object identifier '{key}'.", crid)

    async def _list_users(
        self,
        path: str,
        query: Query,
        headers: Headers,
        roles: frozenset[str],
        crid: str | None,
        batch_item: bool = False,
    ) -> Answer:
        denied = self._need(roles, USERS_ROLES, crid)
        if denied:
            self.stats.requests["users"] += 1
            return denied
        return await self._serve_list("users", path, None, query, headers, roles, crid, batch_item)

    async def _member_list(
        self,
        source: MemberSource,
        path: str,
        query: Query,
        headers: Headers,
        roles: frozenset[str],
        crid: str | None,
    ) -> Answer:
        denied = self._need(roles, GROUP_ROLES if source.kind == GROUP else AU_ROLES, crid)
        if denied:
            self.stats.requests[source.endpoint] += 1
            return denied
        return await self._serve_list(
            source.endpoint, path, source, query, headers, roles, crid, True
        )

    def _member_filter(
        self, query: Query, headers: Headers, expand: Expand | None
    ) -> Filter | None:
        """On member lists any $filter is an advanced query, and $expand is refused in one."""
        advanced = self._advanced(query, headers)
        if expand is not None and advanced:
            raise ODataError(
                400,
                "Request_UnsupportedQuery",
                "Unsupported query: $expand is not supported with advanced queries "
                "(ConsistencyLevel: eventual and $count=true).",
            )
        text = query.options.get("$filter")
        if text is None:
            return None
        flt = parse_filter(text)
        if not advanced:
            raise ODataError(
                400,
                "Request_UnsupportedQuery",
                "Unsupported query: filtering a member list needs advanced query capabilities. "
                "Try adding $count with a value of true and the ConsistencyLevel header with a "
                "value of eventual.",
            )
        return flt

    async def _serve_list(
        self,
        endpoint: str,
        path: str,
        source: MemberSource | None,
        query: Query,
        headers: Headers,
        roles: frozenset[str],
        crid: str | None,
        batch_item: bool,
    ) -> Answer:
        """A page of /users or of a member list (source): the same options, paging, costs."""
        self._check_options(query)
        select = parse_select(query.options["$select"]) if "$select" in query.options else None
        expand: Expand | None = (
            parse_expand(query.options["$expand"]) if "$expand" in query.options else None
        )
        top_text = query.options.get("$top", "100")
        try:
            top = int(top_text)
        except ValueError:
            raise ODataError(400, "BadRequest", f"Invalid $top value '{top_text}'.") from None
        if not 1 <= top <= 999:
            raise ODataError(
                400,
                "Request_UnsupportedQuery",
                f"Invalid page size specified: '{top}'. Must be between 1 and 999 inclusive.",
            )
        want_count = query.options.get("$count", "").lower() == "true"
        settings = self.faults.settings
        if settings.b2c and want_count:
            return self._b2c_refusal(B2C_COUNT, crid)
        if settings.b2c and (headers.get("ConsistencyLevel") or "").strip().lower() == "eventual":
            return self._b2c_refusal(B2C_ADVANCED, crid)
        if want_count and not self._advanced(query, headers):
            raise ODataError(400, "Request_BadRequest", "$count is not currently supported.")
        flt = (
            self._filter(query, headers)
            if source is None
            else self._member_filter(query, headers, expand)
        )
        small_top = top < 20  # before the caps: throttling-limits.md's rule reads $top as sent
        signin = _wants_signin(select, expand)
        if signin:
            denied = self._signin_denied(roles, crid)
            if denied:
                self.stats.requests[endpoint] += 1
                return denied
            top = min(top, SIGNIN_PAGE_CAP)  # Graph caps these pages silently
        expand_capped = expand is not None and 0 < settings.expand_page_cap < top
        if expand_capped:
            top = settings.expand_page_cap  # PR #21506: at most 100 users a page with $expand
        token = query.options.get("$skiptoken")
        page_token = PageToken.decode(token) if token is not None else None
        position = page_token.position if page_token is not None else 0

        cost = list_users_cost(select is not None, expand is not None)
        if source is not None and settings.member_list_costs:
            base = 1  # administrative-unit members: "any identity path not listed"
            if source.kind == GROUP:
                base = TRANSITIVE_MEMBERS_COST if source.transitive else MEMBERS_COST
            cost = documented_cost(base, select is not None, expand is not None, small_top)
        gated = self._gate(endpoint, cost, "users", crid, signin=signin)
        if gated is not None:
            return gated
        if page_token is not None and self._expired(page_token):
            self.stats.faults["expiredPageToken"] += 1
            return self._finish(
                error_answer(
                    400,
                    "Directory_ExpiredPageToken",
                    "The specified page token value has expired and can no longer be included "
                    "in your request.",
                    crid,
                ),
                cost,
            )
        # Drawn before any await, like the faults, so the n-th page is the slow one.
        slow = 0.0 if batch_item else self.faults.slow_page()
        if slow:
            self.stats.faults["slowPage"] += 1
            await asyncio.sleep(slow)

        if source is not None:
            obj = self._lookup(source.kind, source.key, crid)
            if isinstance(obj, Answer):
                return self._finish(obj, cost)
            members = await self.tenant.directory.users_of_async(obj, source.transitive)
            members = await self._members_now(f"{obj.id.lower()}:{source.transitive}", members)
            if flt is not None:
                key = f"{obj.kind}:{obj.id.lower()}:{source.transitive}:{flt.text}"
                members = await self._member_matches(key, members, flt)
            total = len(members)
            indexes: Any = members[position : position + top]
        elif flt is None:
            total = len(self.tenant)
            indexes = self.tenant.listing(position, position + top)
        else:
            matches = await self._matches(flt)
            total = len(matches)
            indexes = matches[position : position + top]
        read = self.tenant.user if signin else self.tenant.lite
        # limitedMemberInfo: without a role that reads users, a member list gives each user's
        # type and id, every other property null (permissions-overview.md, limited-info.md).
        limited = source is not None and settings.limited_member_info and not roles & USERS_ROLES
        # signInActivity read as null: advanced /users queries (msgraph-sdk-powershell#1898)
        # or member lists (microsoft-graph-docs-contrib#5593), when those switches are on.
        emptied = (
            select is not None
            and "signInActivity" in select
            and (
                settings.signin_empty_in_member_lists
                if source is not None
                else settings.signin_empty_in_advanced_queries and self._advanced(query, headers)
            )
        )
        value = []
        for i in indexes:
            user = read(i)
            if limited:
                names = select if select is not None else DEFAULT_SELECT
                value.append({"@odata.type": USER_TYPE, "id": user.get("id")})
                value[-1] |= {k: None for k in names if k != "id"}
                continue
            item = _project(user, select)
            if emptied:
                item["signInActivity"] = None
            else:
                self._signin_view(item)
            if expand is not None:
                mgr = self._manager(user)
                if mgr is not None:
                    item["manager"] = {"@odata.type": USER_TYPE} | _project(mgr, expand.select)
                    self._signin_view(item["manager"])
            value.append(item)
        if limited and value:
            self.stats.faults["limitedMember"] += len(value)
        if emptied:
            self.stats.faults["signInEmptied"] += 1
        if expand_capped:
            self.stats.faults["expandPageCapped"] += 1

        context = f"{GRAPH_METADATA}#users"
        if select is not None:
            inner = ",".join(select)
            if expand is not None:
                sub = f"({','.join(expand.select)})" if expand.select else "()"
                inner += f",manager{sub}"
            context += f"({inner})"
        body: dict[str, Any] = {"@odata.context": context}
        if want_count and token is None:
            body["@odata.count"] = total
        nxt = position + top
        if nxt < total:
            rest = query.without("$skiptoken")
            sep = "&" if rest else ""
            body["@odata.nextLink"] = (
                f"{self.base_url}/{path}?{rest}{sep}$skiptoken={self._next_token(nxt)}"
            )
        body["value"] = value
        self.stats.users_returned += len(value)
        if signin:
            self.stats.signin_pages += 1
        await self._latency(len(value))
        return self._finish(ok_answer(body), cost, signin=signin)

    # ------------------------------------------------------------------ delta
    def expire_delta_tokens(self) -> None:
        """Every delta round's token issued so far answers syncStateNotFound from now on."""
        self._delta_expired_below = self._delta_serial

    def unexpire_delta_tokens(self) -> None:
        self._delta_expired_below = 0

    def _delta_link(self, token: DeltaToken) -> str:
        name = "$deltatoken" if token.kind == DELTA else "$skiptoken"
        return f"{self.base_url}/users/delta?{name}={token.encode()}"

    def _delta_token(self, base: DeltaToken, kind: str, position: int, **kw: Any) -> DeltaToken:
        serial = self._delta_serial
        self._delta_serial += 1
        return base.at(kind, position, serial, round(time.time(), 3), **kw)

    def _delta_expired(self, token: DeltaToken) -> bool:
        ttl = self.faults.settings.delta_token_ttl
        return token.serial < self._delta_expired_below or (
            ttl > 0 and time.time() - token.issued > ttl
        )

    def _delta_request(self, query: Query) -> DeltaToken:
        """The round a request continues or starts, from its options (400s raised)."""
        for name in query.options:
            if name in _DELTA_REFUSED:
                raise ODataError(
                    400,
                    "Request_UnsupportedQuery",
                    f"The query option '{name}' is not supported with delta queries.",
                )
            if name.startswith("$") and name not in _DELTA_OPTIONS:
                raise ODataError(400, "BadRequest", f"Query option '{name}' is not supported.")
        delta_text = query.options.get("$deltatoken")
        skip_text = query.options.get("$skiptoken")
        if delta_text is not None and skip_text is not None:
            raise ODataError(
                400, "Request_BadRequest", "Only one of $deltatoken and $skiptoken may be given."
            )
        if skip_text is not None:
            return DeltaToken.decode(skip_text, (INITIAL, CHANGES))
        if delta_text == "":
            delta_text = None  # an empty $deltatoken is the initial query (the 410's Location)
        if delta_text is not None and delta_text.lower() != "latest":
            return DeltaToken.decode(delta_text, (DELTA,))
        select = parse_select(query.options["$select"]) if "$select" in query.options else None
        only = None
        text = query.options.get("$filter")
        if text is not None:
            match = _DELTA_ID_FILTER.fullmatch(text)
            if match is None:
                raise ODataError(
                    400,
                    "Request_UnsupportedQuery",
                    "Unsupported query: delta queries on users filter only on id eq '<id>'.",
                )
            only = match.group(1).lower()
        seq = self.tenant.seq
        kind = DELTA if delta_text is not None else INITIAL  # latest: a deltaLink at once
        # Not a token anyone was given: its serial is never compared, so -1 (never expired).
        return DeltaToken(kind, seq, seq, 0, tuple(select) if select else None, only, 0.0, -1)

    async def _delta(self, query: Query, roles: frozenset[str], crid: str | None) -> Answer:
        """GET /users/delta: an initial round, a changes round, or $deltatoken=latest."""
        denied = self._need(roles, USERS_ROLES, crid)
        if denied:
            self.stats.requests["delta"] += 1
            return denied
        settings = self.faults.settings
        if settings.b2c:
            # Change tracking is not supported in B2C tenants (delta-query-overview.md).
            self.stats.requests["delta"] += 1
            self.stats.faults["b2cRefused"] += 1
            return error_answer(400, "Request_UnsupportedQuery", B2C_DELTA, crid)
        token = self._delta_request(query)
        select = list(token.select) if token.select is not None else None
        refused = [n for n in select or () if n in settings.delta_refused_properties]
        if refused:
            self.stats.requests["delta"] += 1
            self.stats.faults["deltaRefusedSelect"] += 1
            message = REFUSED_MESSAGE.format(",".join(refused))
            return error_answer(400, "BadRequest", message, crid)
        cost = list_users_cost(select is not None, False)
        gated = self._gate("delta", cost, "users", crid)
        if gated is not None:
            return gated
        if token.serial >= 0 and self._delta_expired(token):
            self.stats.faults["expiredDeltaToken"] += 1
            return self._finish(self._delta_expired_answer(token, crid), cost)
        slow = self.faults.slow_page()
        if slow:
            self.stats.faults["slowPage"] += 1
            await asyncio.sleep(slow)

        tenant = self.tenant
        size = self.config.delta_page_size
        only = tenant.find_index(token.only) if token.only is not None else None
        value: list[dict[str, Any]] = []
        # deltaPartialItems: per item, the properties the round's updates touched (None: all
        # of them: an initial round's user, or one created or restored in the round)
        item_touched: list[frozenset[str] | None] = []
        if token.kind == INITIAL and token.only is not None:
            oids = [only] if only is not None and tenant.listed(only) else []
            page = oids[token.position : token.position + size]
            more = token.position + size < len(oids)
            value = [_project(tenant.lite(oid), select) for oid in page]
        elif token.kind == INITIAL:
            page = tenant.listing(token.position, token.position + size)
            more = token.position + size < len(tenant)
            value = [_project(tenant.lite(oid), select) for oid in page]
        elif token.serial < 0 and token.kind == DELTA:  # $deltatoken=latest
            more = False
        else:
            # A deltaLink starts a changes round up to now; its skiptokens keep that end.
            until = token.until if token.kind == CHANGES else tenant.seq
            if token.only is not None and only is None:
                changes = []
            else:
                changes = round_changes(tenant, token.since, until, only)
            touched, restored = round_touched(tenant, token.since, until)
            if settings.delta_skips_restored and select is not None and restored:
                # microsoft-graph-docs-contrib#6555: with $select, undeleted users are missed.
                kept = [c for c in changes if not (c[1] is None and c[0] in restored)]
                if token.kind == DELTA:  # counted once, on the round's first page
                    self.stats.faults["deltaSkippedRestore"] += len(changes) - len(kept)
                changes = kept
            page_changes = changes[token.position : token.position + size]
            more = token.position + size < len(changes)
            for oid, reason in page_changes:
                if reason is None:
                    value.append(_project(tenant.lite(oid), select))
                else:
                    user_key = tenant.users_changed[oid].get("id")
                    value.append({"id": user_key, "@removed": {"reason": reason}})
                item_touched.append(touched.get(oid))
            token = replace(token, until=until)
        if settings.delta_partial_items:
            value = self._partial_items(value, item_touched or [None] * len(value))

        context = f"{GRAPH_METADATA}#users"
        if select is not None:
            context += f"({','.join(select)})"
        body: dict[str, Any] = {"@odata.context": context}
        if more:
            kind = INITIAL if token.kind == INITIAL else CHANGES
            nxt = self._delta_token(token, kind, token.position + size)
            body["@odata.nextLink"] = self._delta_link(nxt)
        else:
            # The round ends: the next one starts after the changes this one covered.
            since = token.since if token.kind == INITIAL else token.until
            if token.serial < 0 and token.kind == DELTA:
                since = tenant.seq
            end = self._delta_token(token, DELTA, 0, since=since, until=since)
            body["@odata.deltaLink"] = self._delta_link(end)
        body["value"] = value
        self.stats.delta_items_returned += len(value)
        await self._latency(len(value))
        return self._finish(ok_answer(body), cost)

    def _partial_items(
        self, value: list[dict[str, Any]], touched: list[frozenset[str] | None]
    ) -> list[dict[str, Any]]:
        """deltaPartialItems: an updated user's item with id and the properties its updates
        touched; every other item without its null properties; counted per item trimmed."""
        out = []
        for item, names in zip(value, touched, strict=True):
            if "@removed" in item:
                out.append(item)
                continue
            trimmed, lost = _delta_item(item, names)
            if lost:
                self.stats.faults["deltaPartialItem"] += 1
            out.append(trimmed)
        return out

    def _delta_expired_answer(self, token: DeltaToken, crid: str | None) -> Answer:
        """An expired delta token answered as deltaExpiredAnswer says: 400 syncStateNotFound
        (or SyncStateNotFound), 410 resyncRequired, or 410 with a Location to start again."""
        answer = self.faults.settings.delta_expired_answer
        if answer in (EXPIRED_CODE, "SyncStateNotFound"):
            return error_answer(400, answer, EXPIRED_MESSAGE, crid)
        ans = error_answer(410, RESYNC_CODE, RESYNC_MESSAGE, crid)
        if answer == "gone":
            # delta-query-overview.md: a Location with an empty $deltatoken (the initial query)
            ans.headers["Location"] = self._delta_restart(token)
        return ans

    def _delta_restart(self, token: DeltaToken) -> str:
        """The initial query of a round, as a 410's Location: the round's $select (and its
        id filter), then an empty $deltatoken."""
        parts = []
        if token.select is not None:
            parts.append(f"$select={','.join(token.select)}")
        if token.only is not None:
            parts.append("$filter=" + quote(f"id eq '{token.only}'", safe=""))
        parts.append("$deltatoken=")
        return f"{self.base_url}/users/delta?{'&'.join(parts)}"

    async def _deleted_items(self, query: Query, roles: frozenset[str], crid: str | None) -> Answer:
        """GET /directory/deletedItems/microsoft.graph.user: the soft-deleted users."""
        self.stats.requests["deletedItems"] += 1
        denied = self._need(roles, USERS_ROLES, crid)
        if denied:
            return denied
        select = parse_select(query.options["$select"]) if "$select" in query.options else None
        names = select if select is not None else [*DEFAULT_SELECT, "deletedDateTime"]
        context = f"{GRAPH_METADATA}#directoryObjects/microsoft.graph.user"
        if select is not None:
            context += f"({','.join(select)})"
        value = [_project(user, names) for user in self.tenant.deleted_users()]
        return self._finish(ok_answer({"@odata.context": context, "value": value}), 1)

    def _manager(self, user: Mapping[str, Any]) -> dict[str, Any] | None:
        ref = user.get("manager")
        if not isinstance(ref, dict) or not isinstance(ref.get("id"), str):
            return None
        return self.tenant.find(ref["id"])

    def _count_request(
        self,
        endpoint: str,
        needed: frozenset[str],
        query: Query,
        headers: Headers,
        roles: frozenset[str],
        crid: str | None,
    ) -> Filter | Answer | None:
        """The checks every $count makes (role, ConsistencyLevel, throttling): its $filter, or
        the answer that refuses it."""
        denied = self._need(roles, needed, crid)
        if denied:
            self.stats.requests[endpoint] += 1
            return denied
        if self.faults.settings.b2c:
            self.stats.requests[endpoint] += 1
            return self._b2c_refusal(B2C_COUNT, crid)
        if (headers.get("ConsistencyLevel") or "").strip().lower() != "eventual":
            self.stats.requests[endpoint] += 1
            return error_answer(
                400, "Request_BadRequest", "Count is not currently supported.", crid
            )
        text = query.options.get("$filter")
        flt = parse_filter(text) if text is not None else None
        return self._gate(endpoint, 1, "users", crid) or flt

    async def _count_users(
        self, query: Query, headers: Headers, roles: frozenset[str], crid: str | None
    ) -> Answer:
        flt = self._count_request("usersCount", USERS_ROLES, query, headers, roles, crid)
        if isinstance(flt, Answer):
            return flt
        count = len(self.tenant) if flt is None else len(await self._matches(flt))
        await self._latency(0)
        ans = ok_answer(str(count), TEXT_PLAIN)
        return self._finish(ans, 1)

    async def _get_user(
        self, key: str, query: Query, roles: frozenset[str], crid: str | None
    ) -> Answer:
        denied = self._need(roles, USERS_ROLES, crid)
        if denied:
            self.stats.requests["user"] += 1
            return denied
        select = parse_select(query.options["$select"]) if "$select" in query.options else None
        signin = _wants_signin(select, None)
        if signin:
            denied = self._signin_denied(roles, crid)
            if denied:
                self.stats.requests["user"] += 1
                return denied
        gated = self._gate("user", 1, "users", crid, signin=signin)
        if gated is not None:
            return gated
        user = self.tenant.find(key)
        if user is None:
            return self._finish(_not_found(key, crid), 1)
        await self._latency(1)
        body: dict[str, Any] = {"@odata.context": f"{GRAPH_METADATA}#users/$entity"}
        body |= _project(user, select)
        self._signin_view(body)
        return self._finish(ok_answer(body), 1)

    async def _auth_methods(
        self, key: str, kind: str, roles: frozenset[str], crid: str | None
    ) -> Answer:
        if not self.faults.settings.authentication_methods_api:
            # A national cloud without the API (21Vianet): the segment does not exist there.
            self.stats.requests[kind] += 1
            self.stats.faults["noAuthenticationApi"] += 1
            return error_answer(
                400, "BadRequest", "Resource not found for the segment 'authentication'.", crid
            )
        denied = self._need(roles, AUTH_ROLES | NARROW_AUTH_ROLES[kind], crid)
        if denied:
            self.stats.requests[kind] += 1
            return denied
        gated = self._gate(kind, 1, "auth", crid)
        if gated is not None:
            return gated
        user = self.tenant.find(key)
        if user is None:
            return self._finish(_not_found(key, crid), 1, auth=True)
        settings = self.faults.settings
        forced = settings.forced_authentication_status(user["id"]) or _forced_status(user)
        if forced is not None and forced != 200:
            self.stats.faults[f"forced{forced}"] += 1
            return self._finish(self._forced(forced, key, crid), 1, auth=True)
        methods = (user.get("authentication") or {}).get(kind) or []
        await self._latency(0)
        self.stats.auth_methods_returned += len(methods)
        body = {
            "@odata.context": f"{GRAPH_METADATA}#users('{key}')/authentication/{kind}",
            "value": methods,
        }
        return self._finish(ok_answer(body), 1, auth=True)

    async def _count_members(
        self,
        source: MemberSource,
        query: Query,
        headers: Headers,
        roles: frozenset[str],
        crid: str | None,
    ) -> Answer:
        needed = GROUP_ROLES if source.kind == GROUP else AU_ROLES
        flt = self._count_request("membersCount", needed, query, headers, roles, crid)
        if isinstance(flt, Answer):
            return flt
        obj = self._lookup(source.kind, source.key, crid)
        if isinstance(obj, Answer):
            return self._finish(obj, 1)
        members = await self.tenant.directory.users_of_async(obj, source.transitive)
        members = await self._members_now(f"{obj.id.lower()}:{source.transitive}", members)
        if flt is not None:
            key = f"{obj.kind}:{obj.id.lower()}:{source.transitive}:{flt.text}"
            members = await self._member_matches(key, members, flt)
        await self._latency(0)
        return self._finish(ok_answer(str(len(members)), TEXT_PLAIN), 1)

    async def _get_object(
        self, kind: str, key: str, query: Query, roles: frozenset[str], crid: str | None
    ) -> Answer:
        """GET /groups/{id} or /directory/administrativeUnits/{id}, $select supported."""
        endpoint = "group" if kind == GROUP else "administrativeUnit"
        denied = self._need(roles, GROUP_ROLES if kind == GROUP else AU_ROLES, crid)
        if denied:
            self.stats.requests[endpoint] += 1
            return denied
        if kind == GROUP:
            known, default, type_name, entity = (
                GROUP_PROPERTIES,
                DEFAULT_GROUP_SELECT,
                "group",
                "groups",
            )
        else:
            known, default, type_name = AU_PROPERTIES, DEFAULT_AU_SELECT, "administrativeUnit"
            entity = "directory/administrativeUnits"
        names = _object_select(query.options.get("$select"), known, type_name)
        gated = self._gate(endpoint, 1, "users", crid)
        if gated is not None:
            return gated
        obj = self._lookup(kind, key, crid)
        if isinstance(obj, Answer):
            return self._finish(obj, 1)
        await self._latency(0)
        inner = f"({','.join(names)})" if names else ""
        body: dict[str, Any] = {"@odata.context": f"{GRAPH_METADATA}#{entity}{inner}/$entity"}
        body |= _project_object(obj.props, names or default)
        return self._finish(ok_answer(body), 1)

    async def _subscribed_skus(
        self, query: Query, roles: frozenset[str], crid: str | None
    ) -> Answer:
        denied = self._need(roles, SKU_ROLES, crid)
        if denied:
            self.stats.requests["subscribedSkus"] += 1
            return denied
        names = _object_select(
            query.options.get("$select"), frozenset(SKU_PROPERTIES), "subscribedSku"
        )
        cost = 1
        if self.faults.settings.member_list_costs:
            cost = documented_cost(SKUS_COST, names is not None, False)
        gated = self._gate("subscribedSkus", cost, "users", crid)
        if gated is not None:
            return gated
        skus = await self.tenant.directory.skus_async()
        await self._latency(0)
        inner = f"({','.join(names)})" if names else ""
        body = {
            "@odata.context": f"{GRAPH_METADATA}#subscribedSkus{inner}",
            "value": [_project_object(sku, names) if names else sku for sku in skus],
        }
        return self._finish(ok_answer(body), cost)

    async def _registration_details(
        self, path: str, query: Query, roles: frozenset[str], crid: str | None
    ) -> Answer:
        """The registration report (registration.py): AuditLog.Read.All and a premium tenant;
        charged to the identity and access reports bucket, as authentication methods reads."""
        endpoint = "userRegistrationDetails"
        if registration.REPORT_ROLE not in roles:
            self.stats.requests[endpoint] += 1
            self.stats.forbidden += 1
            return error_answer(
                403,
                "Authentication_MSGraphPermissionMissing",
                "Calling principal does not have required MSGraph permissions AuditLog.Read.All",
                crid,
            )
        settings = self.faults.settings
        if not settings.premium or settings.b2c:
            self.stats.requests[endpoint] += 1
            return self._no_premium(crid, "registrationRefused")
        for name in query.options:
            if name.startswith("$") and name not in ("$filter", "$skiptoken"):
                self.stats.requests[endpoint] += 1
                return error_answer(
                    400, "BadRequest", f"Query option '{name}' is not supported.", crid
                )
        try:
            wanted = registration.upn_filter(query.options.get("$filter"))
        except ValueError:
            self.stats.requests[endpoint] += 1
            return error_answer(400, "BadRequest", "Invalid filter clause", crid)
        token = query.options.get("$skiptoken")
        start = PageToken.decode(token).position if token else 0
        gated = self._gate(endpoint, 1, "auth", crid)
        if gated is not None:
            return gated
        # A page covers PAGE_SIZE users of the listing; the disabled ones among them are left
        # out, so a page may hold fewer rows (paging.md: a page's size is Graph's choice).
        stop = start + registration.PAGE_SIZE
        if wanted is None:
            total = len(self.tenant)
            page: Iterable[int] = self.tenant.listing(start, min(stop, total))
        else:
            literal, prefix = wanted
            matches = await self._upn_prefix(literal.replace("'", "''")) if literal else array("I")
            if not prefix:
                exact = literal.lower()
                user = self.tenant.lite
                matches = array(
                    "I", (i for i in matches if user(i)["userPrincipalName"].lower() == exact)
                )
            total, page = len(matches), matches[start:stop]
        rows = [row for i in page if (row := registration.details(self.tenant.user(i)))]
        await self._latency(len(rows))
        body: dict[str, Any] = {
            "@odata.context": f"{GRAPH_METADATA}#reports/authenticationMethods/{endpoint}",
            "value": rows,
        }
        if stop < total:
            rest = query.without("$skiptoken")
            sep = "&" if rest else ""
            body["@odata.nextLink"] = (
                f"{self.base_url}/{path}?{rest}{sep}$skiptoken={self._next_token(stop)}"
            )
        return self._finish(ok_answer(body), 1, auth=True)

    def _forced(self, status: int, key: str, crid: str | None) -> Answer:
        if status == 404:
            return _not_found(key, crid)
        if status == 429:
            return throttled_answer(None if self.config.no_retry_after else 1, crid)
        if status in (401, 403):
            code = "InvalidAuthenticationToken" if status == 401 else "accessDenied"
            return error_answer(status, code, "Access denied by tenantsim (_sim).", crid)
        if status in SERVER_ERRORS:
            return server_error_answer(status, 0, crid)
        code = "BadRequest" if status < 500 else "generalException"
        return error_answer(status, code, "Forced by tenantsim (_sim).", crid)

    # ------------------------------------------------------------------ $batch
    async def batch(self, payload: Any, headers: Headers, roles: frozenset[str]) -> Answer:
        """POST /$batch: each item answered on its own, like Graph (at most 20)."""
        self.stats.requests["batch"] += 1
        crid = headers.get("client-request-id")
        # The envelope is faulted apart from its items (target "batch", off by default), as a
        # gateway error fails the whole call before any item runs.
        faulted = self._fault("batch", crid) or self._cpu_429("batch", crid)
        if faulted is not None:
            return faulted
        if self.faults.failed_dependency():
            # rate424: what throttling.md said of a batch with a throttled request until
            # contrib#8883 (2023); now documented as 200. Not charged, no item runs.
            self.stats.faults["424"] += 1
            return error_answer(
                424,
                "FailedDependency",
                "The batch failed because a request it depends on failed.",
                crid,
            )
        requests = payload.get("requests") if isinstance(payload, dict) else None
        if not isinstance(requests, list) or not requests:
            return error_answer(400, "BadRequest", "Invalid batch payload format.", crid)
        if len(requests) > MAX_BATCH:
            return error_answer(
                400,
                "BadRequest",
                f"The number of requests in the batch exceeds the limit of {MAX_BATCH}.",
                crid,
            )
        seen: set[str] = set()
        for item in requests:
            if not isinstance(item, dict) or not all(
                isinstance(item.get(k), str) and item.get(k) for k in ("id", "method", "url")
            ):
                return error_answer(
                    400, "BadRequest", "Each batch request needs an id, a method and a url.", crid
                )
            if item["id"].lower() in seen:
                return error_answer(
                    400, "BadRequest", "Batch request contains duplicate Id(s).", crid
                )
            seen.add(item["id"].lower())
        # Tasks start in item order and decide throttling/faults before their first await.
        tasks = [asyncio.ensure_future(self._batch_item(item, roles)) for item in requests]
        answers = await asyncio.gather(*tasks)
        if any(a.reset for a in answers):
            return Answer(0, None, reset=True)
        self.stats.requests["batchItems"] += len(requests)
        responses = []
        for item, ans in zip(requests, answers, strict=True):
            responses.append(
                {"id": item["id"], "status": ans.status, "headers": ans.headers, "body": ans.body}
            )
        return Answer(200, {"responses": responses}, {"Content-Type": JSON_PLAIN})

    async def _batch_item(self, item: dict[str, Any], roles: frozenset[str]) -> Answer:
        url: str = item["url"].strip()
        if "://" in url:
            url = url.split("://", 1)[1].partition("/")[2]
        url = url.lstrip("/")
        if url.lower().startswith("v1.0/"):
            url = url[5:]
        path, _, raw_query = url.partition("?")
        hdrs = item.get("headers") if isinstance(item.get("headers"), dict) else {}
        return await self.handle(
            item["method"].upper(), path, raw_query, Headers(hdrs), roles, batch_item=True
        )


def _forced_status(user: Mapping[str, Any]) -> int | None:
    sim = user.get("_sim")
    if isinstance(sim, dict) and isinstance(sim.get("authenticationStatus"), int):
        return int(sim["authenticationStatus"])
    return None


def _not_found(key: str, crid: str | None) -> Answer:
    return error_answer(
        404,
        "Request_ResourceNotFound",
        f"Resource '{key}' does not exist or one of its queried reference-property objects "
        "are not present.",
        crid,
    )


def _instant(value: Any) -> datetime | None:
    """A DateTimeOffset of a user's data as a UTC datetime (None when it is not one)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (when if when.tzinfo is not None else when.replace(tzinfo=UTC)).astimezone(UTC)


def _delta_item(
    item: dict[str, Any], touched: frozenset[str] | None
) -> tuple[dict[str, Any], bool]:
    """deltaPartialItems: an item as user-delta.md describes it, and whether it lost any
    property. `touched` None: the whole user is new to the client (initial round, created or
    restored): its null properties ("never set") are left out. Otherwise only the properties
    the round's updates touched are kept, null ones too (a property cleared is a change)."""
    out = {
        k: v
        for k, v in item.items()
        if k == "id" or (k in touched if touched is not None else v is not None)
    }
    return out, len(out) < len(item)
