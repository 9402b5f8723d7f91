"""The parent process of `python -m bench`: starts the simulator, runs each part of (a)-(c)
in a child process, checks the simulator saw a clean run, runs (d) and (e) as real exports on
a local stack each, prints the table and writes results.json."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

from bench.exports import MILLION, run_auth, run_million
from bench.procs import BenchError, Processes, Sim
from bench.report import PARTS, STACK_KEYS, PartRuns, StackRuns, results, table

RESULTS = Path(__file__).resolve().parent / "results.json"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--users", type=int, default=200_000, help="users for (a) and (c)")
    parser.add_argument(
        "--sdk-users", type=int, default=8000, help="sample for (b), in whole pages of 999"
    )
    parser.add_argument(
        "--only", default="a,b,c,d,e", help="parts to run, e.g. a,c,d (f comes with a)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of (a) and (c), interleaved")
    parser.add_argument("--sdk-repeat", type=int, default=1, help="runs of (b)")
    parser.add_argument("--seed", type=int, default=1, help="tenant seed")
    parser.add_argument(
        "--sink",
        choices=("file", "discard"),
        default="file",
        help="file: CSV to a temp file, like staging blocks (default); discard: count bytes",
    )
    parser.add_argument(
        "--profile", action="store_true", help="one more (a) run under cProfile: top 10 by tottime"
    )
    parser.add_argument(
        "--seq-users",
        type=int,
        default=60_000,
        help="(d) sequential sample, extrapolated to 1,000,000 (about 1 s per 999 users)",
    )
    parser.add_argument(
        "--million-users",
        type=int,
        default=MILLION,
        help="(d) partitioned run; fewer than 1,000,000 is extrapolated",
    )
    parser.add_argument("--auth-users", type=int, default=3000, help="(e) tenant size")
    parser.add_argument(
        "--auth-budget", type=int, default=1000, help="(e) tenantsim --auth-budget (RU per 10 s)"
    )
    parser.add_argument(
        "--stack-logs",
        type=Path,
        help="keep the logs of (d) and (e)'s stacks in DIR/<run>/ (default: deleted)",
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write the JSON")
    args = parser.parse_args(argv)
    args.parts = [p for p in args.only.replace("f", "a").split(",") if p]
    unknown = set(args.parts) - set(PARTS) - set(STACK_KEYS)
    sizes = (args.users, args.sdk_users, args.repeat, args.seq_users, args.million_users)
    if unknown or min(sizes) < 1 or args.auth_users < 1 or args.auth_budget < 1:
        parser.error(f"bad parts {sorted(unknown)} or sizes" if unknown else "sizes must be >= 1")
    return args


def _schedule(args: argparse.Namespace) -> list[str]:
    """(a) and (c) interleaved, so slow spells of the shared machine hit both alike."""
    order: list[str] = []
    for i in range(max(args.repeat, args.sdk_repeat)):
        if i < args.repeat:
            order += [p for p in ("a", "c") if p in args.parts]
        if i < args.sdk_repeat and "b" in args.parts:
            order.append("b")
    return order


def _run_part(
    procs: Processes, sim: Sim, args: argparse.Namespace, part: str, *, profile: bool = False
) -> dict[str, Any]:
    users = args.sdk_users if part == "b" else args.users
    spec = {
        "part": part,
        "graph": sim.graph,
        "identity": sim.identity,
        "identity_header": sim.identity_header,
        "users": users,
        "sink": args.sink,
        "sink_dir": str(procs.tmp),
        "profile": profile,
    }
    # Generous: (b) runs at a few hundred users/s, the others at tens of thousands.
    timeout = 120 + users / (50 if part == "b" else 2000)
    sim.reset_stats()
    sim_cpu = sim.cpu_seconds()
    result = procs.run_child(spec, sim, timeout)
    result["sim_cpu_s"] = sim.cpu_seconds() - sim_cpu
    _check_sim(sim.stats(), result)
    return result


def _check_sim(stats: dict[str, Any], result: dict[str, Any]) -> None:
    """A throttled, faulted or short run would not measure what it claims to."""
    problems = []
    if stats.get("usersReturned") != result["users"]:
        problems.append(
            f"sim returned {stats.get('usersReturned')} users, child counted {result['users']}"
        )
    if set(stats.get("statuses", {})) - {"200"} or stats.get("throttled"):
        problems.append(
            f"non-200 answers {stats.get('statuses')}, throttled {stats.get('throttled')}"
        )
    if stats.get("requests", {}).get("identity", 0) > 1:
        problems.append(f"{stats['requests']['identity']} token requests (expected 1)")
    if problems:
        raise BenchError(f"part {result['part']}: " + "; ".join(problems))


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through the finally that stops every process


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    started = time.perf_counter()
    parts = {p: PartRuns(p) for p in PARTS if p in args.parts}
    stack = StackRuns(auth_budget=args.auth_budget)
    procs = Processes()
    profile_text = ""
    try:
        schedule = _schedule(args)
        if schedule or args.profile:
            sim = procs.start_sim(max(args.users, args.sdk_users), args.seed)
            print(
                f"tenantsim: {args.users:,} users, seed {args.seed}, pid {sim.proc.pid}", flush=True
            )
            for n, part in enumerate(schedule, 1):
                r = _run_part(procs, sim, args, part)
                parts[part].runs.append(r)
                print(
                    f"[{n}/{len(schedule)}] ({part}) {r['users']:,} users in {r['seconds']:.2f} s: "
                    f"{r['users'] / r['seconds']:,.0f} users/s; "
                    f"process {r['process_wall_s']:.1f} s",
                    flush=True,
                )
            if args.profile:
                r = _run_part(procs, sim, args, "a", profile=True)
                profile_text = r["profile"]
            procs.stop(sim.proc)  # (d) and (e) bring their own simulators
        if "d" in args.parts:
            print("(d) 1,000,000 users, about 1 s per page: sequential sample, then partitioned")
            stack.sequential, stack.partitioned = run_million(
                seed=args.seed,
                sample_users=args.seq_users,
                partitioned_users=args.million_users,
                log_root=args.stack_logs,
            )
        if "e" in args.parts:
            print(f"(e) 25 columns with authentication methods, auth budget {args.auth_budget}")
            stack.auth = run_auth(
                seed=args.seed,
                users=args.auth_users,
                budget=args.auth_budget,
                log_root=args.stack_logs,
            )
    except BenchError as error:
        print(f"bench failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench interrupted; processes stopped", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()

    same_csv = _same_csv(parts)
    meta: dict[str, float] = {
        "cpu_count": os.cpu_count() or 0,
        "wall_s_total": round(time.perf_counter() - started, 1),
        "measured_at_unix": round(time.time()),
    }
    if parts:
        meta["users"] = args.users
    res = results(parts, stack, meta)
    args.results.write_bytes(orjson.dumps(res, option=orjson.OPT_INDENT_2) + b"\n")
    print()
    print(table(res, parts, stack, args.parts))
    if same_csv is not None:
        print(f"\n(a) and (c) wrote byte-identical CSV: {'yes' if same_csv else 'NO'}")
    if profile_text:
        print("\ncProfile of one (a) run (not counted above), top 10 by tottime:\n" + profile_text)
    print(f"wall time: {res['wall_s_total']:.1f} s; results in {args.results}")
    return 0 if same_csv is not False else 1


def _same_csv(parts: dict[str, PartRuns]) -> bool | None:
    """Whether every (a) and (c) run wrote the same bytes (None: nothing to compare)."""
    digests = {r["sha256"] for p in ("a", "c") if p in parts for r in parts[p].runs}
    digests.discard("")
    both = "a" in parts and "c" in parts
    return (len(digests) == 1) if both and digests else None
