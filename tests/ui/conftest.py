"""The results page (GET /api/ui) in headless Chromium, against the real local stack.

Debian's chromium (/usr/bin/chromium), driven by Playwright for Python: never a browser that
Playwright downloads. Outside CI a machine without chromium skips these tests (saying why); in
CI (env CI set) a missing browser fails them.

The page downloads files straight from Azurite's https endpoint (SAS URLs). Chromium trusts
exactly the stack's server certificate, pinned by its public key
(--ignore-certificate-errors-spki-list), the way the stack's other clients trust its local CA:
certificate checks stay on for everything else.

USEREXPORT_SCREENSHOTS=1 saves the screenshots of docs/screenshots/ (list, running, finished,
failed, delta) from the run; otherwise nothing is written to the work tree.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from devtools.stack import LocalStack
from tests.conftest import ROOMY_ADMISSION

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
KEY = "ui-test-key"  # the page is opened with ?code=KEY; every API call must carry it
KEY_HEADER = "x-functions-key"  # ...as this header, never as ?code= in a URL
KEY_STORE = "userexport.functionKey"  # where the page keeps it: this tab's sessionStorage
MASTER_KEY = "ui-test-master-key"  # fires the nightly timer (POST /admin/functions/...)
USERS = 3000
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the results page tests; `make test` installs it)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def playwright_api() -> Iterator[Any]:
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed (requirements-dev.txt)")
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def ui_stack(tmp_path_factory: pytest.TempPathFactory, playwright_api: Any) -> Iterator[LocalStack]:
    # One sequential listing whose pages take 2 s (2 ms a user): an export of the whole tenant
    # runs about 10 s and shows its progress half-way (a checkpoint at the end of each
    # invocation's 5 s); a short failure cap makes a Graph outage fail a job within seconds.
    with LocalStack(
        workdir=tmp_path_factory.mktemp("ui-stack"),
        users=USERS,
        seed=11,
        sim_args=["--latency-per-user-ms", "2"],
        # As in Azure: no key, no answer (401); the master key fires timers.
        devhost_args=["--function-key", KEY, "--master-key", MASTER_KEY],
        app_env={
            "USEREXPORT_PARTITIONS": "1",
            "USEREXPORT_TIME_BUDGET_SECONDS": "5",
            "USEREXPORT_FAILURE_CAP_MINUTES": "0.1",
            **ROOMY_ADMISSION,
        },
    ) as stack:
        yield stack


def _spki_pin(certificate: Path) -> str:
    cert = x509.load_pem_x509_certificate(certificate.read_bytes())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture(scope="module")
def browser(playwright_api: Any, ui_stack: LocalStack) -> Iterator[Any]:
    pin = _spki_pin(Path(ui_stack.env["SSL_CERT_FILE"]).with_name("cert.pem"))
    launched = playwright_api.chromium.launch(
        executable_path=str(CHROMIUM),
        args=[*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={pin}"],
    )
    yield launched
    launched.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@dataclass(frozen=True)
class ApiCall:
    """A request the page made to the app's API (not the page itself)."""

    method: str
    url: str
    key: str | None  # its x-functions-key header
    referer: str | None

    @property
    def code(self) -> list[str] | None:
        return parse_qs(urlsplit(self.url).query).get("code")


class Page:
    """A browser tab on the results page, with what the page did: its requests to the app,
    console errors and uncaught exceptions (all checked after each test). `key` is the
    function key the tab is opened with (None: none)."""

    def __init__(self, page: Any, stack: LocalStack, key: str | None = KEY) -> None:
        self.page = page
        self.stack = stack
        self.key = key
        self.api_requests: list[str] = []
        self.api_calls: list[ApiCall] = []
        self.other_requests: list[str] = []
        self.console_errors: list[str] = []
        page.on("request", self._request)
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.console_errors.append(f"uncaught: {error}"))

    def _request(self, request: Any) -> None:
        url = request.url
        if url.startswith(self.stack.api_url + "/api/"):
            self.api_requests.append(url)
            if not urlsplit(url).path.endswith("/api/ui"):
                headers = request.headers
                self.api_calls.append(
                    ApiCall(request.method, url, headers.get(KEY_HEADER), headers.get("referer"))
                )
        elif not url.startswith("data:"):
            self.other_requests.append(url)

    def _console(self, message: Any) -> None:
        # The browser's own line for each error answer is no fault of the page's.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.console_errors.append(message.text)

    def url(self, fragment: str = "/") -> str:
        code = f"?code={self.key}" if self.key else ""
        return f"{self.stack.api_url}/api/ui{code}#{fragment}"

    def open(self, fragment: str = "/") -> Any:
        self.page.goto(self.url(fragment))
        # The key has left the address bar by the time the page has loaded.
        assert "code" not in parse_qs(urlsplit(self.page.url).query), self.page.url
        self.page.evaluate("window.__sameDocument = true")
        return self.page

    def same_document(self) -> bool:
        """True while the page has not been reloaded since open()."""
        return bool(self.page.evaluate("window.__sameDocument === true"))

    def check(self) -> None:
        # Nothing failed in the page, no CSP violation, nothing fetched from elsewhere than the
        # app and the storage account, and the function key went along with every API call as
        # its header, never in a URL.
        assert not self.console_errors, self.console_errors
        storage = urlsplit(self.stack.env["AzureWebJobsStorage__blobServiceUri"]).netloc
        elsewhere = [u for u in self.other_requests if urlsplit(u).netloc != storage]
        assert not elsewhere, elsewhere
        for call in self.api_calls:
            assert call.key == self.key, call
            assert call.code is None, call


@pytest.fixture
def pages(browser: Any, request: pytest.FixtureRequest, tmp_path: Path):
    """Opens tabs on a stack's results page, each in a fresh browser context; after a passing
    test, checks what every tab did (Page.check)."""
    opened: list[tuple[Any, Page]] = []

    def new_page(stack: LocalStack, key: str | None = KEY) -> Page:
        context = browser.new_context(
            viewport={"width": 1280, "height": 860},
            locale="en-US",
            timezone_id="UTC",
            accept_downloads=True,
        )
        context.set_default_timeout(20_000)
        page = Page(context.new_page(), stack, key)
        opened.append((context, page))
        return page

    yield new_page
    report = getattr(request.node, "rep_call", None)
    for n, (context, page) in enumerate(opened):
        if report is not None and report.failed:
            shot = tmp_path / f"failure-{n}.png"
            page.page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot of the page when the test failed: {shot}")
            print(f"console errors: {page.console_errors}")
            print(f"last API calls: {page.api_requests[-5:]}")
        context.close()
    if report is not None and report.passed:
        for _, page in opened:
            page.check()


@pytest.fixture
def ui(pages: Callable[..., Page], ui_stack: LocalStack) -> Page:
    return pages(ui_stack)


@pytest.fixture
def api(ui_stack: LocalStack) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=ui_stack.api_url, headers={"x-functions-key": KEY}, timeout=60
    ) as client:
        yield client


@pytest.fixture
def faults(ui_stack: LocalStack) -> Iterator[Callable[[dict[str, Any]], None]]:
    """Sets tenantsim faults for one test; every fault is lifted when it ends."""

    def set_faults(settings: dict[str, Any]) -> None:
        httpx.post(ui_stack.sim["faults"], json=settings, timeout=10).raise_for_status()

    yield set_faults
    httpx.post(f"{ui_stack.sim['faults']}/reset", timeout=10).raise_for_status()


def screenshot(page: Any, name: str) -> None:
    """Saves docs/screenshots/<name>.png when USEREXPORT_SCREENSHOTS=1."""
    if os.environ.get("USEREXPORT_SCREENSHOTS") != "1":
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def start_export(api: httpx.Client, body: dict[str, Any] | None = None) -> str:
    answer = api.post("/api/exports", json=body or {})
    assert answer.status_code == 202, answer.text
    return answer.json()["id"]
