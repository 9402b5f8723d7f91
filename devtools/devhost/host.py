"""The function host itself: loads the app, serves its HTTP routes, pumps its queue triggers
and keeps its timers for POST /admin/functions/{name}, as an async context. `python -m
devtools.devhost` runs it in a process of its own; tests/app runs it in the test's own event
loop, so the worker and the API run in-process against the real queues, tables and blobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential
from azure.storage.queue.aio import QueueClient

from userexport.clients import BLOB_QUEUE_RETRY, close_clients
from userexport.settings import APP_SETTINGS, Settings

from .auth import EasyAuth, EasyAuthSettings, FunctionKeys
from .hostjson import HostSettings
from .http import HttpRoutes
from .queues import MESSAGE_LEASE_SECONDS, QueuePump


def _queue_client(settings: Settings, name: str, credential: object) -> QueueClient:
    # The app's retry policy: a restarted Azurite is polled again in a second, not in 15.
    storage = settings.storage
    if storage.connection_string:
        return QueueClient.from_connection_string(
            storage.connection_string, name, **BLOB_QUEUE_RETRY
        )
    return QueueClient(storage.queue_uri or "", name, credential=credential, **BLOB_QUEUE_RETRY)


def _resolve(value: str) -> str:
    # %Setting% in a trigger's properties names an app setting, as in the Functions host.
    if value.startswith("%") and value.endswith("%"):
        name = value.strip("%")
        return os.environ.get(name) or APP_SETTINGS.get(name) or ""
    return value


# Each app's functions, built once per process: azure-functions builds them anew on every
# get_functions() and refuses the second build's names as duplicates (a test process hosts
# the app once per stack).
_FUNCTIONS: dict[str, list[Any]] = {}


@contextlib.asynccontextmanager
async def hosted(
    app_module: str = "function_app",
    *,
    port: int = 0,
    host_json: Path = Path("host.json"),
    lease_seconds: int = MESSAGE_LEASE_SECONDS,
    keys: FunctionKeys | None = None,
    easy_auth: EasyAuthSettings | None = None,
) -> AsyncIterator[str]:
    """The app hosted on 127.0.0.1:`port` (0: any free port) while the context runs; yields its
    base URL."""
    if easy_auth is not None:
        # What App Service sets when its authentication is on, before the app starts.
        os.environ["WEBSITE_AUTH_ENABLED"] = "True"
    settings = Settings.from_env()
    host = HostSettings.load(host_json)
    app = importlib.import_module(app_module).app
    gate: EasyAuth | None = None
    if easy_auth is not None:
        gate = EasyAuth(easy_auth)
        await gate.start()
    routes = HttpRoutes(host.route_prefix, keys=keys, easy_auth=gate)
    if settings.credential == "default":
        credential = DefaultAzureCredential(managed_identity_client_id=settings.client_id)
    else:
        credential = ManagedIdentityCredential(client_id=settings.client_id)
    pumps: list[QueuePump] = []
    queue_clients: list[QueueClient] = []
    if app_module not in _FUNCTIONS:
        _FUNCTIONS[app_module] = app.get_functions()
    for function in _FUNCTIONS[app_module]:
        trigger = function.get_trigger().get_dict_repr()
        kind, arg_name, user_function = (
            trigger["type"],
            trigger["name"],
            function.get_user_function(),
        )
        if kind == "httpTrigger":
            methods = [
                str(getattr(m, "value", m)) for m in trigger.get("methods") or ["GET", "POST"]
            ]
            level = trigger.get("authLevel") or "function"
            routes.add(
                trigger.get("route") or function.get_function_name(),
                methods,
                arg_name,
                user_function,
                str(getattr(level, "value", level)),
            )
        elif kind == "queueTrigger":
            queue_name = _resolve(trigger["queueName"])
            queue = _queue_client(settings, queue_name, credential)
            poison = _queue_client(settings, f"{queue_name}-poison", credential)
            queue_clients += [queue, poison]
            for client in (queue, poison):
                try:
                    await client.create_queue()
                except Exception:  # noqa: BLE001 - it exists already
                    pass
            pumps.append(
                QueuePump(
                    queue=queue,
                    poison=poison,
                    function=user_function,
                    arg_name=arg_name,
                    host=host,
                    lease_seconds=lease_seconds,
                )
            )
        elif kind == "timerTrigger":
            schedule = _resolve(trigger["schedule"])
            logging.info(
                "Timer %s (schedule %s UTC) fires on POST /admin/functions/%s.",
                function.get_function_name(),
                schedule,
                function.get_function_name(),
            )
            routes.timers[function.get_function_name()] = (arg_name, user_function)

    server = web.Server(routes.handle)
    runner = web.ServerRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    tasks = [asyncio.create_task(p.run()) for p in pumps]
    try:
        yield f"http://127.0.0.1:{bound_port}"
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(p.stop() for p in pumps), return_exceptions=True)
        await runner.cleanup()
        await close_clients()  # the app's sessions, as the worker process ends
        for client in [*queue_clients, credential]:
            await client.close()
        if gate is not None:
            await gate.close()
