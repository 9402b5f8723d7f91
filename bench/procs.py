"""The processes a benchmark run starts: the simulator and one child per measured pipeline.

Every process is started in its own session (so a Ctrl-C reaches only the parent, which then
stops them in order), asks the kernel to SIGTERM it if the parent dies (Linux), and is
stopped by its pid in stop_all(): terminate, then kill after a grace period.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import psutil

ROOT = Path(__file__).resolve().parent.parent
_PR_SET_PDEATHSIG = 1
# Loaded before any fork: nothing but the prctl call runs between fork and exec.
_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):  # not Linux: stop_all() still covers normal exits
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class BenchError(RuntimeError):
    """A process of the run failed; the message carries the tail of its stderr."""


@dataclass
class Sim:
    """A running tenantsim subprocess and the first line it printed."""

    proc: subprocess.Popen[bytes]
    graph: str
    identity: str
    identity_header: str
    stats_url: str

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.stats_url, timeout=10) as resp:
            return orjson.loads(resp.read())

    def reset_stats(self) -> None:
        request = urllib.request.Request(self.stats_url + "/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.proc.pid).cpu_times()
        return times.user + times.system


class Processes:
    """Starts processes and guarantees each one is gone when the run ends."""

    def __init__(self) -> None:
        self._procs: list[tuple[subprocess.Popen[bytes], BinaryIO]] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="userexport-bench-"))

    def start(self, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        # stderr goes to a file: a pipe nobody reads could fill up and stall the process.
        err = tempfile.TemporaryFile(dir=self.tmp)  # closed in stop_all()
        proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env={**os.environ, **(env or {}), "NO_PROXY": "127.0.0.1,localhost"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # only a prctl call: safe between fork and exec
        )
        self._procs.append((proc, err))
        return proc

    def stderr_tail(self, proc: subprocess.Popen[bytes], limit: int = 3000) -> str:
        for p, err in self._procs:
            if p is proc:
                err.seek(0)
                return err.read().decode(errors="replace")[-limit:]
        return ""

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()

    def stop_all(self) -> None:
        for proc, err in reversed(self._procs):
            self.stop(proc)
            if proc.stdout is not None:
                proc.stdout.close()
            err.close()
        self._procs.clear()
        for path in self.tmp.iterdir():
            path.unlink()
        self.tmp.rmdir()

    # ------------------------------------------------------------------ the simulator
    def start_sim(self, users: int, seed: int, timeout: float = 60.0) -> Sim:
        args = [sys.executable, "-m", "devtools.tenantsim", "--port", "0"]
        args += ["--users", str(users), "--seed", str(seed)]
        proc = self.start(args)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else b""
        if not line:
            self.stop(proc)
            raise BenchError(f"tenantsim did not start:\n{self.stderr_tail(proc)}")
        info = orjson.loads(line)
        return Sim(proc, info["graph"], info["identity"], info["identityHeader"], info["stats"])

    # ------------------------------------------------------------------ measured children
    def run_child(self, spec: dict[str, Any], sim: Sim, timeout: float) -> dict[str, Any]:
        """Runs bench.child with this spec; its JSON result plus the wall time it took."""
        env = {"IDENTITY_ENDPOINT": sim.identity, "IDENTITY_HEADER": sim.identity_header}
        started = time.perf_counter()
        proc = self.start([sys.executable, "-m", "bench.child", orjson.dumps(spec).decode()], env)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(proc)
            raise BenchError(
                f"part {spec['part']} took over {timeout:.0f} s; stopped.\n{self.stderr_tail(proc)}"
            ) from None
        if proc.returncode != 0 or not out.strip():
            raise BenchError(
                f"part {spec['part']} failed (exit {proc.returncode}):\n{self.stderr_tail(proc)}"
            )
        result: dict[str, Any] = orjson.loads(out.strip().splitlines()[-1])
        result["process_wall_s"] = time.perf_counter() - started
        return result
