"""A short seeded slice of `make chaos` (bench/chaos.py): a few exports under injected faults,
each compared byte for byte with a clean export of the same tenant and partition count."""

from __future__ import annotations

import json

from bench.chaos import ChaosOptions, plan_runs, run_chaos

# Seed 3's three runs inject, between them: SIGKILLs of the function host, a Graph outage, a
# stale invocation after a takeover, duplicated messages, expired page tokens, a 5xx storm with
# Retry-After and an Azurite restart; two sequential exports and one of 8 partitions.
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
