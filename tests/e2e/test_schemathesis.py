"""A seeded schemathesis run against devhost: the served description (GET /api/openapi.json)
against the running app, on the real local stack (Azurite, the simulated tenant, devhost).

Every operation gets schema-valid requests (positive) and schema-breaking ones (negative). The
checks: no server error, every status code, content type, header and body as described, no
schema-valid request refused and no schema-breaking one accepted. Requests that start exports do
start them (a 200-user tenant, so they finish in moments, and later status, list and cancel
requests meet every state).

A few things a schema cannot say are set right in each positive request before it is sent, so
that "schema-valid" means what the description's words say:
- `cursor` is opaque (only a nextLink's counts): a generated one is replaced by a real one;
- an export id is one POST answered: two thirds of the generated ids are replaced by real ones,
  of finished exports or of those the cases started (the others stay, and must answer 404);
- an Idempotency-Key used again with another body is a 422 by design: each key gets the body's
  fingerprint appended, so a key repeats only with its own body; and every POST with a key is
  sent twice, the second time a replay that must answer the same export;
- createdAfter later than createdBefore is a 400 by design: createdBefore is dropped then.
"""

from __future__ import annotations

import collections
import contextlib
import json
from collections.abc import Iterator, MutableMapping
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import schemathesis
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from devtools.stack import LocalStack
from tests.e2e.conftest import running_stack, wait_for_export
from userexport import idempotency
from userexport.filters import InvalidFilter, parse_filter
from userexport.functions.http_api import OPENAPI

USERS = 200
SEED = 11
KEY = "schemathesis-function-key"  # devhost enforces it, as the Functions host does

CHECKS: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    positive_data_acceptance,
    negative_data_rejection,
]

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "request-timeout": 30,
        "headers": {"x-functions-key": KEY},
        "generation": {
            "mode": "all",
            "max-examples": 30,
            "deterministic": True,
            "database": "none",
        },
        "phases": {"stateful": {"enabled": False}},
        "operations": [
            {
                "include-path": "/api/exports",
                "include-method": "POST",
                "generation": {"max-examples": 100},
            }
        ],
    }
)
# The file the app serves; `served` below checks that GET /api/openapi.json serves exactly it.
# (Loaded here, not from the running app through schemathesis.pytest.from_fixture: that lazy
# loader sets Function._nodeid, which pytest 9.2 no longer has.)
schema = schemathesis.openapi.from_path(OPENAPI, config=CONFIG)

CASES: collections.Counter[str] = collections.Counter()
STATUSES: collections.Counter[str] = collections.Counter()  # "POST /api/exports 202": n
FINISHED: list[str] = []  # two exports that finished before the cases start
JOB_IDS: list[str] = []  # the exports the cases started
CURSORS: list[str] = []


@pytest.fixture(scope="module")
def oas_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with running_stack(
        tmp_path_factory.mktemp("oas-stack"),
        users=USERS,
        seed=SEED,
        app_env={"USEREXPORT_PARTITIONS": "2"},
        function_key=KEY,
    ) as running:
        yield running


@pytest.fixture(scope="module", autouse=True)
def served(oas_stack: LocalStack, request: pytest.FixtureRequest) -> Iterator[None]:
    """Checks that the running app serves the description the cases come from, and runs two
    exports (for a cursor, and for finished ones); at the end, says how many cases ran and what
    they were answered."""
    with httpx.Client(
        base_url=oas_stack.api_url, headers={"x-functions-key": KEY}, timeout=60
    ) as client:
        assert httpx.get(f"{oas_stack.api_url}/api/openapi.json").status_code == 401
        answer = client.get("/api/openapi.json")
        assert answer.status_code == 200
        assert answer.headers["Content-Type"].startswith("application/json")
        assert answer.json() == json.loads(OPENAPI.read_text())
        for _ in range(2):
            started = client.post("/api/exports", json={"columns": ["objectId"]})
            assert started.status_code == 202, started.text
            FINISHED.append(started.json()["id"])
        for job_id in FINISHED:
            assert wait_for_export(client, f"/api/exports/{job_id}")[-1].status_code == 200
        page = client.get("/api/exports", params={"pageSize": 1})
        assert page.status_code == 200, page.text
        CURSORS.extend(parse_qs(urlsplit(page.json()["nextLink"]).query)["cursor"])
    yield
    lines = [
        f"schemathesis {schemathesis.__version__}, seed {SEED}: {CASES.total()} cases, "
        f"{STATUSES.total()} requests (a replay is a second request)"
    ]
    for label, count in CASES.items():
        answers = [
            (s.rsplit(" ", 1)[1], n) for s, n in STATUSES.items() if s.startswith(label + " ")
        ]
        statuses = ", ".join(f"{status} x{n}" for status, n in sorted(answers))
        lines.append(f"  {label}: {count} cases, answered {statuses}")
    # Shown whether or not output is captured: the figures go into closing notes.
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print("\n" + "\n".join(lines))


def _positive(case: schemathesis.Case) -> bool:
    return case.meta is None or case.meta.generation.mode.is_positive


def _normalized(key: str, value: object) -> object:
    try:
        return (parse_filter({key: value}) or {}).get(key)
    except InvalidFilter:
        return None  # not this helper's business: the request goes as it is


def _as_described(case: schemathesis.Case) -> None:
    """The rules the schema cannot state (see the module's docstring)."""
    if not _positive(case):
        return
    query = case.query if isinstance(case.query, MutableMapping) else {}
    if "cursor" in query:
        query["cursor"] = CURSORS[len(str(query["cursor"])) % len(CURSORS)]
    path = case.path_parameters if isinstance(case.path_parameters, MutableMapping) else {}
    given = path.get("id")
    if isinstance(given, str):
        pick = sum(map(ord, given))
        if pick % 3 == 1:
            path["id"] = FINISHED[pick % len(FINISHED)]
        elif pick % 3 == 2 and JOB_IDS:
            path["id"] = JOB_IDS[pick % len(JOB_IDS)]
    headers = case.headers if isinstance(case.headers, MutableMapping) else {}
    key = headers.get(idempotency.HEADER)
    if isinstance(key, str) and idempotency._KEY.fullmatch(key):
        body = case.body if isinstance(case.body, dict) else {}
        headers[idempotency.HEADER] = f"{key[:200]}~{idempotency.fingerprint(body)[:16]}"
    if isinstance(case.body, dict) and isinstance(case.body.get("filter"), dict):
        found = case.body["filter"]
        after = _normalized("createdAfter", found.get("createdAfter"))
        before = _normalized("createdBefore", found.get("createdBefore"))
        if isinstance(after, str) and isinstance(before, str) and after > before:
            del found["createdBefore"]


def _call(case: schemathesis.Case, api_url: str) -> schemathesis.Response:
    response = case.call_and_validate(base_url=api_url, checks=CHECKS)
    STATUSES[f"{case.operation.label} {response.status_code}"] += 1
    return response


@schema.parametrize()
def test_the_api_answers_as_its_description_says(case: schemathesis.Case, oas_stack: LocalStack):
    _as_described(case)
    CASES[case.operation.label] += 1
    response = _call(case, oas_stack.api_url)
    if case.operation.label == "POST /api/exports" and response.status_code == 202:
        first = response.json()["id"]
        JOB_IDS.append(first)
        if _positive(case) and idempotency.HEADER in (case.headers or {}):
            replay = _call(case, oas_stack.api_url)
            assert replay.status_code in (200, 202)
            assert replay.headers.get("idempotent-replayed") == ["true"]
            assert replay.json()["id"] == first
