"""Who did what, and a series nobody can take over (issue 20), tried as a caller with a valid
key would, through the real stack: devhost enforcing function keys as the Functions host does.

- A series has one definition, fixed by its first run: a POST of another definition answers 409
  naming `series`, so `latest` keeps handing out the real file and retention keeps the real
  runs; `"redefine": true` changes it on purpose. The nightly timer's series is the timer's.
- Each job records its caller (a function key by its fingerprint, never its value; the timer),
  and one `audit` log line says who created, cancelled or was handed the links of an export.
- Idempotency keys belong to their caller.
- HTTP hygiene: 415, 413, cross-site 403, `Cache-Control: no-store` on every answer.
- The anonymous level behind App Service authentication that lets unauthenticated requests
  through: the app's own allow-list refuses them (401).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from devtools.stack import EasyAuth, LocalStack

from .conftest import finished, run_export, running_stack

USERS = 60
FUNCTION_KEY = "fk-" + secrets.token_urlsafe(24)  # one script's key
MASTER_KEY = "mk-" + secrets.token_urlsafe(24)  # another caller: the master key
KEEP = 3  # USEREXPORT_SERIES_KEEP
SERIES = "hr-feed"
REAL = {"series": SERIES, "columns": ["userPrincipalName", "objectId", "accountEnabled"]}
# What the security review sent: a one-column export of nobody, into the HR feed's series.
TAKEOVER = {
    "series": SERIES,
    "columns": ["userPrincipalName"],
    "filter": {"userPrincipalNamePrefix": "zzzz"},
}


def fingerprint(key: str) -> str:
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:12]


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with running_stack(
        tmp_path_factory.mktemp("who"),
        users=USERS,
        seed=20,
        function_key=FUNCTION_KEY,
        master_key=MASTER_KEY,
        app_env={"USEREXPORT_SERIES_KEEP": str(KEEP), "USEREXPORT_SMALL_TENANT_USERS": "1000"},
    ) as stack:
        yield stack


def client_with(stack: LocalStack, key: str) -> httpx.Client:
    return httpx.Client(base_url=stack.api_url, timeout=60, headers={"x-functions-key": key})


@pytest.fixture(scope="module")
def script(keyed: LocalStack) -> Iterator[httpx.Client]:
    """A caller with the function key in its header."""
    with client_with(keyed, FUNCTION_KEY) as client:
        yield client


@pytest.fixture(scope="module")
def other(keyed: LocalStack) -> Iterator[httpx.Client]:
    """Another caller: the master key."""
    with client_with(keyed, MASTER_KEY) as client:
        yield client


def audit_lines(stack: LocalStack) -> list[dict[str, Any]]:
    lines = []
    for log in stack.devhost_logs:
        for line in log.read_text(errors="replace").splitlines():
            _, found, entry = line.partition(" audit ")
            if found:
                lines.append(orjson.loads(entry))
    return lines


def fire_nightly(stack: LocalStack) -> None:
    fired = httpx.post(
        f"{stack.api_url}/admin/functions/nightly_export",
        json={},
        headers={"x-functions-key": MASTER_KEY},
        timeout=60,
    )
    assert fired.status_code in (200, 202), fired.text


def test_a_series_keeps_its_definition_and_latest_its_file(script, other):
    real = run_export(script, REAL)
    taken = other.post("/api/exports", json=TAKEOVER)
    assert taken.status_code == 409, taken.text
    assert taken.headers["Content-Type"].startswith("application/problem+json")
    problem = taken.json()
    assert problem["field"] == "series"
    assert "columns" in problem["detail"] and "filter" in problem["detail"]
    assert "redefine" in problem["detail"], "it says how to change it on purpose"
    # Same columns, another mode, formula guard or snapshot: each a different definition.
    for changed in (
        {"formulaGuard": False},
        {"mode": "delta"},
        {"mode": "delta", "snapshot": True},
    ):
        refused = other.post("/api/exports", json={**REAL, **changed})
        assert refused.status_code == 409, (changed, refused.text)
        assert next(iter(changed)) in refused.json()["detail"]
    latest = script.get("/api/exports/latest", params={"series": SERIES})
    assert latest.status_code == 200 and latest.json()["id"] == real["id"]
    # The series' own definition goes on, from any caller; the same columns in JSON order too.
    again = run_export(other, dict(reversed(REAL.items())))
    assert script.get("/api/exports/latest", params={"series": SERIES}).json()["id"] == again["id"]


def test_redefining_a_series_is_on_purpose_and_keeps_the_old_runs_apart(script):
    name = "redefined"
    old = run_export(script, {**REAL, "series": name})
    redefined = run_export(script, {**TAKEOVER, "series": name, "redefine": True})
    assert redefined["status"] == "succeeded" and redefined["redefine"] is True
    latest = script.get("/api/exports/latest", params={"series": name}).json()
    assert latest["id"] == redefined["id"], "latest follows the new definition"
    # The old definition is now the other one: asking for it is a 409 until redefined back.
    assert script.post("/api/exports", json={**REAL, "series": name}).status_code == 409
    assert script.get(f"/api/exports/{old['id']}").status_code == 200
    no_series = script.post("/api/exports", json={"redefine": True})
    assert no_series.status_code == 400 and no_series.json()["field"] == "redefine"


def test_the_nightly_series_is_written_by_the_timer_only(keyed, script, other):
    for client in (script, other):
        refused = client.post("/api/exports", json={"series": "nightly"})
        assert refused.status_code == 409, refused.text
        assert refused.json()["field"] == "series"
        redefine = client.post("/api/exports", json={"series": "nightly", "redefine": True})
        assert redefine.status_code == 409, redefine.text
    fire_nightly(keyed)
    deadline = time.monotonic() + 120
    while (
        latest := script.get("/api/exports/latest", params={"series": "nightly"})
    ).status_code != 200:
        assert time.monotonic() < deadline, latest.text
        time.sleep(1)
    run = latest.json()
    assert run["trigger"] == "timer" and run["caller"] == {
        "kind": "timer",
        "id": None,
        "name": None,
    }


def test_retention_keeps_the_real_runs_under_twenty_foreign_ones(keyed, script, other):
    name = "payroll"
    real = [run_export(script, {**REAL, "series": name})["id"] for _ in range(KEEP)]
    answers = [
        other.post("/api/exports", json={**TAKEOVER, "series": name}).status_code for _ in range(20)
    ]
    assert answers == [409] * 20
    fire_nightly(keyed)  # the timer prunes every series
    time.sleep(2)
    assert [script.get(f"/api/exports/{job_id}").status_code for job_id in real] == [200] * KEEP
    assert script.get("/api/exports/latest", params={"series": name}).json()["id"] == real[-1]


def test_each_job_says_who_started_and_cancelled_it_and_the_log_who_got_the_links(
    keyed, script, other
):
    started = script.post("/api/exports", json={"columns": ["objectId"]})
    job = finished(script, started)
    assert job["caller"] == {"kind": "functionKey", "id": fingerprint(FUNCTION_KEY), "name": None}
    handed = other.get(f"/api/exports/{job['id']}")
    assert handed.status_code == 200 and "downloadUrl" in handed.json()
    # A cancel by the other caller: the job says who.
    for _ in range(5):  # an export of 60 users may finish before the DELETE: try another
        slow = other.post("/api/exports", json={"columns": ["objectId"]})
        cancelled = other.delete(slow.headers["Location"])
        if cancelled.status_code != 409:
            break
    assert cancelled.status_code in (200, 202), cancelled.text
    body = script.get(f"/api/exports/{slow.json()['id']}").json()
    assert body["cancelledBy"] == {
        "kind": "functionKey",
        "id": fingerprint(MASTER_KEY),
        "name": None,
    }
    lines = audit_lines(keyed)
    mine = [line for line in lines if line["jobId"] == job["id"]]
    assert {
        "action": "create",
        "jobId": job["id"],
        "caller": {"kind": "functionKey", "id": fingerprint(FUNCTION_KEY)},
    }.items() <= mine[0].items()
    links = [line for line in mine if line["action"] == "downloadLinks"]
    assert {line["caller"]["id"] for line in links} == {
        fingerprint(FUNCTION_KEY),
        fingerprint(MASTER_KEY),
    }, "the poll that finished and the other caller's GET"
    assert links[-1]["files"]
    assert any(
        line["action"] == "cancel" and line["caller"]["id"] == fingerprint(MASTER_KEY)
        for line in lines
        if line["jobId"] == slow.json()["id"]
    )
    logs = "".join(log.read_text(errors="replace") for log in keyed.devhost_logs)
    assert FUNCTION_KEY not in logs and MASTER_KEY not in logs, "keys never reach a log"


def test_an_idempotency_key_belongs_to_its_caller(script, other):
    key = {"Idempotency-Key": "nightly-hr-" + secrets.token_hex(4)}
    body = {"columns": ["objectId"]}
    first = script.post("/api/exports", json=body, headers=key)
    assert first.status_code == 202, first.text
    # Another caller's key of the same name is its own: another export, not a 422 or a replay.
    theirs = other.post("/api/exports", json={"columns": ["displayName"]}, headers=key)
    assert theirs.status_code == 202, theirs.text
    assert theirs.json()["id"] != first.json()["id"]
    assert "Idempotent-Replayed" not in theirs.headers
    again = script.post("/api/exports", json=body, headers=key)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["id"] == first.json()["id"]


def test_http_hygiene(script):
    as_text = script.post(
        "/api/exports", content=b'{"columns": ["objectId"]}', headers={"Content-Type": "text/plain"}
    )
    assert as_text.status_code == 415 and as_text.json()["field"] == "Content-Type"
    form = script.post("/api/exports", data={"columns": "objectId"})
    assert form.status_code == 415
    huge = orjson.dumps({"columns": ["objectId"], "padding": "x" * (64 * 1024)})
    too_large = script.post(
        "/api/exports", content=huge, headers={"Content-Type": "application/json"}
    )
    assert too_large.status_code == 413 and too_large.json()["field"] == "body"
    cross = script.get("/api/exports", headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403 and cross.json()["field"] == "Sec-Fetch-Site"
    # The page's own requests (same-origin) and non-browsers (no header) pass, and so does
    # opening the page from a link on another site (a navigation: it reads nothing for it).
    assert script.get("/api/exports", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200
    opened = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    assert script.get("/api/ui", headers=opened).status_code == 200
    assert script.get("/api/exports", headers=opened).status_code == 403, "the API is no page"
    fetched = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"}
    assert script.get("/api/ui", headers=fetched).status_code == 403
    # An empty POST means the defaults and needs no Content-Type.
    empty = script.post("/api/exports", content=b"")
    assert empty.status_code == 202, empty.text
    answers = [
        as_text,
        too_large,
        cross,
        empty,
        script.get(empty.headers["Location"]),
        script.get("/api/exports"),
        script.get("/api/exports/nope"),
        script.get("/api/exports/latest", params={"series": "none-such"}),
        script.post("/api/exports", json={"columns": ["nope"]}),
        script.delete(empty.headers["Location"]),
        script.get("/api/columns"),
        script.get("/api/openapi.json"),
    ]
    for answer in answers:
        assert answer.headers.get("Cache-Control") == "no-store", (
            answer.request.url,
            answer.status_code,
        )


# --- the anonymous level ------------------------------------------------------------------


@pytest.fixture(scope="module")
def optional_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """App Service authentication in front, but letting unauthenticated requests through
    (unauthenticatedClientAction AllowAnonymous): WEBSITE_AUTH_ENABLED is True all the same."""
    with running_stack(
        tmp_path_factory.mktemp("optional-auth"),
        users=5,
        seed=3,
        identities=("intruder",),
        easy_auth=EasyAuth(allowed_identities=("logicapp",), allow_anonymous=True),
        app_env={"USEREXPORT_HTTP_AUTH_LEVEL": "anonymous"},
    ) as stack:
        yield stack


def token(stack: LocalStack, name: str) -> dict[str, str]:
    answer = httpx.get(
        stack.env["IDENTITY_ENDPOINT"],
        params={
            "api-version": "2019-08-01",
            "resource": stack.audience,
            "client_id": stack.identity(name)["clientId"],
        },
        headers={"X-IDENTITY-HEADER": stack.env["IDENTITY_HEADER"]},
    )
    answer.raise_for_status()
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def test_the_anonymous_level_lets_in_only_the_apps_allowed_callers(optional_auth):
    url = f"{optional_auth.api_url}/api/exports"
    logicapp = optional_auth.identity("logicapp")
    nobody = httpx.get(url)
    assert nobody.status_code == 401, nobody.text
    assert "identity" in nobody.json()["detail"]
    # Headers a caller sets are App Service's to drop: they prove nothing.
    forged = httpx.get(url, headers={"X-MS-CLIENT-PRINCIPAL-ID": logicapp["objectId"]})
    assert forged.status_code == 401
    allowed = httpx.post(
        url, json={"columns": ["objectId"]}, headers=token(optional_auth, "logicapp")
    )
    assert allowed.status_code == 202, allowed.text
    assert allowed.json().get("caller", {}).get("id") in (None, logicapp["objectId"])
    job = httpx.get(allowed.headers["Location"], headers=token(optional_auth, "logicapp")).json()
    assert job["caller"]["kind"] == "principal" and job["caller"]["id"] == logicapp["objectId"]
    assert job["caller"]["name"] == logicapp["clientId"], "App Service's name header for an app"
