"""Command line: python -m devtools.tenantsim --port 0 --users N --seed S [--tenant FILE]."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

import orjson

from . import dump_tenant
from .config import SimConfig, config_from_args
from .server import serve
from .tenantfile import TenantFileError


async def _run(config: SimConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows has no add_signal_handler
            loop.add_signal_handler(sig, stop.set)
    async with serve(config) as sim:
        sys.stdout.write(orjson.dumps(sim.start_line()).decode() + "\n")
        sys.stdout.flush()
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    config = config_from_args(argv)
    logging.basicConfig(
        level=config.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        if config.dump is not None:
            n = dump_tenant(config, config.dump)
            sys.stderr.write(f"tenantsim: wrote {n} users to {config.dump}\n")
            return 0
        asyncio.run(_run(config))
    except TenantFileError as exc:
        sys.stderr.write(f"tenantsim: malformed tenant file at line {exc.line}: {exc}\n")
        return 2
    except OSError as exc:
        sys.stderr.write(f"tenantsim: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
