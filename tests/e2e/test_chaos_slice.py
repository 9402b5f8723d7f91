"""A short seeded slice of `make chaos` (bench/chaos.py): a few exports under injected faults,
each compared byte for byte with a clean export of the same tenant and partition count, or,
where the run's Graph weather withholds a column for good, cell for cell but those columns,
the job saying which and why."""

from __future__ import annotations

import json

from bench.chaos import WEATHER, ChaosOptions, plan_runs, run_chaos

# Seed 3's three runs inject, between them: SIGKILLs of the function host, a Graph outage, a
# stale invocation after a takeover, duplicated messages, expired page tokens, a 5xx storm with
# Retry-After and an Azurite restart; two sequential exports and one of 8 partitions. Their
# Graph weather: 424 batches (expect the same bytes), no authentication-methods API and a
# 'no premium' 403 on sign-in activity that lasts after 4 requests (the file may have those
# columns empty; the job must say so).
SLICE = ChaosOptions(
    seed=3,
    runs=3,
    users=1200,
    tight_every=0,
    stuck_timeout=60,
    results=None,
    quiet=True,
)


def test_the_slice_injects_a_mix_of_faults():
    kinds = {fault.kind for plan in plan_runs(SLICE) for fault in plan.faults}
    assert len(kinds) >= 6, kinds
    assert {"kill", "duplicates", "stale_invocation", "azurite_restart"} <= kinds, kinds
    assert {"batch_424", "no_auth_api", "signin_refused"} <= kinds & set(WEATHER), kinds


def test_a_chaos_slice_meets_every_target(tmp_path):
    report = run_chaos(ChaosOptions(**{**SLICE.__dict__, "log_dir": tmp_path}))
    summary = report.summary()
    details = json.dumps(
        [
            {k: getattr(r, k) for k in ("index", "status", "reason", "problems", "diagnosis")}
            for r in report.results
        ],
        indent=1,
        default=str,
    )
    assert not report.missed(), f"{report.missed()}; logs in {tmp_path}\n{details}"
    assert summary["jobs_final"] == summary["runs"] == 3
    assert sum(summary["faults_injected"].values()) >= 3, summary["faults_injected"]
    weather = {k: n for k, n in summary["faults_injected"].items() if k in WEATHER}
    assert weather == {"batch_424": 1, "no_auth_api": 1, "signin_refused": 1}, weather
    seen = summary["faults_seen_by_simulator"]
    assert seen.get("no_auth_api") == seen.get("signin_refused") == 1, seen
    # Graph withheld columns for good in two runs: their files differ only there, and say so.
    assert summary["withheld_as_expected"] == 2, details
