"""`python -m bench.chaos` (`make chaos`): real exports under injected faults, byte for byte.

Each run starts an export through the HTTP API of a local stack (tenantsim, Azurite over
https, devhost running the real function app) exactly as a script would (POST, then GET the
job until it answers 200), while a seeded random mix of faults is injected: SIGKILL of the
function host, duplicated and concurrently delivered queue messages, a stale invocation after
a takeover, Graph 5xx storms with and without Retry-After, Graph outages (all requests, or
only $batch), expired page tokens, Azurite restarts, and (for a group of runs) a lookup budget
so tight that a page needs several invocations. A share of the runs also has one kind of
"Graph weather" for the whole run: Graph as Microsoft documents it and users report it
(tenantsim's switches: flaky or lasting 'no premium' 403s on sign-in activity, 429s for CPU,
424 batches, no authentication-methods API, a B2C tenant). The finished CSV is compared byte
for byte with a clean export of the same tenant and the same partition count, made first on
the same kind of stack; where the weather makes Graph withhold a column for good, the file may
differ from it only by those cells being empty, and the job must say which columns and why.

It prints a table and writes bench/chaos.json; the exit code is 1 when a target is missed
(wrong successes or results, lost, duplicated or unexpected rows, stuck or failed jobs). A
run's faults are drawn from (seed, run index) alone: `--seed S --only 7` replays run 7 of seed
S (the moments are shares of the run's window, so they land at about the same stage, not the
same millisecond: the stack's timing is not deterministic).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import random
import ssl
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from devtools.stack import LocalStack, StackError
from userexport.columns import DEFAULT_COLUMN_NAMES

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "chaos.json"
SWEEP_FUNCTION = "sweep_stalled_exports"
DEFAULT_AUTH_BUDGET = 8000  # tenantsim's default --auth-budget (RU per 10 s)
FINAL = ("succeeded", "completedWithErrors", "failed")

# Fault kinds drawn for a run, and the group-level one (its own stack).
KINDS = (
    "kill",
    "duplicates",
    "stale_invocation",
    "storm_retry_after",
    "storm_no_retry_after",
    "outage_all",
    "outage_batch",
    "expired_page_tokens",
    "azurite_restart",
)
TIGHT_AUTH = "tight_auth_budget"
STATUS_KEYS = ("500", "502", "503", "504", "reset")  # tenantsim's rate-fault kinds

# What every export asks for, the clean ones too: the admin center's 25 columns and the two
# sign-in columns whose values do not depend on when the export ran (daysSinceLastSignIn does).
SIGN_IN_COLUMNS = ("lastSignInDateTime", "lastSuccessfulSignInDateTime")
AUTH_COLUMNS = ("authenticationAlternativePhoneNumber", "authenticationEmail")
COLUMNS: tuple[str, ...] = (*DEFAULT_COLUMN_NAMES, *SIGN_IN_COLUMNS)


@dataclass(frozen=True)
class Withholding:
    """Columns Graph withholds for good under a kind of weather, and how the job must say so:
    one notice row in the errors file (no objectId, `failed` as given) and a `reason` naming
    every column and holding `says`."""

    columns: tuple[str, ...]
    failed: str  # the notice's `failed`; ending in "/": any value starting with it
    says: str

    def notice(self, row: list[str] | tuple[str, ...]) -> bool:
        if len(row) < 3 or row[0]:
            return False
        if self.failed.endswith("/"):
            return row[2].startswith(self.failed)
        return row[2] == self.failed


SIGN_IN_WITHHELD = Withholding(SIGN_IN_COLUMNS, "signInActivity", "sign-in activity")
AUTH_WITHHELD = Withholding(AUTH_COLUMNS, "authentication/", "21Vianet")


@dataclass(frozen=True)
class Weather:
    """A kind of Graph weather: tenantsim's switches for the whole run, the /_sim/stats
    `faults` kind that says it took effect, and what Graph withholds for good under it."""

    sim_kind: str
    withholds: Withholding | None = None
    sequential: bool = False  # Graph cannot count: one listing whatever the partitions


# Drawn from a stream of their own (so the other kinds' draws are those of before), in a share
# of the runs, set through /_sim/faults before the export starts, reset after the run.
WEATHER: dict[str, Weather] = {
    "signin_flaky_403": Weather("signInFlaky403"),
    "signin_refused": Weather("signInRefused", SIGN_IN_WITHHELD),
    "cpu_429": Weather("429cpu"),
    "batch_424": Weather("424"),
    "no_auth_api": Weather("noAuthenticationApi", AUTH_WITHHELD),
    # No $count in Azure AD B2C: one sequential listing; no sign-in activity either.
    "b2c": Weather("b2cRefused", SIGN_IN_WITHHELD, sequential=True),
}


# --------------------------------------------------------------------------- options, plans
@dataclass
class ChaosOptions:
    seed: int = 1
    runs: int = 30
    users: int = 3000
    tenant_seed: int = 11
    partitions: tuple[int, ...] = (1, 3, 8)
    only: tuple[int, ...] | None = None  # run indexes to run (replay); None: all
    tight_every: int = 5  # runs i with i % n == n - 1 use the tight lookup budget; 0: none
    tight_auth_budget: int = 2500  # RU per 10 s for auth-method reads on that stack
    time_budget: float = 1.5  # USEREXPORT_TIME_BUDGET_SECONDS
    lease_grace: float = 1.5  # USEREXPORT_LEASE_GRACE_SECONDS
    stall_minutes: float = 0.1  # USEREXPORT_STALL_MINUTES
    message_lease: int = 3  # devhost --message-lease-seconds
    sweep_every: float = 3.0  # seconds between two firings of the sweep timer
    stuck_timeout: float = 180.0  # seconds after the last fault before a job counts as stuck
    # A run's Graph weather lasts until its job ends, so there is no "after the last fault":
    # such a job counts as stuck once its progress (status, users written, partitions done)
    # has not moved for stuck_timeout seconds (after the window and its other faults), or
    # once it has run weather_cap seconds, moving or not.
    weather_cap: float = 900.0
    # USEREXPORT_STORM_SECONDS: how long the exporter retries a 'no premium' 403 on sign-in
    # activity, and a lookup failing while Graph serves others, before it believes it. Longer
    # than any storm or outage drawn (8 and 10 s) and two overlapping, shorter than 120 s so
    # that a lasting refusal costs a run seconds.
    storm_seconds: float = 20.0
    weather_share: float = 0.6  # share of the runs with one kind of Graph weather; 0: none
    weather_kinds: tuple[str, ...] = tuple(WEATHER)  # the kinds drawn from, uniformly
    latency_ms: float = 10.0
    latency_per_user_ms: float = 0.5
    log_dir: Path | None = None
    results: Path | None = RESULTS
    quiet: bool = False

    @property
    def lease(self) -> float:
        """A partition's lease: the time budget plus the grace."""
        return self.time_budget + self.lease_grace

    def app_env(self, partitions: int) -> dict[str, str]:
        return {
            "USEREXPORT_TIME_BUDGET_SECONDS": f"{self.time_budget:g}",
            "USEREXPORT_LEASE_GRACE_SECONDS": f"{self.lease_grace:g}",
            "USEREXPORT_STALL_MINUTES": f"{self.stall_minutes:g}",
            "USEREXPORT_STORM_SECONDS": f"{self.storm_seconds:g}",
            "USEREXPORT_PARTITIONS": str(partitions),
            # Every run is split into exactly the partitions drawn, small tenant or not.
            "USEREXPORT_SMALL_TENANT_USERS": "0",
            "USEREXPORT_PARTITION_SECONDS": "0",
        }


@dataclass
class Fault:
    kind: str
    at: float  # when, as a share of the run's window (drawn from the seed)
    params: dict[str, Any]
    fired_s: float | None = None  # seconds after the POST when it was injected
    hit: bool | None = None  # the simulator saw it take effect (None: not measurable)
    note: str = ""

    def label(self) -> str:
        return self.kind


@dataclass
class RunPlan:
    index: int
    group: str  # "default" or "tight" (the stack it runs on)
    partitions: int  # USEREXPORT_PARTITIONS of the run
    faults: list[Fault]

    @property
    def weather(self) -> list[Fault]:
        return [f for f in self.faults if f.kind in WEATHER]

    @property
    def reference_partitions(self) -> int:
        """The clean export to compare with: a tenant Graph cannot count is one listing."""
        if any(WEATHER[f.kind].sequential for f in self.weather):
            return 1
        return self.partitions

    @property
    def withholdings(self) -> list[Withholding]:
        return [w for f in self.weather if (w := WEATHER[f.kind].withholds) is not None]


def plan_runs(options: ChaosOptions) -> list[RunPlan]:
    """Every run's stack, partition count and faults, from (seed, run index) alone."""
    plans = []
    for index in range(options.runs):
        rng = random.Random(f"userexport-chaos:{options.seed}:{index}")
        tight = options.tight_every > 0 and index % options.tight_every == options.tight_every - 1
        partitions = rng.choice(options.partitions)
        faults = _draw_faults(rng, options)
        if any(f.kind == "expired_page_tokens" for f in faults) and 1 in options.partitions:
            # A sequential listing is sure to have page tokens on a tenant of a few thousand
            # users: a UPN first character may hold fewer users than a page (120 with sign-in
            # activity, 999 once Graph withholds it).
            partitions = 1
        faults += _draw_weather(options, index)
        plans.append(RunPlan(index, "tight" if tight else "default", partitions, faults))
    return plans


def _draw_weather(options: ChaosOptions, index: int) -> list[Fault]:
    """0 or 1 kind of Graph weather for the run, from a stream of its own: the other kinds'
    draws stay those of (seed, index) without it."""
    rng = random.Random(f"userexport-chaos-graph:{options.seed}:{index}")
    if not options.weather_kinds or rng.random() >= options.weather_share:
        return []
    kind = rng.choice(options.weather_kinds)
    return [Fault(kind, 0.0, _weather_params(rng, kind))]


def _weather_params(rng: random.Random, kind: str) -> dict[str, Any]:
    """The /_sim/faults body that sets this weather (tenantsim README, "Graph as documented")."""
    if kind == "signin_flaky_403":
        return {"signInFlaky403": round(rng.uniform(0.1, 0.4), 2)}
    if kind == "signin_refused":
        return {"signInRefusedAfter": rng.randint(2, 10)}
    if kind == "cpu_429":
        return {
            "rate429Cpu": round(rng.uniform(0.02, 0.08), 3),
            "retryAfter429Cpu": rng.randint(1, 2),
        }
    if kind == "batch_424":
        return {"rate424": round(rng.uniform(0.05, 0.3), 2)}
    if kind == "no_auth_api":
        return {"authenticationMethodsApi": False}
    if kind == "b2c":
        return {"b2c": True}
    raise ValueError(kind)


def _draw_faults(rng: random.Random, options: ChaosOptions) -> list[Fault]:
    kinds = rng.sample(KINDS, rng.randint(2, 4))
    if "kill" not in kinds and rng.random() < 0.4:  # the commonest fault of all: more of it
        kinds.append("kill")
    faults = []
    for kind in kinds:
        repeats = rng.choice((1, 1, 2, 3)) if kind in ("kill", "duplicates") else 1
        for _ in range(repeats):
            at = round(rng.uniform(0.02, 1.0), 3)
            faults.append(Fault(kind, at, _draw_params(rng, kind, options)))
    return sorted(faults, key=lambda f: f.at)


def _draw_params(rng: random.Random, kind: str, options: ChaosOptions) -> dict[str, Any]:
    if kind == "kill":
        return {"down_s": round(rng.uniform(0.0, 2.5), 2)}
    if kind == "duplicates":
        return {"copies": rng.randint(1, 3)}
    if kind == "stale_invocation":
        return {
            "slow_s": round(options.lease + rng.uniform(3.0, 6.0), 1),
            "takeover_after_s": round(options.lease + rng.uniform(0.3, 1.5), 2),
        }
    if kind.startswith("storm"):
        statuses = rng.sample(STATUS_KEYS, rng.randint(2, 5))
        total = rng.uniform(0.2, 0.6)
        weights = [rng.random() + 0.1 for _ in statuses]
        rates = {
            s: round(total * w / sum(weights), 3) for s, w in zip(statuses, weights, strict=True)
        }
        with_retry_after = kind == "storm_retry_after"
        return {
            "duration_s": round(rng.uniform(2.0, 8.0), 1),
            "rates": rates,
            "retry_after": {
                s: (rng.randint(1, 3) if with_retry_after else 0) for s in STATUS_KEYS[:4]
            },
            "targets": rng.choice(
                (["users", "auth"], ["users", "auth"], ["users", "auth", "batch"], ["auth"])
            ),
        }
    if kind in ("outage_all", "outage_batch"):
        return {
            "duration_s": round(rng.uniform(2.0, 10.0), 1),
            "mode": rng.choice(("503", "reset")),
        }
    if kind == "expired_page_tokens":
        if rng.random() < 0.5:
            return {"mode": "now"}
        # A window of seconds in which page tokens live only ttl_s (a token then outlives
        # neither a continuation nor a crash), then back to tokens that never expire.
        return {
            "mode": "ttl",
            "ttl_s": round(rng.uniform(1.0, 3.0), 1),
            "duration_s": round(rng.uniform(3.0, 12.0), 1),
        }
    if kind == "azurite_restart":
        return {"down_s": round(rng.uniform(0.5, 4.0), 1)}
    raise ValueError(kind)


# --------------------------------------------------------------------------- CSV comparison
def records(data: bytes) -> list[tuple[str, ...]]:
    """The CSV records of a file (header first), quoted line breaks kept inside their cell."""
    text = data.decode("utf-8-sig", errors="replace")
    return [tuple(r) for r in csv.reader(io.StringIO(text, newline=""))]


@dataclass
class Comparison:
    identical: bool  # byte for byte
    header_ok: bool
    rows: int  # data rows in the file
    rows_lost: int  # rows of the reference missing (each missing copy counts)
    rows_duplicated: int  # extra copies of rows the reference holds
    rows_unexpected: int  # rows the reference does not hold at all (e.g. torn or mixed)
    cells_withheld: int = 0  # cells of withheld columns empty where the reference has a value

    @property
    def rows_match(self) -> bool:
        """Every row of the reference once and nothing else (withheld cells may be empty)."""
        return self.header_ok and not (
            self.rows_lost or self.rows_duplicated or self.rows_unexpected
        )


def compare(reference: bytes, got: bytes, withheld: Collection[str] = ()) -> Comparison:
    """The file against the clean export. Rows are matched by objectId: a row matches its
    reference row when every cell outside the `withheld` columns is equal and each withheld
    cell is equal or empty (Graph withholding it for good); with none withheld, equal rows."""
    ref, new = records(reference), records(got)
    header = ref[0] if ref else ()
    held = [i for i, name in enumerate(header) if name in withheld]
    key = header.index("objectId") if "objectId" in header else None

    def keyed(row: tuple[str, ...]) -> Any:
        return row[key] if key is not None and len(row) > key else row

    def matches(expected: tuple[str, ...], row: tuple[str, ...]) -> bool:
        if expected == row:
            return True
        if not held or len(expected) != len(row):
            return False
        return all(
            e == r or (i in held and r == "")
            for i, (e, r) in enumerate(zip(expected, row, strict=True))
        )

    pending: dict[Any, list[tuple[str, ...]]] = {}
    for row in ref[1:]:
        pending.setdefault(keyed(row), []).append(row)
    matched: dict[Any, list[tuple[str, ...]]] = {}
    duplicated = unexpected = emptied = 0
    for row in new[1:]:
        k = keyed(row)
        candidates = pending.get(k, [])
        # The exact reference row first, then one it matches with withheld cells empty.
        hit = next((c for c in candidates if c == row), None)
        hit = hit or next((c for c in candidates if matches(c, row)), None)
        if hit is not None:
            candidates.remove(hit)
            matched.setdefault(k, []).append(hit)
            emptied += sum(1 for i in held if hit[i] != row[i])
        elif any(matches(c, row) for c in matched.get(k, [])):
            duplicated += 1
        else:
            unexpected += 1
    return Comparison(
        identical=reference == got,
        header_ok=ref[:1] == new[:1],
        rows=max(len(new) - 1, 0),
        rows_lost=sum(len(rows) for rows in pending.values()),
        rows_duplicated=duplicated,
        rows_unexpected=unexpected,
        cells_withheld=emptied,
    )


# --------------------------------------------------------------------------- the stack
@contextlib.contextmanager
def _identity_env(stack: LocalStack) -> Iterator[None]:
    """The managed identity endpoint in this process's environment, for the Storage SDKs."""
    names = ("IDENTITY_ENDPOINT", "IDENTITY_HEADER")
    saved = {n: os.environ.get(n) for n in names}
    os.environ.update({n: stack.env[n] for n in names})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class ChaosStack:
    """A LocalStack and what the harness does to it: the API as a script calls it, the
    simulator's fault control, the jobs' queue and table, the sweep timer."""

    def __init__(
        self, name: str, options: ChaosOptions, log_root: Path, sim_args: list[str]
    ) -> None:
        self.name, self.options = name, options
        self.partitions = options.partitions[0]
        self.stack = LocalStack(
            users=options.users,
            seed=options.tenant_seed,
            sim_args=[
                "--latency-ms",
                f"{options.latency_ms:g}",
                "--latency-per-user-ms",
                f"{options.latency_per_user_ms:g}",
                *sim_args,
            ],
            app_env=options.app_env(self.partitions),
            devhost_args=["--message-lease-seconds", str(options.message_lease)],
            workdir=log_root / name,
            log_dir=log_root / name,
        )
        self.log_dir = log_root / name
        self.sweeps: Counter[str] = Counter()
        self._stop = threading.Event()
        self._exit = contextlib.ExitStack()
        self.killed_by_us = False

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> ChaosStack:
        from azure.data.tables import TableClient
        from azure.identity import ManagedIdentityCredential
        from azure.storage.queue import QueueClient, TextBase64EncodePolicy

        from userexport.settings import JOBS_QUEUE, JOBS_TABLE

        try:
            self._exit.enter_context(self.stack)
            self._exit.enter_context(_identity_env(self.stack))
            env = self.stack.env
            bundle = env["SSL_CERT_FILE"]
            self.api = self._exit.enter_context(httpx.Client(timeout=30, trust_env=False))
            self.sim = self._exit.enter_context(httpx.Client(timeout=10, trust_env=False))
            trust = ssl.create_default_context(cafile=bundle)
            self.storage = self._exit.enter_context(
                httpx.Client(timeout=60, verify=trust, trust_env=False)
            )
            credential = self._exit.enter_context(ManagedIdentityCredential())
            options: dict[str, Any] = {
                "credential": credential,
                "connection_verify": bundle,
                "retry_total": 2,
                "connection_timeout": 5,
                "read_timeout": 15,
            }
            self.queue = self._exit.enter_context(
                QueueClient(
                    env["AzureWebJobsStorage__queueServiceUri"],
                    JOBS_QUEUE,
                    message_encode_policy=TextBase64EncodePolicy(),
                    **options,
                )
            )
            self.table = self._exit.enter_context(
                TableClient(env["AzureWebJobsStorage__tableServiceUri"], JOBS_TABLE, **options)
            )
            self._sweeper = threading.Thread(target=self._sweep_loop, daemon=True)
        except BaseException:
            self._exit.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._sweeper.is_alive():
            self._sweeper.join(timeout=60)
        self._exit.close()

    def start_sweeping(self) -> None:
        if not self._sweeper.is_alive():
            self._sweeper.start()

    def _sweep_loop(self) -> None:
        """Fires the sweep timer every sweep_every seconds, as the host's schedule would (far
        more often than its five minutes: the stall time is set small to match)."""
        while not self._stop.wait(self.options.sweep_every):
            try:
                answer = httpx.post(
                    f"{self.stack.api_url}/admin/functions/{SWEEP_FUNCTION}",
                    timeout=60,
                    trust_env=False,
                )
                self.sweeps[str(answer.status_code)] += 1
            except httpx.HTTPError:
                self.sweeps["unreachable"] += 1

    # ------------------------------------------------------------------ the processes
    def devhost_alive(self) -> bool:
        process = self.stack._devhost  # LocalStack has no public poll
        return process is not None and process.poll() is None

    def azurite_alive(self) -> bool:
        process = self.stack._azurite
        return process is not None and process.poll() is None

    def kill_devhost(self, down: float) -> None:
        if self.devhost_alive():
            self.stack.kill_devhost()
        if down > 0:
            time.sleep(down)
        self.stack.start_devhost()

    def set_partitions(self, partitions: int) -> None:
        """Restarts the function host with another USEREXPORT_PARTITIONS."""
        if partitions == self.partitions and self.devhost_alive():
            return
        if self.devhost_alive():
            self.stack.kill_devhost()
        self.stack.env["USEREXPORT_PARTITIONS"] = str(partitions)
        self.stack.start_devhost()
        self.partitions = partitions

    def ensure_up(self) -> list[str]:
        """Starts whatever is down (after a run); says what it had to start."""
        started = []
        if not self.azurite_alive():
            self.stack.start_azurite()
            started.append("azurite")
        if not self.devhost_alive():
            self.stack.start_devhost()
            started.append("devhost")
        return started

    # ------------------------------------------------------------------ the API, as a script
    def start_export(self, timeout: float = 30.0) -> str:
        """POST /api/exports for COLUMNS (the clean exports and the runs alike)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                answer = self.api.post(
                    f"{self.stack.api_url}/api/exports", json={"columns": list(COLUMNS)}
                )
                if answer.status_code == 202:
                    # Location is absolute on the host that answered; a restarted devhost
                    # listens on another port, so keep the path (Azure's host name is stable).
                    return urlsplit(answer.headers["Location"]).path
                problem = f"{answer.status_code} {answer.text[:200]}"
            except httpx.HTTPError as error:
                problem = repr(error)
            if time.monotonic() > deadline:
                raise RuntimeError(f"POST /api/exports kept failing: {problem}")
            time.sleep(0.5)

    def status(self, location: str) -> tuple[int | None, dict[str, Any]]:
        try:
            answer = self.api.get(f"{self.stack.api_url}{location}", timeout=20)
        except httpx.HTTPError:
            return None, {}
        try:
            body = answer.json()
        except ValueError:
            body = {}
        return answer.status_code, body if isinstance(body, dict) else {}

    def cancel(self, location: str, timeout: float = 60.0) -> bool:
        """DELETE the job (a stuck one, so that it does not go on into the next run), then
        waits until it is final; whether it is."""
        with contextlib.suppress(httpx.HTTPError):
            self.api.delete(f"{self.stack.api_url}{location}", timeout=20)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code, _ = self.status(location)
            if code == 200:
                return True
            time.sleep(1.0)
        return False

    def download(self, url: str) -> bytes:
        answer = self.storage.get(url)
        answer.raise_for_status()
        return answer.content

    # ------------------------------------------------------------------ the simulator
    def faults(self, body: dict[str, Any]) -> None:
        answer = self.sim.post(self.stack.sim["faults"], json=body)
        if answer.status_code != 200:
            raise RuntimeError(f"tenantsim refused {body}: {answer.text}")

    def reset_faults(self) -> None:
        self.sim.post(self.stack.sim["faults"] + "/reset").raise_for_status()

    def sim_faults(self) -> Counter[str]:
        return Counter(self.sim.get(self.stack.sim["stats"]).json().get("faults", {}))

    # ------------------------------------------------------------------ queue and table
    def send_messages(self, job_id: str, partitions: list[int | None]) -> int:
        from userexport.messages import ExportMessage

        sent = 0
        for partition in partitions:
            with contextlib.suppress(Exception):
                self.queue.send_message(ExportMessage(job_id, partition).encode())
                sent += 1
        return sent

    def partition_rows(self, job_id: str) -> list[dict[str, Any]]:
        rows = self.table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": f"parts-{job_id}"}
        )
        return sorted((dict(r) for r in rows), key=lambda r: r["RowKey"])

    def job_row(self, job_id: str) -> dict[str, Any] | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return dict(self.table.get_entity("job", job_id))
        except ResourceNotFoundError:
            return None

    def plan_prefixes(self, job_id: str) -> list[list[str]]:
        return [json.loads(r.get("prefixes", "[]")) for r in self.partition_rows(job_id)]

    def diagnose(self, job_id: str) -> dict[str, Any]:
        """The job's rows as the table holds them, the parts that explain a stuck or failed
        job (never the users' data)."""
        try:
            job = self.job_row(job_id) or {}
            parts = self.partition_rows(job_id)
        except Exception as error:  # noqa: BLE001 - storage may be what is broken
            return {"error": repr(error)}
        keep = ("status", "reason", "lastError", "revivals", "failingSince", "updatedAt")
        out: dict[str, Any] = {"job": {k: _plain(job.get(k)) for k in keep if k in job}}
        out["partitions"] = []
        for row in parts:
            checkpoint = json.loads(row.get("checkpoint", "{}"))
            out["partitions"].append(
                {
                    "index": int(row["RowKey"]),
                    **{
                        k: _plain(row.get(k))
                        for k in (
                            "status",
                            "epoch",
                            "attempts",
                            "leaseOwner",
                            "leaseUntil",
                            "lastError",
                            "failingSince",
                            "updatedAt",
                        )
                        if k in row
                    },
                    "users": checkpoint.get("users"),
                    "prefix": checkpoint.get("prefix"),
                    "segments": checkpoint.get("segments"),
                }
            )
        return out


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


# --------------------------------------------------------------------------- references
@dataclass
class Reference:
    partitions: int
    job_id: str
    wall_s: float
    csv: bytes
    prefixes: list[list[str]]
    status: str
    errors_rows: int


def make_reference(chaos: ChaosStack, partitions: int, timeout: float = 300) -> Reference:
    chaos.set_partitions(partitions)
    started = time.monotonic()
    location = chaos.start_export()
    while True:
        code, body = chaos.status(location)
        if code == 200:
            break
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"the clean export with {partitions} partition(s) did not finish")
        time.sleep(0.5)
    wall = time.monotonic() - started
    if body.get("status") != "succeeded":
        raise RuntimeError(f"the clean export with {partitions} partition(s) ended {body}")
    data = chaos.download(body["downloadUrl"])
    errors = records(chaos.download(body["errorsUrl"]))
    return Reference(
        partitions,
        body["id"],
        wall,
        data,
        chaos.plan_prefixes(body["id"]),
        body["status"],
        max(len(errors) - 1, 0),
    )


def check_references(references: dict[int, Reference], users: int) -> None:
    """The clean exports must hold every user once and the same rows whatever the plan."""
    rows = {}
    for p, ref in references.items():
        recs = records(ref.csv)
        if len(recs) - 1 != users:
            raise RuntimeError(f"the clean export ({p} partitions) has {len(recs) - 1} rows")
        rows[p] = Counter(recs[1:])
        if len(ref.prefixes) != p:
            raise RuntimeError(f"the clean export asked for {p} partitions got {ref.prefixes}")
    first = next(iter(rows.values()))
    if any(r != first for r in rows.values()):
        raise RuntimeError("the clean exports of different partition counts hold different rows")


# --------------------------------------------------------------------------- one run
@dataclass
class RunResult:
    index: int
    group: str
    partitions: int
    job_id: str | None = None
    status: str | None = None
    final: bool = False
    stuck: bool = False
    reason: str | None = None
    wall_s: float = 0.0
    window_s: float = 0.0
    user_count: int | None = None
    identical: bool | None = None  # byte for byte with the clean export
    # The file and the job as expected: identical, or (Graph withholding columns for good)
    # differing only by withheld cells left empty, with the job saying which and why.
    as_expected: bool | None = None
    status_expected: bool | None = None  # the status (and error rows) the run should end with
    withheld: list[str] = field(default_factory=list)  # columns the job said Graph withheld
    cells_withheld: int = 0  # cells of those columns empty where the clean export has a value
    rows: int | None = None
    rows_lost: int = 0
    rows_duplicated: int = 0
    rows_unexpected: int = 0
    header_ok: bool | None = None
    plan_matches_reference: bool | None = None
    errors_rows: int | None = None
    errors_sample: list[list[str]] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    sim_faults: dict[str, int] = field(default_factory=dict)
    restarted_after: list[str] = field(default_factory=list)
    devhost_exits: int = 0  # times devhost was found dead without a kill of ours
    cancelled: bool | None = None  # a stuck job, cancelled (DELETE) so that it stops there
    revivals: int | None = None  # times the sweep queued the job again
    epochs: list[int] = field(default_factory=list)  # each partition's claims (owner epochs)
    diagnosis: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def wrong_success(self) -> bool:
        return self.status == "succeeded" and self.as_expected is False

    @property
    def wrong_result(self) -> bool:
        """Final and not failed, but not as expected (or the result could not be read)."""
        return self.final and self.status != "failed" and self.as_expected is not True

    def fault_kinds(self) -> list[str]:
        return [f["kind"] for f in self.faults if f.get("fired_s") is not None]


class RunDriver:
    """Drives one export and its faults on a timeline of seconds after the POST."""

    POLL_S = 1.0  # the stack's Retry-After
    TICK_S = 0.1

    def __init__(
        self, chaos: ChaosStack, plan: RunPlan, reference: Reference, window: float
    ) -> None:
        self.chaos, self.plan, self.reference, self.window = chaos, plan, reference, window
        self.options = chaos.options
        self.result = RunResult(plan.index, plan.group, plan.partitions, window_s=window)
        self.job_final = False
        self._pending: list[tuple[float, int, str, Fault]] = []
        self._seq = 0
        self._storms: list[tuple[float, Fault]] = []  # (end, storm) still blowing
        self._outages: list[tuple[float, float, Fault]] = []  # (start, end, outage)
        self._stale_armed: list[tuple[Fault, int]] = []  # (fault, slowPage count before)
        self._busy_until = 0.0  # last moment a fault was active: the stuck clock starts there
        self._progress: tuple[Any, ...] | None = None  # the job's last progress seen
        self._moved_at = 0.0  # when it last moved (the stuck clock of a run with weather)
        # Until the job ends, a run's weather is a fault still active (see weather_cap).
        self._weather = bool(plan.weather)

    def _schedule(self, at: float, action: str, fault: Fault) -> None:
        self._seq += 1
        self._pending.append((at, self._seq, action, fault))
        self._pending.sort(key=lambda e: (e[0], e[1]))

    def now(self) -> float:
        return time.monotonic() - self._t0

    def run(self) -> RunResult:
        chaos, result = self.chaos, self.result
        chaos.set_partitions(self.plan.partitions)
        self._sim_before = chaos.sim_faults()
        self._t0 = time.monotonic()
        try:
            for fault in self.plan.weather:  # Graph as it is for the whole run
                chaos.faults(fault.params)
                self._mark(fault)
            location = chaos.start_export()
        except BaseException:
            self._cleanup()
            raise
        result.job_id = location.rsplit("/", 1)[-1]
        for fault in self.plan.faults:
            if fault.kind not in WEATHER:
                self._schedule(fault.at * self.window, "fire", fault)
        body: dict[str, Any] = {}
        next_poll = 0.0
        try:
            while True:
                now = self.now()
                while self._pending and self._pending[0][0] <= now:
                    _, _, action, fault = self._pending.pop(0)
                    getattr(self, f"_{action}")(fault)
                    self._busy_until = self.now()
                    now = self.now()
                self._watch_stale()
                if not chaos.devhost_alive():
                    result.devhost_exits += 1
                    result.problems.append(f"devhost exited by itself at {now:.1f} s")
                    chaos.stack.start_devhost()
                if now >= next_poll:
                    code, answer = chaos.status(location)
                    next_poll = self.now() + self.POLL_S
                    if answer:
                        body = answer
                    if code in (200, 202):  # a job's answer, not an error's
                        self._watch_progress(answer)
                    if code == 200:
                        self.job_final = True
                if self.job_final:
                    break
                if self._stuck(now):
                    result.stuck = True
                    break
                time.sleep(self.TICK_S)
        finally:
            result.wall_s = round(self.now(), 2)
            self._cleanup()
        self._finish(body)
        if result.stuck:
            result.cancelled = chaos.cancel(location)
        return result

    def _watch_progress(self, answer: dict[str, Any]) -> None:
        keys = ("status", "partitions", "usersWritten", "partitionsDone")
        progress = tuple(answer.get(k) for k in keys)
        if progress != self._progress:
            self._progress, self._moved_at = progress, self.now()

    def _stuck(self, now: float) -> bool:
        """Not final stuck_timeout s after the last fault (and the window); with weather, after
        its progress last moved too, and at most weather_cap s after the POST."""
        since = max(self._busy_until, self.window)
        if self._weather:
            if now > self.options.weather_cap:
                return True
            since = max(since, self._moved_at)
        return now - since > self.options.stuck_timeout

    # ------------------------------------------------------------------ the faults
    def _mark(self, fault: Fault, note: str = "") -> None:
        fault.fired_s = round(self.now(), 2)
        if note:
            fault.note = note

    def _fire(self, fault: Fault) -> None:
        kind = fault.kind
        for family in ("storm", "outage"):
            if kind.startswith(family):
                kind = family
        getattr(self, f"_fire_{kind}")(fault)

    def _fire_kill(self, fault: Fault) -> None:
        """SIGKILL of the function host mid-work (a crashed or recycled instance)."""
        self._mark(fault)
        self.chaos.kill_devhost(fault.params["down_s"])

    def _fire_duplicates(self, fault: Fault) -> None:
        """Extra copies of the plan message and of every partition's message, sent back to
        back so the host fetches them in one batch and runs them at once."""
        job_id = self.result.job_id or ""
        try:
            parts = [int(r["RowKey"]) for r in self.chaos.partition_rows(job_id)]
        except Exception:  # noqa: BLE001 - storage may be restarting
            parts = []
        messages: list[int | None] = [None, *parts] * fault.params["copies"]
        sent = self.chaos.send_messages(job_id, messages)
        self._mark(fault, f"{sent} message(s): plan + partitions {parts}")

    def _fire_stale_invocation(self, fault: Fault) -> None:
        """The next /users page is held back longer than a partition's lease: its invocation
        stalls; once the lease has run out, a duplicate message takes the partition over, and
        the held page then wakes the stale invocation."""
        before = self.chaos.sim_faults().get("slowPage", 0)
        self.chaos.faults({"slowPages": {"next": 1, "seconds": fault.params["slow_s"]}})
        self._stale_armed.append((fault, before))
        self._mark(fault, "slow page armed")

    def _watch_stale(self) -> None:
        if not self._stale_armed:
            return
        count = self.chaos.sim_faults().get("slowPage", 0)
        for fault, before in list(self._stale_armed):
            if count > before:
                self._stale_armed.remove((fault, before))
                fault.hit = True
                fault.note = f"page held back from {self.now():.1f} s"
                self._schedule(self.now() + fault.params["takeover_after_s"], "takeover", fault)

    def _takeover(self, fault: Fault) -> None:
        """Duplicates for the partitions whose lease ran out while their invocation waits."""
        job_id = self.result.job_id or ""
        try:
            rows = self.chaos.partition_rows(job_id)
        except Exception:  # noqa: BLE001
            rows = []
        now = datetime.now(UTC)
        expired = [
            int(r["RowKey"])
            for r in rows
            if r.get("status") != "done"
            and r.get("leaseOwner")
            and isinstance(r.get("leaseUntil"), datetime)
            and r["leaseUntil"] < now
        ]
        targets = expired or [int(r["RowKey"]) for r in rows if r.get("status") != "done"]
        sent = self.chaos.send_messages(job_id, list(targets) or [None])
        fault.note += (
            f"; takeover at {self.now():.1f} s: {sent} duplicate(s) for "
            f"{'expired lease of ' if expired else 'unfinished '}partitions {targets}"
        )

    def _fire_storm(self, fault: Fault) -> None:
        """Graph answering 5xx (and resets) at high rates for some seconds."""
        self._mark(fault)
        end = self.now() + fault.params["duration_s"]
        self._storms.append((end, fault))
        self._apply_storms()
        self._schedule(end, "calm", fault)

    def _calm(self, fault: Fault) -> None:
        self._storms = [(e, f) for e, f in self._storms if f is not fault]
        self._apply_storms()

    def _apply_storms(self) -> None:
        body: dict[str, Any] = {"rate" + ("Reset" if s == "reset" else s): 0 for s in STATUS_KEYS}
        body |= {f"retryAfter{s}": 0 for s in STATUS_KEYS[:4]}
        body["targets"] = ["users", "auth"]
        if self._storms:  # the latest storm blowing sets the weather
            params = self._storms[-1][1].params
            for status, rate in params["rates"].items():
                body["rate" + ("Reset" if status == "reset" else status)] = rate
            for status, seconds in params["retry_after"].items():
                body[f"retryAfter{status}"] = seconds
            body["targets"] = params["targets"]
        self.chaos.faults(body)

    def _fire_outage(self, fault: Fault) -> None:
        """Every Graph request (or every $batch envelope) fails for some seconds."""
        self._mark(fault)
        now = self.now()
        self._outages.append((now, now + fault.params["duration_s"], fault))
        windows = []
        for _, end, f in self._outages:
            if end > now:
                windows.append(
                    {
                        "start": 0,
                        "end": round(end - now, 2),
                        "target": "batch" if f.kind == "outage_batch" else "all",
                        "mode": f.params["mode"],
                    }
                )
        self.chaos.faults({"outages": windows})
        self._schedule(now + fault.params["duration_s"], "outage_over", fault)

    def _outage_over(self, fault: Fault) -> None:
        pass  # the simulator ends the window itself; this keeps the stuck clock fair

    def _fire_expired_page_tokens(self, fault: Fault) -> None:
        """Every page token issued so far expires (now), or for a window tokens live only a
        second or few."""
        self._mark(fault)
        if fault.params["mode"] == "now":
            self.chaos.faults({"expirePageTokens": True})
        else:
            self.chaos.faults({"pageTokenTtl": fault.params["ttl_s"]})
            self._schedule(self.now() + fault.params["duration_s"], "tokens_live", fault)

    def _tokens_live(self, fault: Fault) -> None:
        self.chaos.faults({"pageTokenTtl": 0})

    def _fire_azurite_restart(self, fault: Fault) -> None:
        """Azurite stopped (SIGTERM) and started again on the same data after some seconds."""
        self._mark(fault)
        self.chaos.stack.restart_azurite(fault.params["down_s"])

    # ------------------------------------------------------------------ after the run
    def _cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.chaos.reset_faults()
        self.result.restarted_after = self.chaos.ensure_up()

    def _finish(self, body: dict[str, Any]) -> None:
        chaos, result, ref = self.chaos, self.result, self.reference
        after = chaos.sim_faults()
        result.sim_faults = {k: after[k] - self._sim_before.get(k, 0) for k in after}
        result.sim_faults = {k: v for k, v in result.sim_faults.items() if v}
        self._judge_hits()
        result.faults = [asdict(f) for f in self.plan.faults]
        if self.plan.group == "tight":
            result.faults.append(
                {"kind": TIGHT_AUTH, "at": 0, "params": {}, "fired_s": 0.0, "hit": None, "note": ""}
            )
        result.status = body.get("status")
        result.final = result.status in FINAL and not result.stuck
        result.reason = body.get("reason")
        result.user_count = body.get("userCount")
        job_id = result.job_id or ""
        if result.final and result.status != "failed":
            try:
                # A fresh answer: the SAS URLs of the last poll may predate a restart.
                _, fresh = chaos.status(f"/api/exports/{job_id}")
                got = chaos.download(fresh.get("downloadUrl") or body["downloadUrl"])
                errors = records(chaos.download(fresh.get("errorsUrl") or body["errorsUrl"]))
                result.plan_matches_reference = chaos.plan_prefixes(job_id) == ref.prefixes
            except Exception as error:  # noqa: BLE001
                result.problems.append(f"could not read the result: {error!r}")
            else:
                result.errors_rows = max(len(errors) - 1, 0)
                result.errors_sample = [list(r) for r in errors[1:4]]
                self._judge_result(got, errors[1:])
        if result.stuck:
            if not self._weather:
                said = f"not final {self.options.stuck_timeout:.0f} s after the last fault"
            elif result.wall_s > self.options.weather_cap:
                said = f"not final after {self.options.weather_cap:.0f} s (weather_cap)"
            else:
                said = f"no progress for {self.options.stuck_timeout:.0f} s after the last fault"
            result.problems.append(
                f"{said} (last status {result.status}, "
                f"{(self._progress or (None, None, None))[2]} users written)"
            )
        if result.status == "failed":
            result.problems.append(f"failed: {result.reason}")
        with contextlib.suppress(Exception):
            result.revivals = int((chaos.job_row(job_id) or {}).get("revivals") or 0)
            result.epochs = [int(r.get("epoch") or 0) for r in chaos.partition_rows(job_id)]
        if result.problems:
            result.diagnosis = chaos.diagnose(job_id)

    def _judge_result(self, got: bytes, errors: list[tuple[str, ...]]) -> None:
        """The file and the job against the clean export. Where the run's weather makes Graph
        withhold columns for good, and the errors file has that notice, those columns' cells
        may be empty; then the job must end completedWithErrors, its `reason` naming each
        column and why, its errors file holding the notice(s) and nothing else. Without such
        a notice, the file must be the clean export's bytes and the status its status."""
        result, ref = self.result, self.reference
        said = [w for w in self.plan.withholdings if any(w.notice(row) for row in errors)]
        withheld = [c for w in said for c in w.columns]
        comparison = compare(ref.csv, got, withheld)
        result.identical = comparison.identical
        result.rows = comparison.rows
        result.header_ok = comparison.header_ok
        result.rows_lost = comparison.rows_lost
        result.rows_duplicated = comparison.rows_duplicated
        result.rows_unexpected = comparison.rows_unexpected
        result.withheld = withheld
        result.cells_withheld = comparison.cells_withheld
        reason = result.reason or ""
        missing: list[str] = []  # what the job does not say that it should
        for w in said:
            notices = [row for row in errors if w.notice(row)]
            if len(notices) != 1:
                missing.append(f"{len(notices)} notice rows for {w.failed} (1 expected)")
            unnamed = [c for c in w.columns if c not in reason]
            if unnamed:
                missing.append(f"the reason does not name {', '.join(unnamed)}")
            if w.says not in reason:
                missing.append(f"the reason does not say {w.says!r}")
        if said:
            result.status_expected = result.status == "completedWithErrors" and len(errors) == len(
                said
            )
            if result.status != "completedWithErrors":
                missing.append(f"ended {result.status}, not completedWithErrors")
            result.as_expected = comparison.rows_match and not missing
        else:
            result.status_expected = (
                result.status == ref.status and result.errors_rows == ref.errors_rows
            )
            result.as_expected = comparison.identical
        if not result.as_expected:
            result.problems.append(
                ("CSV differs from the clean export" if not comparison.identical else "CSV same")
                + f": {comparison.rows} rows, {comparison.rows_lost} lost, "
                f"{comparison.rows_duplicated} duplicated, {comparison.rows_unexpected} unexpected"
                + (f", {', '.join(withheld)} withheld" if withheld else "")
                + ("" if comparison.header_ok else ", header differs")
                + ("" if result.plan_matches_reference else ", plan differs")
                + "".join(f"; {m}" for m in missing)
            )
        if not result.status_expected:
            expected = "completedWithErrors with the notice" if said else ref.status
            result.problems.append(
                f"ended {result.status} where {expected} was expected "
                f"({result.errors_rows} error rows)"
            )

    def _judge_hits(self) -> None:
        """Which injected faults the simulator saw take effect (where it can tell)."""
        seen = self.result.sim_faults
        for fault in self.plan.faults:
            if fault.fired_s is None:
                fault.note = fault.note or "not injected: the job had finished first"
                continue
            if fault.kind in WEATHER:
                fault.hit = seen.get(WEATHER[fault.kind].sim_kind, 0) > 0
            elif fault.kind.startswith("storm"):
                fault.hit = any(seen.get(s, 0) for s in fault.params["rates"])
            elif fault.kind.startswith("outage"):
                fault.hit = seen.get("outage", 0) > 0
            elif fault.kind == "expired_page_tokens":
                fault.hit = seen.get("expiredPageToken", 0) > 0
            elif fault.kind == "stale_invocation" and fault.hit is None:
                fault.hit = False
                fault.note += "; no /users page was requested while armed"


# --------------------------------------------------------------------------- the whole run
@dataclass
class Report:
    seed: int
    runs: int
    users: int
    duration_s: float
    settings: dict[str, Any]
    references: dict[str, Any]
    results: list[RunResult]
    sweeps: dict[str, int]
    log_dir: str

    def summary(self) -> dict[str, Any]:
        res = self.results
        injected: Counter[str] = Counter()
        hit: Counter[str] = Counter()
        not_reached: Counter[str] = Counter()
        for r in res:
            for f in r.faults:
                if f.get("fired_s") is None:
                    not_reached[f["kind"]] += 1
                    continue
                injected[f["kind"]] += 1
                if f.get("hit"):
                    hit[f["kind"]] += 1
        sim: Counter[str] = Counter()
        for r in res:
            sim.update(r.sim_faults)
        return {
            "runs": len(res),
            "seed": self.seed,
            "users": self.users,
            "duration_s": round(self.duration_s, 1),
            "faults_injected": dict(sorted(injected.items())),
            "faults_seen_by_simulator": dict(sorted(hit.items())),
            "faults_not_reached": dict(sorted(not_reached.items())),  # the job finished first
            "simulator_fault_answers": dict(sorted(sim.items())),
            "jobs_final": sum(r.final for r in res),
            "wrong_successes": sum(r.wrong_success for r in res),
            "wrong_results": sum(r.wrong_result for r in res),
            # The clean export succeeds: an error row under chaos (other than the notice of a
            # column Graph withholds for good) is a transient fault that was counted as a
            # failure instead of waited out.
            "unexpected_status": sum(
                r.final and r.status != "failed" and r.status_expected is False for r in res
            ),
            # Files that differ from the clean export only by cells Graph withheld for good,
            # the job saying which columns and why (counted right, not wrong).
            "withheld_as_expected": sum(
                bool(r.as_expected and not r.identical and r.withheld) for r in res
            ),
            "weather_runs": sum(any(f["kind"] in WEATHER for f in r.faults) for r in res),
            # Information: the runs that lasted longest, and their faults.
            "slowest_runs": [
                {"run": r.index, "wall_s": r.wall_s, "faults": r.fault_kinds()}
                for r in sorted(res, key=lambda r: -r.wall_s)[:3]
            ],
            "rows_lost": sum(r.rows_lost for r in res),
            "rows_duplicated": sum(r.rows_duplicated for r in res),
            "rows_unexpected": sum(r.rows_unexpected for r in res),
            "stuck_jobs": sum(r.stuck for r in res),
            "failed_jobs": [
                {"run": r.index, "id": r.job_id, "reason": r.reason, "faults": r.fault_kinds()}
                for r in res
                if r.status == "failed"
            ],
            "devhost_exits": sum(r.devhost_exits for r in res),
            "revivals_max": max((r.revivals or 0 for r in res), default=0),
            "revivals_total": sum(r.revivals or 0 for r in res),
            "sweeps": self.sweeps,
        }

    def targets(self) -> list[tuple[str, Any, str, bool]]:
        s = self.summary()
        zero = ("wrong_successes", "wrong_results", "unexpected_status", "rows_lost")
        zero += ("rows_duplicated", "rows_unexpected", "stuck_jobs", "devhost_exits")
        rows = [(k, s[k], "0", s[k] == 0) for k in zero]
        rows.append(("failed_jobs", len(s["failed_jobs"]), "0", not s["failed_jobs"]))
        rows.append(("jobs_final", s["jobs_final"], f"{s['runs']}", s["jobs_final"] == s["runs"]))
        return rows

    def missed(self) -> list[str]:
        return [
            f"{name} = {value} (target {target})"
            for name, value, target, ok in self.targets()
            if not ok
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "targets": {n: {"value": v, "target": t, "met": ok} for n, v, t, ok in self.targets()},
            "settings": self.settings,
            "references": self.references,
            "log_dir": self.log_dir,
            "replay": f"python -m bench.chaos --seed {self.seed} --runs {self.settings['runs']} "
            f"--users {self.users} --only <run>",
            "per_run": [asdict(r) for r in self.results],
        }


def _say(options: ChaosOptions, text: str) -> None:
    if not options.quiet:
        print(text, flush=True)


ROW = "{:>3} {:<7} {:>5} {:<19} {:>7} {:>7} {:>6} {:>5} {:>5}  {}"


def _row(r: RunResult) -> str:
    kinds = Counter(r.fault_kinds())
    faults = ", ".join(f"{k}x{n}" if n > 1 else k for k, n in kinds.items()) or "-"
    same = {True: "same", False: "DIFF", None: "-"}[r.identical]
    if r.identical is False and r.as_expected:
        same = "held"  # only cells Graph withheld for good, and the job says so
    status = "STUCK" if r.stuck else (r.status or "?")
    return ROW.format(
        r.index,
        r.group,
        r.partitions,
        status,
        f"{r.wall_s:.1f}",
        str(r.rows) if r.rows is not None else "-",
        same,
        r.rows_lost,
        r.rows_duplicated + r.rows_unexpected,
        faults,
    )


def run_chaos(options: ChaosOptions) -> Report:
    started = time.monotonic()
    plans = plan_runs(options)
    selected = [p for p in plans if options.only is None or p.index in options.only]
    if not selected:
        raise SystemExit("no run selected")
    log_root = options.log_dir or Path(tempfile.mkdtemp(prefix=f"userexport-chaos-{options.seed}-"))
    log_root.mkdir(parents=True, exist_ok=True)
    _say(options, f"chaos: seed {options.seed}, {len(selected)} run(s), logs in {log_root}")
    results: list[RunResult] = []
    sweeps: Counter[str] = Counter()
    references: dict[int, Reference] = {}
    with ChaosStack("default", options, log_root, []) as chaos:
        for p in sorted({plan.reference_partitions for plan in selected}):
            references[p] = make_reference(chaos, p)
            _say(options, f"clean export, {p} partition(s): {references[p].wall_s:.1f} s")
        check_references(references, options.users)
        _say(
            options,
            ROW.format(
                "run",
                "stack",
                "parts",
                "status",
                "wall_s",
                "rows",
                "bytes",
                "lost",
                "extra",
                "faults",
            ),
        )
        chaos.start_sweeping()
        for plan in (p for p in selected if p.group == "default"):
            results.append(_one_run(chaos, plan, references, options, factor=1.0))
        sweeps.update(chaos.sweeps)
    tight = [p for p in selected if p.group == "tight"]
    if tight:
        sim_args = ["--auth-budget", str(options.tight_auth_budget)]
        with ChaosStack("tight", options, log_root, sim_args) as chaos:
            chaos.start_sweeping()
            factor = DEFAULT_AUTH_BUDGET / options.tight_auth_budget
            for plan in tight:
                results.append(_one_run(chaos, plan, references, options, factor=factor))
            sweeps.update(chaos.sweeps)
    results.sort(key=lambda r: r.index)
    report = Report(
        seed=options.seed,
        runs=len(results),
        users=options.users,
        duration_s=time.monotonic() - started,
        settings={
            **{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
            "app_env": options.app_env(0) | {"USEREXPORT_PARTITIONS": "per run"},
        },
        references={
            str(p): {"job": r.job_id, "wall_s": round(r.wall_s, 2), "prefixes": r.prefixes}
            for p, r in references.items()
        },
        results=results,
        sweeps=dict(sweeps),
        log_dir=str(log_root),
    )
    return report


def _one_run(
    chaos: ChaosStack,
    plan: RunPlan,
    references: dict[int, Reference],
    options: ChaosOptions,
    *,
    factor: float,
) -> RunResult:
    reference = references[plan.reference_partitions]
    window = max(3.0, reference.wall_s * factor)
    result = RunDriver(chaos, plan, reference, window).run()
    _say(options, _row(result))
    for problem in result.problems:
        _say(options, f"      ! {problem}")
    return result


def print_report(report: Report) -> None:
    s = report.summary()
    print()
    print(
        f"chaos: {s['runs']} runs, seed {s['seed']}, {s['users']} users, "
        f"{s['duration_s']:.0f} s; logs in {report.log_dir}"
    )
    print("faults injected: " + ", ".join(f"{k} {v}" for k, v in s["faults_injected"].items()))
    print(
        "not reached (the job finished first): "
        + (", ".join(f"{k} {v}" for k, v in s["faults_not_reached"].items()) or "none")
    )
    print(
        "seen by tenantsim: "
        + ", ".join(f"{k} {v}" for k, v in s["faults_seen_by_simulator"].items())
    )
    print(
        "tenantsim fault answers: "
        + ", ".join(f"{k} {v}" for k, v in s["simulator_fault_answers"].items())
    )
    print(
        f"Graph weather: {s['weather_runs']} runs; files differing only where Graph withheld "
        f"a column for good, the job saying so: {s['withheld_as_expected']}"
    )
    print(
        "slowest runs: "
        + "; ".join(
            f"{x['run']} {x['wall_s']:.0f} s ({', '.join(x['faults'])})" for x in s["slowest_runs"]
        )
    )
    print(f"sweep revivals: {s['revivals_total']} in all, at most {s['revivals_max']} per job")
    print("sweep timer: " + ", ".join(f"{k} {v}" for k, v in sorted(s["sweeps"].items())))
    print(f"{'key':<20} {'value':>7} {'target':>7}  ")
    for name, value, target, ok in report.targets():
        print(f"{name:<20} {value:>7} {target:>7}  {'PASS' if ok else 'MISS'}")
    for failed in s["failed_jobs"]:
        print(
            f"failed: run {failed['run']} job {failed['id']} ({', '.join(failed['faults'])}): "
            f"{failed['reason']}"
        )


def _parse(argv: list[str] | None) -> ChaosOptions:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = ChaosOptions()
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the faults")
    parser.add_argument("--runs", type=int, default=defaults.runs, help="exports under chaos")
    parser.add_argument("--users", type=int, default=defaults.users, help="tenant size")
    parser.add_argument("--tenant-seed", type=int, default=defaults.tenant_seed)
    parser.add_argument("--only", help="comma-separated run indexes to run (replay)")
    parser.add_argument(
        "--partitions",
        default=",".join(map(str, defaults.partitions)),
        help="USEREXPORT_PARTITIONS values drawn from",
    )
    parser.add_argument(
        "--tight-every",
        type=int,
        default=defaults.tight_every,
        help="every n-th run uses the tight lookup budget (0: none)",
    )
    parser.add_argument("--tight-auth-budget", type=int, default=defaults.tight_auth_budget)
    parser.add_argument("--time-budget", type=float, default=defaults.time_budget)
    parser.add_argument("--lease-grace", type=float, default=defaults.lease_grace)
    parser.add_argument("--stall-minutes", type=float, default=defaults.stall_minutes)
    parser.add_argument("--sweep-every", type=float, default=defaults.sweep_every)
    parser.add_argument("--stuck-timeout", type=float, default=defaults.stuck_timeout)
    parser.add_argument(
        "--weather-cap",
        type=float,
        default=defaults.weather_cap,
        help="seconds after which a run with Graph weather counts as stuck, moving or not",
    )
    parser.add_argument(
        "--storm-seconds",
        type=float,
        default=defaults.storm_seconds,
        help="USEREXPORT_STORM_SECONDS of the stacks",
    )
    parser.add_argument(
        "--weather-share",
        type=float,
        default=defaults.weather_share,
        help="share of the runs with one kind of Graph weather (0: none)",
    )
    parser.add_argument(
        "--weather",
        default=",".join(defaults.weather_kinds),
        help="the kinds of Graph weather drawn from",
    )
    parser.add_argument(
        "--log-dir", type=Path, help="the stacks' logs and data (default: a temp dir)"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write the JSON")
    args = parser.parse_args(argv)
    return ChaosOptions(
        seed=args.seed,
        runs=args.runs,
        users=args.users,
        tenant_seed=args.tenant_seed,
        partitions=tuple(int(p) for p in args.partitions.split(",")),
        only=tuple(int(i) for i in args.only.split(",")) if args.only else None,
        tight_every=args.tight_every,
        tight_auth_budget=args.tight_auth_budget,
        time_budget=args.time_budget,
        lease_grace=args.lease_grace,
        stall_minutes=args.stall_minutes,
        sweep_every=args.sweep_every,
        stuck_timeout=args.stuck_timeout,
        storm_seconds=args.storm_seconds,
        weather_cap=args.weather_cap,
        weather_share=args.weather_share,
        weather_kinds=_weather_kinds(args.weather),
        log_dir=args.log_dir,
        results=args.results,
    )


def _weather_kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in WEATHER]
    if unknown:
        raise SystemExit(f"unknown weather {unknown}: one of {', '.join(WEATHER)}")
    return kinds


def main(argv: list[str] | None = None) -> int:
    options = _parse(argv)
    try:
        report = run_chaos(options)
    except (StackError, RuntimeError) as error:
        print(f"chaos: {error}", file=sys.stderr)
        return 2
    print_report(report)
    if options.results:
        options.results.write_text(json.dumps(report.to_json(), indent=1, default=str) + "\n")
        print(f"written: {options.results}")
    missed = report.missed()
    if missed:
        print("MISSED: " + "; ".join(missed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
