"""The CLI with series, delta mode and snapshots, against the real local stack (Azurite, the
simulated tenant changed through Graph's own write APIs, devhost): `start --series --mode delta
--snapshot --out` twice, then without --snapshot (refused until --redefine), `latest --series
--out`, and the app's refusals of the new fields, each naming its flag."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from devtools.stack import LocalStack
from devtools.tenantsim.changes import TenantWriter
from userexport.columns import DEFAULT_COLUMN_NAMES
from userexport.functions.http_api import OPENAPI

from .conftest import Cli

USERS = 150
SERIES = "cli-hr"
# The default columns (the admin center's 25: objectId among them, nothing /users/delta
# cannot give).
START = ("start", "--series", SERIES, "--mode", "delta")


@pytest.fixture(scope="module")
def delta_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(workdir=tmp_path_factory.mktemp("cli-delta"), users=USERS, seed=14) as stack:
        yield stack


@pytest.fixture(scope="module")
def tenant(delta_stack: LocalStack) -> Iterator[TenantWriter]:
    with delta_stack.tenant_writer() as writer:
        yield writer


@pytest.fixture
def cli(delta_stack: LocalStack) -> Cli:
    return Cli(delta_stack, delta_stack.api_url)


def read_csv(path: Path) -> list[list[str]]:
    data = path.read_bytes()
    assert data.startswith("\ufeff".encode()), "the file starts with a UTF-8 BOM"
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def latest_schema() -> dict:
    """GET /api/exports/latest's 200 schema, as JSON Schema draft 4 (nullable as null)."""
    import json

    from tests.unit.test_openapi import _nullable_as_draft4

    spec = json.loads(OPENAPI.read_text())
    operation = spec["paths"]["/api/exports/latest"]["get"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    return _nullable_as_draft4({**schema, "components": spec["components"]})


def test_a_delta_series_start_twice_then_latest(cli: Cli, tenant: TenantWriter, tmp_path):
    first_out, second_out, third_out, latest_out = (tmp_path / n for n in ("1", "2", "3", "l"))
    # The series' first run: a full run, the CSV and the errors file, no changes file.
    first = cli(*START, "--snapshot", "--file-name", "hr.csv", "--wait", "--out", str(first_out))
    assert first.returncode == 0, first.stderr
    assert "a full run of a delta series" in first.stdout, first.stdout
    assert Path(first.last_line) == (first_out / "hr.csv").resolve()
    assert sorted(p.name for p in first_out.iterdir()) == ["hr-errors.csv", "hr.csv"]
    assert len(read_csv(first_out / "hr.csv")) == USERS + 1

    users = tenant.users(select="id,userPrincipalName")
    added = tenant.create_user(
        displayName="Cli Delta Added",
        userPrincipalName="cli.delta.added@contoso.example",
        mailNickname="clideltaadded",
        accountEnabled=True,
    )["id"]
    updated, removed = users[3]["id"], users[4]["id"]
    tenant.update_user(updated, displayName="Cli Delta Renamed")
    tenant.delete_user(removed)

    # The second: the changes, and (--snapshot) the full CSV rebuilt from them.
    second = cli(*START, "--snapshot", "--file-name", "hr.csv", "--wait", "--out", str(second_out))
    assert second.returncode == 0, second.stderr
    assert "1 added, 1 updated, 1 removed" in second.stdout, second.stdout
    changes_path = (second_out / "hr-changes.csv").resolve()
    assert f"Changes file: {changes_path}" in second.stdout
    assert Path(second.last_line) == (second_out / "hr.csv").resolve()
    assert sorted(p.name for p in second_out.iterdir()) == [
        "hr-changes.csv",
        "hr-errors.csv",
        "hr.csv",
    ]
    changes = read_csv(changes_path)
    assert changes[0] == ["changeType", "changeReason", *DEFAULT_COLUMN_NAMES]
    object_id, name = changes[0].index("objectId"), changes[0].index("displayName")
    assert sorted((row[0], row[1], row[object_id]) for row in changes[1:]) == sorted(
        [("added", "", added), ("updated", "", updated), ("removed", "changed", removed)]
    )
    assert [row[name] for row in changes[1:] if row[object_id] == updated] == ["Cli Delta Renamed"]
    snapshot = read_csv(second_out / "hr.csv")
    ids = {row[object_id - 2] for row in snapshot[1:]}
    assert len(snapshot) == USERS + 1 and added in ids and removed not in ids

    listed = cli("--json", "list")
    second_id = next(j["id"] for j in listed.json()["value"] if j.get("series") == SERIES)
    status = cli("status", second_id)
    assert re.search(r"^delta run:\s+changes$", status.stdout, re.M), status.stdout
    assert re.search(rf"^series:\s+{SERIES}$", status.stdout, re.M), status.stdout
    table = cli("list")
    assert SERIES in table.stdout.splitlines()[1], table.stdout

    # latest: the second run, its three files.
    latest = cli("latest", "--series", SERIES, "--out", str(latest_out))
    assert latest.returncode == 0, latest.stderr
    for name in ("hr.csv", "hr-changes.csv", "hr-errors.csv"):
        assert (latest_out / name).read_bytes() == (second_out / name).read_bytes(), name
    assert Path(latest.last_line) == (latest_out / "hr.csv").resolve()
    shown = cli("--json", "latest", "--series", SERIES)
    assert shown.returncode == 0, shown.stderr
    job = shown.json()
    assert job["id"] == second_id and job["delta"]["kind"] == "changes"
    assert job["series"] == SERIES and job["mode"] == "delta" and job["snapshot"] is True
    jsonschema.Draft4Validator(latest_schema()).validate(job)
    again = cli("latest", "--series", SERIES, "--out", str(latest_out))
    assert again.returncode == 2 and "--force" in again.stderr, again.stderr

    # Without --snapshot a run of changes has no full CSV: the changes file is the last line.
    # The series was defined with --snapshot: another definition is refused, naming --series,
    # until --redefine says it is on purpose.
    tenant.update_user(updated, displayName="Cli Delta Renamed Again")
    refused = cli(*START, "--file-name", "hr.csv", "--out", str(third_out))
    assert refused.returncode == 2 and "--series" in refused.stderr, refused.stderr
    assert "snapshot" in refused.stderr and "redefine" in refused.stderr
    third = cli(*START, "--redefine", "--file-name", "hr.csv", "--out", str(third_out))
    assert third.returncode == 0, third.stderr
    assert Path(third.last_line) == (third_out / "hr-changes.csv").resolve()
    assert sorted(p.name for p in third_out.iterdir()) == ["hr-changes.csv", "hr-errors.csv"]
    assert [row[0] for row in read_csv(third_out / "hr-changes.csv")[1:]] == ["updated"]
    newest = cli("--json", "latest", "--series", SERIES).json()
    assert "downloadUrl" not in newest and newest["changesUrl"] and not newest["snapshot"]
    jsonschema.Draft4Validator(latest_schema()).validate(newest)


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["start", "--mode", "delta"], "--mode"),  # no series
        (["start", "--snapshot"], "--snapshot"),  # not delta
        (["start", "--series", "a b"], "--series"),
        (["start", "--series", "-x"], "--series"),
        (["start", "--mode", "sideways"], "--mode"),  # refused by the CLI
        (["start", "--series", "s", "--mode", "delta", "--columns", "displayName"], "--columns"),
        (
            ["start", "--series", "s", "--mode", "delta", "--columns", "objectId,manager"],
            "--columns",
        ),
        (["start", "--series", "s", "--mode", "delta", "--domain", "contoso.com"], "filter"),
        (["latest"], "--series"),
        (["latest", "--series", "no such series"], "--series"),
        (["latest", "--series", "never-ran"], "--series"),
    ],
)
def test_the_app_refusing_a_new_field_is_exit_2_naming_the_flag(cli: Cli, args, flag):
    run = cli(*args)
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert flag in run.stderr, run.stderr
    assert run.stdout == ""
