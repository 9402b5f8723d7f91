"""The results page and who may use it (issue 20): the function key is read once from ?code=,
kept in the tab's sessionStorage, dropped from the address bar and sent as x-functions-key,
never in a URL; and an export says who started it (and who cancelled it), in words."""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.e2e.conftest import wait_until

from .conftest import KEY, KEY_STORE, MASTER_KEY, start_export

try:
    from playwright.sync_api import expect
except ImportError:  # outside CI only: in CI a missing Playwright fails the run
    if os.environ.get("CI"):
        raise
    pytest.skip("Playwright for Python is not installed", allow_module_level=True)

expect.set_options(timeout=15_000)

NOBODY = {"userPrincipalNamePrefix": "nobody-matches-this"}  # an export that ends at once
FINAL = {"succeeded", "completedWithErrors", "failed", "cancelled", "estimated"}
STORED_KEY = f"sessionStorage.getItem('{KEY_STORE}')"
# The page itself holds no data; a reload (the address has no ?code= any more) and a tab
# without a key load it only when its route is at the anonymous level, the API's are not.
PAGE_WITHOUT_KEY = (
    "GET /api/ui without ?code= must answer the page (its route at the anonymous level: the "
    "page holds no data, and every API call it makes still needs the key)"
)


def fingerprint(key: str) -> str:
    """How a job records a function key (userexport/caller.py): never the key itself."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:12]


OUR_KEY = {"kind": "functionKey", "id": fingerprint(KEY), "name": None}
PRINCIPAL = {"kind": "principal", "id": "6f1d2c9e-4b7a-4e3f-9a51-2c8d7b0e4f13", "name": "hr-feed"}
NAMELESS_PRINCIPAL = {"kind": "principal", "id": "0c2b9a4e-1d7f-4b3a-8e6c-5f9d2a1b7c30"}
NAMED_KEY = {"kind": "functionKey", "id": "key:0b5e7d21c4a9", "name": "default"}
ANONYMOUS = {"kind": "anonymous", "id": None, "name": None}
# A name from a token is text, never markup.
MARKUP = {"kind": "principal", "id": "9e8d7c6b", "name": "<b>x</b><img src=x>"}


def assert_the_page_loads_without_a_key(base: str) -> None:
    answer = httpx.get(base, timeout=30)
    assert answer.status_code == 200, f"{answer.status_code}: {PAGE_WITHOUT_KEY}"
    assert KEY not in answer.text


def finished(job: dict) -> bool:
    return job["status"] in FINAL


def has_code(url: str) -> bool:
    return "code" in parse_qs(urlsplit(url).query, keep_blank_values=True)


def described(page: Any, term: str) -> Any:
    """The value of a term in an export's details."""
    return (
        page.locator("#job-details dt")
        .filter(has_text=re.compile(f"^{term}$"))
        .locator("xpath=following-sibling::dd[1]")
    )


def test_the_key_leaves_the_address_bar_and_goes_along_as_a_header_only(ui, api, ui_stack):
    job_id = start_export(api, {"filter": NOBODY, "fileName": "ui-key.csv"})
    wait_until(api, job_id, finished)
    page = ui.page
    base = f"{ui_stack.api_url}/api/ui"
    # Opened with the key, another query parameter and an export's route.
    page.goto(f"{base}?view=compact&code={KEY}#/exports/{job_id}")
    expect(page.get_by_role("heading", name="ui-key.csv", level=1)).to_be_visible()
    assert page.url == f"{base}?view=compact#/exports/{job_id}"
    assert page.evaluate("location.href") == page.url
    assert page.evaluate(STORED_KEY) == KEY
    page.evaluate("window.__sameDocument = true")

    # The list, the form and an export started from it: GET and POST, the key in the header.
    page.get_by_role("link", name="All exports").click()
    expect(page.locator(f'#exports-body tr[data-id="{job_id}"]')).to_be_visible()
    # The entry the page was opened at was replaced: going back finds no key either.
    page.go_back()
    expect(page.get_by_role("heading", name="ui-key.csv", level=1)).to_be_visible()
    assert page.url == f"{base}?view=compact#/exports/{job_id}"
    page.go_forward()
    page.get_by_role("toolbar", name="Export commands").get_by_role(
        "link", name="New export"
    ).click()
    expect(page.locator("#columns-count")).to_contain_text("25 of")
    page.get_by_label("User principal name starts with").fill(NOBODY["userPrincipalNamePrefix"])
    page.get_by_label("File name").fill("ui-key-form.csv")
    page.get_by_role("button", name="Start export").click()
    expect(page).to_have_url(re.compile(r"#/exports/[0-9]{13}-[0-9a-z]{8}$"))
    new_id = page.url.rsplit("/", 1)[1]
    status = page.locator("#job-status-line .status-text")
    expect(status).to_have_text(re.compile("Succeeded|Completed with errors"), timeout=60_000)
    assert ui.same_document()
    calls = list(ui.api_calls)
    assert {"GET", "POST"} <= {call.method for call in calls}, calls
    for call in calls:
        assert call.key == KEY and not has_code(call.url), call
        assert not call.referer, call  # <meta name="referrer" content="no-referrer">
    assert not has_code(page.url)

    # Reloaded, the address has no key: the page uses the one this tab kept.
    assert_the_page_loads_without_a_key(base)
    before = len(ui.api_calls)
    response = page.reload()
    assert response is not None and response.status == 200, PAGE_WITHOUT_KEY
    assert not ui.same_document()
    expect(page.get_by_role("heading", name="ui-key-form.csv", level=1)).to_be_visible()
    expect(page.locator("#job-details")).to_contain_text(new_id)
    expect(page.locator("#alert")).to_be_hidden()
    assert page.url == f"{base}?view=compact#/exports/{new_id}"
    # The export the page started was started with the key it sent as its header.
    expect(described(page, "Started by")).to_have_text(f"Function key {fingerprint(KEY)}")
    after = ui.api_calls[before:]
    assert after, "the reloaded page called the API"
    assert all(call.key == KEY and not has_code(call.url) for call in after), after

    # sessionStorage is the tab's own: another tab of the same browser has no key.
    other = page.context.new_page()
    other.goto(f"{base}#/")
    expect(other.get_by_role("alert")).to_contain_text("Not authorised (401)")
    assert other.evaluate(STORED_KEY) is None
    other.close()


def test_without_a_key_the_page_says_how_to_open_it(pages, ui_stack):
    assert_the_page_loads_without_a_key(f"{ui_stack.api_url}/api/ui")
    ui = pages(ui_stack, key=None)
    response = ui.page.goto(f"{ui_stack.api_url}/api/ui#/")
    assert response is not None and response.status == 200, PAGE_WITHOUT_KEY
    alert = ui.page.get_by_role("alert")
    expect(alert).to_contain_text("Not authorised (401)")
    expect(alert).to_contain_text("open this page with the function key (…/api/ui?code=<key>)")
    assert ui.page.evaluate(STORED_KEY) is None
    assert ui.api_calls and all(call.key is None for call in ui.api_calls)
    ui.console_errors.clear()  # the browser logs the refused requests themselves


def test_an_export_says_who_started_it_and_who_cancelled_it(ui, api, faults, tmp_path):
    # Started with the key, cancelled from the page (with the key it holds): both recorded by
    # the stack, by the key's fingerprint.
    faults({"slowPages": {"rate": 1, "seconds": 4}})
    job_id = start_export(api, {"fileName": "ui-caller.csv"})
    assert api.get(f"/api/exports/{job_id}").json()["caller"] == OUR_KEY
    page = ui.open(f"/exports/{job_id}")
    started = described(page, "Started by")
    expect(started).to_have_text(f"Function key {fingerprint(KEY)}")
    expect(started.locator("code")).to_have_text(fingerprint(KEY))
    expect(described(page, "Cancelled by")).to_have_count(0)
    page.get_by_role("button", name="Cancel export").click()
    page.get_by_role("dialog", name="Cancel this export?").get_by_role(
        "button", name="Cancel export"
    ).click()
    expect(page.locator("#job-status-line .status-text")).to_have_text("Cancelled")
    expect(described(page, "Cancelled by")).to_have_text(f"Function key {fingerprint(KEY)}")
    assert api.get(f"/api/exports/{job_id}").json()["cancelledBy"] == OUR_KEY
    assert KEY not in page.locator("body").inner_text()
    shot = tmp_path / "started-and-cancelled-by-key.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")

    page.get_by_role("link", name="All exports").click()
    trigger = page.locator(f'#exports-body tr[data-id="{job_id}"] td').nth(2)
    expect(trigger).to_have_text(f"On demand by {fingerprint(KEY)}")
    expect(trigger.locator(".caller-brief")).to_have_attribute(
        "title", f"Started by Function key {fingerprint(KEY)}"
    )


def test_the_nightly_timer_and_other_callers_are_said_in_words(ui, api, ui_stack, tmp_path):
    # The nightly timer, fired as the host's admin API does: the stack records it.
    fired = httpx.post(
        f"{ui_stack.api_url}/admin/functions/nightly_export",
        json={},
        headers={"x-functions-key": MASTER_KEY},
        timeout=120,
    )
    assert fired.status_code in (200, 202), fired.text
    listed = api.get("/api/exports", params={"pageSize": 100}).json()["value"]
    nightly = [job for job in listed if job["trigger"] == "timer"]
    assert nightly and nightly[0]["caller"]["kind"] == "timer", nightly
    wait_until(api, nightly[0]["id"], finished)
    page = ui.open(f"/exports/{nightly[0]['id']}")
    expect(page.locator("#job-details")).to_contain_text(nightly[0]["id"])
    expect(described(page, "Started by")).to_have_text("The nightly timer")

    # A principal (App Service authentication in front) and a stack without keys: in jobs
    # the test hands the page, whatever this keyed stack records.
    ids = [
        start_export(api, {"filter": NOBODY, "fileName": f"ui-caller-{n}.csv"}) for n in range(5)
    ]
    for job_id in ids:
        wait_until(api, job_id, finished)
    shapes: dict[str, dict[str, Any]] = {
        ids[0]: {
            "caller": PRINCIPAL,
            "status": "cancelled",
            "reason": "Cancelled by a caller; nothing was committed.",
            "cancelledBy": NAMELESS_PRINCIPAL,
        },
        ids[1]: {"caller": NAMED_KEY},
        ids[2]: {"caller": ANONYMOUS},
        ids[3]: {"caller": MARKUP},
        ids[4]: {"caller": None},  # a job from before callers were recorded
    }

    def reshape(route: Any) -> None:
        response = route.fetch()
        body = response.json()
        for job in body.get("value", []) if "value" in body else [body]:
            job.update(shapes.get(job.get("id"), {}))
        route.fulfill(response=response, json=body)

    page.route(re.compile(r"/api/exports(/[^/?]+)?(\?.*)?$"), reshape)
    page = ui.open(f"/exports/{ids[0]}")
    expect(page.locator("#job-status-line .status-text")).to_have_text("Cancelled")
    started = described(page, "Started by")
    expect(started).to_have_text(f"hr-feed ({PRINCIPAL['id']})")
    expect(started.locator("code")).to_have_text(PRINCIPAL["id"])
    expect(described(page, "Cancelled by")).to_have_text(
        f"Entra principal {NAMELESS_PRINCIPAL['id']}"
    )
    shot = tmp_path / "started-by-principal.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")

    for job_id, words in [
        (ids[1], "Function key default key:0b5e7d21c4a9"),
        (ids[2], "Anonymous (local)"),
        (ids[3], "<b>x</b><img src=x> (9e8d7c6b)"),
    ]:
        page.goto(ui.url(f"/exports/{job_id}"))
        expect(page.locator("#job-details")).to_contain_text(job_id)
        expect(described(page, "Started by")).to_have_text(words)
        expect(described(page, "Cancelled by")).to_have_count(0)
    expect(described(page, "Started by").locator("b, img")).to_have_count(0)
    page.goto(ui.url(f"/exports/{ids[4]}"))
    expect(page.locator("#job-details")).to_contain_text(ids[4])
    expect(described(page, "Started by")).to_have_count(0)

    # The list: a compact "by" under the trigger; nothing more for the timer.
    page.goto(ui.url("/"))
    trigger = {
        job_id: page.locator(f'#exports-body tr[data-id="{job_id}"] td').nth(2)
        for job_id in [*ids, nightly[0]["id"]]
    }
    expect(trigger[ids[0]]).to_have_text("On demand by hr-feed")
    expect(trigger[ids[0]].locator(".caller-brief")).to_have_attribute(
        "title", f"Started by hr-feed {PRINCIPAL['id']}"
    )
    expect(trigger[ids[1]]).to_have_text("On demand by key default")
    expect(trigger[ids[2]]).to_have_text("On demand by anonymous (local)")
    expect(trigger[ids[4]]).to_have_text("On demand")
    expect(trigger[nightly[0]["id"]]).to_have_text("Nightly schedule")
    page.screenshot(path=str(tmp_path / "list-by.png"), full_page=True)
