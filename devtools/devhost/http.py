"""Serves a FunctionApp's HTTP triggers and the host's admin endpoint for timers, on aiohttp."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

import azure.functions as func
from aiohttp import web
from azure.functions.timer import TimerRequest


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


class HttpRoutes:
    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._routes: list[tuple[re.Pattern[str], set[str], str, Callable[..., Any]]] = []
        self.timers: dict[str, tuple[str, Callable[..., Any]]] = {}

    def add(
        self, route: str, methods: list[str], arg_name: str, function: Callable[..., Any]
    ) -> None:
        self._routes.append((_route_pattern(self._prefix, route), set(methods), arg_name, function))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        admin = re.fullmatch(r"/admin/functions/([^/]+)", request.path)
        if admin and request.method == "POST":
            return await self._fire_timer(admin.group(1))
        allowed = False
        for pattern, methods, arg_name, function in self._routes:
            match = pattern.fullmatch(request.path)
            if not match:
                continue
            allowed = True
            if request.method not in methods:
                continue
            req = func.HttpRequest(
                method=request.method,
                url=str(request.url),
                headers=dict(request.headers),
                params=dict(request.query),
                route_params=match.groupdict(),
                body=await request.read(),
            )
            response: func.HttpResponse = await _call(function, **{arg_name: req})
            headers = dict(response.headers)
            headers["Content-Type"] = response.mimetype or "text/plain"
            return web.Response(
                body=response.get_body(), status=response.status_code, headers=headers
            )
        return web.Response(status=405 if allowed else 404)

    async def _fire_timer(self, name: str) -> web.Response:
        # The host's admin API answers 202 once the run is queued; devhost answers after the
        # run, so a caller sees its effect at once.
        if name not in self.timers:
            return web.json_response({"error": f"no timer function named {name!r}"}, status=404)
        arg_name, function = self.timers[name]
        await _call(function, **{arg_name: TimerRequest(past_due=False)})
        return web.Response(status=202)
