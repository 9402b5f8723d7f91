"""The parent process of `python -m bench`: starts the simulator, runs each part of (a)-(c)
in a child process, checks the simulator saw a clean run, runs (d)-(h) as real exports on local
stacks, prints the table and writes results.json."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

from bench.exports import (
    MILLION,
    AuthShape,
    DeltaChanges,
    ExportRun,
    run_auth,
    run_auth_limit_documented,
    run_auth_limit_generous,
    run_auth_tight,
    run_delta,
    run_mfa_million,
    run_million,
    run_multi,
)
from bench.procs import ROOT, BenchError, Processes, Sim
from bench.report import PARTS, STACK_KEYS, PartRuns, StackRuns, results, table

RESULTS = Path(__file__).resolve().parent / "results.json"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--users", type=int, default=200_000, help="users for (a) and (c)")
    parser.add_argument(
        "--sdk-users", type=int, default=8000, help="sample for (b), in whole pages of 999"
    )
    parser.add_argument("--only", default="a,b,c,d,e,f,g,h", help="parts to run, e.g. a,c,d")
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
        "--tight-users", type=int, default=60, help="(e) tenant size at the tight auth budget"
    )
    parser.add_argument(
        "--tight-auth-budget",
        type=int,
        default=5,
        help="(e) tight tenantsim --auth-budget (RU per 10 s; Graph's possible 5 per 10 s)",
    )
    parser.add_argument("--multi-users", type=int, default=10_000, help="(f) tenant size")
    parser.add_argument(
        "--multi-auth-budget",
        type=int,
        default=1000,
        help="(f) tenantsim --auth-budget (RU per 10 s), shared by every devhost",
    )
    parser.add_argument(
        "--multi-devhosts", type=int, default=4, help="(f) devhosts of the second run (K)"
    )
    parser.add_argument(
        "--multi-batch-size",
        type=int,
        default=2,
        help="(f) every devhost's host.json queues batchSize (newBatchThreshold 0), so the "
        "partitions spread over the devhosts; 0: the repository's host.json (batchSize 32)",
    )
    parser.add_argument(
        "--multi-partitions",
        type=int,
        default=8,
        help="(f) USEREXPORT_PARTITIONS (the most partitions the app may plan)",
    )
    parser.add_argument(
        "--delta-users",
        type=int,
        default=50_000,
        help="(g) tenant size: a delta series' full run, 500 changes, its changes run",
    )
    parser.add_argument(
        "--limit-users", type=int, default=300, help="(h) tenant size (generated, seed --seed)"
    )
    parser.add_argument(
        "--limit-phone-email-share",
        type=float,
        default=0.3,
        help="(h) share of its users with a phone or email method (tenantsim --phone-email-share)",
    )
    parser.add_argument(
        "--limit-auth-budget",
        type=int,
        default=5,
        help="(h) the documented world's tenantsim --auth-budget (Graph's 5 requests per 10 s)",
    )
    parser.add_argument(
        "--limit-worlds",
        default="documented,generous",
        help="(h) which worlds to run: documented (dry run, export, fewerLookups export at "
        "--limit-auth-budget), generous (dry run, export at the default budget), both, or none "
        "(with --limit-million-users: that run alone)",
    )
    parser.add_argument(
        "--limit-million-users",
        type=int,
        default=0,
        help="(h) also export this many users with the mfa column preset (registration report; "
        "a tenant file as (d)'s) and measure devhost's peak RSS; 0 (default): not run",
    )
    parser.add_argument(
        "--stack-logs",
        type=Path,
        help="keep the logs of the stacks of (d)-(h) in DIR/<stack>/ (default: deleted)",
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write the JSON")
    args = parser.parse_args(argv)
    args.parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(args.parts) - set(PARTS) - set(STACK_KEYS)
    sizes = (
        args.users,
        args.sdk_users,
        args.repeat,
        args.seq_users,
        args.million_users,
        args.auth_users,
        args.auth_budget,
        args.tight_users,
        args.tight_auth_budget,
        args.multi_users,
        args.multi_auth_budget,
        args.multi_devhosts,
        args.multi_partitions,
        args.delta_users,
        args.limit_users,
        args.limit_auth_budget,
    )
    args.limit_worlds = [w.strip() for w in args.limit_worlds.split(",") if w.strip()]
    if args.limit_worlds == ["none"]:
        args.limit_worlds = []
    elif set(args.limit_worlds) - {"documented", "generous"} or not args.limit_worlds:
        parser.error("--limit-worlds: documented, generous, both or none")
    if args.limit_million_users < 0:
        parser.error("--limit-million-users must be >= 0")
    if not args.limit_worlds and not args.limit_million_users:
        parser.error("--limit-worlds none runs nothing without --limit-million-users")
    if not 0.0 <= args.limit_phone_email_share <= 1.0:
        parser.error("--limit-phone-email-share must be within 0..1")
    changes = DeltaChanges()
    if args.delta_users <= changes.updates + changes.deletes:
        parser.error(f"--delta-users must be > {changes.updates + changes.deletes}")
    if unknown or min(sizes) < 1 or args.multi_batch_size < 0:
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
    stack = StackRuns(
        auth_budget=args.auth_budget,
        tight_budget=args.tight_auth_budget,
        multi_budget=args.multi_auth_budget,
        multi_batch_size=args.multi_batch_size or _host_batch_size(),
    )
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
            procs.stop(sim.proc)  # (d)-(g) bring their own simulators
        _run_stack_parts(args, stack)
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
    res = results(parts, stack, meta, args.parts)
    args.results.write_bytes(orjson.dumps(res, option=orjson.OPT_INDENT_2) + b"\n")
    print()
    print(table(res, parts, stack, args.parts))
    if same_csv is not None:
        print(f"\n(a) and (c) wrote byte-identical CSV: {'yes' if same_csv else 'NO'}")
    if profile_text:
        print("\ncProfile of one (a) run (not counted above), top 10 by tottime:\n" + profile_text)
    print(f"wall time: {res['wall_s_total']:.1f} s; results in {args.results}")
    return 0 if same_csv is not False and not stack.failed else 1


def _run_stack_parts(args: argparse.Namespace, stack: StackRuns) -> None:
    """(d)-(h), each on stacks of its own. A part that fails is recorded (its keys
    are reported as MISS with the reason, and the exit code is 1) and the next part runs."""
    if "d" in args.parts:
        print("(d) 1,000,000 users, about 1 s per page: sequential sample, then partitioned")

        def part_d() -> None:
            done: dict[str, ExportRun] = {}
            try:
                run_million(
                    seed=args.seed,
                    sample_users=args.seq_users,
                    partitioned_users=args.million_users,
                    log_root=args.stack_logs,
                    done=done,
                )
            finally:
                stack.sequential = done.get("d-sequential")
                stack.partitioned = done.get("d-partitioned")

        _part(stack, "d", part_d)
    if "e" in args.parts:
        print(
            f"(e) 25 columns with authentication methods, auth budget {args.auth_budget}: "
            "twice on one stack; then "
            f"{args.tight_users:,} users at auth budget {args.tight_auth_budget}"
        )

        def part_e() -> None:
            done: dict[str, ExportRun] = {}
            try:
                run_auth(
                    seed=args.seed,
                    users=args.auth_users,
                    budget=args.auth_budget,
                    log_root=args.stack_logs,
                    done=done,
                )
            finally:
                stack.auth_cold, stack.auth = done.get("e-auth-cold"), done.get("e-auth")

        def part_e_tight() -> None:
            stack.auth_tight = run_auth_tight(
                seed=args.seed,
                users=args.tight_users,
                budget=args.tight_auth_budget,
                log_root=args.stack_logs,
            )

        _part(stack, "e", part_e)
        _part(stack, "e", part_e_tight)
    if "f" in args.parts:
        print(
            f"(f) {args.multi_users:,} users, 25 columns, auth budget {args.multi_auth_budget} "
            f"shared: 1 devhost, then {args.multi_devhosts} on the same stack"
        )

        def part_f() -> None:
            done: dict[str, ExportRun] = {}
            try:
                run_multi(
                    seed=args.seed,
                    users=args.multi_users,
                    budget=args.multi_auth_budget,
                    partitions=args.multi_partitions,
                    devhosts=args.multi_devhosts,
                    batch_size=args.multi_batch_size,
                    log_root=args.stack_logs,
                    done=done,
                )
            finally:
                stack.multi_single, stack.multi = done.get("f-single"), done.get("f-multi")

        _part(stack, "f", part_f)
    if "g" in args.parts:
        changes = DeltaChanges()
        print(
            f"(g) delta vs full: {args.delta_users:,} users, 25 columns; the series' full run, "
            f"then {changes.updates} updates, {changes.creates} creates, {changes.deletes} "
            "deletes, then its changes run with snapshot"
        )

        def part_g() -> None:
            run_delta(
                seed=args.seed,
                users=args.delta_users,
                changes=changes,
                log_root=args.stack_logs,
                result=stack.delta,
            )

        _part(stack, "g", part_g)
    if "h" in args.parts:
        _run_auth_limit(args, stack)


def _run_auth_limit(args: argparse.Namespace, stack: StackRuns) -> None:
    """(h): each world on a stack of its own; a world that fails does not stop the other."""
    shape = AuthShape(args.seed, args.limit_users, args.limit_phone_email_share)
    result = stack.auth_limit
    result.shape, result.facts = shape, shape.facts()
    result.worlds = tuple(args.limit_worlds)
    result.mfa_users = args.limit_million_users
    mfa = (
        f"; then the mfa preset on {args.limit_million_users:,} users"
        if args.limit_million_users
        else ""
    )
    print(
        f"(h) auth-bound at the documented limit: {shape.users:,} users, "
        f"{result.facts['phone_email_users']} with a phone or email method "
        f"({result.facts['disabled_users']} disabled); worlds: "
        f"{', '.join(args.limit_worlds) or 'none'}{mfa}"
    )
    if "documented" in args.limit_worlds:

        def documented() -> None:
            run_auth_limit_documented(
                shape=shape,
                budget=args.limit_auth_budget,
                log_root=args.stack_logs,
                result=result,
            )

        _part(stack, "h", documented)
    if "generous" in args.limit_worlds:

        def generous() -> None:
            run_auth_limit_generous(shape=shape, log_root=args.stack_logs, result=result)

        _part(stack, "h", generous)
    if args.limit_million_users:

        def mfa_million() -> None:
            run_mfa_million(
                seed=args.seed,
                users=args.limit_million_users,
                log_root=args.stack_logs,
                result=result,
            )

        _part(stack, "h", mfa_million)


def _part(stack: StackRuns, part: str, run: Callable[[], None]) -> None:
    try:
        run()
    except BenchError as error:
        print(f"part {part} failed: {error}", file=sys.stderr, flush=True)
        previous = stack.failed.get(part)
        stack.failed[part] = f"{previous}; {error}" if previous else str(error)


def _host_batch_size() -> int:
    """The repository's host.json queues batchSize (what devhost uses by default)."""
    host = orjson.loads((ROOT / "host.json").read_bytes())
    return int(host.get("extensions", {}).get("queues", {}).get("batchSize", 16))


def _same_csv(parts: dict[str, PartRuns]) -> bool | None:
    """Whether every (a) and (c) run wrote the same bytes (None: nothing to compare)."""
    digests = {r["sha256"] for p in ("a", "c") if p in parts for r in parts[p].runs}
    digests.discard("")
    both = "a" in parts and "c" in parts
    return (len(digests) == 1) if both and digests else None
