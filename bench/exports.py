"""Parts (d), (e) and (f): real exports through the local stack, driven over HTTP.

Each stack is a `devtools.stack.LocalStack` (tenantsim, Azurite over https, one or more
devhosts running the real worker). An export POSTs /api/exports, polls the Location every
Retry-After (1 s) until it answers 200, then streams both files from their SAS URLs and counts
their CSV records without holding them in memory. The stack's context manager stops every
process it started, also on failure or Ctrl-C.

(d) serves a tenant file of the 23 profile properties (see write_tenants for why), (e) a
generated tenant with authentication methods under `--auth-budget` (two exports on one stack,
the second at the pace the first taught), and a small one under a tight auth budget; (f) a
generated tenant under a tight auth budget, exported by one devhost and then by four on the
same stack; (g) a delta series on a generated tenant: its full run, changes made through Graph's
write APIs, then its changes run; (h) a dry run and exports of a tenant with few phone and email
methods at Graph's documented limit for authentication methods (fewerLookups too), a dry
run and export at the default budget, and (optional, --limit-million-users) an export of the
`mfa` column preset, which reads the registration report, on a (d)-like tenant file.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import random
import re
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
from devtools.stack import ROOT, LocalStack, StackError
from devtools.tenantsim.changes import TenantWriter
from devtools.tenantsim.generator import (
    ShapedSeed,
    generate_user,
    generate_user_lite,
    has_phone_or_email,
)
from userexport.columns import ADMIN_CENTER_COLUMNS, PRESETS, Column, graph_select, resolve

MILLION = 1_000_000
# Authentication-method reads, 1 RU each on the auth bucket: the whole methods list (one per
# user when both columns are asked for), or the phone or email list alone.
AUTH_LOOKUPS = ("methods", "phoneMethods", "emailMethods")
# (h): what the simulator charges to the auth bucket: those reads and the registration report's
# pages (Graph's identity and access reports limit covers both).
REPORT_PAGES = "userRegistrationDetails"
AUTH_BUCKET = (*AUTH_LOOKUPS, REPORT_PAGES)
# Keys of the simulator's request counters that are not Graph requests of their own: $batch
# envelopes (their items are counted by endpoint), the item tally, and token requests.
NOT_GRAPH_REQUESTS = ("batch", "batchItems", "identity")
# (g) counts every HTTP request to Graph, the $batch envelopes too: all but these.
NOT_GRAPH_CALLS = ("batchItems", "identity")
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
    job_id: str = ""
    devhosts: int = 1  # function host processes on the stack during the run
    peak_rss_each_mb: list[float] = field(default_factory=list)  # VmHWM of each devhost
    # The first GET answer's `estimate` that had durationSeconds, and when it came (s after
    # the POST); None when no answer had one.
    estimate: dict[str, Any] | None = None
    estimate_at_s: float | None = None
    last_estimate: dict[str, Any] | None = None  # the last `estimate` seen (it may be updated)
    partitions_per_instance: list[int] = field(default_factory=list)  # from the devhost logs
    finished_at: float = 0.0  # time.monotonic() of the 200 answer
    sim_before: dict[str, Any] = field(default_factory=dict)
    sim_after: dict[str, Any] = field(default_factory=dict)
    sim_timeline: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)  # the job as the 200 answer gave it

    def pages(self) -> int:
        """The /users page requests the simulator saw (throttled ones included)."""
        return self.sim_after["requests"].get("users", 0) - self.sim_before["requests"].get(
            "users", 0
        )

    def cpu_share(self, process: str) -> float:
        """CPU seconds over wall time; "devhost" sums every devhost process of the stack."""
        if process == "devhost":
            return sum(v for k, v in self.cpu_s.items() if k.startswith("devhost")) / self.wall_s
        return self.cpu_s.get(process, 0.0) / self.wall_s

    def estimate_s(self) -> float | None:
        """The estimate's durationSeconds (the first answer that had it), if any."""
        if self.estimate is None:
            return None
        value = self.estimate.get("durationSeconds")
        return float(value) if isinstance(value, int | float) else None

    def estimate_error(self) -> float | None:
        """|estimate - measured| / measured, measured being the POST-to-200 wall time."""
        estimate = self.estimate_s()
        return None if estimate is None else abs(estimate - self.wall_s) / self.wall_s

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
def write_tenants(
    folder: Path,
    seed: int,
    sizes: list[int],
    *,
    columns: tuple[Column, ...] = PROFILE_COLUMNS,
    method_types: bool = False,
) -> dict[int, Path]:
    """Tenant files holding the first n users of the generated tenant `seed`, for each size,
    written in one generation pass; each user keeps only what `columns` select (by default
    the profile columns). With `method_types`, each user also keeps the types of its
    authentication methods (and each phone's phoneType): what the simulator derives the
    registration report's row from (tenantsim registration.py), so the report's rows are
    those of the generated tenant, without the methods' numbers, addresses and ids.

    Why a file: the plan counts users per UPN first character with startsWith filters, and
    the simulator answers a filter by scanning the tenant once per filter text (16 cached).
    On a generated tenant a scan regenerates every user, about 10 s per 1,000,000 on this
    machine, about 90 scans per 16-partition export: minutes of simulator CPU that Graph never
    costs the client. A file tenant is held in memory and scans in about 0.5 s. (d) selects
    only these properties, so the answers and the CSV are the same as from the generated
    tenant."""
    keep = graph_select(columns)
    paths = {n: folder / f"tenant-{n}.jsonl" for n in sorted(set(sizes))}
    files = {n: open(path, "wb") for n, path in paths.items()}  # closed below
    try:
        chunk: list[bytes] = []
        total = max(paths)
        for index in range(total):
            user = generate_user(seed, index)
            line = {k: user[k] for k in keep if k in user}
            if method_types:
                line["authentication"] = {"methods": _method_types(user)}
            chunk.append(orjson.dumps(line) + b"\n")
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


def _method_types(user: dict[str, Any]) -> list[dict[str, Any]]:
    """A generated user's methods list reduced to what the registration report reads: each
    method's @odata.type, and a phone's phoneType (mobile, alternateMobile, office)."""
    return [
        {k: m[k] for k in ("@odata.type", "phoneType") if k in m}
        for m in user["authentication"]["methods"]
    ]


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


def _stack_processes(before: set[int], devhost_pids: list[int]) -> dict[str, psutil.Process]:
    """The stack's processes by role (devhost, devhost-2, ..., tenantsim, azurite): the
    children this process gained with the stack."""
    found: dict[str, psutil.Process] = {}
    roles = {pid: "devhost" if n == 1 else f"devhost-{n}" for n, pid in enumerate(devhost_pids, 1)}
    for child in psutil.Process().children():
        if child.pid in before:
            continue
        with contextlib.suppress(psutil.Error):
            cmd = " ".join(child.cmdline())
            if child.pid in roles:
                found[roles[child.pid]] = child
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


def partitions_by_instance(logs: list[Path], job_id: str) -> list[int]:
    """How many partitions of the job each devhost finished, in instance order, from the
    "Job <id> partition <n> written" lines of its log (the invocation that writes a
    partition's last users logs it; earlier invocations of that partition may have run
    elsewhere)."""
    line = re.compile(rf"Job {re.escape(job_id)} partition \d+ written")
    counts = []
    for log in logs:
        try:
            counts.append(len(line.findall(log.read_text(errors="replace"))))
        except OSError:
            counts.append(0)
    return counts


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
    """POST, poll until 200 (the wall time), then count both files and read the devhosts'
    peaks. `others` are the pids of child processes that are not this stack's."""
    pids = stack.devhost_pids
    procs = _stack_processes(others, pids)
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
        job_id = str(answer.json().get("id", ""))
        estimate: dict[str, Any] | None = None
        estimate_at: float | None = None
        last_estimate: dict[str, Any] | None = None
        while answer.status_code == 202:
            if time.perf_counter() - started > timeout:
                raise BenchError(f"{name}: not finished after {timeout:.0f} s; stopped")
            time.sleep(float(answer.headers.get("Retry-After", "1")))
            answer = api.get(location)
            now = time.perf_counter() - started
            if sim_every_poll:
                timeline.append((now, api.get(stack.sim["stats"]).json()))
            body_now = answer.json()
            seen = body_now.get("estimate")
            if isinstance(seen, dict):
                last_estimate = seen
                if estimate is None and "durationSeconds" in seen:
                    estimate, estimate_at = seen, now
            written = int(body_now.get("usersWritten") or 0)
            if answer.status_code == 202 and (not progress or written != progress[-1][1]):
                progress.append((now, written))
        wall = time.perf_counter() - started
        finished_at = time.monotonic()
        cpu_after = _cpu(procs)
        sim_after = api.get(stack.sim["stats"]).json()
        job = answer.json()
        if answer.status_code != 200 or job.get("status") not in FINISHED:
            raise BenchError(f"{name}: the export ended {answer.status_code}: {job}")
        records, crlf, columns = _count_csv(storage, job["downloadUrl"])
        error_records, _, _ = _count_csv(storage, job["errorsUrl"])
    peaks = [_vm_hwm_mb(pid) for pid in pids]
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
        peak_rss_mb=max(peaks),
        cpu_s={k: cpu_after[k] - cpu_before.get(k, 0.0) for k in cpu_after},
        progress=progress,
        job_id=job_id,
        devhosts=len(pids),
        peak_rss_each_mb=peaks,
        estimate=estimate,
        estimate_at_s=estimate_at,
        last_estimate=last_estimate,
        partitions_per_instance=partitions_by_instance(stack.devhost_logs, job_id),
        finished_at=finished_at,
        sim_before=sim_before,
        sim_after=sim_after,
        sim_timeline=timeline,
        final=job,
    )
    problems = []
    if run.users != expect_users:
        problems.append(f"userCount {run.users}, the tenant has {expect_users}")
    if records != expect_users + 1:
        problems.append(f"the CSV has {records} records, expected {expect_users + 1}")
    wanted_columns = expected_columns(body)
    if columns != wanted_columns:
        problems.append(f"the CSV has {columns} columns, expected {wanted_columns}")
    if expect_partitions is not None and run.partitions != expect_partitions:
        note = job.get("planNote") or "no planNote"
        problems.append(f"{run.partitions} partition(s), expected {expect_partitions} ({note})")
    if problems:
        raise BenchError(f"{name}: " + "; ".join(problems))
    return run


def expected_columns(body: dict[str, Any]) -> int:
    """The CSV columns an export with this body writes: the columns asked for, a preset's
    (`"columns": "mfa"`), or the admin center's 25."""
    asked = body.get("columns")
    if isinstance(asked, str):
        return len(PRESETS[asked])
    return len(asked or ADMIN_CENTER_COLUMNS)


@dataclass
class DryRun:
    """One dry run (`"dryRun": true`) through the stack: POST, polled until it ends
    `estimated`; its estimate is the job's `estimate` in the final answer."""

    name: str
    wall_s: float  # POST to the 200 answer
    estimate: dict[str, Any]
    partitions: int  # the job's partition count (the plan a real export would run)
    finished_at: float = 0.0  # time.monotonic() of the 200 answer
    sim_before: dict[str, Any] = field(default_factory=dict)
    sim_after: dict[str, Any] = field(default_factory=dict)
    final: dict[str, Any] = field(default_factory=dict)

    def estimate_s(self) -> float | None:
        """The estimate's durationSeconds, if it has one."""
        value = self.estimate.get("durationSeconds")
        return float(value) if isinstance(value, int | float) else None

    def error_against(self, run: ExportRun) -> float | None:
        """|estimate - the export's wall time| / that wall time."""
        estimate = self.estimate_s()
        return None if estimate is None else abs(estimate - run.wall_s) / run.wall_s


def run_dry(stack: LocalStack, name: str, body: dict[str, Any], *, timeout: float) -> DryRun:
    """POST the body with "dryRun": true, poll until 200; fails unless the job ends
    `estimated`."""
    with httpx.Client(timeout=60, trust_env=False) as api:
        sim_before = api.get(stack.sim["stats"]).json()
        started = time.perf_counter()
        answer = api.post(f"{stack.api_url}/api/exports", json={**body, "dryRun": True})
        if answer.status_code != 202:
            raise BenchError(f"{name}: POST answered {answer.status_code}: {answer.text[:500]}")
        location = answer.headers["Location"]
        while answer.status_code == 202:
            if time.perf_counter() - started > timeout:
                raise BenchError(f"{name}: not estimated after {timeout:.0f} s; stopped")
            time.sleep(float(answer.headers.get("Retry-After", "1")))
            answer = api.get(location)
        wall = time.perf_counter() - started
        finished_at = time.monotonic()
        sim_after = api.get(stack.sim["stats"]).json()
    job = answer.json()
    if answer.status_code != 200 or job.get("status") != "estimated":
        raise BenchError(f"{name}: the dry run ended {answer.status_code}: {job}")
    estimate = job.get("estimate") if isinstance(job.get("estimate"), dict) else {}
    return DryRun(
        name=name,
        wall_s=wall,
        estimate=estimate,
        partitions=int(job.get("partitions") or estimate.get("partitions") or 0),
        finished_at=finished_at,
        sim_before=sim_before,
        sim_after=sim_after,
        final=job,
    )


@contextlib.contextmanager
def bench_stack(log_root: Path | None, name: str, **stack: Any) -> Iterator[_Stack]:
    """A LocalStack for one part of the bench (its logs in log_root/name when asked), stopped
    (every process) whatever happens."""
    log_dir = None
    if log_root is not None:
        log_dir = log_root / name
        log_dir.mkdir(parents=True, exist_ok=True)
        for old in log_dir.glob("*.log"):
            old.unlink()  # LocalStack appends
    others = {p.pid for p in psutil.Process().children()}
    started = time.perf_counter()
    try:
        with LocalStack(log_dir=log_dir, **stack) as local:
            print(f"  {name}: stack up in {time.perf_counter() - started:.1f} s", flush=True)
            yield _Stack(local, others)
    except StackError as error:
        raise BenchError(f"{name}: the local stack did not start: {error}") from error
    print(f"  {name}: whole stack {time.perf_counter() - started:.1f} s", flush=True)


@dataclass
class _Stack:
    local: LocalStack
    others: set[int]  # child pids that are not this stack's

    def export(
        self,
        name: str,
        body: dict[str, Any],
        *,
        expect_users: int,
        expect_partitions: int | None = None,
        timeout: float,
        sim_every_poll: bool = False,
    ) -> ExportRun:
        run = run_export(
            self.local,
            name,
            body,
            expect_users=expect_users,
            expect_partitions=expect_partitions,
            timeout=timeout,
            others=self.others,
            sim_every_poll=sim_every_poll,
        )
        estimate = run.estimate_s()
        said = "no estimate.durationSeconds" if estimate is None else f"estimate {estimate:.1f} s"
        print(
            f"  {name}: {run.users:,} users in {run.wall_s:.1f} s (POST to 200; {said}), "
            f"{run.partitions} partition(s) on {run.devhosts} devhost(s); "
            f"devhost peak {run.peak_rss_mb:.0f} MB",
            flush=True,
        )
        return run

    def dry_run(self, name: str, body: dict[str, Any], *, timeout: float) -> DryRun:
        run = run_dry(self.local, name, body, timeout=timeout)
        estimate = run.estimate_s()
        said = "no durationSeconds" if estimate is None else f"{estimate:.1f} s"
        print(
            f"  {name}: estimated in {run.wall_s:.1f} s (POST to 200): {said} "
            f"({run.estimate.get('paceSource', '?')} pace, bound by "
            f"{run.estimate.get('bindingLimit', '?')}), {run.partitions} partition(s)",
            flush=True,
        )
        return run

    def wait_for_full_buckets(self, after: ExportRun | DryRun) -> None:
        """Sleeps until the simulator's buckets, which refill over SIM_WINDOW_S, are full again
        after the previous run (so the next run's budget is its full bucket plus refill)."""
        time.sleep(max(0.0, after.finished_at + SIM_WINDOW_S - time.monotonic()))


# ------------------------------------------------------------------------------ the parts
LATENCY = ["--latency-per-user-ms", "1"]  # about 1 s per page of 999 users


def run_million(
    *,
    seed: int,
    sample_users: int,
    partitioned_users: int,
    log_root: Path | None,
    done: dict[str, ExportRun],
) -> None:
    """(d): profile columns, about 1 s per page; sequential on a sample, then partitioned
    with USEREXPORT_PARTITIONS at its default, 32 (the app picks the count from its estimate).
    Each run is put in `done` by name as it finishes (kept if the next one fails)."""
    with tempfile.TemporaryDirectory(prefix="userexport-bench-d-") as tmp:
        started = time.perf_counter()
        files = write_tenants(Path(tmp), seed, [sample_users, partitioned_users])
        print(
            f"  (d) tenant files of {sample_users:,} and {partitioned_users:,} users written in "
            f"{time.perf_counter() - started:.1f} s",
            flush=True,
        )
        common: dict[str, Any] = {"seed": seed, "sim_args": LATENCY}
        with bench_stack(
            log_root,
            "d-sequential",
            tenant_file=files[sample_users],
            app_env={"USEREXPORT_PARTITIONS": "1", "USEREXPORT_STATUS_RETRY_AFTER_SECONDS": "1"},
            **common,
        ) as stack:
            sequential = stack.export(
                "d-sequential",
                PROFILE_BODY,
                expect_users=sample_users,
                expect_partitions=1,
                timeout=120 + 2 * pages(sample_users),
            )
            done[sequential.name] = sequential
        with bench_stack(
            log_root,
            "d-partitioned",
            tenant_file=files[partitioned_users],
            # USEREXPORT_PARTITIONS at its default: the app picks the count from its estimate.
            app_env={"USEREXPORT_STATUS_RETRY_AFTER_SECONDS": "1"},
            **common,
        ) as stack:
            partitioned = stack.export(
                "d-partitioned", PROFILE_BODY, expect_users=partitioned_users, timeout=420
            )
            done[partitioned.name] = partitioned


def run_auth(
    *, seed: int, users: int, budget: int, log_root: Path | None, done: dict[str, ExportRun]
) -> None:
    """(e): the 25 default columns, one methods lookup per user under an auth budget of
    `budget`, twice on one stack: the first run (cold) teaches the pace the app keeps in
    storage, the second is the measured one. Each starts with the simulator's buckets full.
    Each run is put in `done` by name as it finishes (kept if the next one fails)."""
    with bench_stack(
        log_root,
        "e-auth",
        users=users,
        seed=seed,
        sim_args=["--auth-budget", str(budget)],
        app_env={"USEREXPORT_STATUS_RETRY_AFTER_SECONDS": "1"},
    ) as stack:
        cold = stack.export("e-auth-cold", {}, expect_users=users, timeout=600, sim_every_poll=True)
        done[cold.name] = cold
        stack.wait_for_full_buckets(cold)
        warm = stack.export("e-auth", {}, expect_users=users, timeout=600, sim_every_poll=True)
        done[warm.name] = warm


def run_auth_tight(*, seed: int, users: int, budget: int, log_root: Path | None) -> ExportRun:
    """(e) at a tight auth budget (Graph's possible 5 requests per 10 s for authentication
    methods): a small tenant, the 25 default columns, one cold run."""
    lookups_s = users / (budget / SIM_WINDOW_S)
    with bench_stack(
        log_root,
        "e-tight",
        users=users,
        seed=seed,
        sim_args=["--auth-budget", str(budget)],
        app_env={"USEREXPORT_STATUS_RETRY_AFTER_SECONDS": "1"},
    ) as stack:
        return stack.export(
            "e-tight", {}, expect_users=users, timeout=300 + 4 * lookups_s, sim_every_poll=True
        )


def run_multi(
    *,
    seed: int,
    users: int,
    budget: int,
    partitions: int,
    devhosts: int,
    batch_size: int,
    log_root: Path | None,
    done: dict[str, ExportRun],
) -> None:
    """(f): one stack (one tenantsim and its auth budget, one Azurite), the 25 default columns;
    an export with one devhost, then `devhosts - 1` more devhosts are started and the same
    export runs again on all of them (the pace the first run taught is in storage). Each run
    is put in `done` by name as it finishes (kept if the next one fails).

    `batch_size` > 0: every devhost runs with host.json's queues batchSize at that and
    newBatchThreshold 0 (at most that many messages at once per host), so that the partition
    messages spread over the devhosts; 0: the repository's host.json (batchSize 32), where
    the first host to poll may take all of them."""
    lookups_s = users / (budget / SIM_WINDOW_S)
    timeout = 300 + 4 * lookups_s
    with contextlib.ExitStack() as cleanup:
        devhost_args: list[str] = []
        if batch_size > 0:
            folder = Path(cleanup.enter_context(tempfile.TemporaryDirectory()))
            devhost_args = ["--host-json", str(host_json_with_batch(folder, batch_size))]
        stack = cleanup.enter_context(
            bench_stack(
                log_root,
                "f-multi",
                users=users,
                seed=seed,
                sim_args=["--auth-budget", str(budget)],
                app_env={
                    "USEREXPORT_PARTITIONS": str(partitions),
                    "USEREXPORT_STATUS_RETRY_AFTER_SECONDS": "1",
                },
                devhost_args=devhost_args,
            )
        )
        single = stack.export(
            "f-single", {}, expect_users=users, timeout=timeout, sim_every_poll=True
        )
        done[single.name] = single
        started = time.perf_counter()
        stack.local.add_devhosts(devhosts - 1)
        took = time.perf_counter() - started
        print(f"  f-multi: {devhosts - 1} more devhost(s) up in {took:.1f} s", flush=True)
        stack.wait_for_full_buckets(single)
        multi = stack.export(
            "f-multi", {}, expect_users=users, timeout=timeout, sim_every_poll=True
        )
        done[multi.name] = multi


def host_json_with_batch(folder: Path, batch_size: int) -> Path:
    """The repository's host.json with queues batchSize `batch_size`, newBatchThreshold 0."""
    host = orjson.loads((ROOT / "host.json").read_bytes())
    host["extensions"]["queues"] |= {"batchSize": batch_size, "newBatchThreshold": 0}
    path = folder / "host.json"
    path.write_bytes(orjson.dumps(host, option=orjson.OPT_INDENT_2))
    return path


# (g): Graph's latency: 20 ms per request, plus 1 ms per user or delta entry returned (as in
# (d): a /users page of 999 about 1 s, a delta page of 200 about 0.2 s). Writes get none.
DELTA_LATENCY = ["--latency-ms", "20", "--latency-per-user-ms", "1"]
DELTA_SERIES = "bench-g"
# The default 25 columns (no "columns"); snapshot: the changes run also rebuilds the full CSV.
DELTA_BODY: dict[str, Any] = {"series": DELTA_SERIES, "mode": "delta", "snapshot": True}


@dataclass(frozen=True)
class DeltaChanges:
    """The changes (g) makes between its two runs, through Graph's write APIs."""

    updates: int = 200  # one of them renames the user to another UPN prefix
    creates: int = 150
    deletes: int = 150  # soft deletes

    def expected(self) -> dict[str, int]:
        """What the changes run must report: created users are added, soft-deleted removed."""
        return {"added": self.creates, "updated": self.updates, "removed": self.deletes}


@dataclass
class DeltaResult:
    """(g)'s two runs and what happened between them."""

    full: ExportRun | None = None
    changes: ExportRun | None = None
    made: dict[str, int] = field(default_factory=dict)  # writes: created, updated, ...
    writes_s: float = 0.0  # wall time of the writes
    changes_file_records: int = 0  # records of the changes run's changes.csv, header included


def run_delta(
    *, seed: int, users: int, changes: DeltaChanges, log_root: Path | None, result: DeltaResult
) -> None:
    """(g): one stack, a generated tenant of `users`, the default 25 columns. The delta series'
    first run (a full run), then `changes` made through Graph's write APIs, then the series'
    changes run with snapshot. Fails unless the first run is "full", the second "changes"
    with exactly the changes made, and its snapshot holds every user. `result` is filled as
    the runs finish (kept if a later step fails)."""
    if changes.updates < 1 or changes.updates + changes.deletes > users:
        raise BenchError("(g) needs at least one update and fewer changes than users")
    with bench_stack(
        log_root,
        "g-delta",
        users=users,
        seed=seed,
        sim_args=DELTA_LATENCY,
        app_env={"USEREXPORT_STATUS_RETRY_AFTER_SECONDS": "1"},
    ) as stack:
        with stack.local.tenant_writer() as writer:
            started = time.perf_counter()
            listed = writer.users(select="id,userPrincipalName")
            print(
                f"  g-delta: {len(listed):,} users listed to pick the changes from in "
                f"{time.perf_counter() - started:.1f} s (not measured)",
                flush=True,
            )
            if len(listed) != users:
                raise BenchError(f"g-delta: the tenant lists {len(listed)} users, not {users}")
            full = stack.export("g-full", DELTA_BODY, expect_users=users, timeout=900)
            result.full = full
            _check_delta_run(full, "full")
            started = time.perf_counter()
            result.made = make_changes(writer, listed, changes, seed=seed)
            result.writes_s = time.perf_counter() - started
            print(
                f"  g-delta: {result.made} through Graph's write APIs in {result.writes_s:.1f} s",
                flush=True,
            )
        stack.wait_for_full_buckets(full)  # the full run drained them; the writes cost none
        after = users + changes.creates - changes.deletes
        delta = stack.export("g-changes", DELTA_BODY, expect_users=after, timeout=600)
        result.changes = delta
        result.changes_file_records = count_csv_at(stack.local, delta.final.get("changesUrl"))
        _check_delta_run(delta, "changes", changes.expected())
        made = changes.creates + changes.updates + changes.deletes
        if result.changes_file_records != made + 1:
            raise BenchError(
                f"g-changes: changes.csv has {result.changes_file_records} records, expected "
                f"{made + 1} (header and one row per user changed)"
            )


def make_changes(
    writer: TenantWriter, listed: list[dict[str, Any]], changes: DeltaChanges, *, seed: int
) -> dict[str, int]:
    """Updates and soft-deletes users picked at random (seeded) across the listing, the first
    update a rename to another UPN prefix, and creates new users. The counts made."""
    picked = random.Random(f"userexport-bench-g:{seed}").sample(
        listed, changes.updates + changes.deletes
    )
    updated, deleted = picked[: changes.updates], picked[changes.updates :]
    renamed = updated[0]
    upn = str(renamed["userPrincipalName"])
    prefix = "yy-renamed." if upn[:1].lower() == "z" else "zz-renamed."
    writer.update_user(renamed["id"], userPrincipalName=prefix + upn)
    for n, user in enumerate(updated[1:], 1):
        writer.update_user(user["id"], jobTitle=f"Bench delta title {n}")
    domain = upn.partition("@")[2] or "contoso.example"
    for n in range(changes.creates):
        writer.create_user(
            displayName=f"Bench Delta Added {n}",
            userPrincipalName=f"bench.delta.added{n}@{domain}",
            mailNickname=f"benchdeltaadded{n}",
            accountEnabled=True,
        )
    for user in deleted:
        writer.delete_user(user["id"])
    return {
        "created": changes.creates,
        "updated": len(updated),
        "renamed": 1,
        "deleted": len(deleted),
    }


def _check_delta_run(run: ExportRun, kind: str, counts: dict[str, int] | None = None) -> None:
    """The job's `delta` says the run was of `kind` and (a changes run) counted `counts`."""
    delta = run.final.get("delta") or {}
    problems = []
    if delta.get("kind") != kind:
        problems.append(f"delta.kind {delta.get('kind')!r}, expected {kind!r}")
    if counts is not None:
        got = {k: delta.get(k) for k in counts}
        if got != counts:
            problems.append(f"delta counts {got}, expected {counts}")
    if problems:
        raise BenchError(f"{run.name}: " + "; ".join(problems) + f" (delta: {delta})")


# (h): the 25 default columns (one methods lookup per user); fewerLookups reads the registration
# report first and looks up only the users whose row does not rule out a phone and an email.
FEWER_BODY: dict[str, Any] = {"fewerLookups": True}


@dataclass(frozen=True)
class AuthShape:
    """(h)'s tenant: generated (seed), `users` of whom `phone_email_share` have a phone or
    email authentication method (tenantsim --phone-email-share)."""

    seed: int
    users: int
    phone_email_share: float

    def sim_args(self) -> list[str]:
        # With Graph's latency, as in (g): a generous world's export takes the time its
        # requests take, which the dry run's probe times.
        return [*DELTA_LATENCY, "--phone-email-share", str(self.phone_email_share)]

    def facts(self) -> dict[str, int]:
        """What the tenant holds, from the generator (no simulator): users with a phone or
        email method, disabled users (the registration report leaves them out, so fewerLookups
        cannot rule them out), and enabled users without either (those it can skip)."""
        seed = ShapedSeed(self.seed, self.phone_email_share)
        with_methods = disabled = skippable = 0
        for index in range(self.users):
            has = has_phone_or_email(seed, index)
            enabled = generate_user_lite(seed, index)["accountEnabled"] is not False
            with_methods += has
            disabled += not enabled
            skippable += enabled and not has
        return {
            "phone_email_users": with_methods,
            "disabled_users": disabled,
            "enabled_without_phone_email": skippable,
        }


@dataclass
class AuthLimitResult:
    """(h)'s runs, put here as they finish (kept if a later one fails)."""

    documented_dry: DryRun | None = None
    documented: ExportRun | None = None
    fewer: ExportRun | None = None
    generous_dry: DryRun | None = None
    generous: ExportRun | None = None
    budget: int = 0  # the documented world's tenantsim --auth-budget
    worlds: tuple[str, ...] = ("documented", "generous")  # the worlds asked for
    shape: AuthShape | None = None
    facts: dict[str, int] = field(default_factory=dict)
    mfa_users: int = 0  # --limit-million-users: the mfa preset's run on so many (0: not run)
    mfa: ExportRun | None = None
    mfa_error_codes: dict[str, int] = field(default_factory=dict)  # its errors file's errorCode

    def exports(self) -> list[ExportRun]:
        every = (self.documented, self.fewer, self.generous, self.mfa)
        return [r for r in every if r is not None]

    def dry_runs(self) -> list[DryRun]:
        return [r for r in (self.documented_dry, self.generous_dry) if r is not None]


def run_auth_limit_documented(
    *, shape: AuthShape, budget: int, log_root: Path | None, result: AuthLimitResult
) -> None:
    """(h), the documented world: tenantsim --auth-budget `budget` (5: Graph's documented five
    requests per 10 s for authentication methods and the registration report). On one stack,
    each run starting with the buckets full: a dry run (cold: nothing learned yet), the
    export of the 25 default columns, then the same export with fewerLookups."""
    lookups_s = shape.users / (budget / SIM_WINDOW_S)  # one lookup per user at the refill
    timeout = 300 + 2 * lookups_s  # 300 users at 5 per 10 s: 1,500 s
    result.budget = budget
    with bench_stack(
        log_root,
        "h-documented",
        users=shape.users,
        seed=shape.seed,
        sim_args=[*shape.sim_args(), "--auth-budget", str(budget)],
        app_env={"USEREXPORT_STATUS_RETRY_AFTER_SECONDS": "1"},
    ) as stack:
        dry = stack.dry_run("h-dry-documented", {}, timeout=300)
        result.documented_dry = dry
        stack.wait_for_full_buckets(dry)
        export = stack.export(
            "h-documented", {}, expect_users=shape.users, timeout=timeout, sim_every_poll=True
        )
        result.documented = export
        stack.wait_for_full_buckets(export)
        fewer = stack.export(
            "h-fewer", FEWER_BODY, expect_users=shape.users, timeout=timeout, sim_every_poll=True
        )
        result.fewer = fewer


def run_auth_limit_generous(
    *, shape: AuthShape, log_root: Path | None, result: AuthLimitResult
) -> None:
    """(h), the generous world: the same tenant at tenantsim's default auth budget; a dry run
    (cold), then the export, starting with the buckets full."""
    with bench_stack(
        log_root,
        "h-generous",
        users=shape.users,
        seed=shape.seed,
        sim_args=shape.sim_args(),
        app_env={"USEREXPORT_STATUS_RETRY_AFTER_SECONDS": "1"},
    ) as stack:
        dry = stack.dry_run("h-dry-generous", {}, timeout=300)
        result.generous_dry = dry
        stack.wait_for_full_buckets(dry)
        result.generous = stack.export(
            "h-generous", {}, expect_users=shape.users, timeout=600, sim_every_poll=True
        )


# (h), optional: the `mfa` column preset (userPrincipalName, displayName, objectId,
# accountEnabled, userType and the registration report's 11 columns), asked for by name.
MFA_BODY: dict[str, Any] = {"columns": "mfa"}
MFA_COLUMNS = resolve(PRESETS["mfa"])


def run_mfa_million(
    *, seed: int, users: int, log_root: Path | None, result: AuthLimitResult
) -> None:
    """(h), optional: the mfa preset at scale (--limit-million-users). As (d)'s partitioned
    run: a tenant file of the first `users` users of the generated tenant `seed` (the preset's
    properties, plus the types of each user's authentication methods, which the simulator's
    registration report derives its rows from), about 1 s per page of 999 (users and report
    rows alike), USEREXPORT_PARTITIONS at its default; tenantsim's default auth budget. Each
    partition reads the report one UPN-prefix range at a time (the plan keeps each under its
    share of REPORT_ROWS users) and joins it by user id: what the devhost's peak measures."""
    result.mfa_users = users
    with tempfile.TemporaryDirectory(prefix="userexport-bench-h-") as tmp:
        started = time.perf_counter()
        files = write_tenants(Path(tmp), seed, [users], columns=MFA_COLUMNS, method_types=True)
        print(
            f"  (h) tenant file of {users:,} users (mfa preset's properties, method types) "
            f"written in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        with bench_stack(
            log_root,
            "h-mfa",
            tenant_file=files[users],
            seed=seed,
            sim_args=LATENCY,
            # USEREXPORT_PARTITIONS at its default: the app picks the count from its estimate.
            app_env={"USEREXPORT_STATUS_RETRY_AFTER_SECONDS": "1"},
        ) as stack:
            # One partition (a documented-rate plan) takes about 2 s per 999 users: the bound.
            run = stack.export(
                "h-mfa", MFA_BODY, expect_users=users, timeout=600 + 4 * pages(users)
            )
            result.mfa = run
            result.mfa_error_codes = error_codes_at(stack.local, run.final.get("errorsUrl"))
            print(f"  h-mfa: errors file by errorCode {result.mfa_error_codes}", flush=True)


def count_csv_at(stack: LocalStack, url: str | None) -> int:
    """Records of the CSV at a SAS URL (0 when there is none), streamed."""
    if not url:
        return 0
    ca = ssl.create_default_context(cafile=stack.env["SSL_CERT_FILE"])
    with httpx.Client(timeout=600, verify=ca, trust_env=False) as storage:
        return _count_csv(storage, url)[0]


def error_codes_at(stack: LocalStack, url: str | None) -> dict[str, int]:
    """The data rows of an errors file at a SAS URL by their errorCode, streamed."""
    if not url:
        return {}
    ca = ssl.create_default_context(cafile=stack.env["SSL_CERT_FILE"])
    codes: dict[str, int] = {}
    with (
        httpx.Client(timeout=600, verify=ca, trust_env=False) as storage,
        storage.stream("GET", url) as response,
    ):
        response.raise_for_status()
        raw = _Download(response.iter_bytes(1 << 20))
        text = io.TextIOWrapper(io.BufferedReader(raw, 1 << 20), encoding="utf-8-sig", newline="")
        reader = csv.reader(text)
        header = next(reader, [])
        column = header.index("errorCode") if "errorCode" in header else 4
        for record in reader:
            code = record[column] if len(record) > column else ""
            codes[code] = codes.get(code, 0) + 1
    return codes


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


def graph_requests(before: dict[str, Any], after: dict[str, Any]) -> tuple[int, int]:
    """(Graph requests the simulator saw, of which throttled) between two stats: every
    request counts once, each $batch item as a request of its own (the envelopes, which
    are never throttled by the buckets, and token requests are left out)."""
    requests = sum(
        after["requests"].get(k, 0) - before["requests"].get(k, 0)
        for k in after["requests"]
        if k not in NOT_GRAPH_REQUESTS
    )
    return requests, after["throttled"] - before["throttled"]


def graph_calls(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """(g): the HTTP requests to Graph the simulator saw between two stats, by endpoint: list
    pages, counts, delta pages, $batch envelopes (`batch`) and each of their items under its
    own endpoint; not the item tally or token requests (writes are counted apart). Throttled
    requests count too."""
    out = {}
    for key, value in after["requests"].items():
        if key not in NOT_GRAPH_CALLS and value - before["requests"].get(key, 0):
            out[key] = value - before["requests"].get(key, 0)
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


def auth_bucket(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """(h): the requests the simulator charged to the auth bucket between two stats, by
    endpoint (methods, phoneMethods, emailMethods reads, registration report pages; throttled
    ones cost nothing and are left out); endpoints without any are left out."""
    out = {}
    for key in AUTH_BUCKET:
        requests = after["requests"].get(key, 0) - before["requests"].get(key, 0)
        throttled = after["throttledByEndpoint"].get(key, 0) - before["throttledByEndpoint"].get(
            key, 0
        )
        if requests - throttled:
            out[key] = requests - throttled
    return out
