"""The registration report's columns (the `mfa` preset) and fewerLookups, in-process against
Azurite and the simulated tenant, whose report is derived from each user's own methods
(devtools/tenantsim/registration.py): what a caller checks in the CSV and the errors file."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from devtools.stack import LocalStack
from devtools.tenantsim import SimConfig, iter_users
from devtools.tenantsim.registration import REPORT_TIME, details
from tests.e2e.conftest import Storage, set_faults
from userexport import plan as plan_step
from userexport.columns import PRESETS, REGISTRATION, resolve
from userexport.csvfile import CsvEncoder
from userexport.graph.registration import needs_lookup
from userexport.plan import PROBE_USERS

from .conftest import SEED, USERS
from .test_app import export, fetch, records

CONFIG = SimConfig(users=USERS, seed=SEED)


def expected(columns: tuple[str, ...], prefixes: list[str]) -> bytes:
    """The CSV from the tenant's own data: each enabled user's report row as the simulator
    derives it from the user's methods; disabled users (no row) with empty report cells."""
    users = list(iter_users(CONFIG))
    ordered = [u for p in prefixes for u in users if u["userPrincipalName"].lower().startswith(p)]
    auth: dict[str, Any] = {}
    for user in users:
        row = details(user)
        auth[user["id"]] = {**(user.get("authentication") or {})}
        if row is not None:
            auth[user["id"]][REGISTRATION] = [row]
    encoder = CsvEncoder(resolve(columns))
    return encoder.header() + encoder.rows(ordered, auth)


async def prefixes_of(local: LocalStack, job_id: str) -> list[str]:
    storage = Storage(local)
    try:
        return await storage.plan_prefixes(job_id)
    finally:
        await storage.close()


def stats(local: LocalStack) -> dict[str, Any]:
    return httpx.get(local.sim["stats"], timeout=30).json()


async def test_the_mfa_preset_is_the_report_for_every_user_and_says_once_why_disabled_are_empty(
    local, app, monkeypatch
):
    # Few report rows in memory, so the plan cuts the listing into UPN ranges a partition
    # reads the report of one at a time: 400 among the suite's 8 partitions, at most 50 users
    # a range (200,000 in production: 6,250 a range among 32 partitions).
    monkeypatch.setattr(plan_step, "REPORT_ROWS", 400)
    job = await export(app, {"columns": "mfa"})
    assert job["status"] == "completedWithErrors", job
    assert job["userCount"] == USERS
    assert job["registrationReportTime"] == REPORT_TIME
    # The plan probed the report's bucket (one $batch of report queries): a generous tenant.
    assert job["estimate"]["authenticationRateSource"] == "probed", job["estimate"]
    assert job["estimate"]["reportRequests"] >= len(await prefixes_of(local, job["id"]))
    prefixes = await prefixes_of(local, job["id"])
    users = list(iter_users(CONFIG))
    for prefix in prefixes:
        held = sum(u["userPrincipalName"].lower().startswith(prefix) for u in users)
        assert held <= 50 * 1.25, (prefix, held)
    data = fetch(local, job["downloadUrl"])
    assert data == expected(PRESETS["mfa"], prefixes)
    disabled = [u for u in users if u.get("accountEnabled") is False]
    assert disabled, "the generated tenant has disabled users"
    rows = records(fetch(local, job["errorsUrl"]))[1:]
    assert len(rows) == 1 and job["errorCount"] == 1, rows
    assert rows[0][2:5] == [REGISTRATION, "", "disabledUsers"]
    assert f"for the {len(disabled)} disabled user(s)" in rows[0][5]
    assert "disabled" in job["reason"]


async def test_without_premium_the_report_columns_are_empty_with_one_notice(local, app):
    set_faults(local, {"premium": False})  # 403 Authentication_RequestFromNonPremiumTenant...
    try:
        job = await export(app, {"columns": ["objectId", "isMfaRegistered", "methodsRegistered"]})
    finally:
        set_faults(local, {"premium": True})
    assert job["status"] == "completedWithErrors", job
    assert job["userCount"] == USERS
    table = records(fetch(local, job["downloadUrl"]))
    assert table[0] == ["objectId", "isMfaRegistered", "methodsRegistered"]
    assert all(row[1:] == ["", ""] for row in table[1:]) and len(table) == USERS + 1
    rows = records(fetch(local, job["errorsUrl"]))[1:]
    assert len(rows) == 1, rows
    assert rows[0][2:5] == [
        REGISTRATION,
        "403",
        "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
    ]
    assert "isMfaRegistered, methodsRegistered" in rows[0][5] and "AuditLog.Read.All" in rows[0][5]
    assert "registrationReportTime" not in job


async def test_fewer_lookups_writes_the_same_csv_with_only_the_users_the_report_cannot_rule_out(
    local, app
):
    before = stats(local)["requests"]
    exact = await export(app, {"columns": ["objectId", "authenticationAlternativePhoneNumber"]})
    middle = stats(local)["requests"]
    fewer = await export(
        app,
        {"columns": ["objectId", "authenticationAlternativePhoneNumber"], "fewerLookups": True},
    )
    after = stats(local)["requests"]
    assert exact["status"] == fewer["status"] == "succeeded", (exact, fewer)
    assert fetch(local, fewer["downloadUrl"]) == fetch(local, exact["downloadUrl"])
    assert fewer["registrationReportTime"] == REPORT_TIME and fewer["fewerLookups"] is True
    users = list(iter_users(CONFIG))
    needed = sum(needs_lookup(details(u)) for u in users)
    asked_exact = sum(middle.get(k, 0) - before.get(k, 0) for k in ("phoneMethods", "methods"))
    asked_fewer = sum(after.get(k, 0) - middle.get(k, 0) for k in ("phoneMethods", "methods"))
    # Each plan step checks one user's methods before the partitions ask, and probes the
    # limit with PROBE_USERS lookups unless the instances learnt a rate meanwhile (one may, the
    # other not): past that, the difference is the users the report ruled out.
    assert needed < USERS  # disabled users (no row) are among those asked
    assert asked_exact - asked_fewer - (USERS - needed) in (0, PROBE_USERS, -PROBE_USERS)
    assert after["userRegistrationDetails"] > middle.get("userRegistrationDetails", 0)


@pytest.mark.parametrize("field", ["fewerLookups"])
async def test_a_delta_run_refuses_report_columns_and_fewer_lookups(app, field):
    body = {"mode": "delta", "series": "reg", "columns": ["objectId", "isAdmin"]}
    answer = await app.post("/api/exports", json=body)
    assert answer.status_code == 400 and answer.json()["field"] == "columns[1]", answer.text
    body = {"mode": "delta", "series": "reg", field: True}
    answer = await app.post("/api/exports", json=body)
    assert answer.status_code == 400 and answer.json()["field"] == field, answer.text


async def test_a_dry_run_in_a_generous_tenant_probes_and_plans_at_the_apps_budget(app):
    """The probe's twenty lookups all served: the lookups go at the app's budget, and the
    estimate says the work binds (test_auth_limit.py plays the documented world)."""
    job = await export(app, {"dryRun": True})
    shown = job["estimate"]
    assert job["status"] == "estimated", job
    assert shown["authenticationRateSource"] == "probed", shown
    assert shown["bindingLimit"] == "work" and shown["authenticationRate"] > 5.0
    assert shown["durationSeconds"] < 60
