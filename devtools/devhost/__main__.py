"""python -m devtools.devhost [--app function_app] [--port 0] [--settings local.settings.json]

Loads the function app, serves its HTTP routes on loopback, pumps its queue triggers from the
real queues and fires its timers on POST /admin/functions/{name}. Prints one JSON line
({"url": ...}) once it is ready, and serves until stopped.

As in Azure, when asked to: --function-key/--master-key enforce the host's keys (each route's
auth level; 401 without a valid key in `x-functions-key` or `?code=`), --easy-auth puts App
Service authentication in front (bearer tokens of an Entra tenant, 401/403; see auth.py) and
sets WEBSITE_AUTH_ENABLED=True for the app, as App Service does. Without them every route is
open, like `func start`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

from userexport.settings import SettingsError

from .auth import AuthSetupError, EasyAuthSettings, FunctionKeys
from .host import hosted
from .queues import MESSAGE_LEASE_SECONDS


def _load_settings_file(path: Path) -> None:
    values = json.loads(path.read_text()).get("Values", {})
    for name, value in values.items():
        os.environ.setdefault(name, str(value))


async def serve(
    app_module: str,
    port: int,
    host_json: Path,
    lease_seconds: int,
    keys: FunctionKeys | None = None,
    easy_auth: EasyAuthSettings | None = None,
) -> None:
    """Hosts the app until SIGTERM or SIGINT; prints {"url": ...} once it is ready."""
    async with hosted(
        app_module,
        port=port,
        host_json=host_json,
        lease_seconds=lease_seconds,
        keys=keys,
        easy_auth=easy_auth,
    ) as url:
        print(json.dumps({"url": url}), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


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
    keys = parser.add_argument_group("function keys (default: not enforced, like func start)")
    keys.add_argument(
        "--function-key",
        action="append",
        default=[],
        metavar="KEY",
        help="a valid function key (repeatable); routes at auth level function need one",
    )
    keys.add_argument(
        "--master-key", metavar="KEY", help="the master key: every route and the admin API"
    )
    easy = parser.add_argument_group("App Service authentication (authsettingsV2, Microsoft)")
    easy.add_argument("--easy-auth", action="store_true", help="turn it on (Return401)")
    easy.add_argument(
        "--easy-auth-allow-anonymous",
        action="store_true",
        help="unauthenticatedClientAction AllowAnonymous: requests without a token pass",
    )
    easy.add_argument(
        "--easy-auth-issuer",
        metavar="URL",
        help="registration.openIdIssuer: URL/.well-known/openid-configuration is read at start",
    )
    easy.add_argument(
        "--easy-auth-client-id", default="", metavar="ID", help="registration.clientId"
    )
    easy.add_argument(
        "--easy-auth-audience",
        action="append",
        default=[],
        metavar="AUDIENCE",
        help="validation.allowedAudiences (repeatable; the client id is always allowed)",
    )
    easy.add_argument(
        "--easy-auth-allowed-identity",
        action="append",
        default=[],
        metavar="OBJECT_ID",
        help="defaultAuthorizationPolicy.allowedPrincipals.identities (repeatable)",
    )
    easy.add_argument(
        "--easy-auth-allowed-application",
        action="append",
        default=[],
        metavar="CLIENT_ID",
        help="defaultAuthorizationPolicy.allowedApplications (repeatable)",
    )
    args = parser.parse_args(argv)
    easy_auth = None
    if args.easy_auth:
        if not args.easy_auth_issuer:
            parser.error("--easy-auth needs --easy-auth-issuer")
        if not (args.easy_auth_client_id or args.easy_auth_audience):
            parser.error("--easy-auth needs --easy-auth-client-id or --easy-auth-audience")
        easy_auth = EasyAuthSettings(
            open_id_issuer=args.easy_auth_issuer,
            client_id=args.easy_auth_client_id,
            allowed_audiences=tuple(args.easy_auth_audience),
            allowed_identities=frozenset(args.easy_auth_allowed_identity),
            allowed_applications=frozenset(args.easy_auth_allowed_application),
            allow_anonymous=args.easy_auth_allow_anonymous,
        )
    function_keys = FunctionKeys(frozenset(args.function_key), args.master_key)
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
        asyncio.run(
            serve(
                args.app,
                args.port,
                args.host_json,
                args.message_lease_seconds,
                function_keys,
                easy_auth,
            )
        )
    except (SettingsError, AuthSetupError) as error:
        print(f"devhost: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
