"""The column catalogue: presets, sign-in activity, licence names, complex properties, and the
authentication columns read from one methods list or from their own lists."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from userexport.columns import (
    ALL_METHODS,
    CATALOGUE,
    DEFAULT_COLUMN_NAMES,
    EMAIL_METHODS,
    PHONE_METHODS,
    PRESETS,
    ColumnContext,
    graph_select,
    lookups,
    resolve,
)
from userexport.csvfile import CsvEncoder

STARTED = datetime(2026, 11, 29, 10, 0, 0, tzinfo=UTC)


def values(names: list[str], user: dict, auth: dict | None = None, **context: object) -> list:
    columns = resolve(names, ColumnContext(**context))  # type: ignore[arg-type]
    return [c.value(user, auth or {}) for c in columns]


def test_presets_expand_to_known_columns_and_admin_center_is_the_default():
    assert PRESETS["adminCenter"] == DEFAULT_COLUMN_NAMES
    assert len(PRESETS["preview"]) == 25 + 27
    assert PRESETS["preview"][:25] == DEFAULT_COLUMN_NAMES
    assert set(PRESETS["all"]) == set(CATALOGUE)
    for names in PRESETS.values():
        assert len(set(names)) == len(names)
        resolve(names)  # every name is in the catalogue


def test_sign_in_columns_read_signin_activity_and_days_since_the_last_successful_one():
    user = {
        "signInActivity": {
            "lastSignInDateTime": "2026-11-20T10:00:00Z",  # a failed attempt: not counted
            "lastNonInteractiveSignInDateTime": "2026-11-01T09:59:59Z",
            "lastSuccessfulSignInDateTime": "2026-11-01T09:59:59Z",
        }
    }
    names = [
        "lastSignInDateTime",
        "lastNonInteractiveSignInDateTime",
        "lastSuccessfulSignInDateTime",
        "daysSinceLastSignIn",
    ]
    assert values(names, user, as_of=STARTED) == [
        "2026-11-20T10:00:00Z",
        "2026-11-01T09:59:59Z",
        "2026-11-01T09:59:59Z",
        # From the last successful sign-in (28 days and 1 second: whole days, rounded down),
        # never from a later failed attempt.
        28,
    ]
    assert graph_select(resolve(names)) == ["id", "userPrincipalName", "signInActivity"]
    assert graph_select(resolve(names), sign_in=False) == ["id", "userPrincipalName"]


@pytest.mark.parametrize(
    "activity",
    [
        None,  # never signed in: Graph leaves signInActivity out
        {},
        {
            "lastSignInDateTime": "0001-01-01T00:00:00Z",  # Graph's value for "never"
            "lastNonInteractiveSignInDateTime": "0001-01-01T00:00:00Z",
            "lastSuccessfulSignInDateTime": None,
        },
        {
            # Signed in (and failed) since December 2023, when Graph began recording
            # successful sign-ins, without a success: none Graph has.
            "lastSignInDateTime": "2026-10-30T00:00:00Z",
            "lastNonInteractiveSignInDateTime": "2023-06-01T00:00:00Z",
            "lastSuccessfulSignInDateTime": None,
        },
    ],
)
def test_days_since_last_sign_in_is_empty_without_a_successful_sign_in(activity):
    user = {} if activity is None else {"signInActivity": activity}
    assert values(["daysSinceLastSignIn"], user, as_of=STARTED) == [None]
    row = CsvEncoder(resolve(["daysSinceLastSignIn"], ColumnContext(as_of=STARTED))).rows(
        [user], {}
    )
    assert row == b'""\r\n'  # one empty field, quoted so the row is not blank


def test_licences_by_part_number_keep_the_id_of_a_sku_the_tenant_no_longer_lists():
    user = {
        "assignedLicenses": [
            {"skuId": "6fd2c87f-b296-42f0-b197-1e91e994b900", "disabledPlans": []},
            {"skuId": "00000000-0000-0000-0000-00000000dead", "disabledPlans": []},
        ]
    }
    skus = {"6fd2c87f-b296-42f0-b197-1e91e994b900": "ENTERPRISEPACK"}
    assert values(["assignedLicenses", "assignedLicenseIds"], user, skus=skus) == [
        "ENTERPRISEPACK;00000000-0000-0000-0000-00000000dead",
        "6fd2c87f-b296-42f0-b197-1e91e994b900;00000000-0000-0000-0000-00000000dead",
    ]
    assert values(["assignedLicenses"], {"assignedLicenses": []}, skus=skus) == [""]


def test_complex_properties_are_exported_whole_as_compact_json():
    user = {
        "employeeOrgData": {"division": "Retail", "costCenter": "CC-1"},
        "identities": [{"signInType": "userPrincipalName", "issuer": "x", "issuerAssignedId": "a"}],
        "signInActivity": {"lastSignInDateTime": "2026-01-01T00:00:00Z"},
    }
    encoder = CsvEncoder(
        resolve(
            [
                "employeeOrgData",
                "employeeOrgData.division",
                "employeeOrgData.costCenter",
                "identities",
                "signInActivity",
            ]
        ),
        formula_guard=False,
    )
    assert encoder.rows([user], {}).decode() == (
        '"{""division"":""Retail"",""costCenter"":""CC-1""}",Retail,CC-1,'
        '"[{""signInType"":""userPrincipalName"",""issuer"":""x"",""issuerAssignedId"":""a""}]",'
        '"{""lastSignInDateTime"":""2026-01-01T00:00:00Z""}"\r\n'
    )


PHONES = [
    {"phoneNumber": "+1 5550001", "phoneType": "mobile", "smsSignInState": "ready", "id": "m"},
    {"phoneNumber": "+1 4440001", "phoneType": "alternateMobile", "id": "a"},
]
EMAILS = [{"emailAddress": "first@example.com", "id": "e1"}]
AUTH = ["authenticationAlternativePhoneNumber", "authenticationEmail"]


def test_both_authentication_columns_take_one_lookup_and_give_the_same_values():
    assert lookups(resolve(AUTH)) == (ALL_METHODS,)
    assert lookups(resolve(AUTH[:1])) == (PHONE_METHODS,)
    assert lookups(resolve(AUTH[1:])) == (EMAIL_METHODS,)
    assert lookups(resolve(["displayName"])) == ()
    methods = [
        {"@odata.type": "#microsoft.graph.passwordAuthenticationMethod", "id": "p"},
        *({"@odata.type": "#microsoft.graph.phoneAuthenticationMethod", **m} for m in PHONES),
        {"@odata.type": "#microsoft.graph.fido2AuthenticationMethod", "id": "f"},
        *({"@odata.type": "#microsoft.graph.emailAuthenticationMethod", **m} for m in EMAILS),
    ]
    from_list = values(AUTH, {}, {ALL_METHODS: methods})
    from_own = values(AUTH, {}, {PHONE_METHODS: PHONES, EMAIL_METHODS: EMAILS})
    assert from_list == from_own == ["+1 4440001", "first@example.com"]
    assert values(AUTH, {}, {ALL_METHODS: methods[:1]}) == [None, None]
