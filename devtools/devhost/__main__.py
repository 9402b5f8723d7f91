"""python -m devtools.devhost [--app function_app] [--port 0] [--settings local.settings.json]

Loads the function app, serves its HTTP routes on loopback, pumps its queue triggers from the
real queues and fires its timers on POST /admin/functions/{name}. Prints one JSON line
({"url": ...}) once it is ready, and serves until stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import signal
import sys
from pathlib import Path

from aiohttp import web
from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential
from azure.storage.queue.aio import QueueClient

from userexport.clients import BLOB_QUEUE_RETRY, close_clients
from userexport.settings import APP_SETTINGS, Settings, SettingsError

from .hostjson import HostSettings
from .http import HttpRoutes
from .queues import MESSAGE_LEASE_SECONDS, QueuePump


def _load_settings_file(path: Path) -> None:
    values = json.loads(path.read_text()).get("Values", {})
    for name, value in values.items():
        os.environ.setdefault(name, str(value))


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


async def serve(app_module: str, port: int, host_json: Path, lease_seconds: int) -> None:
    settings = Settings.from_env()
    host = HostSettings.load(host_json)
    app = importlib.import_module(app_module).app
    routes = HttpRoutes(host.route_prefix)
    if settings.credential == "default":
        credential = DefaultAzureCredential(managed_identity_client_id=settings.client_id)
    else:
        credential = ManagedIdentityCredential(client_id=settings.client_id)
    pumps: list[QueuePump] = []
    queue_clients: list[QueueClient] = []
    for function in app.get_functions():
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
            routes.add(
                trigger.get("route") or function.get_function_name(),
                methods,
                arg_name,
                user_function,
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
    print(json.dumps({"url": f"http://127.0.0.1:{bound_port}"}), flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*(p.stop() for p in pumps), return_exceptions=True)
    await runner.cleanup()
    await close_clients()  # the app's sessions, as the worker process ends
    for client in [*queue_clients, credential]:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.devhost", description=__doc__)
    parser.add_argument(
        "--app", default="function_app", help="module holding the FunctionApp `app`"
    )
    parser.add_argument(
        "--port", type=int, default=7071, help="HTTP port on 127.0.0.1 (0: any free)"
    )
    parser.add_argument("--settings", type=Path, help="a local.settings.json whose Values to load")
    parser.add_argument("--host-json", type=Path, default=Path("host.json"))
    parser.add_argument(
        "--message-lease-seconds",
        type=int,
        default=MESSAGE_LEASE_SECONDS,
        help="how long a running message stays invisible before a renewal (the host: 600)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.settings:
        _load_settings_file(args.settings)
    try:
        asyncio.run(serve(args.app, args.port, args.host_json, args.message_lease_seconds))
    except SettingsError as error:
        print(f"devhost: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
