"""The CLI against devhost: exports, exit codes, --json, list, cancel, and a terminal session."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from devtools.stack import free_port

from .conftest import FAILING_USER, USERS, Cli, graph_outage

COLUMNS = ["userPrincipalName", "objectId", "displayName"]


def read_csv(path: Path) -> list[list[str]]:
    data = path.read_bytes()
    assert data.startswith("\ufeff".encode()), "the file starts with a UTF-8 BOM"
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def test_start_out_waits_and_downloads_both_files(cli: Cli, tenant_ids, tmp_path):
    out = tmp_path / "exports"
    run = cli(
        "start", "--columns", ",".join(COLUMNS), "--file-name", "staff.csv", "--out", str(out)
    )
    assert run.returncode == 0, run.stderr
    csv_path = Path(run.last_line)
    assert csv_path == (out / "staff.csv").resolve()
    rows = read_csv(csv_path)
    assert rows[0] == COLUMNS
    assert sorted(row[1] for row in rows[1:]) == sorted(tenant_ids[1]), "every user exactly once"
    errors = read_csv(out / "staff-errors.csv")
    assert errors[0][:3] == ["objectId", "userPrincipalName", "failed"] and len(errors) == 1
    assert "succeeded" in run.stdout and f"{USERS:,} users" in run.stdout
    # Not a terminal: plain progress lines on stderr, never a redrawn one.
    assert "\r" not in run.stderr
    assert re.search(r"^\S+ (queued|running|succeeded)", run.stderr, re.M), run.stderr
    # The files are there: a second run refuses to overwrite them, before starting anything.
    again = cli("start", "--file-name", "staff.csv", "--out", str(out))
    assert again.returncode == 2 and "--force" in again.stderr, again.stderr


def test_completed_with_errors_is_exit_3_and_json_is_one_document(cli: Cli, tenant_ids, tmp_path):
    run = cli("--json", "start", "--wait", "--out", str(tmp_path))
    assert run.returncode == 3, run.stderr
    job = run.json()
    assert job["status"] == "completedWithErrors"
    assert job["userCount"] == USERS and job["errorCount"] >= 1
    csv_path, errors_path = Path(job["downloaded"]["csv"]), Path(job["downloaded"]["errors"])
    assert csv_path.name == job["fileName"] and csv_path.parent == tmp_path.resolve()
    assert len(read_csv(csv_path)) == USERS + 1
    errors = read_csv(errors_path)[1:]
    assert len(errors) == job["errorCount"], errors
    # Only the user whose lookups fail, with their 404 (a row per failed lookup).
    assert {(row[0], row[3]) for row in errors} == {(tenant_ids[1][FAILING_USER], "404")}


def test_start_without_wait_prints_the_id_and_wait_follows_it(cli: Cli, tmp_path):
    started = cli("start", "--columns", "objectId")
    assert started.returncode == 0, started.stderr
    job_id = started.stdout.strip()
    assert re.fullmatch(r"\d{13}-[0-9a-z]{8}", job_id), started.stdout
    waited = cli("wait", job_id, "--out", str(tmp_path))
    assert waited.returncode == 0, waited.stderr
    assert read_csv(Path(waited.last_line))[0] == ["objectId"]
    status = cli("status", job_id, "--json")  # --json after the command's name works too
    assert status.returncode == 0 and status.json()["status"] == "succeeded"
    human = cli("status", job_id)
    assert re.search(r"^status:\s+succeeded$", human.stdout, re.M), human.stdout
    # download: both files again, only with --force
    refused = cli("download", job_id, "--out", str(tmp_path))
    assert refused.returncode == 2 and "--force" in refused.stderr
    forced = cli("download", job_id, "--out", str(tmp_path), "--force")
    assert forced.returncode == 0, forced.stderr
    assert Path(forced.last_line) == Path(waited.last_line)


def test_an_unknown_column_is_exit_2_naming_columns(cli: Cli):
    run = cli("start", "--columns", "userPrincipalName,objectId,noSuchColumn")
    assert run.returncode == 2
    assert "--columns" in run.stderr and "noSuchColumn" in run.stderr, run.stderr
    assert run.stdout == ""


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["start", "--account-enabled", "maybe"], "--account-enabled"),  # refused by the CLI
        (["start", "--user-type", "robot"], "--user-type"),
        (["start", "--created-after", "last tuesday"], "--created-after"),  # refused by the app
        (["start", "--domain", "not a domain"], "--domain"),
        (["start", "--file-name", "report.txt"], "--file-name"),
        (["start", "--columns", "objectId,,displayName"], "--columns"),
        (["start", "--idempotency-key", "tab\there"], "--idempotency-key"),
        (["start", "--wait", "--timeout", "soon"], "--timeout"),
        (["start", "--timeout", "5"], "--timeout"),  # only with --wait or --out
        (["list", "--page-size", "0"], "--page-size"),
        (["download", "0000000000000-00000000"], "--out"),  # a required flag missing
    ],
)
def test_a_bad_flag_value_is_exit_2_naming_the_flag(cli: Cli, args, flag):
    run = cli(*args)
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert flag in run.stderr, run.stderr


def test_an_unknown_id_is_exit_2(cli: Cli):
    for command in (["status"], ["wait"], ["cancel"]):
        run = cli(*command, "0000000000000-00000000")
        assert run.returncode == 2, (command, run.stderr)
        assert "no export" in run.stderr


def test_an_unreachable_app_is_exit_4(cli: Cli):
    closed = f"http://127.0.0.1:{free_port()}"
    for args in (["start"], ["list"], ["status", "0000000000000-00000000"]):
        run = cli("--url", closed, *args)
        assert run.returncode == 4, (args, run.stderr)
        assert "cannot reach" in run.stderr
    no_app = cli("list", USEREXPORT_URL=f"{cli.url}/nothing-here")
    assert no_app.returncode == 4 and "--url" in no_app.stderr, no_app.stderr


def test_the_url_is_needed_and_the_key_is_never_shown(cli: Cli):
    run = cli("list", USEREXPORT_URL="")
    assert run.returncode == 2 and "--url" in run.stderr
    secret = "not-a-real-key-5f2b"
    keyed = cli("--key", secret, "--url", f"http://127.0.0.1:{free_port()}", "list")
    assert keyed.returncode == 4 and secret not in keyed.stderr + keyed.stdout
    listed = cli("list", USEREXPORT_KEY=secret)  # devhost takes any key, as `func start` does
    assert listed.returncode == 0 and secret not in listed.stderr + listed.stdout


def test_a_cancelled_export_is_exit_1(cli: Cli):
    with graph_outage(cli.stack):
        started = cli("start", "--columns", "objectId", "--json")
        assert started.returncode == 0, started.stderr
        job_id = started.json()["id"]
        timed_out = cli("wait", job_id, "--timeout", "0")
        assert timed_out.returncode == 1 and "--timeout" in timed_out.stderr, timed_out.stderr
        cancelled = cli("cancel", job_id, "--json")
        assert cancelled.returncode == 0, cancelled.stderr
        assert cancelled.json()["status"] == "cancelled"
    waited = cli("wait", job_id)
    assert waited.returncode == 1, waited.stderr
    assert "cancelled" in waited.last_line
    again = cli("cancel", job_id)  # cancelling twice is harmless
    assert again.returncode == 0, again.stderr
    download = cli("download", job_id, "--out", "unused")
    assert download.returncode == 1 and "no files" in download.stderr


def test_cancelling_a_finished_export_is_exit_1(cli: Cli):
    done = cli("start", "--columns", "objectId", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    run = cli("cancel", done.json()["id"])
    assert run.returncode == 1
    assert "already finished" in run.stderr, run.stderr


def test_list_pages_and_all(cli: Cli):
    for _ in range(2):
        assert cli("start", "--columns", "objectId").returncode == 0
    everything = cli("list", "--all", "--page-size", "1", "--json")
    assert everything.returncode == 0, everything.stderr
    jobs = everything.json()["value"]
    assert len(jobs) >= 2 and "nextLink" not in everything.json()
    assert len({job["id"] for job in jobs}) == len(jobs), "each job once"
    created = [job["createdAt"] for job in jobs]
    assert created == sorted(created, reverse=True), "newest first"
    first = cli("list", "--page-size", "1")
    assert first.returncode == 0
    lines = first.stdout.splitlines()
    assert lines[0].split()[:2] == ["ID", "STATUS"] and len(lines) == 2
    assert lines[1].startswith(jobs[0]["id"])
    assert "--all" in first.stderr


def test_idempotency_key_gives_the_same_export(cli: Cli):
    key = "nightly-2025-06-01"
    first = cli("start", "--columns", "objectId", "--idempotency-key", key, "--json")
    assert first.returncode == 0, first.stderr
    second = cli("start", "--columns", "objectId", "--idempotency-key", key, "--json")
    assert second.returncode == 0, second.stderr
    assert second.json()["id"] == first.json()["id"]
    assert "used before" in second.stderr
    other = cli("start", "--columns", "displayName", "--idempotency-key", key)
    assert other.returncode == 2 and "--idempotency-key" in other.stderr, other.stderr


def test_in_a_terminal_a_bar_is_redrawn_then_the_file_path_is_printed(cli: Cli, tmp_path):
    run = cli.in_terminal("start", "--columns", "objectId,displayName", "--out", str(tmp_path))
    assert run.returncode == 0, run.stdout
    screen = run.stdout
    # The bar: redrawn in place with a carriage return, never a new line per update.
    bars = re.findall(r"\r\[[#.]{20}\] [^\r\n]*", screen)
    assert bars, screen
    assert any("users" in bar for bar in bars[:-1] or bars), bars
    assert bars[-1].startswith("\r[" + "#" * 20 + "]") and "succeeded" in bars[-1]
    # Then, below it, the outcome and the CSV's path as the last line.
    after = screen[screen.rindex(bars[-1]) + len(bars[-1]) :]
    lines = [line for line in after.replace("\r\n", "\n").split("\n") if line.strip()]
    csv_path = Path(lines[-1].strip())
    assert csv_path.parent == tmp_path.resolve() and csv_path.exists(), lines
    assert read_csv(csv_path)[0] == ["objectId", "displayName"]


def test_json_of_status_and_list_parses(cli: Cli):
    listed = cli("list", "--json")
    assert listed.returncode == 0
    document = json.loads(listed.stdout)
    assert isinstance(document["value"], list)
    if document["value"]:
        job_id = document["value"][0]["id"]
        status = json.loads(cli("status", job_id, "--json").stdout)
        assert status["id"] == job_id and "statusUrl" in status
