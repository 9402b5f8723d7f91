"""Two function hosts on one stack (a scaled-out app) write the same CSV as one host.

Two stacks serve the same generated tenant with the same app settings: one with one devhost,
one with two (the same queues, storage and tenant; WEBSITE_INSTANCE_ID devhost-1, devhost-2).
Each is fresh, so neither plan is shaped by a pace the other learned: the two plans, and so the
row orders, are the same, and the two CSVs must be byte for byte the same.

Which host runs which partition is decided by whoever polls the queue first. With the
repository's host.json (batchSize 32) one host can take every partition message of a job in
one fetch, so "both hosts wrote partitions" would be luck. These stacks run devhost with
batchSize 1 and newBatchThreshold 0 (as `extensions.queues` allows in Azure): a host runs one
message at a time and fetches the next when it is done. An idle host polls at least every
maxPollingInterval (2 s); the per-user latency below makes each of the 8 partitions take about
a second, so the first host cannot drain the queue before the second's next poll: both write
partitions. (USEREXPORT_PARTITIONS is a maximum: the app may plan fewer, but at least 2.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from devtools.stack import ROOT, LocalStack

from .conftest import download, running_stack
from .conftest import export as export_job

USERS = 3000
SEED = 13
PARTITIONS = 8
APP_ENV = {
    "USEREXPORT_PARTITIONS": str(PARTITIONS),
    "USEREXPORT_SMALL_TENANT_USERS": "0",  # partitioned although small
    "USEREXPORT_STATUS_RETRY_AFTER_SECONDS": "1",
}
# About 0.75 s per partition page of ~375 users.
SIM_ARGS = ["--latency-per-user-ms", "2"]


def one_at_a_time_host_json(folder: Path) -> Path:
    """The repository's host.json with each host holding at most one queue message."""
    host = json.loads((ROOT / "host.json").read_text())
    host["extensions"]["queues"] |= {"batchSize": 1, "newBatchThreshold": 0}
    path = folder / "host.json"
    path.write_text(json.dumps(host))
    return path


def export(stack: LocalStack) -> tuple[dict[str, Any], bytes]:
    """The default export (25 columns) through the HTTP API: the final job and its CSV."""
    job = export_job(stack, timeout=90)
    assert job["status"] == "succeeded", job
    assert job["userCount"] == USERS and job["errorCount"] == 0, job
    return job, download(stack, job["downloadUrl"])


def partitions_written(stack: LocalStack, job_id: str) -> list[list[int]]:
    """Per devhost (in instance order), the partitions of the job it finished, from its log."""
    line = re.compile(rf"Job {re.escape(job_id)} partition (\d+) written")
    return [
        sorted(int(m.group(1)) for m in line.finditer(log.read_text(errors="replace")))
        for log in stack.devhost_logs
    ]


def test_two_devhosts_write_the_same_csv_as_one(tmp_path: Path) -> None:
    host_json = one_at_a_time_host_json(tmp_path)
    options: dict[str, Any] = {
        "users": USERS,
        "seed": SEED,
        "sim_args": SIM_ARGS,
        "app_env": APP_ENV,
        "devhost_args": ["--host-json", str(host_json)],
    }
    with running_stack(tmp_path / "one", devhosts=1, **options) as single:
        one_job, one_csv = export(single)
        assert len(single.devhost_pids) == 1
    with running_stack(tmp_path / "two", devhosts=2, **options) as double:
        two_job, two_csv = export(double)
        spread = partitions_written(double, two_job["id"])

    plans = [(job["partitions"], job.get("planNote")) for job in (one_job, two_job)]
    assert one_job["partitions"] == two_job["partitions"], plans
    partitions = two_job["partitions"]
    assert 2 <= partitions <= PARTITIONS, f"two hosts need several partitions to share: {plans}"
    assert one_csv.count(b"\r\n") >= USERS + 1
    assert one_csv == two_csv, f"the CSVs differ; plans (partitions, note): {plans}"
    # Every partition was finished exactly once, on one of the two hosts, and each host
    # finished at least one.
    assert sorted(p for host in spread for p in host) == list(range(partitions)), spread
    assert all(spread), f"partitions written per devhost: {spread}"
