"""The client's pieces without a server: flags to request body, problem fields back to flags,
connection settings, credentials' scope, progress drawing, file names and summaries."""

from __future__ import annotations

import argparse
import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from userexport.filters import KEYS
from userexport_cli.auth import AppAuth, EntraToken
from userexport_cli.client import ApiClient
from userexport_cli.connection import app_url, connect
from userexport_cli.download import changes_name, download_files, file_names
from userexport_cli.errors import ApiProblem, CliError, Exit
from userexport_cli.main import build_parser, main
from userexport_cli.output import describe, outcome, summary, table
from userexport_cli.progress import (
    ProgressDisplay,
    RateMeter,
    bar,
    bar_line,
    clock_time,
    plain_line,
)
from userexport_cli.request import FILTER_FLAGS, export_body, flag_for

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
RUNNING = {
    "id": "1748779200000-abcdefgh",
    "status": "running",
    "usersWritten": 1234,
    "estimatedTotal": 10000,
    "partitions": 8,
    "partitionsDone": 3,
    "startedAt": "2025-06-01T11:59:50Z",
    "estimatedCompletionAt": "2025-06-01T12:00:17Z",
}


def parse(*argv: str):
    return build_parser().parse_args(argv)


def test_start_flags_become_the_request_body():
    args = parse(
        "start",
        "--columns",
        "userPrincipalName, objectId,displayName",
        "--user-type",
        "guest",
        "--account-enabled",
        "False",
        "--department",
        "Sales",
        "--domain",
        "contoso.com",
        "--created-after",
        "2025-01-01",
        "--file-name",
        "guests.csv",
        "--no-formula-guard",
    )
    assert export_body(args) == {
        "columns": ["userPrincipalName", "objectId", "displayName"],
        "filter": {
            "userType": "Guest",
            "accountEnabled": False,
            "department": "Sales",
            "domain": "contoso.com",
            "createdAfter": "2025-01-01",
        },
        "fileName": "guests.csv",
        "formulaGuard": False,
    }
    assert export_body(parse("start")) == {}, "the app's defaults apply"


def test_every_filter_key_has_a_flag():
    group = "0f3b5d4e-1a2b-4c3d-8e9f-001122334455"
    args = parse(
        "start",
        *("--company-name", "Contoso", "--upn-prefix", "adele"),
        *("--display-name-prefix", "Ad", "--created-before", "2025-02-01T00:00:00Z"),
        *("--group", group),
    )
    assert export_body(args)["filter"] == {
        "companyName": "Contoso",
        "userPrincipalNamePrefix": "adele",
        "displayNamePrefix": "Ad",
        "createdBefore": "2025-02-01T00:00:00Z",
        "group": group,
    }
    assert set(FILTER_FLAGS) == set(KEYS)
    unit = export_body(parse("start", "--administrative-unit", group))
    assert unit == {"filter": {"administrativeUnit": group}}


@pytest.mark.parametrize("preset", ["adminCenter", "preview", "mfa", "all"])
def test_a_preset_name_is_sent_as_the_preset(preset):
    assert export_body(parse("start", "--columns", preset)) == {"columns": preset}


def test_the_presets_are_the_apps():
    from userexport.columns import PRESETS as APP_PRESETS
    from userexport_cli.request import PRESETS

    assert PRESETS == tuple(APP_PRESETS)


def test_fewer_lookups_is_sent_only_when_asked_for():
    assert export_body(parse("start", "--fewer-lookups")) == {"fewerLookups": True}
    assert "fewerLookups" not in export_body(parse("start", "--columns", "mfa"))
    assert flag_for("fewerLookups") == "--fewer-lookups"
    help_text = build_parser()._subparsers._group_actions[0].choices["start"].format_help()
    assert "--fewer-lookups" in help_text and "mfa" in help_text


def test_fewer_lookups_and_the_report_time_are_described():
    job = {
        **RUNNING,
        "fewerLookups": True,
        "registrationReportTime": "2025-06-01T09:30:00Z",
    }
    lines = describe(job)
    assert any(re.match(r"fewer lookups:\s+True$", line) for line in lines), lines
    assert any(re.match(r"registration report:\s+2025-06-01T09:30:00Z$", line) for line in lines), (
        lines
    )
    assert not any(
        line.startswith(("fewer lookups", "registration report")) for line in describe(RUNNING)
    )


def test_the_estimate_counts_report_pages_and_says_the_authentication_pace():
    from userexport_cli.output import estimate_text

    job = {
        "estimatedTotal": 1_000_000,
        "estimate": {
            "planningRequests": 3,
            "listingRequests": 1_100,
            "lookupRequests": 0,
            "reportRequests": 1_000,
            "resourceUnits": 2_103,
            "durationSeconds": 2_000,
            "paceSource": "default",
            "authenticationRate": 5,
            "authenticationRateSource": "documented",
        },
    }
    assert estimate_text(job) == (
        "1,000,000 users, 2,103 Graph requests (2,103 RU), about 33 min (default pace), "
        "authentication methods at 5 requests per 10 s (documented)"
    )
    probed = {"estimatedTotal": 10, "estimate": {"authenticationRate": 6.25}}
    assert estimate_text(probed) == "10 users, authentication methods at 6.25 requests per 10 s"
    learnt = {"estimatedTotal": 10, "estimate": {"authenticationRate": 8000.0}}
    assert estimate_text(learnt).endswith("at 8,000 requests per 10 s")


@pytest.mark.parametrize(
    ("field", "flag"),
    [
        ("columns", "--columns"),
        ("columns[2]", "--columns"),
        ("filter.createdAfter", "--created-after"),
        ("filter.userPrincipalNamePrefix", "--upn-prefix"),
        ("filter.accountEnabled", "--account-enabled"),
        ("filter", "the filter flags"),
        ("filter.somethingNew", "the filter flags"),
        ("fileName", "--file-name"),
        ("formulaGuard", "--no-formula-guard"),
        ("Idempotency-Key", "--idempotency-key"),
        ("pageSize", "--page-size"),
        ("body", None),
        (None, None),
    ],
)
def test_a_problem_field_names_its_flag(field, flag):
    assert flag_for(field) == flag


def test_connection_flags_go_before_or_after_the_command():
    assert parse("--json", "status", "x").json is True
    assert parse("status", "x", "--json").json is True
    assert parse("status", "x").json is False
    before = parse("--url", "https://a.example", "status", "x")
    assert before.url == "https://a.example", "a subcommand's default does not undo it"
    assert parse("status", "x", "--url", "https://b.example").url == "https://b.example"


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("https://myapp.azurewebsites.net", "https://myapp.azurewebsites.net"),
        ("https://myapp.azurewebsites.net/", "https://myapp.azurewebsites.net"),
        ("https://myapp.azurewebsites.net/api/", "https://myapp.azurewebsites.net"),
        ("http://127.0.0.1:7071", "http://127.0.0.1:7071"),
        ("https://gateway.example/userexport", "https://gateway.example/userexport"),
    ],
)
def test_app_url_is_the_base(given, url):
    assert app_url(given) == url


@pytest.mark.parametrize(
    "given", [None, "", "myapp.azurewebsites.net", "ftp://x", "https://x/api?code=secret"]
)
def test_a_bad_app_url_is_a_usage_error_naming_url(given):
    with pytest.raises(CliError) as raised:
        app_url(given)
    assert raised.value.code == Exit.USAGE and "--url" in raised.value.message
    assert "secret" not in raised.value.message


def test_credentials_are_not_sent_in_clear_except_to_loopback():
    args = parse("--url", "http://myapp.example", "--key", "k", "list")
    with pytest.raises(CliError) as raised:
        connect(args, {})
    assert raised.value.code == Exit.USAGE and "https" in raised.value.message
    connect(parse("--url", "http://127.0.0.1:7071", "--key", "k", "list"), {}).close()
    connect(parse("--url", "http://myapp.example", "list"), {}).close()  # nothing to protect


def test_entra_needs_an_audience():
    with pytest.raises(CliError) as raised:
        connect(parse("--url", "https://a.example", "--entra", "list"), {})
    assert raised.value.code == Exit.USAGE and "--audience" in raised.value.message


def _sent(auth: AppAuth, url: str) -> httpx.Request:
    request = httpx.Request("GET", url)
    return next(auth.auth_flow(request))


def test_the_key_goes_to_the_app_only():
    auth = AppAuth(httpx.URL("https://myapp.azurewebsites.net"), key="k3y")
    assert _sent(auth, "https://myapp.azurewebsites.net/api/exports").headers["x-functions-key"]
    sas = _sent(auth, "https://account.blob.core.windows.net/exports/x/users.csv?sig=s")
    assert "x-functions-key" not in sas.headers and "Authorization" not in sas.headers
    assert "x-functions-key" not in _sent(auth, "http://myapp.azurewebsites.net/api").headers


def test_bar_and_clock():
    assert bar(0.5) == "[##########..........]"
    assert bar(None) == "[" + "." * 20 + "]"
    assert bar(1.7) == "[" + "#" * 20 + "]"
    assert clock_time(17) == "0:00:17"
    assert clock_time(3725.4) == "1:02:05"


def test_bar_line_shows_users_rate_eta_and_partitions():
    line = bar_line(RUNNING, 512.3, NOW)
    assert line == "[##..................] 1,234 / 10,000 users  512/s  ETA 0:00:17  partitions 3/8"
    plain = plain_line(RUNNING, 512.3, NOW)
    assert plain == (
        "1748779200000-abcdefgh running: 1,234 / 10,000 users (12%), 512/s, ETA 0:00:17, "
        "partitions 3/8"
    )


def test_progress_lines_for_other_states():
    queued = {"id": "j", "status": "queued", "usersWritten": 0}
    assert bar_line(queued, None, NOW).endswith("] queued, waiting for a worker")
    assert plain_line(queued, None, NOW) == "j queued"
    planning = {"id": "j", "status": "running", "usersWritten": 0}
    assert bar_line(planning, None, NOW).endswith("] planning")
    # Without estimatedCompletionAt the ETA comes from the rate.
    no_estimate = {**RUNNING, "estimatedCompletionAt": None}
    assert "ETA 0:00:17" in bar_line(no_estimate, (10000 - 1234) / 17, NOW)
    done = {"id": "j", "status": "succeeded", "usersWritten": 10, "userCount": 10}
    assert bar_line(done, None, NOW) == "[" + "#" * 20 + "] 10 users  succeeded"
    failed = {**RUNNING, "status": "failed"}
    assert bar_line(failed, None, NOW).endswith("] 1,234 users  failed")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_is_measured_on_this_clock():
    clock = FakeClock()
    meter = RateMeter(clock)
    assert meter.add(0) is None
    clock.now += 2
    assert meter.add(1000) == 500
    clock.now += 60
    meter.add(1000)
    clock.now += 10
    assert meter.add(2000) == 100, "the last 30 s or so, not since the start"


def test_terminal_progress_is_one_line_redrawn():
    stream, clock = io.StringIO(), FakeClock()
    display = ProgressDisplay(stream, terminal=True, clock=clock)
    display.update({**RUNNING, "usersWritten": 100, "estimatedCompletionAt": None})
    clock.now += 1
    display.update({"id": "j", "status": "queued"})  # a shorter line: the rest is blanked
    display.finish({"id": "j", "status": "succeeded", "userCount": 10})
    text = stream.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n")
    assert text.split("\r")[-1].rstrip().endswith("succeeded")
    assert text.count("\n") == 1
    second = text.split("\r")[2]
    assert second.startswith("[....") and second.endswith(" " * 5)


def test_plain_progress_is_a_line_every_few_seconds_and_on_each_change():
    stream, clock = io.StringIO(), FakeClock()
    display = ProgressDisplay(stream, terminal=False, clock=clock)
    display.update({"id": "j", "status": "queued"})
    display.update({**RUNNING, "usersWritten": 10})  # status changed: shown
    clock.now += 1
    display.update({**RUNNING, "usersWritten": 20})  # too soon: not shown
    clock.now += 5
    display.update({**RUNNING, "usersWritten": 30})
    display.finish({"id": "j", "status": "succeeded", "userCount": 30})
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert len(lines) == 4, lines
    assert lines[0] == "j queued" and lines[-1] == "j succeeded: 30 users"
    assert lines[2].startswith("1748779200000-abcdefgh running: 30 / 10,000 users (0%), 3/s")


def test_file_names_follow_the_job():
    assert file_names({"fileName": "staff.csv"}) == ("staff.csv", "staff-errors.csv")
    assert file_names({"id": "j1", "fileName": "../../etc/passwd"}) == ("j1.csv", "j1-errors.csv")
    assert file_names({"id": "j1"}) == ("j1.csv", "j1-errors.csv")


def test_summary_and_exit_code_of_each_outcome():
    done = {"id": "j", "userCount": 2500, "errorCount": 0}
    assert summary({**done, "status": "succeeded"}) == "Export j succeeded: 2,500 users, 0 errors."
    partial = {**done, "status": "completedWithErrors", "errorCount": 1}
    assert "1 error;" in summary(partial) or "1 error " in summary(partial)
    failed = {"id": "j", "status": "failed", "reason": "Graph refused."}
    assert summary(failed) == "Export j failed: Graph refused."
    assert [
        outcome({"status": s}) for s in ("succeeded", "completedWithErrors", "failed", "cancelled")
    ] == [Exit.SUCCEEDED, Exit.COMPLETED_WITH_ERRORS, Exit.FAILED, Exit.FAILED]
    assert [int(code) for code in Exit][:5] == [0, 1, 2, 3, 4]


# --- the HTTP client against canned answers -------------------------------------------------

APP = "https://myapp.azurewebsites.net"
PROBLEM = {"Content-Type": "application/problem+json"}


def client_answering(*answers: httpx.Response, seen: list | None = None) -> ApiClient:
    queue = list(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return queue.pop(0)

    auth = AppAuth(httpx.URL(APP), key="k3y")
    return ApiClient(APP, auth, transport=httpx.MockTransport(handle))


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_are_exit_4_naming_the_key(status):
    with client_answering(httpx.Response(status)) as client, pytest.raises(CliError) as raised:
        client.jobs(page_size=5)
    assert raised.value.code == Exit.UNREACHABLE and "--key" in raised.value.message
    assert "k3y" not in raised.value.message


def test_a_get_is_retried_through_a_5xx_and_a_429(monkeypatch):
    monkeypatch.setattr("userexport_cli.client.time.sleep", lambda _: None)
    seen: list[httpx.Request] = []
    answers = [
        httpx.Response(503),
        httpx.Response(429, headers={"Retry-After": "2"}),
        httpx.Response(202, json={"id": "j", "status": "running"}, headers={"Retry-After": "7"}),
    ]
    with client_answering(*answers, seen=seen) as client:
        assert client.job("j") == ({"id": "j", "status": "running"}, 7.0)
    assert len(seen) == 3 and all(r.headers["x-functions-key"] == "k3y" for r in seen)


def test_a_post_is_sent_once():
    seen: list[httpx.Request] = []
    answer = httpx.Response(503, json={"detail": "The queue could not be reached."})
    with client_answering(answer, seen=seen) as client, pytest.raises(CliError) as raised:
        client.start({}, idempotency_key="abc")
    assert raised.value.code == Exit.UNREACHABLE and "queue" in raised.value.message
    assert len(seen) == 1 and seen[0].headers["Idempotency-Key"] == "abc"


def test_a_full_backlog_is_exit_6_saying_when_to_try_again():
    detail = "100 exports are queued already (USEREXPORT_MAX_QUEUED_EXPORTS); ..."
    answer = httpx.Response(
        429, json={"status": 429, "detail": detail}, headers={**PROBLEM, "Retry-After": "30"}
    )
    seen: list[httpx.Request] = []
    with client_answering(answer, seen=seen) as client, pytest.raises(CliError) as raised:
        client.start({}, idempotency_key=None)
    assert raised.value.code == Exit.BUSY and len(seen) == 1, "nothing was started, once"
    assert "USEREXPORT_MAX_QUEUED_EXPORTS" in raised.value.message
    assert "in 30 s" in raised.value.message


def test_a_queued_export_shows_its_place():
    queued = {"id": "j", "status": "queued", "queuePosition": 3}
    assert "place 3 in the queue" in bar_line(queued, None)
    assert plain_line(queued, None) == "j queued: place 3 in the queue"
    assert any(re.fullmatch(r"place in the queue:\s+3", line) for line in describe(queued))


def test_answers_that_mean_a_wrong_url_are_exit_4():
    for answer in (httpx.Response(404, text="<html>"), httpx.Response(200, text="<html>")):
        with client_answering(answer) as client, pytest.raises(CliError) as raised:
            client.jobs(page_size=5)
        assert raised.value.code == Exit.UNREACHABLE and "--url" in raised.value.message


def test_a_problem_comes_back_with_its_field():
    body = {
        "title": "Invalid",
        "status": 400,
        "detail": "Unknown column 'x'.",
        "field": "columns[0]",
    }
    answer = httpx.Response(400, json=body, headers=PROBLEM)
    with client_answering(answer) as client, pytest.raises(ApiProblem) as raised:
        client.start({"columns": ["x"]}, idempotency_key=None)
    assert raised.value.field == "columns[0]" and raised.value.detail == "Unknown column 'x'."


def test_the_next_link_is_followed_on_the_app_url_without_a_code():
    seen: list[httpx.Request] = []
    answers = [httpx.Response(200, json={"value": []})]
    with client_answering(*answers, seen=seen) as client:
        client.jobs(page_size=5, next_link="http://internal:8080/api/exports?cursor=c1&code=k")
    assert str(seen[0].url) == f"{APP}/api/exports?cursor=c1"
    assert seen[0].headers["x-functions-key"] == "k3y"


def test_an_entra_token_is_asked_for_the_audience_and_its_failure_is_exit_4(monkeypatch):
    import azure.identity
    from azure.core.credentials import AccessToken
    from azure.core.exceptions import ClientAuthenticationError

    scopes: list[str] = []

    class Credential:
        fail = False

        def get_token(self, scope: str) -> AccessToken:
            scopes.append(scope)
            if Credential.fail:
                raise ClientAuthenticationError("no identity here")
            return AccessToken("t0ken", int(datetime.now(UTC).timestamp()) + 3600)

        def close(self) -> None:
            pass

    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", Credential)
    token = EntraToken("api://userexport-prod")
    auth = AppAuth(httpx.URL(APP), token=token)
    assert _sent(auth, f"{APP}/api/exports").headers["Authorization"] == "Bearer t0ken"
    assert _sent(auth, f"{APP}/api/exports").headers["Authorization"] == "Bearer t0ken"
    assert scopes == ["api://userexport-prod/.default"], "asked once, then cached"
    assert EntraToken("api://x/.default").scope == "api://x/.default"
    Credential.fail = True
    with pytest.raises(CliError) as raised:
        EntraToken("api://userexport-prod").get()
    assert raised.value.code == Exit.UNREACHABLE and "--entra" in raised.value.message


def test_docs_cover_every_command_and_flag():
    doc = (Path(__file__).parents[2] / "docs" / "cli.md").read_text(encoding="utf-8")
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        assert f"### `userexport {name}" in doc, name
        for action in sub._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help":
                    assert f"`{option}" in doc, f"docs/cli.md does not mention {option}"
    for variable in ("USEREXPORT_URL", "USEREXPORT_KEY", "USEREXPORT_AUDIENCE"):
        assert variable in doc
    for code in Exit:
        assert f"| {int(code)} |" in doc, code


# --- issue 14: series, delta mode, snapshot, latest -------------------------------------------

DELTA_JOB = {
    "id": "1748779200000-abcdefgh",
    "status": "succeeded",
    "fileName": "hr.csv",
    "userCount": 1200,
    "errorCount": 0,
    "series": "hr-feed",
    "mode": "delta",
    "snapshot": False,
    "delta": {
        "kind": "changes",
        "reason": "changes since 1748779100000-aaaaaaaa",
        "since": "1748779100000-aaaaaaaa",
        "added": 3,
        "updated": 2,
        "removed": 1,
        "authenticationColumnsFrom": {"jobId": "1748779000000-bbbbbbbb", "at": "2025-06-01T00:00Z"},
    },
    "changesUrl": "https://account.blob.core.windows.net/exports/j/changes.csv?sig=c",
    "errorsUrl": "https://account.blob.core.windows.net/exports/j/errors.csv?sig=e",
}


def test_series_mode_and_snapshot_become_the_request_body():
    args = parse("start", "--series", "hr-feed", "--mode", "delta", "--snapshot")
    assert export_body(args) == {"series": "hr-feed", "mode": "delta", "snapshot": True}
    assert export_body(parse("start", "--mode", "full")) == {"mode": "full"}
    assert "snapshot" not in export_body(parse("start", "--series", "s"))


def test_mode_takes_full_or_delta_only(capsys):
    with pytest.raises(SystemExit) as raised:
        parse("start", "--mode", "changes")
    assert raised.value.code == 2 and "--mode" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("field", "flag"), [("series", "--series"), ("mode", "--mode"), ("snapshot", "--snapshot")]
)
def test_the_new_fields_name_their_flags(field, flag):
    assert flag_for(field) == flag


def test_latest_needs_a_series(capsys):
    with pytest.raises(SystemExit) as raised:
        parse("latest")
    assert raised.value.code == 2 and "--series" in capsys.readouterr().err
    args = parse("latest", "--series", "nightly", "--out", "x", "--force", "--json")
    assert (args.series, args.out, args.force, args.json) == ("nightly", Path("x"), True, True)


def test_the_changes_file_is_named_after_the_csv():
    assert changes_name({"fileName": "hr.csv"}) == "hr-changes.csv"
    assert changes_name({"id": "j1", "fileName": "../x.csv"}) == "j1-changes.csv"


def storage_answering(seen: list[str]) -> ApiClient:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, content=f"body of {request.url.path}".encode())

    return ApiClient(APP, AppAuth(httpx.URL(APP), key="k3y"), transport=httpx.MockTransport(handle))


def test_a_changes_run_downloads_its_changes_file_and_no_csv(tmp_path):
    seen: list[str] = []
    with storage_answering(seen) as client:
        paths = download_files(client, DELTA_JOB, tmp_path, force=False)
    assert paths.csv is None
    assert paths.changes == (tmp_path / "hr-changes.csv").resolve()
    assert paths.errors == (tmp_path / "hr-errors.csv").resolve()
    assert paths.main == paths.changes
    assert paths.changes.read_text() == "body of /exports/j/changes.csv"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hr-changes.csv", "hr-errors.csv"]
    assert paths.as_json() == {"changes": str(paths.changes), "errors": str(paths.errors)}


def test_a_changes_run_with_a_snapshot_downloads_three_files(tmp_path):
    job = {**DELTA_JOB, "snapshot": True, "downloadUrl": "https://a.example/exports/j/users.csv"}
    seen: list[str] = []
    with storage_answering(seen) as client:
        paths = download_files(client, job, tmp_path, force=False)
        assert paths.main == (tmp_path / "hr.csv").resolve()
        assert paths.changes is not None and paths.changes.name == "hr-changes.csv"
        assert len(seen) == 3
        # Already there: refused, naming every file, unless --force.
        with pytest.raises(CliError) as raised:
            download_files(client, job, tmp_path, force=False)
        assert raised.value.code == Exit.USAGE and "hr-changes.csv" in raised.value.message
        download_files(client, job, tmp_path, force=True)


def test_a_job_without_any_file_url_is_exit_4(tmp_path):
    job = {k: v for k, v in DELTA_JOB.items() if k != "changesUrl"}
    with storage_answering([]) as client, pytest.raises(CliError) as raised:
        download_files(client, job, tmp_path, force=False)
    assert raised.value.code == Exit.UNREACHABLE and "hr.csv" in raised.value.message
    assert not list(tmp_path.iterdir()), "nothing written before every URL is known"


def test_a_delta_run_is_summarised_and_described():
    assert summary(DELTA_JOB) == (
        "Export 1748779200000-abcdefgh succeeded: 1,200 users, 0 errors (changes since "
        "1748779100000-aaaaaaaa: 3 added, 2 updated, 1 removed)."
    )
    full = {**DELTA_JOB, "delta": {**DELTA_JOB["delta"], "kind": "full", "since": None}}
    assert "(a full run of a delta series)" in summary(full)
    lines = describe(DELTA_JOB)
    assert "series:" in lines[0] or any(line.startswith("series: ") for line in lines)
    text = "\n".join(lines)
    assert re.search(r"^mode:\s+delta$", text, re.M), text
    assert re.search(r"^delta run:\s+changes$", text, re.M), text
    assert re.search(r"^changes:\s+3 added, 2 updated, 1 removed$", text, re.M), text
    assert "export 1748779000000-bbbbbbbb (2025-06-01T00:00Z)" in text
    plain = describe({"id": "j", "status": "succeeded", "series": None, "mode": "full"})
    assert not any(line.startswith(("series", "mode", "delta")) for line in plain), plain


def test_the_list_shows_the_series():
    lines = table([DELTA_JOB, {"id": "j2", "status": "queued", "series": None}])
    assert lines[0].split() == ["ID", "STATUS", "TRIGGER", "SERIES", "CREATED", "USERS", "FILE"]
    assert "hr-feed" in lines[1] and " - " in lines[2]


def run_main(monkeypatch, capsys, answers: list[httpx.Response], *argv: str, seen=None):
    """main() with the app's answers canned (the storage's too: a 200 with the URL's path)."""
    import userexport_cli.connection as connection

    queue = list(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        if request.url.host != "myapp.azurewebsites.net":
            return httpx.Response(200, content=request.url.path.encode())
        return queue.pop(0)

    real = ApiClient  # not connection's: patched already by an earlier call of this test
    monkeypatch.setattr(
        connection,
        "ApiClient",
        lambda url, auth=None: real(url, auth, transport=httpx.MockTransport(handle)),
    )
    code = main(["--url", APP, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_latest_asks_for_the_series_and_shows_the_export(monkeypatch, capsys):
    seen: list[httpx.Request] = []
    answer = httpx.Response(200, json=DELTA_JOB, headers={"Content-Location": f"{APP}/x"})
    code, out, err = run_main(
        monkeypatch, capsys, [answer], "latest", "--series", "hr-feed", seen=seen
    )
    assert code == 0, err
    assert str(seen[0].url) == f"{APP}/api/exports/latest?series=hr-feed"
    assert re.search(r"^series:\s+hr-feed$", out, re.M), out


def test_latest_out_downloads_the_files_and_exits_as_download(monkeypatch, capsys, tmp_path):
    job = {**DELTA_JOB, "status": "completedWithErrors", "errorCount": 1}
    answer = httpx.Response(200, json=job)
    code, out, err = run_main(
        monkeypatch, capsys, [answer], "latest", "--series", "hr-feed", "--out", str(tmp_path)
    )
    assert code == Exit.COMPLETED_WITH_ERRORS, err
    lines = out.strip().splitlines()
    assert lines[-1] == str((tmp_path / "hr-changes.csv").resolve())
    assert lines[-2] == f"Errors file: {(tmp_path / 'hr-errors.csv').resolve()}"
    code, out, err = run_main(
        monkeypatch,
        capsys,
        [answer],
        "--json",
        "latest",
        "--series",
        "hr-feed",
        "--out",
        str(tmp_path),
        "--force",
    )
    document = json.loads(out)
    assert set(document["downloaded"]) == {"changes", "errors"} and document["delta"]["added"] == 3


def test_latest_of_a_series_without_files_is_exit_2_naming_series(monkeypatch, capsys):
    problem = {
        "type": "about:blank",
        "title": "Not found",
        "status": 404,
        "detail": "The series 'x' has no export with files.",
        "field": "series",
    }
    answer = httpx.Response(404, json=problem, headers=PROBLEM)
    code, out, err = run_main(monkeypatch, capsys, [answer], "latest", "--series", "x")
    assert code == Exit.USAGE and out == ""
    assert err.startswith("userexport: --series: The series 'x' has no export"), err
    bad = {**problem, "status": 400, "detail": "series must be 1 to 63 letters..."}
    answer = httpx.Response(400, json=bad, headers=PROBLEM)
    code, _, err = run_main(monkeypatch, capsys, [answer], "latest", "--series", "a b")
    assert code == Exit.USAGE and "--series: series must be" in err


def test_latest_on_an_app_without_the_route_is_exit_4(monkeypatch, capsys):
    # An older app takes `latest` for an export id: a 404 naming no field.
    problem = {"title": "Export not found", "status": 404, "detail": "There is no export..."}
    answer = httpx.Response(404, json=problem, headers=PROBLEM)
    code, _, err = run_main(monkeypatch, capsys, [answer], "latest", "--series", "x")
    assert code == Exit.UNREACHABLE and "older version" in err, err


@pytest.mark.parametrize(
    ("field", "flag"), [("mode", "--mode"), ("snapshot", "--snapshot"), ("series", "--series")]
)
def test_start_refused_on_a_new_field_names_its_flag(monkeypatch, capsys, field, flag):
    problem = {"title": "Invalid", "status": 400, "detail": "Not like this.", "field": field}
    answer = httpx.Response(400, json=problem, headers=PROBLEM)
    code, _, err = run_main(monkeypatch, capsys, [answer], "start", "--snapshot")
    assert code == Exit.USAGE and err == f"userexport: {flag}: Not like this.\n"
