"""From the children's measurements to results.json (numbers only) and the printed table."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.exports import (
    AUTH_BUCKET,
    MILLION,
    PAGE_SIZE,
    REPORT_PAGES,
    SIM_WINDOW_S,
    AuthLimitResult,
    DeltaResult,
    DryRun,
    ExportRun,
    auth_bucket,
    auth_timeline,
    auth_units,
    graph_calls,
    graph_requests,
)

# Targets of the issue: (comparison, target); PASS when `value <comparison> target` holds.
TARGETS: dict[str, tuple[str, float]] = {
    "pipeline_vs_sdk_models": (">=", 200.0),
    "pipeline_vs_raw_ceiling": (">=", 0.70),
    "million_partitioned_s": ("<=", 60.0),
    "million_speedup": (">=", 16.0),
    "peak_rss_partitioned_mb": ("<", 250.0),
    "peak_rss_mb": ("<", 250.0),
    "estimate_error_d": ("<=", 0.25),
    "auth_budget_share": (">=", 0.85),
    "auth_failed_rows": ("<=", 0.0),
    "auth_ru_per_user": ("<=", 1.05),
    "auth_tight_budget_share": (">=", 0.80),
    "estimate_error_e": ("<=", 0.25),
    "multi_instance_budget_share": (">=", 0.85),
    "multi_instance_429_share": ("<=", 0.03),
    "single_instance_429_share": ("<=", 0.03),
    "multi_instance_failed_rows": ("<=", 0.0),
    "delta_requests_share": ("<=", 0.05),
    "delta_time_share": ("<=", 0.20),
    "h_estimate_error_cold": ("<=", 0.25),
    "h_estimate_error_generous": ("<=", 0.25),
    "h_partitions": ("==", 1.0),
    "h_lookups_fewer": ("<=", 0.35),  # x h_lookups (RELATIVE_TARGETS)
    "h_mfa_peak_mb": ("<=", 250.0),  # only with --limit-million-users
}
# Targets that are a factor of another key of the same run: target = factor x that key's value
# (written as target_<key> in results.json).
RELATIVE_TARGETS: dict[str, str] = {"h_lookups_fewer": "h_lookups"}
# The part each target key comes from (peak_rss_mb: from (a) or (d), whichever ran).
TARGET_PARTS: dict[str, str] = {
    "pipeline_vs_sdk_models": "a",
    "pipeline_vs_raw_ceiling": "a",
    "million_partitioned_s": "d",
    "million_speedup": "d",
    "peak_rss_partitioned_mb": "d",
    "peak_rss_mb": "d",
    "estimate_error_d": "d",
    "auth_budget_share": "e",
    "auth_failed_rows": "e",
    "auth_ru_per_user": "e",
    "auth_tight_budget_share": "e",
    "estimate_error_e": "e",
    "multi_instance_budget_share": "f",
    "multi_instance_429_share": "f",
    "single_instance_429_share": "f",
    "multi_instance_failed_rows": "f",
    "delta_requests_share": "g",
    "delta_time_share": "g",
    "h_estimate_error_cold": "h",
    "h_estimate_error_generous": "h",
    "h_partitions": "h",
    "h_lookups_fewer": "h",
    "h_mfa_peak_mb": "h",
}
# (h)'s target keys by the world that measures them (--limit-worlds may leave one out).
H_WORLD_KEYS: dict[str, tuple[str, ...]] = {
    "documented": ("h_partitions", "h_estimate_error_cold", "h_lookups_fewer"),
    "generous": ("h_estimate_error_generous",),
}
NO_ESTIMATE = "no GET answer had estimate.durationSeconds"
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda v, t: v >= t,
    "<": lambda v, t: v < t,
    "<=": lambda v, t: v <= t,
    "==": lambda v, t: v == t,
}

# The headline keys of the parts that run through the local stack, for "not run" lines.
STACK_KEYS: dict[str, tuple[str, ...]] = {
    "d": ("million_sequential_s", "million_partitioned_s", "million_speedup", "estimate_error_d"),
    "e": (
        "auth_budget_share",
        "auth_429s",
        "auth_failed_rows",
        "auth_ru_per_user",
        "auth_tight_budget_share",
        "estimate_error_e",
    ),
    "f": (
        "multi_instance_budget_share",
        "multi_instance_429_share",
        "single_instance_429_share",
        "multi_instance_failed_rows",
    ),
    "g": ("full_run_s", "delta_run_s", "delta_requests_share", "delta_time_share"),
    "h": (
        "h_wall_s",
        "h_lookups",
        "h_partitions",
        "h_estimate_error_cold",
        "h_wall_s_fewer",
        "h_lookups_fewer",
        "h_estimate_error_generous",
        "h_mfa_peak_mb",
    ),
}

PARTS: dict[str, tuple[str, str]] = {
    "a": ("pipeline_users_per_s", "GraphReader (SDK adapter, raw bytes, orjson) -> CsvEncoder"),
    "b": ("sdk_models_users_per_s", "GraphServiceClient + PageIterator + Kiota User + DictWriter"),
    "c": ("raw_ceiling_users_per_s", "httpx + orjson + csv.writer, no SDK"),
}


@dataclass
class PartRuns:
    """Every run of one part, with the simulator's side of each."""

    part: str
    runs: list[dict[str, Any]] = field(default_factory=list)

    def rates(self) -> list[float]:
        return [r["users"] / r["seconds"] for r in self.runs]

    def best(self) -> dict[str, Any]:
        """The least disturbed run: on a shared machine noise only ever slows a run down."""
        return max(self.runs, key=lambda r: r["users"] / r["seconds"])

    def wall_s(self) -> float:
        return sum(r["process_wall_s"] for r in self.runs)


@dataclass
class StackRuns:
    """The exports of (d)-(h) through the local stack."""

    sequential: ExportRun | None = None
    partitioned: ExportRun | None = None
    auth_cold: ExportRun | None = None  # (e)'s first run: the app has no learned pace yet
    auth: ExportRun | None = None  # (e)'s measured run, on the same stack after auth_cold
    auth_tight: ExportRun | None = None
    multi_single: ExportRun | None = None  # (f) with one devhost
    multi: ExportRun | None = None  # (f) with multi_devhosts devhosts, same stack
    auth_budget: int = 0
    tight_budget: int = 0
    multi_budget: int = 0
    multi_batch_size: int = 0  # (f)'s devhosts' host.json queues batchSize
    delta: DeltaResult = field(default_factory=DeltaResult)  # (g)
    auth_limit: AuthLimitResult = field(default_factory=AuthLimitResult)  # (h)
    failed: dict[str, str] = field(default_factory=dict)  # part -> why it stopped

    def runs(self) -> list[ExportRun]:
        every = (
            self.sequential,
            self.partitioned,
            self.auth_cold,
            self.auth,
            self.auth_tight,
            self.multi_single,
            self.multi,
            self.delta.full,
            self.delta.changes,
        )
        return [r for r in every if r is not None] + self.auth_limit.exports()


def results(
    parts: dict[str, PartRuns], stack: StackRuns, meta: dict[str, float], run_parts: list[str]
) -> dict[str, Any]:
    """The numbers of this run; keys of parts not run are left out, never guessed. A target
    key of a part that ran but could not be measured is named in `missing`, with why."""
    out: dict[str, Any] = dict(meta)
    for part, runs in parts.items():
        if not runs.runs:
            continue
        key = PARTS[part][0]
        best = runs.best()
        out[key] = round(best["users"] / best["seconds"], 1)
        out[f"{key}_median"] = round(statistics.median(runs.rates()), 1)
        out[key.replace("_per_s", "_per_cpu_s")] = round(best["users"] / best["cpu_seconds"], 1)
        out[f"users_{part}"] = best["users"]
        out[f"runs_{part}"] = len(runs.runs)
        out[f"wall_s_{part}"] = round(runs.wall_s(), 2)
        # The simulator's CPU over the loop's wall time: near 1 means the sim set the pace.
        out[f"sim_cpu_share_{part}"] = round(best["sim_cpu_s"] / best["seconds"], 3)
    if parts.get("a") and parts["a"].runs:
        out["peak_rss_pipeline_mb"] = round(max(r["peak_rss_mb"] for r in parts["a"].runs), 1)
        out["rss_before_loop_mb"] = round(min(r["rss_before_mb"] for r in parts["a"].runs), 1)
    for ratio, (num, den) in {
        "pipeline_vs_sdk_models": ("pipeline", "sdk_models"),
        "pipeline_vs_raw_ceiling": ("pipeline", "raw_ceiling"),
    }.items():
        for unit in ("per_s", "per_cpu_s"):
            a, b = out.get(f"{num}_users_{unit}"), out.get(f"{den}_users_{unit}")
            if a and b:
                suffix = "" if unit == "per_s" else "_cpu"
                out[ratio + suffix] = round(a / b, 3)
    missing: dict[str, str] = {}
    out |= _million(stack, missing)
    out |= _auth(stack, missing)
    out |= _multi(stack, missing)
    out |= _delta(stack.delta)
    out |= _auth_limit(stack.auth_limit, missing)
    # The issue's "peak RSS for (a) and (d)": the larger of the two processes' peaks.
    peaks = [out[k] for k in ("peak_rss_pipeline_mb", "peak_rss_partitioned_mb") if k in out]
    if peaks:
        out["peak_rss_mb"] = max(peaks)
    for key, (_, target) in TARGETS.items():
        part = TARGET_PARTS[key]
        ran = part in run_parts or (key == "peak_rss_mb" and "a" in run_parts)
        base = RELATIVE_TARGETS.get(key)
        if key in out and base is None:
            out[f"target_{key}"] = target
        elif key in out and base in out:
            out[f"target_{key}"] = round(target * out[base], 3)
        elif key in out:
            pass  # a relative target whose base was not measured: the value, no verdict
        elif part in stack.failed and ran:
            missing[key] = f"part {part} failed: {stack.failed[part]}"
        elif ran and part in STACK_KEYS:
            missing.setdefault(key, "not measured")
    for key in _h_not_run(stack.auth_limit):
        missing.pop(key, None)  # left out on purpose, as a part not in --only
    if missing:
        out["missing"] = missing
    return out


def _h_not_run(result: AuthLimitResult) -> dict[str, str]:
    """(h)'s target keys of the runs left out, with why: the worlds --limit-worlds left out,
    and the mfa preset's run without --limit-million-users."""
    out = {
        key: f"the {world} world not in --limit-worlds"
        for world, keys in H_WORLD_KEYS.items()
        if world not in result.worlds
        for key in keys
    }
    if not result.mfa_users:
        out["h_mfa_peak_mb"] = "--limit-million-users 0"
    return out


def _estimate(run: ExportRun, suffix: str, missing: dict[str, str]) -> dict[str, Any]:
    """The estimate's keys of one run: what it said, when, and how far from the wall time."""
    out: dict[str, Any] = {}
    error = run.estimate_error()
    if error is None or run.estimate is None:
        missing[f"estimate_error_{suffix}"] = NO_ESTIMATE + (
            f" (last estimate: {sorted(run.last_estimate)})" if run.last_estimate else ""
        )
        return out
    out[f"estimate_error_{suffix}"] = round(error, 3)
    out[f"estimate_{suffix}_s"] = round(run.estimate_s() or 0.0, 1)
    if run.estimate_at_s is not None:
        out[f"estimate_at_s_{suffix}"] = round(run.estimate_at_s, 1)
    if "paceSource" in run.estimate:
        out[f"estimate_pace_source_{suffix}"] = str(run.estimate["paceSource"])
    if isinstance(run.estimate.get("partitions"), int):
        out[f"estimate_partitions_{suffix}"] = run.estimate["partitions"]
    return out


def _million(stack: StackRuns, missing: dict[str, str]) -> dict[str, Any]:
    """(d): wall time for 1,000,000 users, sequential and partitioned; a run on fewer users
    is extrapolated at its measured pace (see ExportRun.extrapolate)."""
    out: dict[str, Any] = {}
    for label, run in (("sequential", stack.sequential), ("partitioned", stack.partitioned)):
        if run is None:
            continue
        out[f"million_{label}_s"] = round(run.extrapolate(MILLION), 1)
        out[f"users_d_{label}"] = run.users
        out[f"wall_s_d_{label}"] = round(run.wall_s, 1)
        out[f"partitions_d_{label}"] = run.partitions
        pace = run.seconds_per_user()
        if pace:
            out[f"pace_users_per_s_d_{label}"] = round(1 / pace, 1)
        out[f"peak_rss_{label}_mb"] = round(run.peak_rss_mb, 1)
        for proc in ("devhost", "tenantsim", "azurite"):
            out[f"cpu_share_{proc}_d_{label}"] = round(run.cpu_share(proc), 3)
    if stack.sequential is not None:
        pace = stack.sequential.seconds_per_user()
        if pace:
            out["s_per_page_d_sequential"] = round(pace * PAGE_SIZE, 3)
    if "million_sequential_s" in out and "million_partitioned_s" in out:
        out["million_speedup"] = round(
            out["million_sequential_s"] / out["million_partitioned_s"], 2
        )
    if stack.partitioned is not None:
        out |= _estimate(stack.partitioned, "d", missing)
    return out


def _budget_use(run: ExportRun, budget: int) -> dict[str, float]:
    """How much of the auth budget a run used, from the simulator's stats. Every run starts
    with the bucket full (its own stack, or after SIM_WINDOW_S of rest), so over the run the
    client could spend the budget once plus its refill: available = budget + wall x budget/10.
    (The plain per-second share would count that first bucket as if it were refill.)"""
    used, throttled = auth_units(run.sim_before, run.sim_after)
    requests, all_throttled = graph_requests(run.sim_before, run.sim_after)
    rate = budget / SIM_WINDOW_S
    available = budget + run.wall_s * rate
    return {
        "used": used,
        "throttled": throttled,
        "available": round(available),
        "share": round(used / available, 3),
        "share_rate": round(used / run.wall_s / rate, 3),
        "auth_429_share": round(throttled / max(1, used + throttled), 3),
        "requests": requests,
        "all_throttled": all_throttled,
        "429_share": round(all_throttled / max(1, requests), 4),
    }


def _auth(stack: StackRuns, missing: dict[str, str]) -> dict[str, Any]:
    """(e): how much of the auth budget the export used, from the simulator's stats; the
    measured run is the second on its stack, the first is reported as *_cold; and the small
    tenant at the tight budget."""
    out: dict[str, Any] = {}
    run, budget = stack.auth, stack.auth_budget
    if run is not None:
        use = _budget_use(run, budget)
        out |= {
            "users_e": run.users,
            "wall_s_e": round(run.wall_s, 1),
            "auth_budget": budget,
            "auth_ru": use["used"],
            "auth_ru_available": use["available"],
            "auth_budget_share": use["share"],
            "auth_budget_share_rate": use["share_rate"],
            "auth_429s": use["throttled"],
            "auth_429_share": use["auth_429_share"],
            "throttled_e": use["all_throttled"],
            "graph_requests_e": use["requests"],
            "graph_429_share_e": use["429_share"],
            "auth_idle_s": round(_idle_seconds(run), 1),
            "auth_failed_rows": run.error_rows,
            "auth_ru_per_user": round(use["used"] / max(1, run.users), 3),
            "auth_users_per_s": round(run.users / run.wall_s, 1),
            "partitions_e": run.partitions,
            "peak_rss_e_mb": round(run.peak_rss_mb, 1),
            **{
                f"cpu_share_{proc}_e": round(run.cpu_share(proc), 3)
                for proc in ("devhost", "tenantsim", "azurite")
            },
        }
        out |= _estimate(run, "e", missing)
    cold = stack.auth_cold
    if cold is not None:
        use = _budget_use(cold, budget)
        out |= {
            "wall_s_e_cold": round(cold.wall_s, 1),
            "auth_budget_share_cold": use["share"],
            "auth_429s_cold": use["throttled"],
            "auth_429_share_cold": use["auth_429_share"],
            "auth_failed_rows_cold": cold.error_rows,
        }
        cold_missing: dict[str, str] = {}
        out |= _estimate(cold, "e_cold", cold_missing)
    tight, budget = stack.auth_tight, stack.tight_budget
    if tight is not None:
        use = _budget_use(tight, budget)
        out |= {
            "users_e_tight": tight.users,
            "wall_s_e_tight": round(tight.wall_s, 1),
            "auth_tight_budget": budget,
            "auth_tight_ru": use["used"],
            "auth_tight_ru_available": use["available"],
            "auth_tight_budget_share": use["share"],
            "auth_tight_429s": use["throttled"],
            "auth_tight_failed_rows": tight.error_rows,
            "graph_requests_e_tight": use["requests"],
            "partitions_e_tight": tight.partitions,
        }
        tight_missing: dict[str, str] = {}
        out |= _estimate(tight, "e_tight", tight_missing)
    return out


def _multi(stack: StackRuns, missing: dict[str, str]) -> dict[str, Any]:
    """(f): one devhost, then several on the same stack, under one tight auth budget."""
    out: dict[str, Any] = {}
    budget = stack.multi_budget
    for label, run in (("single_instance", stack.multi_single), ("multi_instance", stack.multi)):
        if run is None:
            continue
        use = _budget_use(run, budget)
        spread = run.partitions_per_instance
        out |= {
            f"{label}_devhosts": run.devhosts,
            f"{label}_wall_s": round(run.wall_s, 1),
            f"{label}_budget_share": use["share"],
            f"{label}_auth_ru": use["used"],
            f"{label}_auth_ru_available": use["available"],
            f"{label}_graph_requests": use["requests"],
            f"{label}_429s": use["all_throttled"],
            f"{label}_429_share": use["429_share"],
            f"{label}_auth_429_share": use["auth_429_share"],
            f"{label}_failed_rows": run.error_rows,
            f"{label}_partitions": run.partitions,
            f"{label}_partitions_per_instance": spread,
            f"{label}_instances_used": sum(1 for n in spread if n),
            f"{label}_peak_rss_mb": round(run.peak_rss_mb, 1),
            f"{label}_cpu_share_devhosts": round(run.cpu_share("devhost"), 3),
        }
        info: dict[str, str] = {}
        out |= _estimate(run, f"f_{label.split('_')[0]}", info)
    if stack.multi_single is not None or stack.multi is not None:
        run = stack.multi or stack.multi_single
        assert run is not None
        out["users_f"] = run.users
        out["auth_budget_f"] = budget
        out["host_batch_size_f"] = stack.multi_batch_size
    return out


def _delta(result: DeltaResult) -> dict[str, Any]:
    """(g): the delta series' changes run against its full run, in wall time and Graph
    requests (every HTTP request to Graph, $batch envelopes and items; graph_calls)."""
    out: dict[str, Any] = {}
    for label, run in (("full", result.full), ("delta", result.changes)):
        if run is None:
            continue
        calls = graph_calls(run.sim_before, run.sim_after)
        out |= {
            f"{label}_run_s": round(run.wall_s, 2),
            f"{label}_graph_requests": sum(calls.values()),
            f"{label}_graph_requests_by_endpoint": dict(sorted(calls.items())),
            f"{label}_graph_429s": run.sim_after["throttled"] - run.sim_before["throttled"],
            f"{label}_records_g": run.csv_records,
            f"{label}_partitions_g": run.partitions,
            f"{label}_peak_rss_g_mb": round(run.peak_rss_mb, 1),
            f"{label}_error_rows_g": run.error_rows,
        }
    if result.full is not None:
        out["users_g"] = result.full.users
    if result.changes is not None:
        delta = result.changes.final.get("delta") or {}
        for key in ("added", "updated", "removed"):
            if isinstance(delta.get(key), int):
                out[f"delta_{key}"] = delta[key]
        out["delta_changes_file_records"] = result.changes_file_records
    for key, value in result.made.items():
        out[f"delta_changes_{key}"] = value
    if result.made:
        out["delta_writes_s"] = round(result.writes_s, 1)
    if out.get("full_graph_requests") and "delta_graph_requests" in out:
        out["delta_requests_share"] = round(
            out["delta_graph_requests"] / out["full_graph_requests"], 4
        )
    if out.get("full_run_s") and "delta_run_s" in out:
        out["delta_time_share"] = round(out["delta_run_s"] / out["full_run_s"], 3)
    return out


def _auth_limit(result: AuthLimitResult, missing: dict[str, str]) -> dict[str, Any]:
    """(h): the documented world's dry run and exports (plain, then fewerLookups), and the
    generous world's dry run and export. Lookups are the requests the simulator charged to the
    auth bucket (auth_bucket: methods reads and registration report pages)."""
    out: dict[str, Any] = {}
    if result.shape is not None:
        out |= {
            "h_users": result.shape.users,
            "h_phone_email_share": result.shape.phone_email_share,
            **{f"h_tenant_{key}": value for key, value in result.facts.items()},
        }
    if result.budget:
        out["h_auth_budget"] = result.budget
    runs = (("", result.documented), ("_fewer", result.fewer), ("_generous", result.generous))
    for suffix, run in runs:
        if run is None:
            continue
        charged = auth_bucket(run.sim_before, run.sim_after)
        throttled = sum(
            run.sim_after["throttledByEndpoint"].get(k, 0)
            - run.sim_before["throttledByEndpoint"].get(k, 0)
            for k in AUTH_BUCKET
        )
        out |= {
            f"h_wall_s{suffix}": round(run.wall_s, 1),
            f"h_lookups{suffix}": sum(charged.values()),
            f"h_lookups{suffix}_by_endpoint": dict(sorted(charged.items())),
            f"h_report_pages{suffix}": charged.get(REPORT_PAGES, 0),
            f"h_auth_429s{suffix}": throttled,
            f"h_partitions{suffix}": run.partitions,
            f"h_failed_rows{suffix}": run.error_rows,
            f"h_status{suffix}": run.status,
        }
        if suffix != "_generous" and result.budget:
            out[f"h_auth_budget_share{suffix}"] = _budget_use(run, result.budget)["share"]
    if "h_lookups" in out and "h_lookups_fewer" in out and out["h_lookups"]:
        out["h_lookups_fewer_share"] = round(out["h_lookups_fewer"] / out["h_lookups"], 3)
    pairs = (
        ("cold", result.documented_dry, result.documented),
        ("generous", result.generous_dry, result.generous),
    )
    for label, dry, run in pairs:
        if dry is None:
            continue
        estimate = dry.estimate_s()
        out |= {
            f"h_dry_wall_s_{label}": round(dry.wall_s, 1),
            f"h_dry_lookups_{label}": sum(auth_bucket(dry.sim_before, dry.sim_after).values()),
            f"h_dry_partitions_{label}": dry.partitions,
        }
        for key in ("paceSource", "bindingLimit", "lookupRequests", "partitions"):
            if key in dry.estimate:
                out[f"h_estimate_{_snake(key)}_{label}"] = dry.estimate[key]
        if estimate is not None:
            out[f"h_estimate_s_{label}"] = round(estimate, 1)
        if run is None:
            continue
        error = dry.error_against(run)
        if error is None:
            missing[f"h_estimate_error_{label}"] = (
                f"the dry run's estimate has no durationSeconds (it has {sorted(dry.estimate)})"
            )
        else:
            out[f"h_estimate_error_{label}"] = round(error, 3)
    if result.mfa is not None:
        out |= _mfa(result.mfa)
        out["h_mfa_error_codes"] = dict(sorted(result.mfa_error_codes.items()))
    return out


def _mfa(run: ExportRun) -> dict[str, Any]:
    """(h)'s optional run: the mfa preset on a (d)-like tenant, devhost's peak RSS (VmHWM)
    and the registration report's requests (every one the simulator saw, throttled included)."""
    requests = run.sim_after["requests"]
    before = run.sim_before["requests"]
    throttled = run.sim_after["throttledByEndpoint"].get(REPORT_PAGES, 0) - run.sim_before[
        "throttledByEndpoint"
    ].get(REPORT_PAGES, 0)
    out: dict[str, Any] = {
        "h_mfa_users": run.users,
        "h_mfa_wall_s": round(run.wall_s, 1),
        "h_mfa_peak_mb": round(run.peak_rss_mb, 1),
        "h_mfa_report_requests": requests.get(REPORT_PAGES, 0) - before.get(REPORT_PAGES, 0),
        "h_mfa_report_429s": throttled,
        "h_mfa_user_pages": run.pages(),
        "h_mfa_partitions": run.partitions,
        "h_mfa_csv_records": run.csv_records,
        "h_mfa_csv_columns": run.csv_columns,
        "h_mfa_error_rows": run.error_rows,
        "h_mfa_status": run.status,
        "h_mfa_cpu_share_devhost": round(run.cpu_share("devhost"), 3),
    }
    estimate = run.estimate_s()
    if estimate is not None:
        out["h_mfa_estimate_s"] = round(estimate, 1)
    return out


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def _idle_seconds(run: ExportRun) -> float:
    """Seconds between polls in which no auth-method read was charged, from the first such
    read to the last: the time the limiter left the refilling bucket unused (or waited)."""
    points = [(t, auth_units(run.sim_before, stats)[0]) for t, stats in run.sim_timeline]
    steps = [(t1 - t0, u1 - u0) for (t0, u0), (t1, u1) in itertools.pairwise(points)]
    busy = [i for i, (_, units) in enumerate(steps) if units > 0]
    if not busy:
        return 0.0
    return sum(dt for dt, units in steps[busy[0] : busy[-1] + 1] if units == 0)


def _num(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.2f}"


def _verdict(key: str, res: dict[str, Any]) -> tuple[str, str]:
    """(target, PASS/MISS) for a key with a target, or two empty strings (also for a relative
    target whose base was not measured)."""
    if key not in TARGETS or f"target_{key}" not in res:
        return "", ""
    op, target = TARGETS[key][0], res[f"target_{key}"]
    return f"{op} {target:.4g}", "PASS" if _COMPARE[op](res[key], target) else "MISS"


def _goal(key: str) -> str:
    """A target as the table shows it without a value: `<= 0.25`, `<= 0.35x` (relative)."""
    if key not in TARGETS:
        return ""
    op, target = TARGETS[key]
    return f"{op} {target:g}" + ("x" if key in RELATIVE_TARGETS else "")


def _auth_limit_rows(
    res: dict[str, Any],
    row: Callable[[str, str, str], None],
    row_or_missing: Callable[[str, Callable[[float], str], Callable[[], str]], None],
) -> None:
    """(h)'s headline rows, added through the table's `row` and `row_or_missing`."""
    tenant = (
        f"{res['h_users']:,} users, {res.get('h_tenant_phone_email_users', '?')} with a phone or "
        f"email method, {res.get('h_tenant_disabled_users', '?')} disabled"
        if "h_users" in res
        else ""
    )
    budget = res.get("h_auth_budget", "?")
    if "h_wall_s" in res:
        row(
            "h_wall_s",
            f"{res['h_wall_s']:.1f}",
            f"(h) documented world (auth budget {budget} per 10 s): {tenant}; 25 columns, POST "
            f"to 200; {res['h_auth_budget_share']:.2f} of the auth budget used",
        )
    if "h_lookups" in res:
        row(
            "h_lookups",
            f"{res['h_lookups']:g}",
            f"(h) auth-bucket requests charged {res['h_lookups_by_endpoint']}; "
            f"{res['h_auth_429s']:g} throttled, {res['h_failed_rows']:g} failed rows",
        )
    row_or_missing(
        "h_partitions",
        lambda v: f"{v:g}",
        lambda: f"(h) the documented export's partitions (its job); {res['h_status']}",
    )
    row_or_missing(
        "h_estimate_error_cold",
        _share,
        lambda: (
            f"(h) documented dry run (cold, {res.get('h_estimate_pace_source_cold', '?')} pace, "
            f"bound by {res.get('h_estimate_binding_limit_cold', '?')}): "
            f"{res['h_estimate_s_cold']:.1f} s estimated vs {res['h_wall_s']:.1f} s measured"
        ),
    )
    if "h_wall_s_fewer" in res:
        row(
            "h_wall_s_fewer",
            f"{res['h_wall_s_fewer']:.1f}",
            f"(h) fewerLookups, same stack after the export; "
            f"{res['h_auth_budget_share_fewer']:.2f} of the auth budget used",
        )
    row_or_missing(
        "h_lookups_fewer",
        lambda v: f"{v:g}",
        lambda: (
            f"(h) {res['h_lookups_fewer_by_endpoint']} ({res['h_lookups_fewer_share']:.3f} of "
            f"h_lookups); {res['h_auth_429s_fewer']:g} throttled, "
            f"{res['h_failed_rows_fewer']:g} failed rows; the report rules out at most "
            f"{res.get('h_tenant_enabled_without_phone_email', '?')} users"
        ),
    )
    row_or_missing(
        "h_estimate_error_generous",
        _share,
        lambda: (
            f"(h) generous world (default auth budget) dry run (cold, "
            f"{res.get('h_estimate_pace_source_generous', '?')} pace, bound by "
            f"{res.get('h_estimate_binding_limit_generous', '?')}): "
            f"{res['h_estimate_s_generous']:.1f} s estimated vs {res['h_wall_s_generous']:.1f} s "
            "measured"
        ),
    )
    if "h_mfa_wall_s" in res:
        row(
            "h_mfa_wall_s",
            f"{res['h_mfa_wall_s']:.1f}",
            f"(h) mfa preset ({res['h_mfa_csv_columns']:g} columns), {res['h_mfa_users']:,} users, "
            f"{res['h_mfa_partitions']:g} partitions: POST to 200"
            + (f" (estimate {res['h_mfa_estimate_s']:.1f} s)" if "h_mfa_estimate_s" in res else ""),
        )
    row_or_missing(
        "h_mfa_peak_mb",
        lambda v: f"{v:.1f}",
        lambda: (
            f"(h) mfa preset: devhost VmHWM; {res['h_mfa_report_requests']:,} report requests "
            f"({res['h_mfa_report_429s']:g} throttled), {res['h_mfa_user_pages']:,} /users pages, "
            f"{res['h_mfa_error_rows']:g} error rows {res.get('h_mfa_error_codes', {})}, "
            f"{res['h_mfa_status']}"
        ),
    )


def _dry_line(run: DryRun) -> str:
    est = run.estimate_s()
    return (
        f"{run.name:<18} wall {run.wall_s:6.1f} s  est "
        f"{'-' if est is None else f'{est:.1f} s':>9}  "
        f"{run.estimate.get('paceSource', '?')} pace, bound by "
        f"{run.estimate.get('bindingLimit', '?')}, lookupRequests "
        f"{run.estimate.get('lookupRequests', '?')}, {run.partitions} partition(s), "
        f"auth-bucket requests {sum(auth_bucket(run.sim_before, run.sim_after).values())}"
    )


def _share(value: float) -> str:
    return f"{value:.3f}" if value < 0.1 else f"{value:.2f}"


def table(
    res: dict[str, Any], parts: dict[str, PartRuns], stack: StackRuns, run_parts: list[str]
) -> str:
    """The printed report: headline keys with targets, then per-part detail."""
    width = 28
    lines = [f"{'key':<{width}} {'value':>10}  {'target':>8}  {'status':<6}  notes", "-" * 110]
    missing: dict[str, str] = res.get("missing", {})

    def row(key: str, value: str, note: str = "") -> None:
        target, status = _verdict(key, res)
        lines.append(f"{key:<{width}} {value:>10}  {target:>8}  {status:<6}  {note}".rstrip())

    def row_or_missing(key: str, value: Callable[[float], str], note: Callable[[], str]) -> None:
        if key in res:
            row(key, value(res[key]), note())
        elif key in missing:
            goal = _goal(key)
            status = "MISS" if goal else ""
            lines.append(f"{key:<{width}} {'n/a':>10}  {goal:>8}  {status:<6}  {missing[key]}")

    for part, (key, what) in PARTS.items():
        if key in res:
            median, runs = _num(res[key + "_median"]), res["runs_" + part]
            row(key, _num(res[key]), f"({part}) {what}; median {median}, {runs:g} run(s)")
    for ratio in ("pipeline_vs_sdk_models", "pipeline_vs_raw_ceiling"):
        if ratio in res:
            cpu = res.get(ratio + "_cpu")
            row(ratio, f"{res[ratio]:.2f}", f"client CPU only: {cpu:.2f}" if cpu else "")
    for label, run in (("sequential", stack.sequential), ("partitioned", stack.partitioned)):
        key = f"million_{label}_s"
        if run is None or key not in res:
            continue
        how = (
            f"measured on {run.users:,} users"
            if run.users == MILLION
            else f"extrapolated from {run.users:,} users ({res[f'wall_s_d_{label}']:.1f} s)"
        )
        if label == "sequential" and "s_per_page_d_sequential" in res:
            how += f", {res['s_per_page_d_sequential']:.3f} s/page"
        row(key, _num(res[key]), f"(d) {how}; {run.partitions} partition(s)")
    if "million_speedup" in res:
        row("million_speedup", f"{res['million_speedup']:.2f}", "(d) sequential / partitioned")
    row_or_missing(
        "estimate_error_d",
        _share,
        lambda: (
            f"(d) partitioned: estimate {res['estimate_d_s']:.1f} s "
            f"({res.get('estimate_pace_source_d', '?')} pace) vs "
            f"{res['wall_s_d_partitioned']:.1f} s measured"
        ),
    )
    if "peak_rss_partitioned_mb" in res:
        seq = res.get("peak_rss_sequential_mb")
        note = "(d) devhost VmHWM, partitioned run" + (
            f" (sequential: {seq:.1f} MB)" if seq else ""
        )
        row("peak_rss_partitioned_mb", f"{res['peak_rss_partitioned_mb']:.1f}", note)
    if "peak_rss_mb" in res:
        sources = []
        if "peak_rss_pipeline_mb" in res:
            sources.append(
                f"(a) child {res['peak_rss_pipeline_mb']:.1f} "
                f"({res['rss_before_loop_mb']:.1f} before the first page)"
            )
        if "peak_rss_partitioned_mb" in res:
            sources.append(f"(d) devhost {res['peak_rss_partitioned_mb']:.1f}")
        row("peak_rss_mb", f"{res['peak_rss_mb']:.1f}", "max of " + ", ".join(sources))
    if "auth_budget_share" in res:
        cold = (
            f"; cold run: {res['auth_budget_share_cold']:.2f}"
            if "auth_budget_share_cold" in res
            else ""
        )
        row(
            "auth_budget_share",
            f"{res['auth_budget_share']:.2f}",
            f"(e) {res['auth_ru']:,.0f} auth RU of {res['auth_ru_available']:,.0f} available "
            f"over {res['wall_s_e']:.1f} s (budget {res['auth_budget']:g}: full bucket + refill); "
            f"per s / (budget/10): {res['auth_budget_share_rate']:.2f}{cold}",
        )
        cold = (
            f"; cold run: {res['auth_429s_cold']:,} ({res['auth_429_share_cold']:.0%})"
            if "auth_429s_cold" in res
            else ""
        )
        row(
            "auth_429s",
            f"{res['auth_429s']:,.0f}",
            f"(e) throttled auth-method reads, {res['auth_429_share']:.0%} of attempts "
            f"(all 429s: {res['throttled_e']:g}); {res['auth_idle_s']:.0f} s with none "
            f"charged{cold}",
        )
        row(
            "auth_ru_per_user",
            f"{res['auth_ru_per_user']:.3f}",
            f"(e) auth RU charged per user exported (both authentication columns); "
            f"{res['auth_users_per_s']:,.1f} users/s at this budget",
        )
        assert stack.auth is not None
        row(
            "auth_failed_rows",
            f"{res['auth_failed_rows']:g}",
            f"(e) data rows of the errors file; {stack.auth.users:,} users, {stack.auth.status}",
        )
    row_or_missing(
        "estimate_error_e",
        _share,
        lambda: (
            f"(e) second run: estimate {res['estimate_e_s']:.1f} s "
            f"({res.get('estimate_pace_source_e', '?')} pace) vs {res['wall_s_e']:.1f} s; "
            + (
                f"cold run: {res['estimate_error_e_cold']:.2f} "
                f"({res.get('estimate_pace_source_e_cold', '?')} pace, "
                f"{res['estimate_e_cold_s']:.1f} s vs {res['wall_s_e_cold']:.1f} s)"
                if "estimate_error_e_cold" in res
                else "cold run: no estimate"
            )
        ),
    )
    row_or_missing(
        "auth_tight_budget_share",
        _share,
        lambda: (
            f"(e) {res['users_e_tight']:,} users at {res['auth_tight_budget']:g} RU per 10 s: "
            f"{res['auth_tight_ru']:,} auth RU of {res['auth_tight_ru_available']:,} available "
            f"over {res['wall_s_e_tight']:.1f} s; {res['auth_tight_429s']:,} auth 429s, "
            f"{res['auth_tight_failed_rows']:g} failed rows"
        ),
    )
    row_or_missing(
        "multi_instance_budget_share",
        _share,
        lambda: (
            f"(f) {res['multi_instance_devhosts']:g} devhosts: {res['multi_instance_auth_ru']:,} "
            f"auth RU of {res['multi_instance_auth_ru_available']:,} over "
            f"{res['multi_instance_wall_s']:.1f} s; 1 devhost: "
            + (
                f"{res['single_instance_budget_share']:.2f} over "
                f"{res['single_instance_wall_s']:.1f} s"
                if "single_instance_budget_share" in res
                else "not run"
            )
        ),
    )
    for label in ("multi_instance", "single_instance"):
        row_or_missing(
            f"{label}_429_share",
            _share,
            lambda label=label: (
                f"(f) {res[f'{label}_devhosts']:g} devhost(s): {res[f'{label}_429s']:,} 429s of "
                f"{res[f'{label}_graph_requests']:,} Graph requests ($batch items counted one "
                f"by one); auth reads {res[f'{label}_auth_429_share']:.1%} throttled"
            ),
        )
    row_or_missing(
        "multi_instance_failed_rows",
        lambda v: f"{v:g}",
        lambda: (
            f"(f) errors-file rows; partitions per devhost "
            f"{res['multi_instance_partitions_per_instance']} of "
            f"{res['multi_instance_partitions']:g}, {res['multi_instance_instances_used']:g} "
            f"devhost(s) wrote one or more (host.json batchSize {res['host_batch_size_f']:g})"
        ),
    )
    if "full_run_s" in res:
        row(
            "full_run_s",
            f"{res['full_run_s']:.1f}",
            f"(g) the delta series' full run: {res['users_g']:,} users, 25 columns, "
            f"{res['full_partitions_g']:g} partition(s); {res['full_graph_requests']:,} Graph "
            "requests",
        )
    if "delta_run_s" in res:
        row(
            "delta_run_s",
            f"{res['delta_run_s']:.1f}",
            f"(g) its changes run with snapshot: added/updated/removed "
            f"{res.get('delta_added', '?')}/{res.get('delta_updated', '?')}/"
            f"{res.get('delta_removed', '?')}; {res['delta_graph_requests']:,} Graph requests; "
            f"snapshot {res['delta_records_g']:,} records",
        )
    row_or_missing(
        "delta_requests_share",
        _share,
        lambda: (
            f"(g) Graph requests, changes run / full run: {res['delta_graph_requests']:,} / "
            f"{res['full_graph_requests']:,} ($batch envelopes and items, pages, counts)"
        ),
    )
    row_or_missing(
        "delta_time_share",
        _share,
        lambda: (
            f"(g) wall time, changes run / full run: {res['delta_run_s']:.1f} s / "
            f"{res['full_run_s']:.1f} s (POST to 200)"
        ),
    )
    _auth_limit_rows(res, row, row_or_missing)
    for part, keys in STACK_KEYS.items():
        if part not in run_parts:
            for key in keys:
                lines.append(f"{key:<{width}} not run (part {part} not in --only)")
    if "h" in run_parts:
        for key, why in _h_not_run(stack.auth_limit).items():
            lines.append(f"{key:<{width}} not run ({why})")
    for part, why in stack.failed.items():
        lines.append(f"part {part} FAILED: {why}")

    if any(p.runs for p in parts.values()):
        lines += ["", "per part (best run; users/s counts the timed page loop only)"]
        head = (
            f"{'part':<5}{'users':>9}{'loop s':>9}{'users/s':>10}{'users/cpu-s':>13}"
            f"{'sim cpu/wall':>14}{'peak MB':>9}{'runs users/s':>30}{'wall s':>9}"
        )
        lines += [head, "-" * len(head)]
        for part, runs in parts.items():
            if not runs.runs:
                continue
            b = runs.best()
            each = ", ".join(_num(x) for x in runs.rates())
            lines.append(
                f"{part:<5}{b['users']:>9,}{b['seconds']:>9.2f}{b['users'] / b['seconds']:>10,.0f}"
                f"{b['users'] / b['cpu_seconds']:>13,.0f}{b['sim_cpu_s'] / b['seconds']:>14.2f}"
                f"{b['peak_rss_mb']:>9.1f}{each:>30}{runs.wall_s():>9.1f}"
            )
    if stack.runs():
        lines += [
            "",
            "exports through the local stack (wall: POST to 200; est: the estimate's "
            "durationSeconds; cpu/wall: CPU seconds of each process over that wall time, all "
            "devhosts summed, 2 cores)",
        ]
        head = (
            f"{'run':<15}{'users':>11}{'pages':>7}{'parts':>6}{'hosts':>6}{'wall s':>9}"
            f"{'est s':>8}{'users/s':>9}{'devhost':>9}{'tenantsim':>10}{'azurite':>9}"
            f"{'peak MB':>9}{'CSV records':>13}{'CRLFs':>11}{'errors':>8}"
        )
        lines += [head, "-" * len(head)]
        for run in stack.runs():
            est = run.estimate_s()
            lines.append(
                f"{run.name:<15}{run.users:>11,}{run.pages():>7,}{run.partitions:>6}"
                f"{run.devhosts:>6}{run.wall_s:>9.1f}{'-' if est is None else f'{est:.1f}':>8}"
                f"{run.users / run.wall_s:>9,.0f}"
                f"{run.cpu_share('devhost'):>9.2f}{run.cpu_share('tenantsim'):>10.2f}"
                f"{run.cpu_share('azurite'):>9.2f}{run.peak_rss_mb:>9.1f}"
                f"{run.csv_records:>13,}{run.csv_crlf:>11,}{run.error_rows:>8,}"
            )
    dry_runs = stack.auth_limit.dry_runs()
    if dry_runs:
        lines += ["", "dry runs (wall: POST to 200; est: the estimate's durationSeconds)"]
        lines += [_dry_line(run) for run in dry_runs]
    for run in stack.runs():
        if len(run.sim_timeline) < 2:
            continue
        step = 5.0 if run.wall_s < 60 else 10.0
        steps = auth_timeline(run, step)
        lines += [
            "",
            f"{run.name}: auth-method reads charged/throttled by the simulator, per {step:g} s "
            "(end s: n/429)",
        ]
        for i in range(0, len(steps), 8):
            lines.append(
                "  ".join(f"{t:5.0f}: {ok:>4}/{thr:<4}" for t, ok, thr in steps[i : i + 8]).rstrip()
            )
    return "\n".join(lines)
