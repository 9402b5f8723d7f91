"""The registration report's rows as the export keeps them (graph/registration.py)."""

from __future__ import annotations

from userexport.columns import REGISTRATION_COLUMN_NAMES
from userexport.graph.registration import Report, needs_lookup


def test_a_kept_row_reads_back_as_the_columns_show_it():
    row = {
        "isMfaRegistered": True,
        "methodsRegistered": ["mobilePhone", "fido2"],
        "systemPreferredAuthenticationMethods": [],
        "userPreferredMethodForSecondaryAuthentication": "",
        "lastUpdatedDateTime": "2026-12-06T10:00:00Z",
    }
    report = Report(REGISTRATION_COLUMN_NAMES)
    report.add({"id": "u1", **row})
    got = report.row("u1")
    assert got is not None and report.row("u2") is None
    assert got["isMfaRegistered"] is True and got["isAdmin"] is None
    assert got["methodsRegistered"] == "mobilePhone;fido2"
    assert got["systemPreferredAuthenticationMethods"] == ""
    assert got["lastUpdatedDateTime"] == "2026-12-06T10:00:00Z"


def test_only_rows_that_rule_out_a_phone_and_an_email_skip_the_lookup():
    assert needs_lookup(None), "no row: disabled, or newer than the report"
    assert needs_lookup({"methodsRegistered": "mobilePhone"})
    assert needs_lookup({"methodsRegistered": ["email"]})
    assert needs_lookup({"methodsRegistered": "fido2;someMethodGraphAddsLater"}), "open set"
    assert not needs_lookup({"methodsRegistered": "fido2;microsoftAuthenticatorPush"})
    assert not needs_lookup({"methodsRegistered": ""}), "nothing registered: nothing to read"
