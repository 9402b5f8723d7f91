"""Filters end to end: parse_filter -> to_graph_query -> GraphReader over the real msgraph-sdk
and ManagedIdentityCredential -> the simulated tenant, checked against the generated users."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from azure.identity.aio import ManagedIdentityCredential
from msgraph import GraphServiceClient

from devtools.tenantsim import RunningSim, SimConfig, iter_users, run_in_thread
from userexport.filters import GraphQuery, parse_filter, to_graph_query
from userexport.graph import GraphError, GraphReader

pytestmark = pytest.mark.timeout(60)
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
CONFIG = SimConfig(users=3000, seed=42, identity_header="filters-secret")
INJECTION = "x' or true or department eq 'y"
SELECT = ["id", "userPrincipalName", "displayName", "department", "createdDateTime"]


@pytest.fixture(scope="module")
def users() -> list[dict[str, Any]]:
    return list(iter_users(CONFIG))


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSim]:
    with run_in_thread(CONFIG) as running:
        yield running


async def _list(
    sim: RunningSim, monkeypatch: pytest.MonkeyPatch, query: GraphQuery, page_size: int = 250
) -> tuple[list[dict[str, Any]], int | None, int]:
    """Every page of a filtered listing: the users, @odata.count and the number of pages."""
    monkeypatch.setenv("IDENTITY_ENDPOINT", sim.identity_url)
    monkeypatch.setenv("IDENTITY_HEADER", sim.identity_header)
    credential = ManagedIdentityCredential()
    try:
        client = GraphServiceClient(credentials=credential, scopes=[GRAPH_SCOPE])
        client.request_adapter.base_url = sim.graph_url
        reader = GraphReader(client)
        found: list[dict[str, Any]] = []
        count: int | None = None
        next_link: str | None = None
        pages = 0
        while True:
            page = await reader.users_page(
                next_link=next_link,
                select=SELECT,
                filter=query.filter,
                advanced=query.advanced,
                page_size=page_size,
            )
            pages += 1
            if pages == 1:
                count = page.count
            found.extend(page.users)
            next_link = page.next_link
            if not next_link:
                return found, count, pages
    finally:
        await credential.close()


# ----------------------------------------------------------- the expectation, in Python
def _fold(value: object) -> str | None:
    return value.lower() if isinstance(value, str) else None  # like the directory: no case


def _moment(text: str) -> datetime:
    if len(text) == 10:  # a date alone is midnight UTC
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    return datetime.fromisoformat(text).astimezone(UTC)


def _matches(spec: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    """What the raw request filter means, computed straight from the users' properties."""

    def test(user: dict[str, Any]) -> bool:
        for key, want in spec.items():
            if key == "accountEnabled":
                ok = user["accountEnabled"] is want
            elif key in ("userType", "department", "companyName"):
                ok = _fold(user[key]) == want.lower()
            elif key == "domain":
                ok = (_fold(user["userPrincipalName"]) or "").endswith("@" + want.lower())
            elif key == "userPrincipalNamePrefix":
                ok = (_fold(user["userPrincipalName"]) or "").startswith(want.lower())
            elif key == "displayNamePrefix":
                ok = (_fold(user["displayName"]) or "\0").startswith(want.lower())
            elif key == "createdAfter":
                ok = _moment(user["createdDateTime"]) >= _moment(want)
            elif key == "createdBefore":
                ok = _moment(user["createdDateTime"]) <= _moment(want)
            else:
                raise AssertionError(key)
            if not ok:
                return False
        return True

    return test


CASES: dict[str, tuple[dict[str, Any], bool]] = {
    # name: (the request's filter, whether Graph needs the advanced query parameters)
    "department": ({"department": "+Growth"}, False),  # '+' must not turn into a space
    "department-any-case": ({"department": "research, DEVELOPMENT"}, False),
    "department-unicode": ({"department": "研究開発"}, False),
    "department-quotes": ({"department": 'Legal "Compliance"'}, False),
    "company": ({"companyName": "Fabrikam"}, True),  # not "Fabrikam, Inc."
    "company-quotes": ({"companyName": 'northwind "traders"'}, True),
    "domain": ({"domain": "fabrikam.com"}, True),  # not fabrikam.onmicrosoft.com
    "domain-b2c": ({"domain": "FabrikamB2C.onmicrosoft.com"}, True),
    "upn-prefix": ({"userPrincipalNamePrefix": "Jose."}, False),
    "display-name-prefix-quote": ({"displayNamePrefix": "adele o'"}, False),
    "display-name-prefix-unicode": ({"displayNamePrefix": "Zoë"}, False),
    "created-range": (
        {"createdAfter": "2019-01-01", "createdBefore": "2019-06-30T23:59:59+02:00"},
        False,
    ),
    "created-after": ({"createdAfter": "2024-06-01T12:30:00Z"}, False),
    "guests": ({"userType": "guest"}, False),
    "disabled": ({"accountEnabled": False}, False),
    "combination": (
        {
            "userType": "Member",
            "accountEnabled": True,
            "department": "Engineering",
            "domain": "fabrikam.com",
            "createdAfter": "2014-01-01",
        },
        True,
    ),
    "combination-basic": (
        {"userType": "Guest", "accountEnabled": True, "createdBefore": "2020-01-01"},
        False,
    ),
    "injection": ({"department": INJECTION}, False),
    "injection-prefix": ({"displayNamePrefix": "Adele O'Brien' or true or '"}, False),
    "everything": ({}, False),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_filter_lists_exactly_the_matching_users(
    name: str, sim: RunningSim, users: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
):
    spec, advanced = CASES[name]
    query = to_graph_query(parse_filter(spec))
    assert query.advanced is advanced
    expected = [u["id"] for u in users if _matches(spec)(u)]
    if name.startswith("injection"):
        assert expected == []
    elif name == "everything":
        assert query.filter is None and len(expected) == len(users)
    else:  # a meaningful case: some users match, most do not
        assert 0 < len(expected) < len(users) // 2, (name, len(expected))

    found, count, pages = await _list(sim, monkeypatch, query)

    ids = [u["id"] for u in found]
    assert len(ids) == len(set(ids))  # no user twice across pages
    assert set(ids) == set(expected)
    assert ids == expected  # and in the tenant's listing order
    assert pages == max(1, -(-len(expected) // 250))
    assert count == (len(expected) if advanced else None)


async def test_the_advanced_parameters_are_what_makes_endswith_work(
    sim: RunningSim, monkeypatch: pytest.MonkeyPatch
):
    query = to_graph_query(parse_filter({"domain": "fabrikam.com"}))
    with pytest.raises(GraphError) as caught:
        await _list(sim, monkeypatch, GraphQuery(query.filter, advanced=False))
    assert caught.value.status == 400
    assert caught.value.code == "Request_UnsupportedQuery"


async def test_an_injection_matches_only_the_literal_value(
    tmp_path: Path, users: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
):
    # A tenant where the attack string is someone's real department, next to the values the
    # attack tries to reach: only that one user may come back.
    tenant = [dict(u) for u in users[:6]]
    departments = (INJECTION, "x", "y", "", None, INJECTION.upper())
    for user, department in zip(tenant, departments, strict=True):
        user["department"] = department
    path = tmp_path / "tenant.jsonl"
    path.write_bytes(b"".join(orjson.dumps(u) + b"\n" for u in tenant))
    with run_in_thread(SimConfig(tenant=path, identity_header="filters-secret")) as small:
        query = to_graph_query(parse_filter({"department": INJECTION}))
        found, _, _ = await _list(small, monkeypatch, query)
    assert [u["id"] for u in found] == [tenant[0]["id"], tenant[5]["id"]]  # case-insensitive
