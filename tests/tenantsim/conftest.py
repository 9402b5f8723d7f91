"""Helpers for the tenantsim tests: a started simulator and a tiny sync HTTP client."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.client import HTTPException
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from devtools.tenantsim import RunningSim, SimConfig, run_in_thread  # noqa: E402

SAMPLES = Path("/work/shared/graph-samples")
GRAPH_SCOPE = "https://graph.microsoft.com/.default"


class Http:
    """Blocking HTTP against a running simulator; answers (status, headers, body)."""

    def __init__(self, sim: RunningSim) -> None:
        self.sim = sim
        self._token: str | None = None

    def token(self, resource: str = "https://graph.microsoft.com") -> str:
        status, _, body = self.request(
            "GET",
            f"{self.sim.identity_url}?api-version=2019-08-01&resource={resource}",
            headers={"X-IDENTITY-HEADER": self.sim.identity_header},
            auth=False,
        )
        assert status == 200, body
        return str(body["access_token"])

    def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None = None,
        body: Any = None,
        auth: bool = True,
    ) -> tuple[int, dict[str, str], Any]:
        hdrs = dict(headers or {})
        if auth:
            if self._token is None:
                self._token = self.token()
            hdrs.setdefault("Authorization", f"Bearer {self._token}")
        data = None
        if isinstance(body, bytes):  # sent as is, e.g. a body that is not JSON
            data = body
        elif body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        if not url.startswith("http"):
            url = self.sim.graph_url + url
        req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, rh, raw = resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as err:
            status, rh, raw = err.code, dict(err.headers), err.read()
        ctype = rh.get("Content-Type", "")
        parsed: Any = json.loads(raw) if raw and "json" in ctype else raw.decode()
        return status, rh, parsed

    def get(self, path: str, **kw: Any) -> tuple[int, dict[str, str], Any]:
        return self.request("GET", path, **kw)

    def status(self, method: str, path: str, **kw: Any) -> int | str:
        """The answer's status, or "reset" when the connection was dropped without one."""
        try:
            return self.request(method, path, **kw)[0]
        except (urllib.error.URLError, HTTPException, ConnectionError):
            return "reset"

    def faults(self, body: Any = None) -> tuple[int, Any]:
        """GET /_sim/faults, or POST it `body` (unauthenticated, like /_sim/stats)."""
        url = self.sim.base_url + "/_sim/faults"
        method = "GET" if body is None else "POST"
        status, _, answer = self.request(method, url, body=body, auth=False)
        return status, answer

    def stats(self) -> dict[str, Any]:
        return self.request("GET", self.sim.base_url + "/_sim/stats", auth=False)[2]

    def list_all(self, path: str, **kw: Any) -> list[dict[str, Any]]:
        """Follow @odata.nextLink to the end; every page must be a 200."""
        out: list[dict[str, Any]] = []
        url: str | None = path
        while url:
            status, _, body = self.get(url, **kw)
            assert status == 200, body
            out.extend(body["value"])
            url = body.get("@odata.nextLink")
        return out


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSim]:
    """A 1,200-user generated tenant shared by a test module (generous budgets)."""
    with run_in_thread(SimConfig(users=1200, seed=7, identity_header="test-secret")) as s:
        yield s


@pytest.fixture
def http(sim: RunningSim) -> Http:
    return Http(sim)


@pytest.fixture
def make_http() -> type[Http]:
    """The Http class, for tests that start their own simulator."""
    return Http


@pytest.fixture
def sample() -> Any:
    """Load one of Microsoft's published examples from /work/shared/graph-samples."""

    def load(name: str) -> Any:
        return json.loads((SAMPLES / name).read_text())

    return load
