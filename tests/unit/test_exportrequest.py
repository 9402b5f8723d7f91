"""POST /api/exports bodies: defaults, and a 400 naming the field for anything wrong."""

from datetime import UTC, datetime

import orjson
import pytest

from userexport.columns import DEFAULT_COLUMN_NAMES
from userexport.exportrequest import InvalidRequest, parse_export_request
from userexport.request import ExportRequest

NOW = datetime(2026, 11, 27, 14, 5, 9, tzinfo=UTC)


def test_whitespace_alone_is_not_a_json_body():
    with pytest.raises(InvalidRequest) as refused:
        parse_export_request(b"\n", now=NOW)
    assert refused.value.field == "body"


def test_empty_body_means_all_users_and_the_25_columns():
    for body in (b"", b"{}", b" {} \n"):
        request = parse_export_request(body, now=NOW)
        assert request == ExportRequest(
            columns=DEFAULT_COLUMN_NAMES,
            filter=None,
            file_name="exportUsers_2026-11-27_14-05-09Z.csv",
            formula_guard=True,
        )
        assert ExportRequest.from_json(request.to_json()) == request


def test_columns_and_file_name_are_kept():
    request = parse_export_request(
        b'{"columns": ["objectId", "employeeId"], "fileName": "staff 2026.csv", '
        b'"formulaGuard": false}',
        now=NOW,
    )
    assert request.columns == ("objectId", "employeeId")
    assert request.file_name == "staff 2026.csv"
    assert request.errors_file_name == "staff 2026-errors.csv"
    assert request.formula_guard is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        (b"[1, 2]", "body"),
        (b'{"colums": []}', "colums"),
        (b'{"columns": "objectId"}', "columns"),
        (b'{"columns": []}', "columns"),
        (b'{"columns": ["objectId", "shoeSize"]}', "columns[1]"),
        (b'{"columns": ["objectId", "objectId"]}', "columns"),
        (b'{"fileName": "../../etc/passwd"}', "fileName"),
        (b'{"fileName": "report.exe"}', "fileName"),
        (b'{"fileName": "a\\"b.csv"}', "fileName"),
        (b'{"formulaGuard": "no"}', "formulaGuard"),
        (b'{"dryRun": "yes"}', "dryRun"),
        (b'{"dryRun": null}', "dryRun"),
        (b'{"filter": {"department": ""}}', "filter.department"),
        (b'{"filter": {"shoeSize": 42}}', "filter.shoeSize"),
        (b'{"filter": [1]}', "filter"),
        (b'{"columns": ["objectId", "manager"], "filter": {"domain": "contoso.com"}}', "columns"),
    ],
)
def test_bad_requests_name_the_field(body, field):
    with pytest.raises(InvalidRequest) as caught:
        parse_export_request(body, now=NOW)
    assert caught.value.field == field
    assert caught.value.detail


def test_filter_is_normalized():
    request = parse_export_request(
        b'{"filter": {"userType": "guest", "createdAfter": "2024-01-01"}}', now=NOW
    )
    assert request.filter == {"userType": "Guest", "createdAfter": "2024-01-01T00:00:00Z"}
    assert parse_export_request(b'{"filter": {}}', now=NOW).filter is None


def test_the_all_preset_with_an_advanced_filter_says_its_manager_column_is_why():
    body = {"columns": "all", "filter": {"domain": "contoso.com"}}
    with pytest.raises(InvalidRequest) as refused:
        parse_export_request(orjson.dumps(body), now=NOW)
    assert refused.value.field == "columns"
    assert "all preset's manager column" in refused.value.detail
    assert "preview preset" in refused.value.detail
