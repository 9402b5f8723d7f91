"""Pure parts of delta mode: the snapshot's records as the rebuild reads them, and what a
delta request may ask for."""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from userexport.columns import DEFAULT_COLUMN_NAMES, resolve
from userexport.csvfile import CsvEncoder
from userexport.delta import _field, _full_reason, _records
from userexport.exportrequest import InvalidRequest, export_request
from userexport.jobs import Job, Status
from userexport.series import SeriesState

NOW = datetime(2026, 11, 29, tzinfo=UTC)


async def chunked(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 10_000])
async def test_records_split_where_csv_does_whatever_the_chunks(size):
    users = [
        {"id": "a", "displayName": 'Quote "me", please', "jobTitle": "line\r\nbreak"},
        {"id": "b", "displayName": "plain", "jobTitle": "\n\r lone breaks \r"},
        {"id": "c", "displayName": "", "jobTitle": '""'},
    ]
    encoder = CsvEncoder(resolve(["objectId", "displayName", "jobTitle"]))
    data = encoder.header() + encoder.rows(users, {})
    records = [r async for r in _records(chunked(data, size))]
    assert b"".join(records) == data
    assert len(records) == 1 + len(users)
    parsed = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    for record, row in zip(records[1:], parsed[1:], strict=True):
        assert _field(record, 0) == row[0]
        assert next(csv.reader([record.decode()])) == row


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"mode": "delta"}, "mode"),
        ({"mode": "incremental", "series": "s"}, "mode"),
        ({"series": "bad name"}, "series"),
        ({"series": ""}, "series"),
        ({"series": "x" * 64}, "series"),
        ({"series": 7}, "series"),
        ({"snapshot": True}, "snapshot"),
        ({"series": "s", "mode": "delta", "snapshot": "yes"}, "snapshot"),
        ({"series": "s", "mode": "delta", "filter": {"accountEnabled": True}}, "filter"),
        ({"series": "s", "mode": "delta", "columns": ["objectId", "manager"]}, "columns[1]"),
        (
            {"series": "s", "mode": "delta", "columns": ["objectId", "lastSignInDateTime"]},
            "columns[1]",
        ),
        ({"series": "s", "mode": "delta", "columns": "all"}, "columns"),
        ({"series": "s", "mode": "delta", "columns": ["userPrincipalName"]}, "columns"),
    ],
)
def test_a_delta_request_graph_cannot_serve_is_refused_naming_the_field(body, field):
    with pytest.raises(InvalidRequest) as refused:
        export_request(body, now=NOW)
    assert refused.value.field == field
    assert refused.value.detail


def test_a_delta_request_records_its_series_mode_and_snapshot():
    request = export_request({"series": "nightly", "mode": "delta", "snapshot": True}, now=NOW)
    assert (request.series, request.mode, request.snapshot, request.delta) == (
        "nightly",
        "delta",
        True,
        True,
    )
    assert request.to_json()["series"] == "nightly"
    assert type(request).from_json(request.to_json()) == request
    plain = export_request({}, now=NOW)
    assert (plain.series, plain.mode, plain.snapshot) == (None, "full", False)


class _Blob:
    def __init__(self, exists: bool) -> None:
        self._exists = exists

    async def exists(self) -> bool:
        return self._exists


def _clients(*, snapshot_exists: bool = True) -> SimpleNamespace:
    return SimpleNamespace(
        settings=SimpleNamespace(delta_full_days=7.0),
        exports=SimpleNamespace(get_blob_client=lambda name: _Blob(snapshot_exists)),
    )


def _state(**changes: object) -> SeriesState:
    values: dict[str, object] = {
        "name": "s",
        "delta_link": "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=x",
        "snapshot_job": "8204027154527-9a5ceaa6",
        "columns": list(DEFAULT_COLUMN_NAMES),
        "formula_guard": True,
        "full_job": "8204027171192-bcf8bc9d",
        "full_at": datetime.now(UTC) - timedelta(days=1),
    }
    return SeriesState(**{**values, **changes})  # type: ignore[arg-type]


def _job(**body: object) -> Job:
    request = export_request({"series": "s", "mode": "delta", **body}, now=NOW)
    return Job(
        id="8204027000000-00000000",
        status=Status.RUNNING,
        trigger="http",
        created_at=NOW,
        request=request,
    )


@pytest.mark.parametrize(
    ("state", "body", "exists", "says"),
    [
        (None, {}, True, "first delta run"),
        (_state(columns=["objectId"]), {}, True, "columns or formulaGuard differ"),
        (_state(), {"formulaGuard": False}, True, "columns or formulaGuard differ"),
        (_state(full_at=datetime.now(UTC) - timedelta(days=8)), {}, True, "more than 7 days"),
        (_state(), {}, False, "is gone"),
    ],
)
async def test_a_delta_run_is_a_full_one_when_the_series_cannot_build_on_its_snapshot(
    state, body, exists, says
):
    reason = await _full_reason(_clients(snapshot_exists=exists), _job(**body), state)
    assert reason is not None and says in reason


async def test_a_delta_run_reads_changes_when_the_series_has_a_fresh_snapshot_of_its_columns():
    assert await _full_reason(_clients(), _job(), _state()) is None


def test_a_delta_plan_is_stored_and_shown_as_before():
    """Plan.delta is typed (DeltaPlan) but keeps the JSON rows already hold: camelCase keys,
    counts only once a changes run has them; the API shows everything but the deltaLink."""
    from userexport.jobs import DeltaPlan, Plan

    stored = {
        "kind": "changes",
        "reason": "The changes since run j1.",
        "since": "j1",
        "link": "https://graph/users/delta?$deltatoken=x",
        "authenticationColumnsFrom": {"jobId": "j0", "at": "2026-12-01T02:00:00Z"},
    }
    plan = Plan.from_json({"partitions": [[""]], "delta": stored})
    assert plan.changes and plan.delta == DeltaPlan.from_json(stored)
    assert plan.to_json()["delta"] == stored
    counted = dataclasses.replace(plan.delta, added=2, updated=1, removed=0)
    shown = counted.shown()
    assert "link" not in shown and (shown["added"], shown["updated"], shown["removed"]) == (2, 1, 0)
    assert Plan.from_json(Plan(partitions=[[""]], delta=counted).to_json()).delta == counted
