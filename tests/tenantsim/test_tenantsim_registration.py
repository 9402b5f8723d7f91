"""The registration report (devtools/tenantsim/registration.py) as Microsoft documents it:
derived from each user's methods so it agrees with the methods APIs, disabled users left out,
`startswith(userPrincipalName, ...)` filters, paging, AuditLog.Read.All and a premium tenant,
and the identity and access reports budget it shares with methods reads."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from devtools.tenantsim import SimConfig, iter_users, run_in_thread
from devtools.tenantsim.registration import REPORT_TIME, methods_registered

REPORT = "/reports/authenticationMethods/userRegistrationDetails"
CONFIG = SimConfig(users=1200, seed=7, identity_header="test-secret")
# The v1.0 example response's properties
# (authenticationmethodsroot-list-userregistrationdetails.md).
PROPERTIES = {
    "id",
    "userPrincipalName",
    "userDisplayName",
    "userType",
    "isAdmin",
    "isSsprRegistered",
    "isSsprEnabled",
    "isSsprCapable",
    "isMfaRegistered",
    "isMfaCapable",
    "isPasswordlessCapable",
    "lastUpdatedDateTime",
    "methodsRegistered",
    "isSystemPreferredAuthenticationMethodEnabled",
    "systemPreferredAuthenticationMethods",
    "userPreferredMethodForSecondaryAuthentication",
}


def q(text: str) -> str:
    return quote(text, safe="(),'")


def test_the_report_has_a_row_per_enabled_user_agreeing_with_their_methods(http: Any):
    rows = http.list_all(REPORT)
    users = {u["id"]: u for u in iter_users(CONFIG)}
    enabled = {i for i, u in users.items() if u.get("accountEnabled") is not False}
    assert {r["id"] for r in rows} == enabled and len(rows) == len(enabled) < len(users)
    for row in rows:
        assert set(row) == PROPERTIES
        user = users[row["id"]]
        assert row["userPrincipalName"] == user["userPrincipalName"]
        assert row["lastUpdatedDateTime"] == REPORT_TIME
        # What the methods APIs give the same user, read through them.
        methods = http.list_all(f"/users/{row['id']}/authentication/methods")
        phones = http.list_all(f"/users/{row['id']}/authentication/phoneMethods")
        emails = http.list_all(f"/users/{row['id']}/authentication/emailMethods")
        read = {"methods": methods, "phoneMethods": phones, "emailMethods": emails}
        assert row["methodsRegistered"] == methods_registered({"authentication": read})
        assert ("email" in row["methodsRegistered"]) == bool(emails)
        # Email and a Temporary Access Pass are no second factor (userregistrationdetails.md:
        # "a strong authentication method for multifactor authentication").
        second = set(row["methodsRegistered"]) - {"email", "temporaryAccessPass"}
        assert row["isMfaRegistered"] == bool(second)
        if row is rows[200]:
            break  # the rest as above; reading every user's methods is the slow part
    assert any("mobilePhone" in r["methodsRegistered"] for r in rows)
    assert any(not r["methodsRegistered"] for r in rows)


def test_a_upn_prefix_reads_its_own_range_in_pages(http: Any):
    everyone = http.list_all(REPORT)
    prefix = everyone[0]["userPrincipalName"][:2]
    filtered = http.list_all(f"{REPORT}?$filter={q(f'startswith(userPrincipalName,{prefix!r})')}")
    expected = [r for r in everyone if r["userPrincipalName"].lower().startswith(prefix.lower())]
    assert sorted(r["id"] for r in filtered) == sorted(r["id"] for r in expected) != []
    one = everyone[3]["userPrincipalName"]
    exact = http.list_all(f"{REPORT}?$filter={q(f'userPrincipalName eq {one!r}')}")
    assert [r["userPrincipalName"] for r in exact] == [one]
    status, _, first = http.get(REPORT)
    assert status == 200 and "@odata.nextLink" in first and len(first["value"]) <= 1000


def test_other_filters_and_options_are_400(http: Any):
    for query in (f"$filter={q('department eq ' + repr('x'))}", "$top=5", "$select=id"):
        status, _, body = http.get(f"{REPORT}?{query}")
        assert status == 400, (query, body)


def test_without_audit_log_or_premium_the_report_is_refused(make_http: Any):
    roles = tuple(r for r in CONFIG.roles if r != "AuditLog.Read.All")
    with run_in_thread(SimConfig(users=20, seed=7, roles=roles)) as sim:
        status, _, body = make_http(sim).get(REPORT)
    assert status == 403 and body["error"]["code"] == "Authentication_MSGraphPermissionMissing"
    with run_in_thread(SimConfig(users=20, seed=7)) as sim:
        http = make_http(sim)
        assert http.faults({"premium": False})[0] == 200
        status, _, body = http.get(REPORT)
    assert status == 403
    assert body["error"]["code"] == "Authentication_RequestFromNonPremiumTenantOrB2CTenant"


def test_the_report_and_methods_reads_share_the_documented_budget(make_http: Any):
    """throttling-limits.md, identity and access reports: five requests per 10 seconds per app
    per tenant, authenticationMethod among them; the report counts against the same budget."""
    with run_in_thread(SimConfig(users=20, seed=7, auth_budget=5)) as sim:
        http = make_http(sim)
        user = http.list_all("/users")[0]["id"]
        started = time.monotonic()
        answers = [http.get(REPORT)[0] for _ in range(3)]
        answers += [http.get(f"/users/{user}/authentication/methods")[0] for _ in range(3)]
        assert time.monotonic() - started < 5
    assert answers[:5] == [200] * 5 and answers[5] == 429, answers
