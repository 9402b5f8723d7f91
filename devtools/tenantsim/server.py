"""Starting and stopping the simulator: in an event loop, or on a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .app import SimState, build_app
from .config import SimConfig
from .identity import IDENTITY_PATH
from .openid import open_id_issuer
from .tenant import load_tenant
from .tokens import ManagedIdentity


@dataclass
class RunningSim:
    """Where a running simulator answers, and the secret its identity endpoint wants."""

    host: str
    port: int
    identity_header: str
    tenant_id: str
    state: SimState

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def graph_url(self) -> str:
        return f"{self.base_url}/v1.0"

    @property
    def identity_url(self) -> str:
        return f"{self.base_url}{IDENTITY_PATH}"

    @property
    def open_id_issuer(self) -> str:
        """The tenant's v2.0 authority on loopback (authsettingsV2's openIdIssuer): its
        /.well-known/openid-configuration names the JWKS that verifies the tokens."""
        return open_id_issuer(self.base_url, self.tenant_id)

    @property
    def identities(self) -> dict[str, ManagedIdentity]:
        """The user-assigned identities (SimConfig.identities), by name."""
        return {identity.name: identity for identity in self.state.identities}

    @property
    def stats_url(self) -> str:
        return f"{self.base_url}/_sim/stats"

    @property
    def faults_url(self) -> str:
        return f"{self.base_url}/_sim/faults"

    def start_line(self) -> dict[str, Any]:
        """The JSON object the command line prints once it is listening."""
        return {
            "graph": self.graph_url,
            "identity": self.identity_url,
            "identityHeader": self.identity_header,
            "tenantId": self.tenant_id,
            "stats": self.stats_url,
            "faults": self.faults_url,
            "openIdIssuer": self.open_id_issuer,
            "identities": [identity.as_json() for identity in self.state.identities],
            "users": len(self.state.tenant),
        }

    def env(self) -> dict[str, str]:
        """Environment variables that point ManagedIdentityCredential at this simulator."""
        return {"IDENTITY_ENDPOINT": self.identity_url, "IDENTITY_HEADER": self.identity_header}


@contextlib.asynccontextmanager
async def serve(config: SimConfig) -> AsyncIterator[RunningSim]:
    """Serve `config` on the running event loop until the block exits."""
    tenant = load_tenant(config)
    state = SimState(config, tenant)
    # A short shutdown timeout: a slow page held back for minutes must not hold up a stop.
    runner = web.AppRunner(
        build_app(state), access_log=None, handle_signals=False, shutdown_timeout=1.0
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port, reuse_address=True)
        await site.start()
        port = int(runner.addresses[0][1])  # the real port when config.port is 0
        sim = RunningSim(config.host, port, config.identity_header, tenant.tenant_id, state)
        state.graph.base_url = sim.graph_url
        yield sim
    finally:
        await runner.cleanup()


@contextlib.contextmanager
def run_in_thread(config: SimConfig) -> Iterator[RunningSim]:
    """Run the simulator on its own event loop in a daemon thread; stop it on exit."""
    ready = threading.Event()
    box: dict[str, Any] = {}
    loop = asyncio.new_event_loop()

    async def main() -> None:
        stop = asyncio.Event()
        box["stop"] = stop
        try:
            async with serve(config) as sim:
                box["sim"] = sim
                ready.set()
                await stop.wait()
        except (OSError, ValueError) as exc:  # bad tenant file, port in use: caller's problem
            box["error"] = exc
            ready.set()

    def target() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(main())
            # Handlers still sleeping (a slow page) were cancelled at shutdown: let them end
            # before the loop closes, as asyncio.run does.
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        finally:
            loop.close()

    thread = threading.Thread(target=target, name="tenantsim", daemon=True)
    thread.start()
    ready.wait()
    if "error" in box:
        thread.join()
        raise box["error"]
    try:
        yield box["sim"]
    finally:
        loop.call_soon_threadsafe(box["stop"].set)
        thread.join(timeout=30)
