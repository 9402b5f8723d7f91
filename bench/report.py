"""From the children's measurements to results.json (numbers only) and the printed table."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.exports import MILLION, PAGE_SIZE, SIM_WINDOW_S, ExportRun, auth_timeline, auth_units

# Targets of the issue: (comparison, target); PASS when `value <comparison> target` holds.
TARGETS: dict[str, tuple[str, float]] = {
    "pipeline_vs_sdk_models": (">=", 200.0),
    "pipeline_vs_raw_ceiling": (">=", 0.70),
    "million_speedup": (">=", 8.0),
    "peak_rss_partitioned_mb": ("<", 250.0),
    "peak_rss_mb": ("<", 250.0),
    "auth_budget_share": (">=", 0.85),
    "auth_failed_rows": ("<=", 0.0),
    "auth_ru_per_user": ("<=", 1.05),
}
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda v, t: v >= t,
    "<": lambda v, t: v < t,
    "<=": lambda v, t: v <= t,
}

# The headline keys of the parts that run through the local stack, for "not run" lines.
STACK_KEYS: dict[str, tuple[str, ...]] = {
    "d": ("million_sequential_s", "million_partitioned_s", "million_speedup"),
    "e": ("auth_budget_share", "auth_429s", "auth_failed_rows", "auth_ru_per_user"),
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
    """The exports of (d) and (e) through the local stack."""

    sequential: ExportRun | None = None
    partitioned: ExportRun | None = None
    auth: ExportRun | None = None
    auth_budget: int = 0

    def runs(self) -> list[ExportRun]:
        return [r for r in (self.sequential, self.partitioned, self.auth) if r is not None]


def results(
    parts: dict[str, PartRuns], stack: StackRuns, meta: dict[str, float]
) -> dict[str, float]:
    """The numbers of this run; keys of parts not run are left out, never guessed."""
    out: dict[str, float] = dict(meta)
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
    out |= _million(stack)
    out |= _auth(stack)
    # The issue's "peak RSS for (a) and (d)": the larger of the two processes' peaks.
    peaks = [out[k] for k in ("peak_rss_pipeline_mb", "peak_rss_partitioned_mb") if k in out]
    if peaks:
        out["peak_rss_mb"] = max(peaks)
    for key, (_, target) in TARGETS.items():
        if key in out:
            out[f"target_{key}"] = target
    return out


def _million(stack: StackRuns) -> dict[str, float]:
    """(d): wall time for 1,000,000 users, sequential and partitioned; a run on fewer users
    is extrapolated at its measured pace (see ExportRun.extrapolate)."""
    out: dict[str, float] = {}
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
    return out


def _auth(stack: StackRuns) -> dict[str, float]:
    """(e): how much of the auth budget the export used, from the simulator's stats."""
    run, budget = stack.auth, stack.auth_budget
    if run is None:
        return {}
    used, throttled = auth_units(run.sim_before, run.sim_after)
    rate = budget / SIM_WINDOW_S
    # The bucket starts full: over the export the client could spend the budget once plus
    # its refill. The plain per-second share counts that first bucket as if it were refill.
    available = budget + run.wall_s * rate
    return {
        "users_e": run.users,
        "wall_s_e": round(run.wall_s, 1),
        "auth_budget": budget,
        "auth_ru": used,
        "auth_ru_available": round(available),
        "auth_budget_share": round(used / available, 3),
        "auth_budget_share_rate": round(used / run.wall_s / rate, 3),
        "auth_429s": throttled,
        "auth_429_share": round(throttled / max(1, used + throttled), 3),
        "throttled_e": run.sim_after["throttled"] - run.sim_before["throttled"],
        "auth_idle_s": round(_idle_seconds(run), 1),
        "auth_failed_rows": run.error_rows,
        "auth_ru_per_user": round(used / max(1, run.users), 3),
        "auth_users_per_s": round(run.users / run.wall_s, 1),
        "partitions_e": run.partitions,
        "peak_rss_e_mb": round(run.peak_rss_mb, 1),
        **{
            f"cpu_share_{proc}_e": round(run.cpu_share(proc), 3)
            for proc in ("devhost", "tenantsim", "azurite")
        },
    }


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


def _verdict(key: str, value: float) -> tuple[str, str]:
    """(target, PASS/MISS) for a key with a target, or two empty strings."""
    if key not in TARGETS:
        return "", ""
    op, target = TARGETS[key]
    return f"{op} {target:g}", "PASS" if _COMPARE[op](value, target) else "MISS"


def table(
    res: dict[str, float], parts: dict[str, PartRuns], stack: StackRuns, run_parts: list[str]
) -> str:
    """The printed report: headline keys with targets, then per-part detail."""
    lines = [f"{'key':<26} {'value':>10}  {'target':>8}  {'status':<6}  notes", "-" * 100]

    def row(key: str, value: str, note: str = "") -> None:
        target, status = _verdict(key, res[key])
        lines.append(f"{key:<26} {value:>10}  {target:>8}  {status:<6}  {note}".rstrip())

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
        row(
            "auth_budget_share",
            f"{res['auth_budget_share']:.2f}",
            f"(e) {res['auth_ru']:,.0f} auth RU of {res['auth_ru_available']:,.0f} available "
            f"over {res['wall_s_e']:.1f} s (budget {res['auth_budget']:g}: full bucket + refill); "
            f"per s / (budget/10): {res['auth_budget_share_rate']:.2f}",
        )
        row(
            "auth_429s",
            f"{res['auth_429s']:,.0f}",
            f"(e) throttled auth-method reads, {res['auth_429_share']:.0%} of attempts "
            f"(all 429s: {res['throttled_e']:g}); {res['auth_idle_s']:.0f} s with none charged",
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
    for part, keys in STACK_KEYS.items():
        if part not in run_parts:
            for key in keys:
                lines.append(f"{key:<26} not run (part {part} not in --only)")

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
            "exports through the local stack (wall: POST to 200; cpu/wall: CPU seconds of each "
            "process over that wall time, 2 cores)",
        ]
        head = (
            f"{'run':<15}{'users':>11}{'pages':>7}{'parts':>6}{'wall s':>9}{'users/s':>9}"
            f"{'devhost':>9}{'tenantsim':>10}{'azurite':>9}{'peak MB':>9}"
            f"{'CSV records':>13}{'CRLFs':>11}{'errors':>8}"
        )
        lines += [head, "-" * len(head)]
        for run in stack.runs():
            lines.append(
                f"{run.name:<15}{run.users:>11,}{run.pages():>7,}{run.partitions:>6}"
                f"{run.wall_s:>9.1f}{run.users / run.wall_s:>9,.0f}"
                f"{run.cpu_share('devhost'):>9.2f}{run.cpu_share('tenantsim'):>10.2f}"
                f"{run.cpu_share('azurite'):>9.2f}{run.peak_rss_mb:>9.1f}"
                f"{run.csv_records:>13,}{run.csv_crlf:>11,}{run.error_rows:>8,}"
            )
    if stack.auth is not None:
        steps = auth_timeline(stack.auth)
        lines += [
            "",
            "(e) auth-method reads charged/throttled by the simulator, per 5 s (end s: n/429)",
        ]
        for i in range(0, len(steps), 8):
            lines.append(
                "  ".join(f"{t:5.0f}: {ok:>4}/{thr:<4}" for t, ok, thr in steps[i : i + 8]).rstrip()
            )
    return "\n".join(lines)
