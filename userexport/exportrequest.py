"""The body of POST /api/exports: parsed, validated and given its defaults (an ExportRequest,
request.py)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import orjson

from .columns import (
    CATALOGUE,
    DEFAULT_COLUMN_NAMES,
    PRESETS,
    SIGN_IN_ACTIVITY,
    graph_expand,
    resolve,
)
from .errors import InvalidRequest
from .filters import parse_filter, to_graph_query
from .request import FIELDS, ExportRequest

MODES = ("full", "delta")
ID_COLUMN = "objectId"  # what a delta run matches a snapshot's rows by
_SAFE_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,150}\.csv")
_SERIES = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")


def excerpt(value: Any, limit: int = 40) -> str:
    """A short, printable excerpt of what a caller sent, fit to quote in an error ('""' for
    an empty name)."""
    text = "".join(c if c.isprintable() else "?" for c in str(value)[: limit + 1])
    if not text:
        return '""'
    return text if len(text) <= limit else text[: limit - 1] + "…"


def default_file_name(now: datetime) -> str:
    return f"exportUsers_{now:%Y-%m-%d_%H-%M-%S}Z.csv"


def request_json(body: bytes) -> dict[str, Any]:
    """The body as a JSON object ({} when there is none). Whitespace alone is not JSON: as
    application/json it is a 400, like any other malformed body."""
    data: Any = {}
    if body:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            raise InvalidRequest("body", f"The body is not valid JSON: {error}.") from None
    if not isinstance(data, dict):
        raise InvalidRequest("body", "The body must be a JSON object (or empty).")
    return data


def parse_export_request(body: bytes, *, now: datetime) -> ExportRequest:
    """The export request a job records: columns, filter, fileName, formulaGuard and dryRun,
    filled in."""
    return export_request(request_json(body), now=now)


def export_request(data: dict[str, Any], *, now: datetime) -> ExportRequest:
    """parse_export_request for a body already read as JSON (request_json)."""
    for name in data:
        if name not in FIELDS:
            shown = excerpt(name)
            raise InvalidRequest(
                shown, f"Unknown field {shown!r}; known fields: {', '.join(FIELDS)}."
            )
    columns = _columns(data.get("columns"))
    filter_ = parse_filter(data.get("filter")) or None  # InvalidFilter is an InvalidRequest
    query = to_graph_query(filter_)
    if query.advanced and graph_expand(resolve(columns)):
        needs = (
            "filtering a group's or administrative unit's members"
            if query.scope
            else "filter.domain and filter.companyName"
        )
        which = (
            "The all preset's manager column"
            if data.get("columns") == "all"
            else ("The manager column")
        )
        raise InvalidRequest(
            "columns",
            f"{which} cannot be combined with this filter: {needs} takes an advanced query, "
            "and Graph does not support $expand in advanced queries. Leave out manager (list "
            "the columns, or use the preview preset), or the other filter keys.",
        )
    series, mode = series_name(data.get("series")), _mode(data.get("mode", "full"))
    snapshot = _boolean(data.get("snapshot", False), "snapshot")
    if mode == "delta":
        _check_delta(series, columns, filter_, preset=isinstance(data.get("columns"), str))
    elif snapshot:
        raise InvalidRequest(
            "snapshot",
            'snapshot is for "mode": "delta" (a delta run then also writes the full CSV); a '
            "full export's CSV is a full snapshot already.",
        )
    fewer_lookups = _boolean(data.get("fewerLookups", False), "fewerLookups")
    if fewer_lookups and mode == "delta":
        raise InvalidRequest(
            "fewerLookups",
            "fewerLookups is for full exports: a delta run reads only what changed. Leave it "
            'out, or use "mode": "full".',
        )
    redefine = _boolean(data.get("redefine", False), "redefine")
    if redefine and series is None:
        raise InvalidRequest(
            "redefine",
            'redefine changes a series\' definition: it goes with "series": "<name>".',
        )
    return ExportRequest(
        columns=tuple(columns),
        filter=filter_,
        file_name=_file_name(data.get("fileName"), now),
        formula_guard=_boolean(data.get("formulaGuard", True), "formulaGuard"),
        dry_run=_boolean(data.get("dryRun", False), "dryRun"),
        series=series,
        mode=mode,
        snapshot=snapshot,
        redefine=redefine,
        fewer_lookups=fewer_lookups,
    )


def series_name(value: Any, *, required: bool = False) -> str | None:
    """A series' name as a caller sent it, checked (None when absent and not required)."""
    if value is None and not required:
        return None
    if not isinstance(value, str) or not _SERIES.fullmatch(value):
        raise InvalidRequest(
            "series",
            "series must be 1 to 63 letters, digits, dashes and underscores, starting with a "
            "letter or digit.",
        )
    return value


def _mode(value: Any) -> str:
    if value not in MODES:
        raise InvalidRequest("mode", f'mode must be "full" or "delta", not {excerpt(value)!r}.')
    return str(value)


def _check_delta(
    series: str | None, columns: list[str], filter_: dict[str, Any] | None, *, preset: bool
) -> None:
    """What Graph's /users/delta can give: $select without $expand, no $filter but on id, and
    no signInActivity (400 "$expand/$select is not supported for the following properties:
    signInActivity", graph-explorer-v4 #3189; user-delta.md documents no list of the
    properties it takes, and says licenseAssignmentStates is not tracked, which no column
    reads); and the objectId column, which the snapshot's rows are matched by."""
    if series is None:
        raise InvalidRequest(
            "mode",
            '"mode": "delta" needs a series: the changes are since the series\' last run. Add '
            '"series": "<name>".',
        )
    if filter_:
        raise InvalidRequest(
            "filter",
            "A delta export covers the whole tenant: Graph's /users/delta filters on id only. "
            'Leave out filter, or use "mode": "full".',
        )
    for index, name in enumerate(columns):
        column = CATALOGUE[name]
        if column.expand or SIGN_IN_ACTIVITY in column.select:
            raise InvalidRequest(
                "columns" if preset else f"columns[{index}]",
                f"Graph's /users/delta cannot give the {name} column (it allows neither $expand "
                'nor signInActivity). Leave it out, or use "mode": "full".',
            )
        if column.report:
            raise InvalidRequest(
                "columns" if preset else f"columns[{index}]",
                f"A delta run cannot give the {name} column: it comes from the registration "
                "report, which /users/delta does not track. Leave it out, or use "
                '"mode": "full".',
            )
    if ID_COLUMN not in columns:
        raise InvalidRequest(
            "columns",
            f"A delta export needs the {ID_COLUMN} column: the changes are matched to the "
            "previous snapshot's rows by it.",
        )


def _columns(value: Any) -> list[str]:
    if value is None:
        return list(DEFAULT_COLUMN_NAMES)
    presets = ", ".join(f'"{name}"' for name in PRESETS)
    if isinstance(value, str):
        if value not in PRESETS:
            raise InvalidRequest(
                "columns",
                f"Unknown column preset {excerpt(value)!r}; presets: {presets} (or a list of "
                "column names).",
            )
        return list(PRESETS[value])
    if not isinstance(value, list) or not value:
        raise InvalidRequest(
            "columns",
            f"columns must be a non-empty list of column names, or a preset: {presets}.",
        )
    for index, name in enumerate(value):
        if not isinstance(name, str) or name not in CATALOGUE:
            raise InvalidRequest(
                f"columns[{index}]",
                f"Unknown column {excerpt(name)!r}. See the column catalogue in docs/columns.md.",
            )
    if len(set(value)) != len(value):
        raise InvalidRequest("columns", "columns lists a column more than once.")
    return value


def _file_name(value: Any, now: datetime) -> str:
    if value is None:
        return default_file_name(now)
    if not isinstance(value, str) or not _SAFE_FILE_NAME.fullmatch(value):
        raise InvalidRequest(
            "fileName",
            "fileName must end in .csv, start with a letter or digit, and use only letters, "
            "digits, spaces, dots, dashes and underscores (at most 155 characters).",
        )
    return value


def _boolean(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequest(field, f"{field} must be true or false.")
    return value
