"""`userexport start --dry-run`: the flag, the estimate as words, and (against the real local
stack) the wait that prints it with exit code 0."""

from __future__ import annotations

import re

import pytest

from userexport_cli.errors import Exit
from userexport_cli.main import build_parser
from userexport_cli.output import describe, duration, outcome, summary, table
from userexport_cli.progress import FINAL, bar_line, plain_line
from userexport_cli.request import export_body, flag_for

from .conftest import USERS, Cli

ESTIMATED = {
    "id": "1748779200000-abcdefgh",
    "status": "estimated",
    "dryRun": True,
    "usersWritten": 0,
    "userCount": None,
    "estimatedTotal": 2500,
    "partitions": 2,
    "estimate": {
        "planningRequests": 3,
        "listingRequests": 4,
        "pageSize": 999,
        "lookupRequests": 2500,
        "resourceUnits": 2507,
        "partitions": 2,
        "durationSeconds": 754.2,
        "paceSource": "default",
    },
}


def test_dry_run_is_sent_only_when_asked_for():
    parse = build_parser().parse_args
    assert export_body(parse(["start", "--dry-run"])) == {"dryRun": True}
    assert export_body(parse(["start"])) == {}
    assert flag_for("dryRun") == "--dry-run"


def test_estimated_is_final_and_exit_0():
    assert "estimated" in FINAL
    assert outcome({"status": "estimated"}) is Exit.SUCCEEDED


def test_the_estimate_in_words():
    said = summary(ESTIMATED)
    assert said == (
        "Export 1748779200000-abcdefgh estimated (a dry run, nothing exported): 2,500 users, "
        "2 partitions, 2,507 Graph requests (2,507 RU), about 13 min (default pace)."
    )
    lines = describe(ESTIMATED)
    assert any(re.match(r"dry run:\s+True$", line) for line in lines), lines
    assert any(line.startswith("estimate:") and "about 13 min" in line for line in lines)
    assert "~2,500" in table([ESTIMATED])[1]
    assert "about 2,500 users" in plain_line(ESTIMATED, None)
    assert bar_line(ESTIMATED, None).startswith("[" + "#" * 20 + "]")


def test_an_estimate_without_a_duration_says_what_it_has():
    job = {**ESTIMATED, "estimate": {"listingRequests": 1, "resourceUnits": 1}}
    assert summary(job).endswith(": 2,500 users, 2 partitions, 1 Graph request (1 RU).")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (44.6, "45 s"), (89, "89 s"), (90, "2 min"), (754, "13 min"),
     (5340, "89 min"), (5400, "1 h 30 min"), (7500, "2 h 05 min"), (200_000, "2 d 7 h")],
)  # fmt: skip
def test_durations_read_as_a_person_reads_them(seconds, text):
    assert duration(seconds) == text


# ------------------------------------------------------------------ against the local stack
def test_start_dry_run_wait_prints_the_estimate_and_exits_0(cli: Cli, tmp_path):
    run = cli("start", "--dry-run", "--wait", "--columns", "objectId")
    assert run.returncode == 0, run.stderr
    said = run.last_line
    assert re.search(r"estimated \(a dry run, nothing exported\): ", said), run.stdout
    assert f"{USERS:,} users" in said and "Graph request" in said and "RU" in said, said

    as_json = cli("--json", "start", "--dry-run", "--wait")
    assert as_json.returncode == 0, as_json.stderr
    job = as_json.json()
    assert job["status"] == "estimated" and job["dryRun"] is True
    assert job["estimatedTotal"] == USERS
    assert {"listingRequests", "resourceUnits"} <= set(job["estimate"])
    assert "downloadUrl" not in job and "errorsUrl" not in job

    # Like any finished export without files: nothing to download, nothing to cancel.
    download = cli("download", job["id"], "--out", str(tmp_path))
    assert download.returncode == 1 and "no files" in download.stderr, download.stderr
    cancel = cli("cancel", job["id"])
    assert cancel.returncode == 1 and "already finished" in cancel.stderr, cancel.stderr
    assert not any(tmp_path.iterdir())


def test_a_dry_run_with_out_is_refused_before_anything_starts(cli: Cli, tmp_path):
    run = cli("start", "--dry-run", "--out", str(tmp_path))
    assert run.returncode == 2 and "--out" in run.stderr, run.stderr
