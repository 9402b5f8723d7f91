"""aiohttp wiring: routes, bearer-token checks, connection resets, the /_sim endpoints."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp import web

from .config import SimConfig
from .control import ControlError, FaultChange, parse_change, settings_json
from .faults import FaultInjector, FaultSettings
from .graphapi import GraphApi, Headers
from .identity import IDENTITY_PATH, identity_answer
from .live import LiveTenant
from .openid import (
    V1_KEYS_PATH,
    V1_METADATA_PATH,
    V2_KEYS_PATH,
    V2_METADATA_PATH,
    metadata,
    unknown_tenant,
)
from .responses import JSON_PLAIN, Answer, error_answer
from .stats import Stats
from .tenant import Tenant
from .throttle import Throttle
from .tokens import GRAPH_AUDIENCES, ManagedIdentity, TokenError, TokenIssuer
from .writes import Writes

log = logging.getLogger("tenantsim")


class SimState:
    """Everything one simulator instance shares between requests."""

    def __init__(self, config: SimConfig, tenant: Tenant) -> None:
        self.config = config
        # Live: the write APIs change it while the simulator runs (only changes are held).
        self.tenant = tenant if isinstance(tenant, LiveTenant) else LiveTenant(tenant)
        self.stats = Stats()
        self.issuer = TokenIssuer(tenant.tenant_id, config.roles, config.token_lifetime)
        # The app's user-assigned identities, selectable at the identity endpoint.
        self.identities = tuple(
            ManagedIdentity.named(tenant.tenant_id, name) for name in config.identities
        )
        self.faults = FaultInjector(config.fault_settings(), config.effective_fault_seed)
        self.graph = GraphApi(
            config,
            self.tenant,
            self.stats,
            Throttle(config.budget, config.auth_budget, config.signin_budget),
            self.faults,
        )
        self.writes = Writes(self.graph)

    def faults_json(self) -> dict[str, Any]:
        faults = self.faults
        return settings_json(
            faults.settings, faults.slow_next, faults.elapsed(), faults.signin_left
        )

    def change_faults(self, change: FaultChange) -> None:
        self.faults.settings = change.settings
        if change.slow_next is not None:
            self.faults.slow_next = change.slow_next
        if change.signin_refused_set:
            self.faults.signin_left = change.settings.signin_refused_after
        if change.expire_page_tokens:
            self.graph.expire_page_tokens()
        if change.expire_delta_tokens:
            self.graph.expire_delta_tokens()

    def reset_faults(self) -> None:
        """No faults at all (targets, premium and the "Graph as documented" switches back to
        the configured ones); stats are kept."""
        # The delta token lifetime is Graph's behaviour, not a fault: back to the option's.
        settings = FaultSettings.reset_from_config(self.config)
        self.change_faults(FaultChange(settings, 0, False, signin_refused_set=True))
        self.graph.unexpire_page_tokens()
        self.graph.unexpire_delta_tokens()


STATE_KEY = web.AppKey("tenantsim", SimState)


def _state(request: web.Request) -> SimState:
    return request.app[STATE_KEY]


def _to_response(request: web.Request, ans: Answer, label: str) -> web.StreamResponse:
    state = _state(request)
    if ans.reset:
        # Drop the connection without a status line, like a reset in the field.
        if request.transport is not None:
            request.transport.abort()
        log.info("graph %s -> connection reset", label)
        return web.Response(status=500)  # never written: the transport is gone
    state.stats.statuses[str(ans.status)] += 1
    headers = dict(ans.headers)
    crid = request.headers.get("client-request-id")
    if crid:
        headers["client-request-id"] = crid
    if ans.body is None:  # 204: no body at all
        body = b""
    elif isinstance(ans.body, str):
        body = ans.body.encode()
    else:
        body = orjson.dumps(ans.body)
    log.info("graph %s -> %d", label, ans.status)
    return web.Response(status=ans.status, body=body, headers=headers)


def _roles(request: web.Request) -> frozenset[str] | Answer:
    state = _state(request)
    crid = request.headers.get("client-request-id")
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    if not token or scheme.lower() != "bearer":
        state.stats.unauthorized += 1
        return _unauthorized("Access token is empty.", crid)
    try:
        claims = state.issuer.verify(token.strip(), GRAPH_AUDIENCES)
    except TokenError as exc:
        state.stats.unauthorized += 1
        return _unauthorized(str(exc), crid)
    roles = claims.get("roles") or []
    return frozenset(r for r in roles if isinstance(r, str))


def _unauthorized(message: str, crid: str | None) -> Answer:
    ans = error_answer(401, "InvalidAuthenticationToken", message, crid)
    ans.headers["WWW-Authenticate"] = (
        'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/'
        'authorize", client_id="00000003-0000-0000-c000-000000000000"'
    )
    return ans


def _graph_tail(request: web.Request) -> str:
    # The raw path keeps %23 (#) and %2F inside user keys intact until we split segments.
    raw = request.rel_url.raw_path
    prefix = "/v1.0"
    return raw[len(prefix) :] if raw.startswith(prefix) else raw


def _outage(request: web.Request, batch: bool, label: str) -> web.StreamResponse | None:
    # Before authentication: in an outage the front door fails whatever the request.
    ans = _state(request).graph.outage(batch, request.headers.get("client-request-id"))
    return None if ans is None else _to_response(request, ans, f"{label} (outage)")


async def graph_get(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    tail = _graph_tail(request)
    label = tail.strip("/").split("/", 1)[0] or "root"
    if request.method in ("POST", "PATCH", "DELETE") and tail.strip("/") != "$batch":
        return await graph_write(request, tail)
    down = _outage(request, False, label)
    if down is not None:
        return down
    roles = _roles(request)
    if isinstance(roles, Answer):
        return _to_response(request, roles, label)
    if tail.strip("/") == "$batch":
        return _to_response(
            request,
            error_answer(
                405,
                "Request_BadRequest",
                "Specified HTTP method is not allowed for the request target.",
                request.headers.get("client-request-id"),
            ),
            "batch",
        )
    ans = await state.graph.handle(
        request.method,
        tail,
        request.rel_url.raw_query_string,
        Headers(request.headers),
        roles,
    )
    return _to_response(request, ans, _endpoint_label(tail))


async def graph_write(request: web.Request, tail: str) -> web.StreamResponse:
    """A write (no outage, throttling or faults: writes set the scene for a test)."""
    state = _state(request)
    label = f"{request.method} {_endpoint_label(tail)}"
    roles = _roles(request)
    if isinstance(roles, Answer):
        return _to_response(request, roles, label)
    ans = await state.writes.handle(
        request.method, tail, await request.read(), request.headers.get("client-request-id")
    )
    return _to_response(request, ans, label)


def _endpoint_label(tail: str) -> str:
    # No user keys (UPNs are PII) or object ids in logs: only the shape of the path.
    parts = tail.strip("/").split("/")
    keyed = {"users": 1, "groups": 1, "directory": 2}.get(parts[0].lower(), 0)
    unkeyed = ("$count", "%24count", "delta", "microsoft.graph.user", "graph.user")
    if keyed and len(parts) > keyed and parts[keyed] not in unkeyed:
        parts[keyed] = "{id}"
    return "/".join(parts)


async def graph_batch(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    down = _outage(request, True, "$batch")
    if down is not None:
        return down
    roles = _roles(request)
    if isinstance(roles, Answer):
        return _to_response(request, roles, "$batch")
    try:
        payload: Any = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        payload = None
    ans = await state.graph.batch(payload, Headers(request.headers), roles)
    return _to_response(request, ans, "$batch")


def _json(body: Any, status: int = 200) -> web.Response:
    headers = {"Content-Type": JSON_PLAIN}
    return web.Response(status=status, body=orjson.dumps(body), headers=headers)


async def identity(request: web.Request) -> web.Response:
    state = _state(request)
    state.stats.requests["identity"] += 1
    status, body = identity_answer(
        request.query,
        request.headers,
        state.config.identity_header,
        state.issuer,
        state.config.client_id,
        state.identities,
    )
    log.info("identity -> %d", status)
    return _json(body, status)


def _tenant_issuer(request: web.Request) -> TokenIssuer | web.Response:
    issuer = _state(request).issuer
    tenant = request.match_info["tenant"]
    if tenant.lower() != issuer.tenant_id.lower():
        return _json(unknown_tenant(tenant), 400)
    return issuer


async def openid_configuration(request: web.Request) -> web.Response:
    issuer = _tenant_issuer(request)
    if isinstance(issuer, web.Response):
        return issuer
    v2 = "/v2.0/" in request.path
    return _json(metadata(issuer, str(request.url.origin()), v2=v2))


async def signing_keys(request: web.Request) -> web.Response:
    issuer = _tenant_issuer(request)
    return issuer if isinstance(issuer, web.Response) else _json(issuer.jwks())


async def stats_get(request: web.Request) -> web.Response:
    return _json(_state(request).stats.as_json())


async def stats_reset(request: web.Request) -> web.Response:
    state = _state(request)
    state.stats.reset()
    return web.Response(status=204)


async def faults_get(request: web.Request) -> web.Response:
    return _json(_state(request).faults_json())


async def faults_post(request: web.Request) -> web.Response:
    state = _state(request)
    try:
        change = parse_change(
            orjson.loads(await request.read()), state.faults.settings, state.faults.elapsed()
        )
    except orjson.JSONDecodeError:
        return _json({"error": "the body must be JSON"}, 400)
    except ControlError as exc:
        return _json({"error": str(exc)}, 400)
    state.change_faults(change)
    log.info("faults changed")
    return _json(state.faults_json())


async def faults_reset(request: web.Request) -> web.Response:
    _state(request).reset_faults()
    log.info("faults cleared")
    return web.Response(status=204)


def build_app(state: SimState) -> web.Application:
    """The aiohttp application serving one simulated tenant."""
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app[STATE_KEY] = state
    app.router.add_get(IDENTITY_PATH, identity)
    app.router.add_get(V2_METADATA_PATH, openid_configuration)
    app.router.add_get(V1_METADATA_PATH, openid_configuration)
    app.router.add_get(V2_KEYS_PATH, signing_keys)
    app.router.add_get(V1_KEYS_PATH, signing_keys)
    app.router.add_get("/_sim/stats", stats_get)
    app.router.add_post("/_sim/stats/reset", stats_reset)
    app.router.add_get("/_sim/faults", faults_get)
    app.router.add_post("/_sim/faults", faults_post)
    app.router.add_post("/_sim/faults/reset", faults_reset)
    app.router.add_post("/v1.0/$batch", graph_batch)
    app.router.add_route("*", "/v1.0/{tail:.*}", graph_get)
    return app
