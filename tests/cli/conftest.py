"""The CLI run as a script would run it (a subprocess, `python -m userexport_cli`), against the
real local stack: Azurite, the simulated tenant and devhost."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from devtools.stack import ROOT, LocalStack
from devtools.tenantsim import SimConfig, dump_tenant
from tests.conftest import ROOMY_ADMISSION

USERS = 1200
SEED = 23
FAILING_USER = 7  # its authentication lookups answer 404: a row in the errors file
RUN_TIMEOUT = 240  # seconds; generous for a loaded machine, never reached when things work


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def last_line(self) -> str:
        lines = self.stdout.strip().splitlines()
        return lines[-1] if lines else ""

    def json(self) -> dict:
        return orjson.loads(self.stdout)


@dataclass
class Cli:
    """Runs `python -m userexport_cli` with USEREXPORT_URL pointing at the stack's app."""

    stack: LocalStack
    url: str

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("USEREXPORT_")}
        # The CLI trusts the stack's CA, as SSL_CERT_FILE says, when it downloads from Azurite.
        env.update(SSL_CERT_FILE=self.stack.env["SSL_CERT_FILE"], PYTHONUNBUFFERED="1")
        env.update({"USEREXPORT_URL": self.url, **extra})
        env.pop("TERM", None)
        return env

    def __call__(self, *args: str, **env: str) -> Result:
        done = subprocess.run(
            [sys.executable, "-m", "userexport_cli", *args],
            cwd=ROOT,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def in_terminal(self, *args: str, columns: int = 160) -> Result:
        """Runs under a pseudo-terminal (stdin, stdout and stderr all on it), as in an
        interactive shell; `stdout` is everything the terminal received."""
        main, child = pty.openpty()
        fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
        env = self.env(TERM="xterm", COLUMNS=str(columns))
        process = subprocess.Popen(
            [sys.executable, "-m", "userexport_cli", *args],
            cwd=ROOT,
            env=env,
            stdin=child,
            stdout=child,
            stderr=child,
            start_new_session=True,
        )
        os.close(child)
        received = bytearray()
        deadline = time.monotonic() + RUN_TIMEOUT
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([main], [], [], 1.0)
                if not ready:
                    if process.poll() is not None:
                        break
                    continue
                try:
                    chunk = os.read(main, 65536)
                except OSError:  # EIO: every end of the terminal is closed
                    break
                if not chunk:
                    break
                received += chunk
            returncode = process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            os.close(main)
        return Result(returncode, received.decode("utf-8", "replace"), "")


@pytest.fixture(scope="session")
def tenant_ids(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    path = tmp_path_factory.mktemp("cli-tenant") / "tenant.jsonl"
    dump_tenant(SimConfig(users=USERS, seed=SEED), path, users_only=True)
    users = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    users[FAILING_USER]["_sim"] = {"authenticationStatus": 404}
    path.write_bytes(b"".join(orjson.dumps(u) + b"\n" for u in users))
    return path, [u["id"] for u in users]


@pytest.fixture(scope="session")
def cli_stack(tmp_path_factory, tenant_ids) -> Iterator[LocalStack]:
    # Per-user latency makes an export last a few seconds, so there is progress to show.
    with LocalStack(
        workdir=tmp_path_factory.mktemp("cli-stack"),
        tenant_file=tenant_ids[0],
        sim_args=["--latency-per-user-ms", "1"],
        app_env=ROOMY_ADMISSION,
    ) as stack:
        yield stack


@pytest.fixture
def cli(cli_stack: LocalStack) -> Cli:
    return Cli(cli_stack, cli_stack.api_url)


@contextlib.contextmanager
def graph_outage(stack: LocalStack) -> Iterator[None]:
    """Graph answers 503 to everything while inside: an export cannot move, whatever the
    machine's speed, so it is surely unfinished when the test acts on it."""
    faults = stack.sim["faults"]
    httpx.post(faults, json={"outages": [{"start": 0, "end": 600}]}, timeout=10).raise_for_status()
    try:
        yield
    finally:
        httpx.post(f"{faults}/reset", timeout=10).raise_for_status()
