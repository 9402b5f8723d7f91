"""userexport/openapi.json is a valid OpenAPI description and says what the code does.

The patterns are checked both ways where they can be: every string a pattern allows is one the
code accepts (so a schema-valid request is never refused), and what the code refuses the
pattern refuses too (so the description promises no more than the code keeps).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import azure.functions as func
import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate

from userexport import idempotency
from userexport.columns import CATALOGUE
from userexport.exportrequest import (
    _SAFE_FILE_NAME,
    _SERIES,
    FIELDS,
    InvalidRequest,
    parse_export_request,
)
from userexport.filters import KEYS, InvalidFilter, parse_filter
from userexport.functions import http_api
from userexport.jobs import Status, new_job_id

SPEC = json.loads(Path(__file__).parents[2].joinpath("userexport", "openapi.json").read_text())
SCHEMAS = SPEC["components"]["schemas"]
PARAMETERS = SPEC["components"]["parameters"]
FILTER = SCHEMAS["Filter"]["properties"]
NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
EXAMPLES = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def pattern(schema: dict) -> re.Pattern[str]:
    """The schema's pattern, read as JSON Schema reads it (ECMA 262: `$` is the end of the
    string, never before a last line break as in Python)."""
    return re.compile(re.sub(r"\$$", r"\\Z", schema["pattern"]))


def allowed(schema: dict) -> st.SearchStrategy[str]:
    """Strings the schema's pattern (and length limits) allow."""
    strings = st.from_regex(pattern(schema), fullmatch=True)
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    return strings.filter(lambda s: low <= len(s) and (high is None or len(s) <= high))


def matches(schema: dict, value: str) -> bool:
    low, high = schema.get("minLength", 0), schema.get("maxLength", len(value))
    return pattern(schema).search(value) is not None and low <= len(value) <= high


def test_the_description_is_valid_openapi():
    validate(SPEC)


def test_the_app_serves_this_file():
    assert http_api.OPENAPI.resolve() == Path(__file__).parents[2] / "userexport" / "openapi.json"


def test_every_route_of_the_app_is_described_with_its_methods():
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    app.register_functions(http_api.bp)
    routes: dict[str, set[str]] = {}
    for function in app.get_functions():
        trigger = function.get_trigger()
        methods = {str(getattr(m, "value", m)).lower() for m in trigger.methods}
        routes.setdefault(f"/api/{trigger.route}", set()).update(methods)
    described = {
        path: {m for m in item if m in ("get", "post", "put", "patch", "delete")}
        for path, item in SPEC["paths"].items()
    }
    assert described == routes


def test_every_operation_takes_the_function_key_as_code():
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            names = [
                p.get("$ref") for p in item.get("parameters", []) + operation.get("parameters", [])
            ]
            assert "#/components/parameters/Code" in names, (method, path)
            assert {"401", "403"} <= set(operation["responses"]), (method, path)


def test_request_fields_match_the_code():
    assert set(SCHEMAS["ExportRequest"]["properties"]) == set(FIELDS)
    # A job's description carries its request's fields (ExportRequest.to_json).
    assert set(FIELDS) <= set(SCHEMAS["Export"]["properties"])
    assert set(FILTER) == set(KEYS)


def test_statuses_match_the_code():
    assert SCHEMAS["Export"]["properties"]["status"]["enum"] == [s.value for s in Status]


def test_presets_are_the_codes_wherever_they_are_listed():
    from userexport.columns import PRESETS

    listed = SPEC["paths"]["/api/columns"]["get"]["responses"]["200"]["content"]
    schema = listed["application/json"]["schema"]["properties"]
    assert schema["value"]["items"]["properties"]["presets"]["items"]["enum"] == list(PRESETS)
    assert list(schema["presets"]["properties"]) == list(PRESETS)
    assert schema["presets"]["required"] == list(PRESETS)
    preset = SCHEMAS["ExportRequest"]["properties"]["columns"]["oneOf"][1]
    assert preset["enum"] == list(PRESETS)


def test_the_estimate_describes_the_authentication_rate_and_the_report():
    estimate = SCHEMAS["Estimate"]["properties"]
    assert {"reportRequests", "authenticationRate", "authenticationRateSource"} <= set(estimate)
    assert estimate["authenticationRateSource"]["enum"] == ["documented", "learnt", "probed"]
    assert estimate["bindingLimit"]["enum"] == ["work", "graphBudget", "authenticationBudget"]
    assert SCHEMAS["Export"]["properties"]["registrationReportTime"]["format"] == "date-time"


def test_column_names_are_the_catalogue_in_order():
    assert SCHEMAS["ColumnName"]["enum"] == list(CATALOGUE)
    listed = SPEC["paths"]["/api/columns"]["get"]["responses"]["200"]["content"]
    value = listed["application/json"]["schema"]["properties"]["value"]
    assert value["minItems"] == value["maxItems"] == len(CATALOGUE), "GET /api/columns lists all"


def test_file_name_and_idempotency_key_patterns_are_the_codes():
    file_name = SCHEMAS["ExportRequest"]["properties"]["fileName"]["pattern"]
    assert file_name == f"^{_SAFE_FILE_NAME.pattern}$"
    key = PARAMETERS["IdempotencyKey"]["schema"]["pattern"]
    assert key == f"^{idempotency._KEY.pattern}$"


def test_series_patterns_are_the_codes():
    series = f"^{_SERIES.pattern}$"
    assert SCHEMAS["ExportRequest"]["properties"]["series"]["pattern"] == series
    assert SCHEMAS["Export"]["properties"]["series"]["pattern"] == series
    latest = SPEC["paths"]["/api/exports/latest"]["get"]["parameters"]
    assert next(p for p in latest if p.get("name") == "series")["schema"]["pattern"] == series


@EXAMPLES
@given(st.data())
def test_every_series_the_pattern_allows_is_accepted(data):
    name = data.draw(allowed(SCHEMAS["ExportRequest"]["properties"]["series"]))
    assert parse_export_request(json.dumps({"series": name}).encode(), now=NOW).series == name


@pytest.mark.parametrize("name", ["", "-a", "_a", "a" * 64, "a b", "a.b", "é", "a\n", "a/b"])
def test_what_the_code_refuses_the_series_pattern_refuses(name):
    assert not matches(SCHEMAS["ExportRequest"]["properties"]["series"], name)
    with pytest.raises(InvalidRequest) as raised:
        parse_export_request(json.dumps({"series": name}).encode(), now=NOW)
    assert raised.value.field == "series"


def test_latest_is_its_own_path_declared_before_the_templated_one():
    """`/api/exports/latest` is a concrete path (OpenAPI matches it before
    `/api/exports/{id}`); listed first too, for tools that match in order."""
    order = list(SPEC["paths"])
    assert order.index("/api/exports/latest") < order.index("/api/exports/{id}")
    operation = SPEC["paths"]["/api/exports/latest"]["get"]
    series = next(p for p in operation["parameters"] if p.get("name") == "series")
    assert series["in"] == "query" and series["required"] is True
    ok = operation["responses"]["200"]
    assert ok["headers"]["Content-Location"]["required"] is True
    assert ok["content"]["application/json"]["schema"]["allOf"][0] == {
        "$ref": "#/components/schemas/Export"
    }
    assert {"400", "404"} <= set(operation["responses"])


@given(st.datetimes(datetime(2000, 1, 1), datetime(2200, 1, 1), timezones=st.just(UTC)))
def test_job_ids_match_their_pattern(moment):
    assert pattern(SCHEMAS["ExportIdValue"]).fullmatch(new_job_id(moment))


# ------------------------------------------------------------------ filter.createdAfter/Before
@EXAMPLES
@given(st.data())
def test_every_date_the_pattern_allows_is_accepted(data):
    for key in ("createdAfter", "createdBefore"):
        value = data.draw(allowed(FILTER[key]), label=key)
        normalized = parse_filter({key: value})[key]
        # ...and what the export records matches the pattern again (Export.filter).
        assert matches(FILTER[key], normalized)


@pytest.mark.parametrize(
    "value",
    [
        "2024-05-01",
        "2024-02-29",
        "2000-02-29",
        "2024-05-01T13:00Z",
        "2024-05-01t13:00:00z",
        "2024-05-01 13:00:00.123456789+02:00",
        "2024-05-01T13:00:00,5-0530",
        "0001-01-01",
        "9999-12-31T23:59:59Z",
    ],
)
def test_the_date_pattern_allows_the_usual_forms(value):
    assert matches(FILTER["createdAfter"], value)
    parse_filter({"createdAfter": value})


@pytest.mark.parametrize(
    "value",
    [
        "2023-02-29",
        "1900-02-29",
        "2024-04-31",
        "2024-13-01",
        "0000-01-01",
        "2024-05-01T13:00",  # no offset: its time zone would be a guess
        "2024-05-01T24:00Z",
        "2024-05-01T13:60Z",
        "2024-05-01T13:00:60Z",
        "2024-05-01T13:00:00.1234567890Z",
        "2024-05-01T13:00+24:00",
        "9999-12-31T23:59:59.5Z",  # rounds up past the year 9999
        "0001-01-01T00:00:00+01:00",  # before the year 1 in UTC
        "20240501",
        "2024-05-01\n",
        "\u0662\u0660\u0662\u0664-\u0660\u0665-\u0660\u0661",  # Arabic-Indic digits
    ],
)
def test_what_the_code_refuses_the_date_pattern_refuses(value):
    assert not matches(FILTER["createdAfter"], value)
    with pytest.raises(InvalidFilter):
        parse_filter({"createdAfter": value})


def test_the_date_pattern_leaves_out_only_the_edge_years_date_times():
    # Documented in the description: accepted, but outside the pattern.
    for value in ("9999-12-31T23:00:00+01:00", "0001-01-01T12:00:00.5Z"):
        parse_filter({"createdAfter": value})
        assert not matches(FILTER["createdAfter"], value)


# ------------------------------------------------------------------ text filters, domain
TEXT_KEYS = ("department", "companyName", "userPrincipalNamePrefix", "displayNamePrefix")


@EXAMPLES
@given(st.data())
def test_every_text_the_patterns_allow_is_accepted(data):
    for key in TEXT_KEYS:
        value = data.draw(allowed(FILTER[key]), label=key)
        assert parse_filter({key: value}) == {key: value}


@pytest.mark.parametrize(
    "value", ["", " ", "\u3000\u2028", "a\tb", "a\nb", "x\x7f", "x\x85", "a" * 257]
)
def test_what_the_code_refuses_the_text_patterns_refuse(value):
    for key in TEXT_KEYS:
        assert not matches(FILTER[key], value)
        with pytest.raises(InvalidFilter):
            parse_filter({key: value})


@EXAMPLES
@given(st.data())
def test_every_domain_the_pattern_allows_is_accepted(data):
    value = data.draw(allowed(FILTER["domain"]))
    assert parse_filter({"domain": value}) == {"domain": value.lower()}


@pytest.mark.parametrize(
    "value",
    [
        "contoso",
        "-a.com",
        "a-.com",
        "a..com",
        "a.com.",
        "1.2.3.4",
        "a.123",
        "@a.com",
        "bücher.de",
        "a." + "b" * 64,
        ("a" * 63 + ".") * 4 + "com",
    ],
)
def test_what_the_code_refuses_the_domain_pattern_refuses(value):
    assert not matches(FILTER["domain"], value)
    with pytest.raises(InvalidFilter):
        parse_filter({"domain": value})


# ------------------------------------------------------------------ the request as a whole
GROUP = "0f3b5d4e-1a2b-4c3d-8e9f-001122334455"


@pytest.mark.parametrize(
    "body",
    [
        {"columns": ["manager"], "filter": {"domain": "contoso.com"}},
        {"columns": ["manager"], "filter": {"companyName": "Contoso"}},
        {"columns": "all", "filter": {"domain": "contoso.com"}},
        {"columns": ["manager"], "filter": {"group": GROUP, "department": "Sales"}},
        {"columns": ["manager"], "filter": {"administrativeUnit": GROUP, "userType": "Guest"}},
        {"columns": ["manager"], "filter": {"group": GROUP}},
        {"columns": ["manager"], "filter": {"department": "Sales"}},
        {"columns": "all", "filter": {"group": GROUP}},
        {"columns": "preview", "filter": {"domain": "contoso.com"}},
        {"columns": ["displayName"], "filter": {"group": GROUP, "administrativeUnit": GROUP}},
    ],
)
def test_the_request_schema_refuses_exactly_what_the_code_refuses(body):
    """The manager column with an advanced query, and a group with an administrative unit."""
    assert _schema_allows(body) == _code_accepts(body)


DELTA = {"series": "s", "mode": "delta"}


@pytest.mark.parametrize(
    "body",
    [
        DELTA,
        {**DELTA, "snapshot": True},
        {**DELTA, "snapshot": False, "dryRun": True},
        {**DELTA, "columns": None, "filter": None, "series": "a-b_C9"},
        {**DELTA, "filter": {}},
        {**DELTA, "columns": "adminCenter"},
        {**DELTA, "columns": ["objectId"]},
        {**DELTA, "columns": ["displayName", "objectId", "assignedLicenses"]},
        {"mode": "full"},
        {"mode": "full", "series": "s"},
        {"mode": "full", "snapshot": False},
        {"series": "s", "snapshot": False},
        {"series": None},
        # refused
        {"mode": "delta"},
        {"mode": "delta", "series": None},
        {"mode": "delta", "snapshot": True},
        {"snapshot": True},
        {"series": "s", "snapshot": True},
        {"mode": "full", "series": "s", "snapshot": True},
        {**DELTA, "filter": {"userType": "Guest"}},
        {**DELTA, "filter": {"group": GROUP}},
        {**DELTA, "columns": "preview"},
        {**DELTA, "columns": "all"},
        {**DELTA, "columns": ["displayName"]},
        {**DELTA, "columns": ["objectId", "manager"]},
        {**DELTA, "columns": ["objectId", "lastSignInDateTime"]},
        {**DELTA, "columns": ["objectId", "lastNonInteractiveSignInDateTime"]},
        {**DELTA, "columns": ["objectId", "lastSuccessfulSignInDateTime"]},
        {**DELTA, "columns": ["daysSinceLastSignIn", "objectId"]},
        {**DELTA, "columns": ["objectId", "signInActivity"]},
        {"mode": "Delta", "series": "s"},
        {"mode": None},
        {"snapshot": None},
        {"snapshot": "true", **DELTA},
        # the registration report's columns and fewerLookups: full exports only
        {"columns": "mfa"},
        {"columns": "mfa", "filter": {"domain": "contoso.com"}},
        {"columns": ["objectId", "isMfaRegistered"], "mode": "full", "series": "s"},
        {"fewerLookups": True},
        {"fewerLookups": False, **DELTA},
        {"fewerLookups": True, "mode": "full", "series": "s"},
        {**DELTA, "columns": "mfa"},
        {**DELTA, "columns": ["objectId", "isMfaRegistered"]},
        {**DELTA, "columns": ["objectId", "lastUpdatedDateTime"]},
        {**DELTA, "columns": ["methodsRegistered", "objectId"]},
        {**DELTA, "fewerLookups": True},
        {"fewerLookups": "true"},
        {"fewerLookups": None},
    ],
)
def test_the_request_schema_states_the_delta_rules_as_the_code_checks_them(body):
    """series, mode and snapshot: delta needs a series, no filter, objectId and no column
    /users/delta cannot give (nor the registration report's); snapshot only with delta;
    fewerLookups only without it."""
    assert _schema_allows(body) == _code_accepts(body), body


def _schema_allows(body: dict) -> bool:
    schema = {"$ref": "#/components/schemas/ExportRequest", "components": SPEC["components"]}
    return jsonschema.Draft4Validator(_nullable_as_draft4(schema)).is_valid(body)


def _code_accepts(body: dict) -> bool:
    try:
        parse_export_request(json.dumps(body).encode(), now=NOW)
    except InvalidRequest:
        return False
    return True


def _nullable_as_draft4(node):
    """OpenAPI 3.0's `nullable: true` as JSON Schema draft 4 sees it: null is allowed too."""
    if isinstance(node, list):
        return [_nullable_as_draft4(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _nullable_as_draft4(v) for k, v in node.items() if k != "example"}
    if node.pop("nullable", False):
        return {"anyOf": [node, {"type": "null"}]}
    return node


def test_nullable_request_fields_are_the_ones_that_take_null_for_their_default():
    properties = SCHEMAS["ExportRequest"]["properties"]
    for name in FIELDS:
        body = json.dumps({name: None}).encode()
        if properties[name].get("nullable"):
            parse_export_request(body, now=NOW)
        else:
            with pytest.raises(InvalidRequest):
                parse_export_request(body, now=NOW)
