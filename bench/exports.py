"""Parts (d) and (e): real exports through the local stack, driven over HTTP.

Each run starts its own `devtools.stack.LocalStack` (tenantsim, Azurite over https, devhost
running the real worker), POSTs /api/exports, polls the Location every Retry-After (1 s) until
it answers 200, then streams both files from their SAS URLs and counts their CSV records
without holding them in memory. The stack's context manager stops every process it started,
also on failure or Ctrl-C.

(d) serves a tenant file of the 23 profile properties (see write_tenants for why), (e) a
generated tenant with authentication methods under `--auth-budget`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import ssl
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil

from bench.pipelines import PAGE_SIZE, PROFILE_COLUMNS
from bench.procs import BenchError
from devtools.stack import LocalStack, StackError
from devtools.tenantsim.generator import generate_user
from userexport.columns import ADMIN_CENTER_COLUMNS, graph_select

MILLION = 1_000_000
# Authentication-method reads, 1 RU each on the auth bucket: the whole methods list (one per
# user when both columns are asked for), or the phone or email list alone.
AUTH_LOOKUPS = ("methods", "phoneMethods", "emailMethods")
SIM_WINDOW_S = 10.0  # the simulator's budgets are RU per 10 s
FINISHED = ("succeeded", "completedWithErrors")

# (d): the admin center's 25 columns minus the two authentication columns: no lookups.
PROFILE_BODY: dict[str, Any] = {"columns": [c.name for c in PROFILE_COLUMNS]}


@dataclass
class ExportRun:
    """One export through the stack, from the POST to the verified download."""

    name: str
    users: int  # userCount of the finished job (checked against the tenant's size)
    wall_s: float  # POST to the 200 answer
    status: str
    partitions: int
    csv_records: int  # CSV records of the download, header included
    csv_crlf: int  # raw b"\r\n" in it: more than records when cells hold line breaks
    csv_columns: int
    error_rows: int  # data rows of the errors file
    peak_rss_mb: float  # devhost's VmHWM, read just before the stack stops
    cpu_s: dict[str, float]  # CPU seconds of each stack process between POST and 200
    progress: list[tuple[float, int]]  # (s after POST, usersWritten) each time it moved
    sim_before: dict[str, Any] = field(default_factory=dict)
    sim_after: dict[str, Any] = field(default_factory=dict)
    sim_timeline: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    def pages(self) -> int:
        """The /users page requests the simulator saw (throttled ones included)."""
        return self.sim_after["requests"].get("users", 0) - self.sim_before["requests"].get(
            "users", 0
        )

    def cpu_share(self, process: str) -> float:
        return self.cpu_s.get(process, 0.0) / self.wall_s

    def seconds_per_user(self) -> float | None:
        """The pace between the first and the last progress step: the per-user time without
        the fixed costs (queueing, planning, commit, the last poll)."""
        moved = [(t, u) for t, u in self.progress if u > 0]
        if len(moved) < 2 or moved[-1][1] <= moved[0][1]:
            return None
        (t0, u0), (t1, u1) = moved[0], moved[-1]
        return (t1 - t0) / (u1 - u0)

    def extrapolate(self, users: int) -> float:
        """Wall time for `users`: this run's wall time plus the users it did not have at its
        measured pace (fixed costs counted once); the plain ratio if the pace is unknown."""
        pace = self.seconds_per_user()
        if pace is None:
            return self.wall_s * users / self.users
        return self.wall_s + (users - self.users) * pace


# ------------------------------------------------------------------------------ the tenant
def write_tenants(folder: Path, seed: int, sizes: list[int]) -> dict[int, Path]:
    """Tenant files holding the first n users of the generated tenant `seed`, for each size,
    written in one generation pass; each user keeps only what the profile columns select.

    Why a file: the plan counts users per UPN first character with startsWith filters, and
    the simulator answers a filter by scanning the tenant once per filter text (16 cached).
    On a generated tenant a scan regenerates every user, about 10 s per 1,000,000 on this
    machine, about 90 scans per 16-partition export: minutes of simulator CPU that Graph never
    costs the client. A file tenant is held in memory and scans in about 0.5 s. (d) selects
    only these properties, so the answers and the CSV are the same as from the generated
    tenant."""
    keep = graph_select(PROFILE_COLUMNS)
    paths = {n: folder / f"tenant-{n}.jsonl" for n in sorted(set(sizes))}
    files = {n: open(path, "wb") for n, path in paths.items()}  # closed below
    try:
        chunk: list[bytes] = []
        total = max(paths)
        for index in range(total):
            user = generate_user(seed, index)
            chunk.append(orjson.dumps({k: user[k] for k in keep if k in user}) + b"\n")
            done = index + 1
            if len(chunk) == 10_000 or done == total or done in paths:
                data = b"".join(chunk)
                chunk = []
                for n, f in files.items():
                    if n >= done:
                        f.write(data)
    finally:
        for f in files.values():
            f.close()
    return paths


# ---------------------------------------------------------------------------- one export
class _Download(io.RawIOBase):
    """A streamed HTTP body as a readable raw stream, counting CRLFs as it passes."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""
        self._last = b""
        self.crlf = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, b"")
            if not chunk:
                return 0
            self.crlf += chunk.count(b"\r\n") + (self._last == b"\r" and chunk[:1] == b"\n")
            self._last = chunk[-1:]
            self._pending = chunk
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def _count_csv(storage: httpx.Client, url: str) -> tuple[int, int, int]:
    """(records, raw CRLFs, header columns) of a CSV at a SAS URL, streamed."""
    with storage.stream("GET", url) as response:
        response.raise_for_status()
        raw = _Download(response.iter_bytes(1 << 20))
        text = io.TextIOWrapper(io.BufferedReader(raw, 1 << 20), encoding="utf-8-sig", newline="")
        reader = csv.reader(text)
        header = next(reader, [])
        records = 1 + sum(1 for _ in reader) if header else 0
        return records, raw.crlf, len(header)


def _stack_processes(before: set[int], devhost_pid: int) -> dict[str, psutil.Process]:
    """The stack's processes by role: the children this process gained with the stack."""
    found: dict[str, psutil.Process] = {}
    for child in psutil.Process().children():
        if child.pid in before:
            continue
        with contextlib.suppress(psutil.Error):
            cmd = " ".join(child.cmdline())
            if child.pid == devhost_pid:
                found["devhost"] = child
            elif "devtools.tenantsim" in cmd:
                found["tenantsim"] = child
            elif "azurite" in cmd:
                found["azurite"] = child
    return found


def _cpu(procs: dict[str, psutil.Process]) -> dict[str, float]:
    out = {}
    for name, proc in procs.items():
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            out[name] = t.user + t.system + t.children_user + t.children_system
    return out


def _vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise BenchError(f"no VmHWM for pid {pid}")


def run_export(
    stack: LocalStack,
    name: str,
    body: dict[str, Any],
    *,
    expect_users: int,
    expect_partitions: int | None,
    timeout: float,
    others: set[int],
    sim_every_poll: bool = False,
) -> ExportRun:
    """POST, poll until 200 (the wall time), then count both files and read devhost's peak.
    `others` are the pids of child processes that are not this stack's."""
    procs = _stack_processes(others, stack.devhost_pid)
    ca = ssl.create_default_context(cafile=stack.env["SSL_CERT_FILE"])
    with (
        httpx.Client(timeout=60, trust_env=False) as api,
        httpx.Client(timeout=600, verify=ca, trust_env=False) as storage,
    ):
        sim_before = api.get(stack.sim["stats"]).json()
        timeline: list[tuple[float, dict[str, Any]]] = [(0.0, sim_before)]
        progress: list[tuple[float, int]] = []
        cpu_before = _cpu(procs)
        started = time.perf_counter()
        answer = api.post(f"{stack.api_url}/api/exports", json=body)
        if answer.status_code != 202:
            raise BenchError(f"{name}: POST answered {answer.status_code}: {answer.text[:500]}")
        location = answer.headers["Location"]
        while answer.status_code == 202:
            if time.perf_counter() - started > timeout:
                raise BenchError(f"{name}: not finished after {timeout:.0f} s; stopped")
            time.sleep(float(answer.headers.get("Retry-After", "1")))
            answer = api.get(location)
            now = time.perf_counter() - started
            if sim_every_poll:
                timeline.append((now, api.get(stack.sim["stats"]).json()))
            written = int(answer.json().get("usersWritten") or 0)
            if answer.status_code == 202 and (not progress or written != progress[-1][1]):
                progress.append((now, written))
        wall = time.perf_counter() - started
        cpu_after = _cpu(procs)
        sim_after = api.get(stack.sim["stats"]).json()
        job = answer.json()
        if answer.status_code != 200 or job.get("status") not in FINISHED:
            raise BenchError(f"{name}: the export ended {answer.status_code}: {job}")
        records, crlf, columns = _count_csv(storage, job["downloadUrl"])
        error_records, _, _ = _count_csv(storage, job["errorsUrl"])
    run = ExportRun(
        name=name,
        users=int(job["userCount"]),
        wall_s=wall,
        status=job["status"],
        partitions=int(job.get("partitions") or 0),
        csv_records=records,
        csv_crlf=crlf,
        csv_columns=columns,
        error_rows=max(0, error_records - 1),
        peak_rss_mb=_vm_hwm_mb(stack.devhost_pid),
        cpu_s={k: cpu_after[k] - cpu_before.get(k, 0.0) for k in cpu_after},
        progress=progress,
        sim_before=sim_before,
        sim_after=sim_after,
        sim_timeline=timeline,
    )
    problems = []
    if run.users != expect_users:
        problems.append(f"userCount {run.users}, the tenant has {expect_users}")
    if records != expect_users + 1:
        problems.append(f"the CSV has {records} records, expected {expect_users + 1}")
    wanted_columns = len(body.get("columns") or ADMIN_CENTER_COLUMNS)
    if columns != wanted_columns:
        problems.append(f"the CSV has {columns} columns, expected {wanted_columns}")
    if expect_partitions is not None and run.partitions != expect_partitions:
        note = job.get("planNote") or "no planNote"
        problems.append(f"{run.partitions} partition(s), expected {expect_partitions} ({note})")
    if problems:
        raise BenchError(f"{name}: " + "; ".join(problems))
    return run


def _export_on_stack(
    log_root: Path | None,
    name: str,
    body: dict[str, Any],
    *,
    expect_users: int,
    expect_partitions: int | None,
    timeout: float,
    sim_every_poll: bool = False,
    **stack: Any,
) -> ExportRun:
    """One export on a stack of its own, stopped (every process) whatever happens."""
    log_dir = None
    if log_root is not None:
        log_dir = log_root / name
        log_dir.mkdir(parents=True, exist_ok=True)
        for old in ("tenantsim.log", "azurite.log", "devhost.log"):
            (log_dir / old).unlink(missing_ok=True)  # LocalStack appends
    others = {p.pid for p in psutil.Process().children()}
    started = time.perf_counter()
    try:
        with LocalStack(log_dir=log_dir, **stack) as local:
            print(f"  {name}: stack up in {time.perf_counter() - started:.1f} s", flush=True)
            run = run_export(
                local,
                name,
                body,
                expect_users=expect_users,
                expect_partitions=expect_partitions,
                timeout=timeout,
                others=others,
                sim_every_poll=sim_every_poll,
            )
    except StackError as error:
        raise BenchError(f"{name}: the local stack did not start: {error}") from error
    print(
        f"  {name}: {run.users:,} users in {run.wall_s:.1f} s (POST to 200), "
        f"{run.partitions} partition(s); devhost peak {run.peak_rss_mb:.0f} MB; "
        f"whole stack {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    return run


# ------------------------------------------------------------------------------ the parts
LATENCY = ["--latency-per-user-ms", "1"]  # about 1 s per page of 999 users


def run_million(
    *, seed: int, sample_users: int, partitioned_users: int, log_root: Path | None
) -> tuple[ExportRun, ExportRun]:
    """(d): profile columns, about 1 s per page; sequential on a sample, then 16 partitions."""
    with tempfile.TemporaryDirectory(prefix="userexport-bench-d-") as tmp:
        started = time.perf_counter()
        files = write_tenants(Path(tmp), seed, [sample_users, partitioned_users])
        print(
            f"  (d) tenant files of {sample_users:,} and {partitioned_users:,} users written in "
            f"{time.perf_counter() - started:.1f} s",
            flush=True,
        )
        common: dict[str, Any] = {"seed": seed, "sim_args": LATENCY}
        sequential = _export_on_stack(
            log_root,
            "d-sequential",
            PROFILE_BODY,
            expect_users=sample_users,
            expect_partitions=1,
            timeout=120 + 2 * pages(sample_users),
            tenant_file=files[sample_users],
            app_env={"USEREXPORT_PARTITIONS": "1", "USEREXPORT_STATUS_RETRY_AFTER_SECONDS": "1"},
            **common,
        )
        partitioned = _export_on_stack(
            log_root,
            "d-partitioned",
            PROFILE_BODY,
            expect_users=partitioned_users,
            expect_partitions=PARTITIONS,
            timeout=420,
            tenant_file=files[partitioned_users],
            app_env={
                "USEREXPORT_PARTITIONS": str(PARTITIONS),
                "USEREXPORT_STATUS_RETRY_AFTER_SECONDS": "1",
            },
            **common,
        )
    return sequential, partitioned


def run_auth(*, seed: int, users: int, budget: int, log_root: Path | None) -> ExportRun:
    """(e): the 25 default columns, one methods lookup per user under an auth budget of
    `budget`."""
    return _export_on_stack(
        log_root,
        "e-auth",
        {},
        expect_users=users,
        expect_partitions=None,
        timeout=600,
        sim_every_poll=True,
        users=users,
        seed=seed,
        sim_args=["--auth-budget", str(budget)],
        app_env={"USEREXPORT_STATUS_RETRY_AFTER_SECONDS": "1"},
    )


PARTITIONS = 16


def pages(users: int) -> int:
    return max(1, math.ceil(users / PAGE_SIZE))


def auth_timeline(run: ExportRun, step: float = 5.0) -> list[tuple[float, int, int]]:
    """(end of the interval in s, auth reads charged, auth reads throttled) per `step` seconds
    of the export, from the stats read at every poll: how the limiter paced the lookups."""
    out: list[tuple[float, int, int]] = []
    last_t, last = 0.0, auth_units(run.sim_before, run.sim_before)
    for t, stats in run.sim_timeline:
        if t - last_t >= step or t == run.sim_timeline[-1][0]:
            now = auth_units(run.sim_before, stats)
            out.append((t, now[0] - last[0], now[1] - last[1]))
            last_t, last = t, now
    return out


def auth_units(before: dict[str, Any], after: dict[str, Any]) -> tuple[int, int]:
    """(auth-method reads the simulator charged, auth-method reads it throttled) between two
    stats: each charged read costs 1 RU on the auth bucket; a throttled one costs nothing."""
    requests = sum(after["requests"].get(k, 0) - before["requests"].get(k, 0) for k in AUTH_LOOKUPS)
    throttled = sum(
        after["throttledByEndpoint"].get(k, 0) - before["throttledByEndpoint"].get(k, 0)
        for k in AUTH_LOOKUPS
    )
    return requests - throttled, throttled
