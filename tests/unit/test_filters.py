"""The `filter` of an export request: validation, normalization, and the exact Graph $filter."""

from __future__ import annotations

from typing import Any

import pytest

from devtools.tenantsim import odata
from userexport.filters import (
    KEYS,
    SCOPE_KEYS,
    GraphQuery,
    InvalidFilter,
    Scope,
    parse_filter,
    to_graph_query,
    with_upn_prefix,
)

INJECTION = "x' or true or department eq 'y"


def _invalid(value: Any) -> InvalidFilter:
    with pytest.raises(InvalidFilter) as caught:
        parse_filter(value)
    assert caught.value.detail
    assert str(caught.value) == caught.value.detail
    return caught.value


# ------------------------------------------------------------------------ parse_filter
def test_absent_filter_is_none_and_empty_object_means_no_filter():
    assert parse_filter(None) is None
    assert parse_filter({}) == {}
    assert to_graph_query(None) == GraphQuery(None, False)
    assert to_graph_query({}) == GraphQuery(None, False)


def test_every_key_is_normalized_and_put_in_a_fixed_order():
    raw = {
        "createdBefore": "2024-06-30T23:59:59+02:00",
        "displayNamePrefix": "Adele",
        "createdAfter": "2024-01-01",
        "userPrincipalNamePrefix": "adele.",
        "domain": "Contoso.COM",
        "companyName": "Contoso Ltd.",
        "department": "Sales",
        "accountEnabled": False,
        "userType": "gUeSt",
    }
    parsed = parse_filter(raw)
    assert parsed == {
        "userType": "Guest",
        "accountEnabled": False,
        "department": "Sales",
        "companyName": "Contoso Ltd.",
        "domain": "contoso.com",
        "userPrincipalNamePrefix": "adele.",
        "displayNamePrefix": "Adele",
        "createdAfter": "2024-01-01T00:00:00Z",
        "createdBefore": "2024-06-30T21:59:59Z",
    }
    assert list(parsed or {}) == [k for k in KEYS if k not in SCOPE_KEYS]
    assert parse_filter(parsed) == parsed  # idempotent: a stored filter re-validates as is


@pytest.mark.parametrize(
    ("given", "normalized"),
    [
        ("2024-01-01", "2024-01-01T00:00:00Z"),
        ("2024-01-01T10:20:30Z", "2024-01-01T10:20:30Z"),
        ("2024-01-01t10:20:30z", "2024-01-01T10:20:30Z"),
        ("2024-01-01 10:20:30Z", "2024-01-01T10:20:30Z"),
        ("2024-01-01T10:20Z", "2024-01-01T10:20:00Z"),
        ("2024-01-01T01:00:00+02:00", "2023-12-31T23:00:00Z"),
        ("2024-01-01T01:00:00-0530", "2024-01-01T06:30:00Z"),
        ("2024-01-01T10:20:30.000Z", "2024-01-01T10:20:30Z"),
        ("0999-05-06", "0999-05-06T00:00:00Z"),
    ],
)
def test_datetimes_are_normalized_to_utc_seconds(given: str, normalized: str):
    assert parse_filter({"createdAfter": given}) == {"createdAfter": normalized}
    assert parse_filter({"createdBefore": given}) == {"createdBefore": normalized}


def test_fractional_bounds_round_inwards_so_whole_second_timestamps_match_the_same():
    parsed = parse_filter(
        {"createdAfter": "2024-01-01T10:00:00.25Z", "createdBefore": "2024-01-01T11:00:00,999Z"}
    )
    assert parsed == {
        "createdAfter": "2024-01-01T10:00:01Z",
        "createdBefore": "2024-01-01T11:00:00Z",
    }


def test_created_after_may_equal_created_before():
    parsed = parse_filter({"createdAfter": "2024-01-01", "createdBefore": "2024-01-01T00:00:00Z"})
    assert parsed == {
        "createdAfter": "2024-01-01T00:00:00Z",
        "createdBefore": "2024-01-01T00:00:00Z",
    }


def test_strings_are_kept_verbatim_apart_from_validation():
    for value in ('Legal "Compliance"', "O'Brien", "研究開発", "+Growth", "=SUM(A1)", "a" * 256):
        assert parse_filter({"department": value}) == {"department": value}
    # Zero-width joiners (format characters) are part of ordinary emoji.
    assert parse_filter({"displayNamePrefix": "Chef 👩\u200d🍳"}) == {
        "displayNamePrefix": "Chef 👩\u200d🍳"
    }


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ([], "filter"),
        ("userType eq 'Guest'", "filter"),
        (1, "filter"),
        (True, "filter"),
        ({"shoeSize": 42}, "filter.shoeSize"),
        ({"department": "Sales", "Department": "Sales"}, "filter.Department"),
        ({"userType": "Admin"}, "filter.userType"),
        ({"userType": ""}, "filter.userType"),
        ({"userType": None}, "filter.userType"),
        ({"userType": ["Guest"]}, "filter.userType"),
        ({"accountEnabled": "false"}, "filter.accountEnabled"),
        ({"accountEnabled": 0}, "filter.accountEnabled"),
        ({"accountEnabled": None}, "filter.accountEnabled"),
        ({"department": ""}, "filter.department"),
        ({"department": "   "}, "filter.department"),
        ({"department": None}, "filter.department"),
        ({"department": 7}, "filter.department"),
        ({"department": ["Sales"]}, "filter.department"),
        ({"department": "a" * 257}, "filter.department"),
        ({"department": "Ops\nNight shift"}, "filter.department"),
        ({"department": "Data\tScience"}, "filter.department"),
        ({"department": "nul\x00"}, "filter.department"),
        ({"department": "c1\x85"}, "filter.department"),
        ({"department": "lone \ud800"}, "filter.department"),
        ({"companyName": ""}, "filter.companyName"),
        ({"companyName": {"eq": "x"}}, "filter.companyName"),
        ({"userPrincipalNamePrefix": ""}, "filter.userPrincipalNamePrefix"),
        ({"userPrincipalNamePrefix": "a\rb"}, "filter.userPrincipalNamePrefix"),
        ({"displayNamePrefix": 1.5}, "filter.displayNamePrefix"),
        ({"displayNamePrefix": "x" * 300}, "filter.displayNamePrefix"),
        ({"domain": ""}, "filter.domain"),
        ({"domain": "contoso"}, "filter.domain"),
        ({"domain": "@contoso.com"}, "filter.domain"),
        ({"domain": "user@contoso.com"}, "filter.domain"),
        ({"domain": "contoso.com."}, "filter.domain"),
        ({"domain": ".contoso.com"}, "filter.domain"),
        ({"domain": "contoso..com"}, "filter.domain"),
        ({"domain": "-contoso.com"}, "filter.domain"),
        ({"domain": "contoso-.com"}, "filter.domain"),
        ({"domain": "con_toso.com"}, "filter.domain"),
        ({"domain": "contoso.com'"}, "filter.domain"),
        ({"domain": "contoso.com') or true or ('"}, "filter.domain"),
        ({"domain": "cöntoso.com"}, "filter.domain"),
        ({"domain": "10.0.0.1"}, "filter.domain"),
        ({"domain": "a" * 64 + ".com"}, "filter.domain"),
        ({"domain": ("a" * 62 + ".") * 4 + "com"}, "filter.domain"),  # 255 > 253
        ({"domain": True}, "filter.domain"),
        ({"createdAfter": ""}, "filter.createdAfter"),
        ({"createdAfter": "yesterday"}, "filter.createdAfter"),
        ({"createdAfter": "2024-01-01T10:00:00"}, "filter.createdAfter"),  # no offset
        ({"createdAfter": "2024-02-30"}, "filter.createdAfter"),
        ({"createdAfter": "2024-01-01T25:00:00Z"}, "filter.createdAfter"),
        ({"createdAfter": "2024-01-01T10:00:00+25:00"}, "filter.createdAfter"),
        ({"createdAfter": "2024-1-1"}, "filter.createdAfter"),
        ({"createdAfter": "20240101"}, "filter.createdAfter"),
        ({"createdAfter": "2024-W01-1"}, "filter.createdAfter"),
        ({"createdAfter": "2024-01-01T00:00:00Z or true"}, "filter.createdAfter"),
        ({"createdAfter": "0001-01-01T00:00:00+01:00"}, "filter.createdAfter"),  # before year 1
        ({"createdAfter": "9999-12-31T23:59:59.5Z"}, "filter.createdAfter"),  # rounds past 9999
        ({"createdAfter": 1704067200}, "filter.createdAfter"),
        ({"createdBefore": "2024-13-01"}, "filter.createdBefore"),
        ({"createdBefore": None}, "filter.createdBefore"),
        (
            {"createdAfter": "2024-01-02", "createdBefore": "2024-01-01T23:59:59Z"},
            "filter.createdAfter",
        ),
    ],
)
def test_every_invalid_value_names_its_field(value: Any, field: str):
    error = _invalid(value)
    assert error.field == field
    assert isinstance(error, ValueError)


def test_details_say_what_is_allowed():
    assert "Member, Guest" in _invalid({"userType": "Admin"}).detail
    unknown = _invalid({"shoeSize": 42}).detail
    assert "shoeSize" in unknown and all(key in unknown for key in KEYS)
    assert "Did you mean 'department'" in _invalid({"Department": "x"}).detail
    assert "Did you mean 'displayNamePrefix'" in _invalid({"displayNamePrefx": "x"}).detail
    assert "contoso.com" in _invalid({"domain": "nope"}).detail
    assert "2024-05-01T13:00:00Z" in _invalid({"createdAfter": "nope"}).detail
    assert "true or false" in _invalid({"accountEnabled": "yes"}).detail
    assert "256" in _invalid({"department": "a" * 257}).detail
    order = _invalid({"createdAfter": "2024-01-02", "createdBefore": "2024-01-01"}).detail
    assert "2024-01-02T00:00:00Z" in order and "2024-01-01T00:00:00Z" in order


def test_an_odd_unknown_key_is_not_echoed_into_the_field_name():
    for key in ("a.b", "", "x" * 100, "filter[0]", "ünïcode"):
        error = _invalid({key: 1})
        assert error.field == "filter"
        assert key not in error.detail or not key


# ------------------------------------------------------------------------ to_graph_query
@pytest.mark.parametrize(
    ("value", "text", "advanced"),
    [
        ({"userType": "member"}, "userType eq 'Member'", False),
        ({"userType": "Guest"}, "userType eq 'Guest'", False),
        ({"accountEnabled": True}, "accountEnabled eq true", False),
        ({"accountEnabled": False}, "accountEnabled eq false", False),
        ({"department": "Sales"}, "department eq 'Sales'", False),
        ({"department": "O'Brien's"}, "department eq 'O''Brien''s'", False),
        ({"companyName": "Contoso Ltd."}, "companyName eq 'Contoso Ltd.'", True),
        ({"domain": "Contoso.com"}, "endsWith(userPrincipalName,'@contoso.com')", True),
        ({"userPrincipalNamePrefix": "adele."}, "startsWith(userPrincipalName,'adele.')", False),
        ({"displayNamePrefix": "Adele O'"}, "startsWith(displayName,'Adele O''')", False),
        ({"createdAfter": "2024-01-01"}, "createdDateTime ge 2024-01-01T00:00:00Z", False),
        (
            {"createdBefore": "2024-01-01T12:00:00+01:00"},
            "createdDateTime le 2024-01-01T11:00:00Z",
            False,
        ),
    ],
)
def test_each_key_gives_this_exact_odata(value: dict[str, Any], text: str, advanced: bool):
    assert to_graph_query(parse_filter(value)) == GraphQuery(text, advanced)


def test_keys_combine_with_and_in_the_fixed_order():
    query = to_graph_query(
        parse_filter(
            {
                "createdBefore": "2024-12-31",
                "createdAfter": "2024-01-01",
                "department": "Engineering",
                "accountEnabled": True,
                "userType": "Member",
            }
        )
    )
    assert query == GraphQuery(
        "userType eq 'Member' and accountEnabled eq true and department eq 'Engineering' "
        "and createdDateTime ge 2024-01-01T00:00:00Z and createdDateTime le 2024-12-31T00:00:00Z",
        False,
    )


def test_one_advanced_clause_makes_the_whole_query_advanced():
    query = to_graph_query(parse_filter({"userType": "Guest", "domain": "fabrikam.com"}))
    assert query == GraphQuery(
        "userType eq 'Guest' and endsWith(userPrincipalName,'@fabrikam.com')", True
    )
    query = to_graph_query(parse_filter({"department": "IT", "companyName": "Adatum"}))
    assert query == GraphQuery("department eq 'IT' and companyName eq 'Adatum'", True)


def test_every_key_at_once():
    query = to_graph_query(
        parse_filter(
            {
                "userType": "Member",
                "accountEnabled": True,
                "department": "Sales",
                "companyName": "Fabrikam",
                "domain": "fabrikam.com",
                "userPrincipalNamePrefix": "adele",
                "displayNamePrefix": "Adele",
                "createdAfter": "2020-01-01",
                "createdBefore": "2021-01-01",
            }
        )
    )
    assert query.advanced is True
    assert query.filter == (
        "userType eq 'Member' and accountEnabled eq true and department eq 'Sales' and "
        "companyName eq 'Fabrikam' and endsWith(userPrincipalName,'@fabrikam.com') and "
        "startsWith(userPrincipalName,'adele') and startsWith(displayName,'Adele') and "
        "createdDateTime ge 2020-01-01T00:00:00Z and createdDateTime le 2021-01-01T00:00:00Z"
    )
    flt = odata.parse_filter(query.filter or "")
    assert flt.advanced is True  # the simulator agrees endsWith needs the advanced parameters
    assert flt.properties == {
        "userType",
        "accountEnabled",
        "department",
        "companyName",
        "userPrincipalName",
        "displayName",
        "createdDateTime",
    }


def test_to_graph_query_revalidates_what_it_is_given():
    # A tampered or hand-written job record gets no further than a caller's request would.
    with pytest.raises(InvalidFilter) as caught:
        to_graph_query({"accountEnabled": "true or 1 eq 1"})
    assert caught.value.field == "filter.accountEnabled"
    with pytest.raises(InvalidFilter) as caught:
        to_graph_query({"createdAfter": "2024-01-01T00:00:00Z or true"})
    assert caught.value.field == "filter.createdAfter"
    with pytest.raises(InvalidFilter):
        to_graph_query({"$filter": "true"})


# ------------------------------------------------------------------------ injection
def test_an_injection_attempt_stays_one_string_literal():
    query = to_graph_query(parse_filter({"department": INJECTION}))
    assert query == GraphQuery("department eq 'x'' or true or department eq ''y'", False)


def _comparisons(monkeypatch: pytest.MonkeyPatch, text: str) -> tuple[odata.Filter, list[Any]]:
    """Parse with the simulator's OData parser, recording every comparison it builds."""
    seen: list[Any] = []
    real = odata._compare

    def spy(prop: str, op: str, value: Any) -> odata.Predicate:
        seen.append((prop, op, value))
        return real(prop, op, value)

    monkeypatch.setattr(odata, "_compare", spy)
    return odata.parse_filter(text), seen


def test_the_simulators_parser_sees_a_single_comparison(monkeypatch: pytest.MonkeyPatch):
    query = to_graph_query(parse_filter({"department": INJECTION}))
    flt, seen = _comparisons(monkeypatch, query.filter or "")
    assert seen == [("department", "eq", INJECTION)]
    assert flt.properties == {"department"}
    assert flt.advanced is False
    assert flt.predicate({"department": INJECTION}) is True
    assert flt.predicate({"department": INJECTION.upper()}) is True  # case-insensitive
    for other in ("x", "y", "", None, "anything"):
        assert flt.predicate({"department": other}) is False


@pytest.mark.parametrize(
    "payload",
    [
        "'",
        "''",
        "' or 1 eq 1 or department eq '",
        "x') or startsWith(displayName,'",
        "a' and accountEnabled eq true and userType eq 'Member",
        "\\' or true --",
        "%27 or true",
        "x)(",
    ],
)
@pytest.mark.parametrize(
    ("key", "prop", "kind"),
    [
        ("department", "department", "eq"),
        ("companyName", "companyName", "eq"),
        ("userPrincipalNamePrefix", "userPrincipalName", "startswith"),
        ("displayNamePrefix", "displayName", "startswith"),
    ],
)
def test_no_string_key_can_break_out_of_its_literal(
    monkeypatch: pytest.MonkeyPatch, payload: str, key: str, prop: str, kind: str
):
    query = to_graph_query(parse_filter({key: payload}))
    flt, seen = _comparisons(monkeypatch, query.filter or "")
    assert flt.properties == {prop}
    if kind == "eq":
        assert seen == [(prop, "eq", payload)]
    else:
        assert seen == []  # a function call, not a comparison
        assert flt.predicate({prop: payload + "tail"}) is True
        assert flt.predicate({prop: "tail" + payload}) is False
    assert flt.predicate({prop: payload}) is True
    assert flt.predicate({prop: "x"}) is False


GROUP = "0f3b5d4e-1a2b-4c3d-8e9f-001122334455"


def test_a_group_scope_lists_its_members_and_any_filter_on_them_is_advanced():
    alone = to_graph_query({"group": GROUP.upper()})
    assert alone == GraphQuery(None, False, Scope("group", GROUP))
    combined = to_graph_query({"administrativeUnit": GROUP, "department": "Sales"})
    assert combined == GraphQuery("department eq 'Sales'", True, Scope("administrativeUnit", GROUP))
    # Splitting a member list by UPN is a filter too: advanced, and the scope is kept.
    split = with_upn_prefix(alone, "a")
    assert split == GraphQuery("startsWith(userPrincipalName,'a')", True, Scope("group", GROUP))
    assert with_upn_prefix(to_graph_query({}), "a").advanced is False


@pytest.mark.parametrize("key", SCOPE_KEYS)
@pytest.mark.parametrize("value", ["Sales team", GROUP + "0", "", 12, None, GROUP[:-1] + "g"])
def test_a_scope_must_be_an_object_id(key: str, value: object):
    with pytest.raises(InvalidFilter) as error:
        parse_filter({key: value})
    assert error.value.field == f"filter.{key}"
    assert "Object ID" in error.value.detail or "object id" in error.value.detail


def test_a_group_and_an_administrative_unit_cannot_be_combined():
    with pytest.raises(InvalidFilter) as error:
        parse_filter({"group": GROUP, "administrativeUnit": GROUP})
    assert error.value.field == "filter.administrativeUnit"
