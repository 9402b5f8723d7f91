"""The "Bulk operation results" page in headless Chromium against the local stack: the list,
starting an export from the form, watching it run, cancelling one, a failed one, downloads,
errors from the API, and the keyboard."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest

from devtools.stack import LocalStack
from tests.e2e.conftest import wait_until
from userexport.columns import CATALOGUE, DEFAULT_COLUMN_NAMES, PREVIEW_COLUMN_NAMES

from .conftest import KEY, USERS, screenshot, start_export

try:
    from playwright.sync_api import expect
except ImportError:  # outside CI only: in CI a missing Playwright fails the run
    if os.environ.get("CI"):
        raise
    pytest.skip("Playwright for Python is not installed", allow_module_level=True)

expect.set_options(timeout=15_000)  # a loaded CI machine: the page polls every 1 to 3 s

BOM = b"\xef\xbb\xbf"
NOBODY = {"userPrincipalNamePrefix": "nobody-matches-this"}  # an export that ends at once
FINAL = {"succeeded", "completedWithErrors", "failed", "cancelled", "estimated"}


def finished(job: dict) -> bool:
    return job["status"] in FINAL


def row(page, job_id: str):
    return page.locator(f'#exports-body tr[data-id="{job_id}"]')


def test_the_page_is_one_self_contained_document_under_a_strict_policy(api, ui_stack):
    # The API is authorised: no key, no data.
    assert httpx.get(f"{ui_stack.api_url}/api/exports").status_code == 401
    answer = api.get("/api/ui", params={"code": KEY}, headers={"x-functions-key": ""})
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/html")
    policy = answer.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "require-trusted-types-for 'script'" in policy
    assert answer.headers["Cache-Control"] == "no-store"
    text = answer.text
    # Nothing fetched from elsewhere: no external script, stylesheet, font or image.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)
    assert "<style>" in text and "<script>" in text and 'src="app.js"' not in text


def test_the_list_shows_exports_newest_first_with_their_status_in_words_and_pages(ui, api):
    ids = [
        start_export(api, {"filter": NOBODY, "fileName": f"ui-list-{n:02}.csv"}) for n in range(11)
    ]
    for job_id in ids:
        wait_until(api, job_id, finished)
    page = ui.open()
    expect(page.get_by_role("heading", name="Bulk operation results", level=1)).to_be_visible()
    page.get_by_label("Rows per page").select_option("10")
    rows = page.locator("#exports-body tr")
    expect(rows).to_have_count(10)
    shown = rows.evaluate_all("rows => rows.map(r => r.dataset.id)")
    # The ten newest: the last ten started, newest first.
    assert shown == list(reversed(ids))[:10]
    newest = row(page, ids[-1])
    expect(newest.get_by_role("link", name="ui-list-10.csv")).to_be_visible()
    expect(newest).to_contain_text("Succeeded")
    expect(newest).to_contain_text("On demand")
    # The status is said in words next to its icon, not by colour alone.
    expect(newest.locator(".status svg")).to_have_count(1)
    expect(newest.locator(".status-text")).to_have_text("Succeeded")

    page.get_by_role("button", name="Next page").click()
    expect(row(page, ids[0])).to_be_visible()
    expect(page.locator("#page-number")).to_have_text("Page 2")
    page.get_by_role("button", name="Previous page").click()
    expect(row(page, ids[-1])).to_be_visible()
    expect(page.get_by_role("button", name="Previous page")).to_be_disabled()

    newest.get_by_role("link", name="ui-list-10.csv").click()
    expect(page).to_have_url(re.compile(f"#/exports/{ids[-1]}$"))
    expect(page.get_by_role("heading", name="ui-list-10.csv", level=1)).to_be_visible()
    page.go_back()
    expect(page.get_by_role("heading", name="Bulk operation results", level=1)).to_be_visible()


def test_an_export_started_from_the_form_runs_finishes_and_downloads(ui, api):
    page = ui.open()
    page.get_by_role("toolbar", name="Export commands").get_by_role(
        "link", name="New export"
    ).click()
    expect(page.get_by_role("heading", name="New export", level=1)).to_be_focused()

    boxes = page.locator("#column-list input[type=checkbox]")
    expect(boxes).to_have_count(len(CATALOGUE))
    checked = boxes.evaluate_all("bs => bs.filter(b => b.checked).map(b => b.value)")
    assert checked == list(DEFAULT_COLUMN_NAMES)
    expect(page.locator("#columns-count")).to_have_text(f"25 of {len(CATALOGUE)} columns selected")

    page.get_by_label("Search columns").fill("extensionattribute1")
    visible = page.locator("#column-list li:visible")
    expect(visible).to_have_count(7)  # extensionAttribute1 and 10 to 15
    extra = "onPremisesExtensionAttributes.extensionAttribute1"
    page.get_by_label(extra, exact=True).check()
    page.get_by_label("Search columns").fill("")
    expect(visible).to_have_count(len(CATALOGUE))
    page.get_by_label("Account enabled").select_option("true")
    page.get_by_label("File name").fill("ui-form-export.csv")
    page.get_by_role("button", name="Start export").click()

    expect(page).to_have_url(re.compile(r"#/exports/[0-9]{13}-[0-9a-z]{8}$"))
    job_id = page.url.rsplit("/", 1)[1]
    heading = page.get_by_role("heading", name="ui-form-export.csv", level=1)
    expect(heading).to_be_visible()
    status = page.locator("#job-status-line .status-text")
    expect(status).to_have_text("Running", timeout=30_000)
    panel = page.locator("#job-progress")
    expect(panel.get_by_role("progressbar")).to_be_visible()
    # Progress moves without a reload; the ETA comes once some users are written.
    expect(panel).to_contain_text(re.compile(r"(?<![0-9])[1-8][0-9]% of about"), timeout=30_000)
    expect(panel).to_contain_text(re.compile(r"left|Counting"))
    screenshot(page, "running")
    expect(status).to_have_text("Succeeded", timeout=60_000)
    assert ui.same_document(), "the page followed the export without reloading"
    expect(panel).to_be_hidden()
    expect(page.get_by_role("button", name="Cancel export")).to_be_hidden()

    job = api.get(f"/api/exports/{job_id}").json()
    details = page.locator("#job-details")
    expect(details).to_contain_text(f"{job['userCount']:,}")
    estimate = job["estimate"]
    expect(details).to_contain_text(
        f"{estimate['lookupRequests']:,} lookups, {estimate['planningRequests']:,} to plan; "
        f"{estimate['resourceUnits']:,} resource units"
    )
    expect(page.locator("#job-filter")).to_contain_text("Account enabled")
    expect(page.locator("#job-filter")).to_contain_text("Yes (enabled)")
    columns = [*DEFAULT_COLUMN_NAMES, extra]
    expect(page.locator("#job-columns li")).to_have_text(columns)
    screenshot(page, "finished")

    with page.expect_download() as csv_download:
        page.get_by_role("link", name="Download CSV").click()
    data = Path(csv_download.value.path()).read_bytes()
    assert csv_download.value.suggested_filename == "ui-form-export.csv"
    assert data.startswith(BOM + ",".join(columns).encode() + b"\r\n")
    assert data.count(b"\r\n") >= job["userCount"] + 1
    with page.expect_download() as errors_download:
        page.get_by_role("link", name=re.compile("^Download errors file")).click()
    errors = Path(errors_download.value.path()).read_bytes()
    assert errors_download.value.suggested_filename == "ui-form-export-errors.csv"
    assert errors.startswith(BOM + b"objectId,userPrincipalName,failed")


def test_the_form_shows_each_problem_next_to_its_field(ui):
    page = ui.open("/new")
    expect(page.locator("#columns-count")).to_contain_text("25 of")
    # Checked in the page: a file name the server would refuse.
    page.get_by_label("File name").fill("../etc/passwd.csv")
    page.get_by_role("button", name="Start export").click()
    file_name = page.get_by_label("File name")
    expect(file_name).to_have_attribute("aria-invalid", "true")
    expect(file_name).to_be_focused()
    expect(page.locator("#f-fileName-error")).to_contain_text("end in .csv")
    expect(file_name).to_have_accessible_description(re.compile("end in .csv"))

    # Checked by the server: its 400 problem's detail goes next to the field it names.
    file_name.fill("")
    created = page.get_by_label("Created on or after")
    created.fill("last tuesday")
    page.get_by_role("button", name="Start export").click()
    expect(created).to_have_attribute("aria-invalid", "true")
    expect(created).to_be_focused()
    expect(page.locator("#f-createdAfter-error")).to_contain_text("ISO 8601")
    expect(file_name).not_to_have_attribute("aria-invalid", "true")

    created.fill("")
    page.get_by_label("Domain", exact=True).fill("contoso.com")
    page.get_by_label("Search columns").fill("manager")
    page.get_by_label("manager", exact=True).check()
    page.get_by_role("button", name="Start export").click()
    expect(page.locator("#columns-error")).to_contain_text("manager column cannot be combined")

    page.get_by_label("Search columns").fill("")
    page.get_by_role("button", name="Clear shown").click()
    expect(page.locator("#columns-count")).to_contain_text("0 of")
    page.get_by_role("button", name="Start export").click()
    expect(page.locator("#columns-error")).to_have_text("Select at least one column.")
    page.get_by_role("button", name="Preview columns").click()
    expect(page.locator("#columns-count")).to_contain_text(f"{len(PREVIEW_COLUMN_NAMES)} of")
    page.get_by_role("button", name="Default columns").click()
    expect(page.locator("#columns-count")).to_contain_text("25 of")

    # A group is named by its object id: the server's 400 goes next to the field.
    page.get_by_label("Domain", exact=True).fill("")
    group = page.get_by_label("Members of group (object id)")
    group.fill("Sales team")
    page.get_by_role("button", name="Start export").click()
    expect(group).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-group-error")).to_contain_text("object id")
    expect(page).to_have_url(re.compile("#/new$"))


def test_the_preview_columns_button_exports_the_preview_preset_in_its_order(ui, api):
    page = ui.open("/new")
    expect(page.locator("#columns-count")).to_contain_text("25 of")
    page.get_by_role("button", name="Preview columns").click()
    page.get_by_label("User principal name starts with").fill(NOBODY["userPrincipalNamePrefix"])
    page.get_by_role("button", name="Start export").click()
    expect(page).to_have_url(re.compile(r"#/exports/[0-9]{13}-[0-9a-z]{8}$"))
    job = api.get(f"/api/exports/{page.url.rsplit('/', 1)[1]}").json()
    assert job["columns"] == list(PREVIEW_COLUMN_NAMES), "as the API's preset orders them"
    expect(page.locator("#job-columns li")).to_have_text(list(PREVIEW_COLUMN_NAMES))


def test_estimate_only_plans_and_shows_the_estimate_without_files(ui, api):
    page = ui.open("/new")
    expect(page.locator("#columns-count")).to_contain_text("25 of")
    page.get_by_label("File name").fill("ui-estimate.csv")
    estimate_only = page.get_by_role("button", name="Estimate only")
    expect(estimate_only).to_have_accessible_description(re.compile("without running it"))
    estimate_only.click()
    expect(page).to_have_url(re.compile(r"#/exports/[0-9]{13}-[0-9a-z]{8}$"))
    job_id = page.url.rsplit("/", 1)[1]
    status = page.locator("#job-status-line .status-text")
    expect(status).to_have_text("Estimated", timeout=30_000)
    job = api.get(f"/api/exports/{job_id}").json()
    assert job["status"] == "estimated" and job["dryRun"] is True
    assert job["columns"] == list(DEFAULT_COLUMN_NAMES) and job["fileName"] == "ui-estimate.csv"

    panel = page.get_by_role("region", name="Estimate", exact=True)
    expect(panel).to_be_visible()
    expect(panel.locator("#estimate-summary")).to_contain_text(f"{USERS:,} users")
    estimate = job["estimate"]
    expect(panel).to_contain_text(f"{estimate['resourceUnits']:,}")
    if "durationSeconds" in estimate:  # the pace model's figure, as a person reads it
        expect(panel.locator("#estimate-summary")).to_contain_text(
            re.compile(r"would take about \d")
        )
    details = page.locator("#job-details")
    expect(details).to_contain_text("planned and estimated only, nothing exported")
    expect(details).not_to_contain_text("Users exported")
    for hidden in ("Download CSV", "Download errors file"):
        expect(page.get_by_role("link", name=hidden)).to_be_hidden()
    expect(page.get_by_role("button", name="Cancel export")).to_be_hidden()
    expect(page.locator("#job-progress")).to_be_hidden()

    page.get_by_role("link", name="All exports").click()
    listed = row(page, job_id)
    expect(listed.locator(".status-text")).to_have_text("Estimated")
    expect(listed.locator("td.num").first).to_contain_text(f"{USERS:,}")


def test_a_running_export_is_cancelled_with_the_button_after_a_confirm_step(ui, api, faults):
    # Every listing page takes 4 s: the export is still running when the button is pressed.
    faults({"slowPages": {"rate": 1, "seconds": 4}})
    job_id = start_export(api, {"fileName": "ui-cancel-me.csv"})
    page = ui.open(f"/exports/{job_id}")
    status = page.locator("#job-status-line .status-text")
    expect(status).to_have_text("Running", timeout=30_000)
    cancel = page.get_by_role("button", name="Cancel export")

    # Keyboard: the confirm step opens on "Keep running"; Escape closes it, nothing happens.
    cancel.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Cancel this export?")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("button", name="Keep running")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(cancel).to_be_focused()
    assert api.get(f"/api/exports/{job_id}").json()["status"] == "running"

    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    page.keyboard.press("Shift+Tab")
    expect(dialog.get_by_role("button", name="Cancel export")).to_be_focused()
    page.keyboard.press("Enter")
    expect(status).to_have_text("Cancelled")
    expect(dialog).to_be_hidden()
    expect(cancel).to_be_hidden()
    expect(page.locator("#job-reason")).to_contain_text("The export was cancelled")
    expect(page.get_by_role("link", name="Download CSV")).to_be_hidden()
    assert api.get(f"/api/exports/{job_id}").json()["status"] == "cancelled"

    page.get_by_role("link", name="All exports").click()
    expect(row(page, job_id)).to_contain_text("Cancelled")


def test_an_export_graph_refuses_fails_and_the_page_says_why(pages, tmp_path_factory):
    # A tenant whose managed identity lacks User.Read.All: Graph refuses the listing (403).
    with (
        LocalStack(
            workdir=tmp_path_factory.mktemp("ui-denied"),
            users=50,
            seed=5,
            sim_args=["--roles", "UserAuthenticationMethod.Read.All"],
            devhost_args=["--function-key", KEY],
        ) as stack,
        httpx.Client(base_url=stack.api_url, headers={"x-functions-key": KEY}, timeout=60) as api,
    ):
        job_id = start_export(api, {"fileName": "all-users.csv"})
        ui = pages(stack)
        page = ui.open(f"/exports/{job_id}")
        status = page.locator("#job-status-line .status-text")
        expect(status).to_have_text("Failed", timeout=60_000)
        job = api.get(f"/api/exports/{job_id}").json()
        assert job["status"] == "failed" and "User.Read.All" in job["reason"]
        reason = page.locator("#job-reason")
        expect(reason).to_contain_text("The export failed")
        expect(reason).to_contain_text(job["reason"])
        expect(page.get_by_role("link", name="Download CSV")).to_be_hidden()
        expect(page.get_by_role("button", name="Cancel export")).to_be_hidden()
        screenshot(page, "failed")
        page.get_by_role("link", name="All exports").click()
        expect(row(page, job_id).locator(".status-text")).to_have_text("Failed")


def test_an_export_that_outlasts_the_failure_cap_fails_with_its_reason(ui, api, faults):
    # Graph answers nothing but 503 for two minutes: past the failure cap (6 s), the job fails.
    faults({"outages": [{"start": 0, "end": 120}]})
    job_id = start_export(api, {"fileName": "ui-graph-down.csv"})
    page = ui.open(f"/exports/{job_id}")
    status = page.locator("#job-status-line .status-text")
    expect(status).to_have_text("Failed", timeout=120_000)
    reason = page.locator("#job-reason")
    expect(reason).to_contain_text("The export failed")
    job = api.get(f"/api/exports/{job_id}").json()
    assert job["status"] == "failed" and job["reason"]
    expect(reason).to_contain_text(job["reason"])
    expect(page.get_by_role("link", name="Download CSV")).to_be_hidden()
    expect(page.get_by_role("button", name="Cancel export")).to_be_hidden()


def test_text_from_the_api_is_shown_as_text_never_as_markup(ui, api):
    markup = '<img src=x id="injected" onerror="window.__xss=1">'
    job_id = start_export(api, {"filter": {**NOBODY, "department": markup}})
    wait_until(api, job_id, finished)
    page = ui.open(f"/exports/{job_id}")
    expect(page.locator("#job-filter")).to_contain_text(markup)
    assert page.locator("#injected").count() == 0
    assert page.evaluate("window.__xss") is None


def test_api_failures_are_shown_in_an_alert(ui):
    page = ui.open("/exports/0000000000000-00000000")
    alert = page.get_by_role("alert").filter(has_text="no export")
    expect(alert).to_be_visible()
    expect(page.get_by_role("heading", name="Export not found")).to_be_visible()

    # The function key refused, then the app down: said in words, and the page keeps trying.
    def refuse(route):
        route.fulfill(status=401, body="")

    page.route(re.compile(r"/api/exports\?"), refuse)
    page.goto(ui.url("/"))
    expect(page.get_by_role("alert")).to_contain_text("Not authorised (401)")
    page.unroute(re.compile(r"/api/exports\?"))
    page.route(
        re.compile(r"/api/exports\?"),
        lambda route: route.fulfill(
            status=503,
            content_type="application/problem+json",
            body='{"title": "Service unavailable", "status": 503, "detail": "Try later."}',
        ),
    )
    page.get_by_role("button", name="Refresh").click()
    expect(page.get_by_role("alert")).to_contain_text("503")
    page.unroute(re.compile(r"/api/exports\?"))
    page.get_by_role("button", name="Refresh").click()
    expect(page.locator("#alert")).to_be_hidden()
    ui.console_errors.clear()  # the browser logs the refused requests themselves


def test_the_form_is_labelled_and_works_from_the_keyboard(ui, api):
    page = ui.open()
    # From the top: the skip link, then the page's own commands.
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to main content")).to_be_focused()
    toolbar = page.get_by_role("toolbar", name="Export commands")
    toolbar.get_by_role("link", name="New export").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="New export", level=1)).to_be_focused()
    expect(page.locator("#columns-count")).to_contain_text("25 of")

    labels = [
        "Search columns",
        "User type",
        "Account enabled",
        "Department",
        "Company name",
        "Domain",
        "User principal name starts with",
        "Display name starts with",
        "Created on or after",
        "Created on or before",
        "File name",
        "Protect against spreadsheet formulas",
        "Fewer authentication lookups",
    ]
    for label in labels:
        expect(page.get_by_label(label, exact=True)).to_be_visible()
    for name in ("userPrincipalName", "displayName", "manager"):
        expect(page.get_by_role("checkbox", name=name, exact=True)).to_be_attached()
    # Every control on the form has a name a screen reader reads out.
    unnamed = page.locator("#export-form").evaluate(
        """form => [...form.querySelectorAll('input, select, button')].filter(c =>
            !(c.labels && c.labels.length) && !c.getAttribute('aria-label')
            && !(c.textContent || '').trim()).map(c => c.outerHTML)"""
    )
    assert unnamed == []

    # Tab order follows the form: the search box, its buttons, the columns, the filter...
    seen = []
    for _ in range(160):
        page.keyboard.press("Tab")
        seen.append(page.evaluate("document.activeElement.id"))
        if seen[-1] == "start-export":
            break
    order = [
        seen.index(i)
        for i in (
            "column-search",
            "select-all",
            "select-mfa",
            "col-0",
            "f-fewerLookups",
            "f-userType",
        )
    ]
    assert order == sorted(order), seen
    for field in ("f-department", "f-fileName", "f-formulaGuard", "start-export"):
        assert field in seen, seen

    # Only the keyboard: search, toggle a column with Space, name the file, submit with Enter.
    page.get_by_label("Search columns").focus()
    page.keyboard.type("employeeId")
    page.keyboard.press("Tab")  # Select all shown
    page.keyboard.press("Tab")  # Clear shown
    page.keyboard.press("Tab")  # Default columns
    page.keyboard.press("Tab")  # Preview columns
    page.keyboard.press("Tab")  # MFA columns
    page.keyboard.press("Tab")  # the one column shown
    expect(page.get_by_role("checkbox", name="employeeId")).to_be_focused()
    page.keyboard.press("Space")
    expect(page.get_by_role("checkbox", name="employeeId")).to_be_checked()
    page.get_by_label("User principal name starts with").focus()
    page.keyboard.type(NOBODY["userPrincipalNamePrefix"])
    page.get_by_label("File name").focus()
    page.keyboard.type("ui-keyboard.csv")
    page.keyboard.press("Enter")
    heading = page.get_by_role("heading", name="ui-keyboard.csv", level=1)
    expect(heading).to_be_focused()
    expect(page.locator("#job-columns li")).to_have_count(26)
    expect(page.locator("#job-status-line .status-text")).to_have_text(
        re.compile("Succeeded|Completed with errors"), timeout=60_000
    )


HIDE = """hidden => {
    Object.defineProperty(document, 'hidden', {configurable: true, get: () => hidden});
    Object.defineProperty(document, 'visibilityState',
                          {configurable: true, get: () => hidden ? 'hidden' : 'visible'});
    document.dispatchEvent(new Event('visibilitychange'));
}"""


def test_the_list_follows_running_exports_live_while_the_tab_is_visible(ui, api):
    job_id = start_export(api, {"fileName": "all-users.csv"})
    page = ui.open()
    page.get_by_label("Rows per page").select_option("10")
    running = row(page, job_id)
    expect(running).to_contain_text("Running", timeout=30_000)
    expect(running.get_by_role("progressbar")).to_be_visible()
    progress = running.locator(".progress-text")
    expect(progress).to_have_text(re.compile(r"^[1-8][0-9]% · "), timeout=30_000)
    screenshot(page, "list")

    # A hidden tab asks nothing (the list polls every 2 s while an export runs here)...
    page.evaluate(HIDE, True)
    page.wait_for_timeout(500)
    before = len(ui.api_requests)
    page.wait_for_timeout(4_500)
    assert len(ui.api_requests) == before, ui.api_requests[before:]
    # ...and catches up as soon as it is shown again.
    page.evaluate(HIDE, False)
    for _ in range(30):
        page.wait_for_timeout(100)
        if len(ui.api_requests) > before:
            break
    assert len(ui.api_requests) > before, "polling resumed when the tab was shown"
    expect(running).to_contain_text("Succeeded", timeout=90_000)
    assert ui.same_document()


# --- series, delta mode, snapshot, latest (issue 14) ------------------------------------------


def test_the_form_checks_series_and_shows_the_apps_refusal_of_delta_next_to_its_field(ui):
    page = ui.open("/new")
    expect(page.locator("#columns-count")).to_contain_text("25 of")
    snapshot = page.get_by_label("Also write the full CSV (snapshot)")
    expect(snapshot).to_be_disabled()  # full mode: a snapshot means nothing
    # Checked in the page: a series name the server would refuse.
    series = page.get_by_label("Series", exact=True)
    series.fill("hr feed")
    page.get_by_role("button", name="Start export").click()
    expect(series).to_have_attribute("aria-invalid", "true")
    expect(series).to_be_focused()
    expect(series).to_have_accessible_description(re.compile("starting with a letter or digit"))
    # Checked by the server: delta without a series is a 400 on `mode`, shown next to it.
    series.fill("")
    page.get_by_label("Mode").select_option("delta")
    expect(snapshot).to_be_enabled()
    page.get_by_role("button", name="Start export").click()
    mode = page.get_by_label("Mode")
    expect(mode).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-mode-error")).to_contain_text("needs a series")
    # ...and a filter: the server names `filter` (no field of its own: the form's message).
    series.fill("ui-refused")
    page.get_by_role("textbox", name="Department").fill("Sales")
    page.get_by_role("button", name="Start export").click()
    expect(page.locator("#form-error")).to_contain_text("whole tenant")
    expect(page).to_have_url(re.compile("#/new$"))


def test_a_delta_series_shows_its_run_its_changes_file_and_its_latest(ui, api, ui_stack):
    series = "ui-delta"
    page = ui.open("/new")
    expect(page.locator("#columns-count")).to_contain_text("25 of")
    page.get_by_label("Series", exact=True).fill(series)
    page.get_by_label("Mode").select_option("delta")
    page.get_by_label("Also write the full CSV (snapshot)").check()
    page.get_by_label("File name").fill("ui-delta.csv")
    page.get_by_role("button", name="Start export").click()
    expect(page).to_have_url(re.compile(r"#/exports/[0-9]{13}-[0-9a-z]{8}$"))
    first_id = page.url.rsplit("/", 1)[1]
    status = page.locator("#job-status-line .status-text")
    expect(status).to_have_text(re.compile("Succeeded|Completed with errors"), timeout=90_000)
    first = api.get(f"/api/exports/{first_id}").json()
    assert (first["series"], first["mode"], first["snapshot"]) == (series, "delta", True)
    delta = page.get_by_role("region", name="Delta run")
    expect(delta).to_contain_text("Full run")
    expect(delta).to_contain_text(first["delta"]["reason"])
    expect(page.get_by_role("link", name="Download changes file")).to_be_hidden()
    expect(page.get_by_role("link", name="Download CSV")).to_be_visible()
    details = page.locator("#job-details")
    expect(details.get_by_role("link", name=series)).to_have_attribute("href", f"#/latest/{series}")

    with ui_stack.tenant_writer() as tenant:
        users = tenant.users(select="id,userPrincipalName")
        added = tenant.create_user(
            displayName="Ui Delta Added",
            userPrincipalName="ui.delta.added@contoso.example",
            mailNickname="uideltaadded",
            accountEnabled=True,
        )["id"]
        tenant.update_user(users[5]["id"], jobTitle="Changed for the delta run")
        tenant.delete_user(users[6]["id"])
        try:
            second_id = start_export(
                api,
                {"series": series, "mode": "delta", "snapshot": True, "fileName": "ui-delta.csv"},
            )
            second = wait_until(api, second_id, finished)
        finally:  # the tenant as the module's other tests expect it: USERS users
            tenant.delete_user(added)
            tenant.purge_user(added)
            tenant.restore_user(users[6]["id"])
    assert second["delta"]["kind"] == "changes", second

    page = ui.open(f"/exports/{second_id}")
    expect(status).to_have_text(re.compile("Succeeded|Completed with errors"))
    delta = page.get_by_role("region", name="Delta run")
    expect(delta).to_contain_text("Changes since the series' last run")
    for kind in ("added", "updated", "removed"):
        expect(delta.locator(f'[data-count="{kind}"] strong')).to_have_text("1")
    expect(delta.get_by_role("link", name=first_id).first).to_have_attribute(
        "href", f"#/exports/{first_id}"
    )
    expect(delta).to_contain_text("Authentication columns from")
    expect(page.locator("#job-details")).to_contain_text("Yes: the full CSV too")
    screenshot(page, "delta")

    with page.expect_download() as changes_download:
        page.get_by_role("link", name="Download changes file").click()
    assert changes_download.value.suggested_filename == "ui-delta-changes.csv"
    changes = Path(changes_download.value.path()).read_bytes()
    assert changes.startswith(BOM + b"changeType,changeReason,")
    assert changes.count(b"\r\n") == 4  # the header and three changes
    with page.expect_download() as csv_download:
        page.get_by_role("link", name="Download CSV").click()
    assert csv_download.value.suggested_filename == "ui-delta.csv"

    # The list shows the series, a link to its newest export with files.
    page.get_by_role("link", name="All exports").click()
    listed = row(page, second_id)
    tag = listed.get_by_role("link", name=f"{series} (delta)", exact=True)
    expect(tag).to_have_attribute("href", f"#/latest/{series}")
    tag.click()
    expect(page).to_have_url(re.compile(f"#/latest/{series}$"))
    expect(page.locator("#job-latest")).to_contain_text(f"newest export of series {series}")
    expect(page.get_by_role("heading", name="ui-delta.csv", level=1)).to_be_visible()
    expect(page.locator("#job-details")).to_contain_text(second_id)
    expect(page.get_by_role("link", name="Download changes file")).to_be_visible()
    page.get_by_role("link", name=f"Open export {second_id}").click()
    expect(page).to_have_url(re.compile(f"#/exports/{second_id}$"))
    expect(page.locator("#job-latest")).to_be_hidden()

    # A series with no export with files: said so, and the API's words in the alert.
    page = ui.open("/latest/never-ran")
    expect(page.get_by_role("heading", name="No export of series never-ran yet")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("never-ran")
    ui.console_errors.clear()  # the browser logs the 404 itself


def test_a_full_backlog_and_a_place_in_the_queue_are_said_in_words(ui, api):
    """What the app answers a busy tenant (admission.py), faked inside the page: the POST's 429
    and a queued export's place."""
    job_id = start_export(api, {"filter": NOBODY})
    queued = {**wait_until(api, job_id, finished), "status": "queued", "queuePosition": 2}
    for key in ("finishedAt", "userCount", "errorCount", "downloadUrl", "errorsUrl", "files"):
        queued.pop(key, None)
    page = ui.open()
    page.route(
        re.compile(r"/api/exports\?"),
        lambda route: route.fulfill(json={"value": [queued]}),
    )
    page.route(re.compile(rf"/api/exports/{job_id}$"), lambda route: route.fulfill(json=queued))
    page.get_by_role("button", name="Refresh").click()
    expect(row(page, job_id)).to_contain_text("Waiting to start · place 2 in the queue")
    page.goto(ui.url(f"/exports/{job_id}"))
    expect(page.locator("#job-details")).to_contain_text("Place in the queue")
    expect(page.locator("#job-progress")).to_contain_text("place 2 in the queue")
    screenshot(page, "queued-place")

    detail = "3 exports are queued already (USEREXPORT_MAX_QUEUED_EXPORTS). Try again in 30 s."
    page.route(
        re.compile(r"/api/exports$"),
        lambda route: (
            route.fulfill(
                status=429,
                headers={"Retry-After": "30"},
                content_type="application/problem+json",
                body=f'{{"title": "Too many exports queued", "status": 429, "detail": "{detail}"}}',
            )
            if route.request.method == "POST"
            else route.fallback()
        ),
    )
    page.goto(ui.url("/new"))
    page.get_by_role("button", name="Start export").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Too many exports are queued: nothing was started.")
    expect(alert).to_contain_text("Try again in 30 s")
    screenshot(page, "backlog-full")
    ui.console_errors.clear()  # the browser logs the refused request itself
