"""Serves a FunctionApp's HTTP triggers and the host's admin endpoint for timers, on aiohttp,
behind the host's function keys and App Service authentication when asked to (auth.py)."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from aiohttp import web
from azure.functions.timer import TimerRequest

from .auth import EasyAuth, FunctionKeys


def _route_pattern(prefix: str, route: str) -> re.Pattern[str]:
    # Functions route templates: {name}, {name?} and {name:constraint}; constraints not checked.
    parts = []
    for piece in re.split(r"(\{[^}]+\})", route.strip("/")):
        if piece.startswith("{"):
            name = piece[1:-1].split(":")[0].rstrip("?")
            parts.append(f"(?P<{name}>[^/]+)")
        else:
            parts.append(re.escape(piece))
    return re.compile("/" + "/".join(p for p in (prefix.strip("/"), "".join(parts)) if p) + "/?")


async def _call(function: Callable[..., Any], **kwargs: Any) -> Any:
    result = function(**kwargs)
    return await result if inspect.isawaitable(result) else result


@dataclass(frozen=True)
class _Route:
    pattern: re.Pattern[str]
    methods: set[str]
    arg_name: str
    function: Callable[..., Any]
    auth_level: str


class HttpRoutes:
    def __init__(
        self,
        prefix: str,
        *,
        keys: FunctionKeys | None = None,
        easy_auth: EasyAuth | None = None,
    ) -> None:
        self._prefix = prefix
        self._routes: list[_Route] = []
        self._keys = keys or FunctionKeys()
        self._easy_auth = easy_auth
        self.timers: dict[str, tuple[str, Callable[..., Any]]] = {}

    def add(
        self,
        route: str,
        methods: list[str],
        arg_name: str,
        function: Callable[..., Any],
        auth_level: str = "function",
    ) -> None:
        pattern = _route_pattern(self._prefix, route)
        self._routes.append(_Route(pattern, set(methods), arg_name, function, auth_level.lower()))
        # As ASP.NET routing (the Functions host's) does: a literal segment wins over a
        # parameter (exports/latest before exports/{id}), whatever the order of registration.
        self._routes.sort(key=lambda r: r.pattern.pattern.count("(?P<"))

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        headers: dict[str, str] = dict(request.headers)
        if self._easy_auth is not None:
            # App Service authentication runs before the host sees the request.
            authenticated = await self._easy_auth.authenticate(request)
            if isinstance(authenticated, web.StreamResponse):
                return authenticated
            headers = authenticated
        admin = re.fullmatch(r"/admin/functions/([^/]+)", request.path)
        if admin and request.method == "POST":
            if not self._keys.allows("admin", request.headers, request.query):
                return web.Response(status=401)
            return await self._fire_timer(admin.group(1))
        allowed = False
        for route in self._routes:
            match = route.pattern.fullmatch(request.path)
            if not match:
                continue
            allowed = True
            if request.method not in route.methods:
                continue
            if not self._keys.allows(route.auth_level, request.headers, request.query):
                return web.Response(status=401)
            req = func.HttpRequest(
                method=request.method,
                url=str(request.url),
                headers=headers,
                params=dict(request.query),
                route_params=match.groupdict(),
                body=await request.read(),
            )
            response: func.HttpResponse = await _call(route.function, **{route.arg_name: req})
            out = dict(response.headers)
            out["Content-Type"] = response.mimetype or "text/plain"
            return web.Response(body=response.get_body(), status=response.status_code, headers=out)
        return web.Response(status=405 if allowed else 404)

    async def _fire_timer(self, name: str) -> web.Response:
        # The host's admin API answers 202 once the run is queued; devhost answers after the
        # run, so a caller sees its effect at once.
        if name not in self.timers:
            return web.json_response({"error": f"no timer function named {name!r}"}, status=404)
        arg_name, function = self.timers[name]
        await _call(function, **{arg_name: TimerRequest(past_due=False)})
        return web.Response(status=202)
