"""One link that stays the latest: GET /api/exports/latest/{file}?series=NAME answers 302 to a
fresh read-only SAS URL of that file of the series' newest export, as Excel's "From Web",
Power BI and `curl -L` follow it, with the function key in `code` (the Functions host's
function level, as devhost enforces it); after the next run of the series, the same link
gives the newer file."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devtools.stack import LocalStack

from .conftest import running_stack, wait_for_export

KEY = "latest-link-function-key"
SERIES = "people"


@pytest.fixture(scope="module")
def keyed_stack(tmp_path_factory) -> Iterator[LocalStack]:
    with running_stack(
        tmp_path_factory.mktemp("latest-link"), users=60, seed=5, function_key=KEY
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def client(keyed_stack: LocalStack) -> Iterator[httpx.Client]:
    """A client as a script's: the key in the query, trusting the stack's CA for the SAS URL,
    following no redirect unless asked."""
    trust = ssl.create_default_context(cafile=keyed_stack.env["SSL_CERT_FILE"])
    with httpx.Client(
        base_url=keyed_stack.api_url, params={"code": KEY}, timeout=60, verify=trust
    ) as c:
        yield c


def fetch(stack: LocalStack, url: str) -> bytes:
    """A SAS URL as a browser would fetch it: no key, nothing but the URL."""
    trust = ssl.create_default_context(cafile=stack.env["SSL_CERT_FILE"])
    answer = httpx.get(url, verify=trust, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.content


def run(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    started = client.post("/api/exports", json=body)
    assert started.status_code == 202, started.text
    done = wait_for_export(client, started.headers["Location"], timeout=180)[-1]
    assert done.status_code == 200, done.text
    return done.json()


def test_the_latest_link_redirects_to_the_newest_runs_files(keyed_stack, client):
    body = {"series": SERIES, "columns": ["objectId", "userPrincipalName", "displayName"]}
    missing = client.get("/api/exports/latest/users.csv", params={"series": SERIES})
    assert missing.status_code == 404 and missing.json()["field"] == "series"
    first = run(client, body)
    assert first["status"] == "succeeded", first
    link = client.get("/api/exports/latest/users.csv", params={"series": SERIES})
    assert link.status_code == 302, link.text
    assert link.headers["Cache-Control"] == "no-store"
    assert link.headers["Location"].startswith("https://") and KEY not in link.headers["Location"]
    assert link.headers["Content-Location"] == first["statusUrl"]
    followed = client.get(
        "/api/exports/latest/users.csv", params={"series": SERIES}, follow_redirects=True
    )
    assert followed.status_code == 200
    assert followed.content == fetch(keyed_stack, first["downloadUrl"])
    errors = client.get(
        "/api/exports/latest/errors.csv", params={"series": SERIES}, follow_redirects=True
    )
    assert errors.content == fetch(keyed_stack, first["errorsUrl"])
    no_changes = client.get("/api/exports/latest/changes.csv", params={"series": SERIES})
    assert no_changes.status_code == 404 and no_changes.json()["field"] == "file"

    # The tenant changes; the series' next run makes the same link give the newer file.
    with keyed_stack.tenant_writer() as tenant:
        someone = tenant.users(select="id")[0]["id"]
        tenant.update_user(someone, displayName="Renamed For The Latest Link")
    second = run(client, body)
    assert second["status"] == "succeeded" and second["id"] != first["id"], second
    newer = client.get(
        "/api/exports/latest/users.csv", params={"series": SERIES}, follow_redirects=True
    )
    assert newer.content == fetch(keyed_stack, second["downloadUrl"])
    assert newer.content != followed.content and b"Renamed For The Latest Link" in newer.content


def test_the_latest_link_refuses_what_is_not_a_file_a_series_or_a_key(keyed_stack, client):
    unknown = client.get("/api/exports/latest/passwords.csv", params={"series": SERIES})
    assert unknown.status_code == 404 and unknown.json()["field"] == "file"
    no_series = client.get("/api/exports/latest/users.csv")
    assert no_series.status_code == 400 and no_series.json()["field"] == "series"
    extra = client.get("/api/exports/latest/users.csv", params={"series": SERIES, "x": "1"})
    assert extra.status_code == 400 and extra.json()["field"] == "x"
    keyless = httpx.get(f"{keyed_stack.api_url}/api/exports/latest/users.csv?series={SERIES}")
    assert keyless.status_code == 401
