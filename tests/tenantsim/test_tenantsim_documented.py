"""Graph as Microsoft documents it: the switches of README "Graph as documented", each off by
default (today's behaviour), on through SimConfig, the command line or /_sim/faults; plus the
`id in (...)` lookups the exporter makes for signInActivity."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.tenantsim import (
    RunningSim,
    SimConfig,
    iter_users,
    members_of,
    run_in_thread,
    tenant_administrative_units,
    tenant_groups,
)
from devtools.tenantsim.changes import TenantWriter

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(60)
EVENTUAL = {"ConsistencyLevel": "eventual"}
SIGNIN = "/users?$select=id,signInActivity"
NO_PREMIUM = "Authentication_RequestFromNonPremiumTenantOrB2CTenant"
DOMAIN = "fabrikam.onmicrosoft.com"


def q(text: str) -> str:
    return urllib.parse.quote(text, safe="")


@pytest.fixture
def sim() -> Iterator[RunningSim]:
    """A fresh small tenant per test: these tests switch its behaviour."""
    with run_in_thread(SimConfig(users=40, seed=3)) as s:
        yield s


@pytest.fixture
def h(sim: RunningSim, make_http: Any) -> Any:
    return make_http(sim)


@pytest.fixture
def users(sim: RunningSim) -> list[dict[str, Any]]:
    return list(iter_users(sim.state.config))


@pytest.fixture
def writer(sim: RunningSim) -> Iterator[TenantWriter]:
    with TenantWriter(
        graph_url=sim.graph_url, identity_url=sim.identity_url, identity_header=sim.identity_header
    ) as w:
        yield w


def _reset(h: Any) -> None:
    assert h.request("POST", h.sim.base_url + "/_sim/faults/reset", auth=False)[0] == 204


def _group(sim: RunningSim, name: str) -> str:
    return next(g["id"] for g in tenant_groups(sim.state.config) if g["displayName"] == name)


def _unit(sim: RunningSim, name: str) -> str:
    units = tenant_administrative_units(sim.state.config)
    return next(u["id"] for u in units if u["displayName"] == name)


def _batch(*urls: str) -> dict[str, Any]:
    return {"requests": [{"id": str(i), "method": "GET", "url": u} for i, u in enumerate(urls)]}


def _delta_round(h: Any, url: str) -> tuple[list[dict[str, Any]], str]:
    items: list[dict[str, Any]] = []
    while True:
        status, _, body = h.get(url)
        assert status == 200, body
        items.extend(body["value"])
        if "@odata.deltaLink" in body:
            return items, body["@odata.deltaLink"]
        url = body["@odata.nextLink"]


# ------------------------------------------------------------------ 1. licence 403s
def test_signin_flaky_403_is_seeded_not_charged_and_off_by_default(make_http: Any) -> None:
    def run(rate: float) -> tuple[list[int], dict[str, Any]]:
        with run_in_thread(SimConfig(users=20, seed=3, signin_flaky_403=rate)) as s:
            h = make_http(s)
            seen = []
            for _ in range(30):
                status, _, body = h.get(SIGNIN + "&$top=2")
                seen.append(status)
                if status == 403:
                    assert body["error"]["code"] == NO_PREMIUM
                    assert body["error"]["message"] == (
                        "Neither tenant is B2C or tenant doesn't have premium license"
                    )
            assert h.get("/users?$top=2")[0] == 200  # not selecting it: never refused
            return seen, h.stats()

    seen, stats = run(0.5)
    refused = seen.count(403)
    assert 0 < refused < 30 and set(seen) == {200, 403}
    assert stats["faults"] == {"signInFlaky403": refused}
    assert stats["resourceUnits"] == (30 - refused) * 1 + 2  # refusals cost nothing
    assert run(0.5)[0] == seen  # the same seed refuses the same requests
    assert run(0.0)[0] == [200] * 30  # off: today's behaviour


def test_signin_flaky_403_in_batch_and_single_user(h: Any, users: list[dict]) -> None:
    assert h.faults({"signInFlaky403": 1})[0] == 200
    uid = users[0]["id"]
    assert h.get(f"/users/{uid}?$select=id,signInActivity")[0] == 403
    status, _, body = h.request(
        "POST", "/$batch", body=_batch(SIGNIN, f"/users/{uid}/authentication/methods")
    )
    assert status == 200
    assert [r["status"] for r in body["responses"]] == [403, 200]
    assert body["responses"][0]["body"]["error"]["code"] == NO_PREMIUM
    assert h.stats()["faults"] == {"signInFlaky403": 2}
    h.faults({"signInFlaky403": 0})
    assert h.get(f"/users/{uid}?$select=id,signInActivity")[0] == 200


def test_signin_refused_after_n_persists_mid_listing(h: Any) -> None:
    assert h.get(SIGNIN + "&$top=5")[0] == 200  # off: unlimited
    status, settings = h.faults({"signInRefusedAfter": 2})
    assert status == 200 and settings["signInRefusedAfter"] == 2
    status, _, first = h.get(SIGNIN + "&$top=5")
    assert status == 200
    assert h.faults()[1]["signInRefusedAfter"] == 1  # GET shows how many are still served
    assert h.get(first["@odata.nextLink"])[0] == 200
    # Every later one is refused, the next page of the same listing included.
    for _ in range(3):
        status, _, body = h.get(first["@odata.nextLink"])
        assert status == 403 and body["error"]["code"] == NO_PREMIUM
    assert h.get("/users?$top=5")[0] == 200
    assert h.faults()[1]["signInRefusedAfter"] == 0
    assert h.stats()["faults"] == {"signInRefused": 3}
    h.faults({"signInRefusedAfter": None})
    assert h.get(first["@odata.nextLink"])[0] == 200
    h.faults({"signInRefusedAfter": 0})
    assert h.get(SIGNIN)[0] == 403
    _reset(h)
    assert h.faults()[1]["signInRefusedAfter"] is None
    assert h.get(SIGNIN)[0] == 200


# ------------------------------------------------------------------ 2. empty signInActivity
def _activities(body: dict[str, Any]) -> list[Any]:
    return [u["signInActivity"] for u in body["value"]]


def test_signin_empty_in_advanced_queries(h: Any) -> None:
    advanced = SIGNIN + "&$count=true&$top=40"
    status, _, before = h.get(advanced, headers=EVENTUAL)
    assert status == 200 and any(a is not None for a in _activities(before))
    h.faults({"signInEmptyInAdvancedQueries": True})
    status, _, body = h.get(advanced, headers=EVENTUAL)
    assert status == 200 and body["@odata.count"] == 40
    assert _activities(body) == [None] * 40
    assert [u["id"] for u in body["value"]] == [u["id"] for u in before["value"]]
    # A basic query still has them.
    assert _activities(h.get(SIGNIN + "&$top=40")[2]) == _activities(before)
    assert h.stats()["faults"] == {"signInEmptied": 1}


def test_signin_empty_in_member_lists(h: Any, sim: RunningSim) -> None:
    gid, au = _group(sim, "All Staff"), _unit(sim, "Seattle Area")
    lists = [
        f"/groups/{gid}/transitiveMembers/microsoft.graph.user",
        f"/groups/{_group(sim, 'Project X')}/members/microsoft.graph.user",
        f"/directory/administrativeUnits/{au}/members/microsoft.graph.user",
    ]
    path = lists[0] + "?$select=id,signInActivity&$top=100"
    expected = [u.get("signInActivity") for u in members_of(sim.state.config, gid)]
    assert any(a is not None for a in expected)
    assert _activities(h.get(path)[2]) == expected  # off
    h.faults({"signInEmptyInMemberLists": True})
    pages = 0
    for member_list in lists:
        status, _, body = h.get(member_list + "?$select=id,signInActivity&$top=100")
        assert status == 200 and set(_activities(body)) <= {None}
        pages += 1
    assert _activities(h.get(SIGNIN + "&$top=40")[2]) != [None] * 40  # /users unaffected
    assert h.stats()["faults"] == {"signInEmptied": pages}


def test_id_in_filter_reads_sign_in_activity_without_advanced_query(
    h: Any, users: list[dict]
) -> None:
    picked = [users[7], users[2], users[30]]  # asked out of order
    ids = ",".join(f"'{u['id']}'" for u in picked)
    flt = q(f"id in ({ids},'00000000-0000-0000-0000-000000000000')")
    status, _, body = h.get(f"/users?$filter={flt}&$select=id,signInActivity")
    assert status == 200, body
    # Listing order, the unknown id left out, signInActivity as generated (null: never).
    assert body["value"] == [
        {"id": u["id"], "signInActivity": u.get("signInActivity")}
        for u in (users[2], users[7], users[30])
    ]
    assert any(u.get("signInActivity") for u in picked)
    # One user by id, with signInActivity.
    status, _, one = h.get(f"/users/{users[7]['id']}?$select=id,signInActivity")
    assert status == 200 and one["signInActivity"] == users[7].get("signInActivity")
    # Graph's documented limit: 15 values of an `in` outside advanced queries.
    sixteen = q("id in (" + ",".join(f"'{u['id']}'" for u in users[:16]) + ")")
    status, _, body = h.get(f"/users?$filter={sixteen}&$select=id,signInActivity")
    assert status == 400 and body["error"]["code"] == "Request_UnsupportedQuery"
    assert body["error"]["message"] == (
        "Too many child clauses specified in search filter expression containing 'OR' "
        "operators: 16. Max allowed: 15."
    )
    fifteen = q("id in (" + ",".join(f"'{u['id']}'" for u in users[:15]) + ")")
    assert len(h.get(f"/users?$filter={fifteen}&$select=id")[2]["value"]) == 15
    status, _, body = h.get(f"/users?$filter={sixteen}&$select=id&$count=true", headers=EVENTUAL)
    assert status == 200 and body["@odata.count"] == 16  # advanced: URL length, not count


# ------------------------------------------------------------------ 3./4. delta items
def test_delta_partial_items(h: Any, writer: TenantWriter, users: list[dict]) -> None:
    select = "/users/delta?$select=displayName,jobTitle,city,mail"
    items, plain_link = _delta_round(h, select)
    assert all(set(i) == {"id", "displayName", "jobTitle", "city", "mail"} for i in items)
    h.faults({"deltaPartialItems": True})
    items, link = _delta_round(h, select)
    # Initial round: properties never set (null) are left out.
    for item, user in zip(items, users, strict=True):
        names = ("displayName", "jobTitle", "city", "mail")
        assert item == {"id": user["id"]} | {k: user[k] for k in names if user.get(k) is not None}
    trimmed = sum(1 for i in items if len(i) < 5)
    assert trimmed > 0
    a, b = users[3], next(u for u in users[4:] if u.get("city"))
    writer.update_user(a["id"], jobTitle="Changed")
    writer.update_user(a["id"], displayName="Changed Too")
    writer.update_user(b["id"], city=None)
    created = writer.create_user(displayName="New", userPrincipalName=f"new@{DOMAIN}")
    changed, _ = _delta_round(h, link)
    assert changed == [
        {"id": a["id"], "jobTitle": "Changed", "displayName": "Changed Too"},
        {"id": b["id"], "city": None},  # cleared: a change, so there as null
        {"id": created["id"], "displayName": "New"},  # created: every property set
    ]
    assert h.stats()["faults"]["deltaPartialItem"] == trimmed + 3
    # Off again: the same changes come whole.
    h.faults({"deltaPartialItems": False})
    changed, _ = _delta_round(h, plain_link)
    assert all(set(i) == {"id", "displayName", "jobTitle", "city", "mail"} for i in changed)


def test_delta_skips_restored(h: Any, writer: TenantWriter, users: list[dict]) -> None:
    victim = users[5]["id"]
    _, with_select = _delta_round(h, "/users/delta?$select=displayName")
    _, without = _delta_round(h, "/users/delta")
    writer.delete_user(victim)
    removed, with_select = _delta_round(h, with_select)
    assert removed == [{"id": victim, "@removed": {"reason": "changed"}}]
    writer.restore_user(victim)
    h.faults({"deltaSkipsRestored": True})
    items, _ = _delta_round(h, with_select)
    assert items == []  # the undeleted user is missed
    items, _ = _delta_round(h, without)  # without $select it comes back
    assert [i["id"] for i in items] == [victim]
    assert h.stats()["faults"] == {"deltaSkippedRestore": 1}
    h.faults({"deltaSkipsRestored": False})
    items, _ = _delta_round(h, with_select)
    assert items == [{"id": victim, "displayName": users[5]["displayName"]}]


@pytest.mark.parametrize(
    ("answer", "status", "code"),
    [
        ("syncStateNotFound", 400, "syncStateNotFound"),
        ("SyncStateNotFound", 400, "SyncStateNotFound"),
        ("resyncRequired", 410, "resyncRequired"),
        ("gone", 410, "resyncRequired"),
    ],
)
def test_delta_expired_answer(h: Any, answer: str, status: int, code: str) -> None:
    _, link = _delta_round(h, "/users/delta?$select=displayName,jobTitle")
    h.faults({"deltaExpiredAnswer": answer, "expireDeltaTokens": True})
    got, headers, body = h.get(link)
    assert (got, body["error"]["code"]) == (status, code)
    assert h.stats()["faults"] == {"expiredDeltaToken": 1}
    if answer != "gone":
        assert "Location" not in headers
        return
    # delta-query-overview.md: a Location with an empty $deltatoken, the initial query.
    location = headers["Location"]
    assert location == h.sim.graph_url + "/users/delta?$select=displayName,jobTitle&$deltatoken="
    items, _ = _delta_round(h, location)
    assert len(items) == 40 and set(items[0]) == {"id", "displayName", "jobTitle"}


def test_delta_refused_properties(h: Any) -> None:
    path = "/users/delta?$select=displayName,signInActivity"
    status, _, _ = h.get(path)
    assert status == 200  # off
    _, link = _delta_round(h, path)
    status, settings = h.faults({"deltaRefusedProperties": ["signinactivity", "JOBTITLE"]})
    assert status == 200
    assert settings["deltaRefusedProperties"] == ["signInActivity", "jobTitle"]
    for url in (path, link, "/users/delta?$deltatoken=latest&$select=signInActivity,id"):
        status, _, body = h.get(url)
        assert status == 400 and body["error"]["code"] == "BadRequest"
        assert body["error"]["message"] == (
            "Invalid request for delta query: for this entity set, $expand/$select is not "
            "supported for the following properties: signInActivity"
        )
    status, _, body = h.get("/users/delta?$select=jobTitle,signInActivity,city")
    assert body["error"]["message"].endswith("properties: jobTitle,signInActivity")
    assert h.get("/users/delta?$select=displayName")[0] == 200
    assert h.stats()["faults"] == {"deltaRefusedSelect": 4}


# ------------------------------------------------------------------ 6. $expand page cap
def test_expand_page_cap(h: Any, sim: RunningSim) -> None:
    path = "/users?$expand=manager&$top=20"
    assert len(h.get(path)[2]["value"]) == 20  # off
    h.faults({"expandPageCap": 7})
    status, _, body = h.get(path)
    assert status == 200 and len(body["value"]) == 7
    assert "$top=20" in body["@odata.nextLink"]  # the $top sent is kept
    assert len(h.list_all(path)) == 40
    assert len(h.get("/users?$top=20")[2]["value"]) == 20  # without $expand: no cap
    members = f"/groups/{_group(sim, 'All Staff')}/transitiveMembers/microsoft.graph.user"
    assert len(h.get(members + "?$expand=manager&$top=20")[2]["value"]) == 7
    assert h.stats()["faults"]["expandPageCapped"] == 1 + 6 + 1


# ------------------------------------------------------------------ 7. B2C
def test_b2c_tenant(h: Any, sim: RunningSim) -> None:
    members = f"/groups/{_group(sim, 'All Staff')}/transitiveMembers/microsoft.graph.user"
    refused = [
        ("/users/$count", EVENTUAL, "$count is not currently supported."),
        ("/users?$count=true", EVENTUAL, "$count is not currently supported."),
        ("/users?$count=true", {}, "$count is not currently supported."),
        ("/users?$select=id", EVENTUAL, "This request is not supported by the service."),
        (members + "/$count", EVENTUAL, "$count is not currently supported."),
        (members + "?$count=true", EVENTUAL, "$count is not currently supported."),
    ]
    # Off: an ordinary tenant ($count=true without the header is refused there too).
    assert [h.get(p, headers=hd)[0] for p, hd, _ in refused] == [200, 200, 400, 200, 200, 200]
    assert h.get("/users/$count", headers=EVENTUAL)[0] == 200
    assert h.get(SIGNIN)[0] == 200
    h.faults({"b2c": True})
    for path, headers, message in refused:
        status, _, body = h.get(path, headers=headers)
        assert status == 400, path
        assert (body["error"]["code"], body["error"]["message"]) == (
            "Request_BadRequest",
            message,
        )
    status, _, body = h.get(SIGNIN)
    assert status == 403 and body["error"]["code"] == NO_PREMIUM
    status, _, body = h.get("/users/delta")
    assert status == 400 and body["error"]["code"] == "Request_UnsupportedQuery"
    assert h.get("/users?$select=id,displayName")[0] == 200  # basic queries work
    assert h.stats()["faults"] == {"b2cRefused": len(refused) + 2}


# ------------------------------------------------------------------ 8. limited member info
def test_limited_member_info_without_a_user_read_role(make_http: Any) -> None:
    config = SimConfig(users=40, seed=3, roles=("GroupMember.Read.All",))
    with run_in_thread(config) as s:
        h = make_http(s)
        gid = _group(s, "All Staff")
        path = f"/groups/{gid}/transitiveMembers/microsoft.graph.user?$select=id,displayName,mail"
        full = h.get(path)[2]["value"]
        expected = members_of(config, gid)
        assert full == [
            {"id": u["id"], "displayName": u.get("displayName"), "mail": u.get("mail")}
            for u in expected
        ]  # off: today's behaviour, every property whatever the roles
        assert h.faults({"limitedMemberInfo": True})[0] == 200
        limited = h.get(path)[2]["value"]
        assert limited == [
            {
                "@odata.type": "#microsoft.graph.user",
                "id": u["id"],
                "displayName": None,
                "mail": None,
            }
            for u in expected
        ]
        default = h.get(f"/groups/{gid}/members/microsoft.graph.user")[2]["value"]
        assert all(
            set(v for k, v in u.items() if k not in ("@odata.type", "id")) == {None}
            for u in default
        )
        assert h.stats()["faults"] == {"limitedMember": len(expected) + len(default)}
    # A token that reads users gets every property, switch or not.
    with run_in_thread(SimConfig(users=40, seed=3, limited_member_info=True)) as s:
        h = make_http(s)
        gid = _group(s, "All Staff")
        body = h.get(f"/groups/{gid}/transitiveMembers/microsoft.graph.user?$select=id,mail")[2]
        assert "@odata.type" not in body["value"][0]
        assert h.stats()["faults"] == {}


# ------------------------------------------------------------------ 9. no auth-methods API
def test_no_authentication_methods_api(h: Any, users: list[dict]) -> None:
    uid = users[0]["id"]
    kinds = ("methods", "phoneMethods", "emailMethods")
    assert [h.get(f"/users/{uid}/authentication/{k}")[0] for k in kinds] == [200] * 3
    h.faults({"authenticationMethodsApi": False})
    for kind in kinds:
        status, _, body = h.get(f"/users/{uid}/authentication/{kind}")
        assert status == 400
        assert body["error"] | {"innerError": None} == {
            "code": "BadRequest",
            "message": "Resource not found for the segment 'authentication'.",
            "innerError": None,
        }
    status, _, body = h.request(
        "POST", "/$batch", body=_batch(f"/users/{uid}/authentication/methods", "/users")
    )
    assert [r["status"] for r in body["responses"]] == [400, 200]
    stats = h.stats()
    assert stats["faults"] == {"noAuthenticationApi": 4}
    _reset(h)
    assert h.get(f"/users/{uid}/authentication/methods")[0] == 200


# ------------------------------------------------------------------ 10./11. 429 CPU, 424
def test_rate_429_cpu(h: Any, users: list[dict]) -> None:
    h.faults({"rate429Cpu": 1, "retryAfter429Cpu": 3, "targets": ["users"]})
    before = h.stats()["resourceUnits"]
    status, headers, body = h.get("/users")
    assert status == 429 and body["error"]["code"] == "TooManyRequests"
    assert headers["Retry-After"] == "3"
    assert headers["x-ms-throttle-information"] == "CPULimitExceeded"
    assert "x-ms-throttle-limit-percentage" not in headers
    assert h.get(f"/users/{users[0]['id']}/authentication/methods")[0] == 200  # not a target
    stats = h.stats()
    assert stats["resourceUnits"] == before + 1  # only the auth read was charged
    assert stats["throttled"] == 0 and stats["faults"] == {"429cpu": 1}
    h.faults({"retryAfter429Cpu": 0})
    assert "Retry-After" not in h.get("/users")[1]
    h.faults({"rate429Cpu": 0})
    assert h.get("/users")[0] == 200


def test_rate_429_cpu_is_seeded_and_budget_429s_say_why(make_http: Any) -> None:
    def run() -> list[int]:
        with run_in_thread(SimConfig(users=10, rate_429_cpu=0.4)) as s:
            h = make_http(s)
            return [h.get("/users?$top=1")[0] for _ in range(30)]

    first = run()
    assert set(first) == {200, 429} and run() == first
    with run_in_thread(SimConfig(users=10, budget=2)) as s:
        h = make_http(s)
        assert h.get("/users")[0] == 200
        status, headers, _ = h.get("/users")
        assert status == 429
        assert headers["x-ms-throttle-information"] == "ResourceUnitLimitExceeded"


def test_rate_424_fails_batch_envelopes(h: Any) -> None:
    body = _batch("/users?$top=2", "/users?$top=3")
    assert h.request("POST", "/$batch", body=body)[0] == 200
    h.faults({"rate424": 1})
    before = h.stats()
    status, _, answer = h.request("POST", "/$batch", body=body)
    assert status == 424 and set(answer) == {"error"}
    assert answer["error"]["code"] == "FailedDependency"
    after = h.stats()
    assert after["resourceUnits"] == before["resourceUnits"]
    assert after["requests"]["batchItems"] == before["requests"]["batchItems"]
    assert after["faults"] == {"424": 1}
    assert h.get("/users")[0] == 200  # plain requests are not batches
    h.faults({"rate424": 0})
    assert h.request("POST", "/$batch", body=body)[0] == 200


# ------------------------------------------------------------------ 12. member-list costs
def test_member_list_costs(h: Any, sim: RunningSim) -> None:
    gid, au = _group(sim, "All Staff"), _unit(sim, "Seattle Area")
    cases = [
        (f"/groups/{gid}/transitiveMembers/microsoft.graph.user", 2, 5),
        (f"/groups/{gid}/transitiveMembers/microsoft.graph.user?$select=id", 1, 4),
        (f"/groups/{gid}/transitiveMembers/microsoft.graph.user?$select=id&$top=10", 1, 3),
        (f"/groups/{gid}/transitiveMembers/microsoft.graph.user?$expand=manager", 3, 6),
        (f"/groups/{gid}/members/microsoft.graph.user", 2, 3),
        (f"/groups/{gid}/members/microsoft.graph.user?$select=id", 1, 2),
        (f"/directory/administrativeUnits/{au}/members/microsoft.graph.user", 2, 1),
        ("/subscribedSkus", 1, 3),
        ("/subscribedSkus?$select=skuId", 1, 2),
        ("/users", 2, 2),
    ]

    def units() -> list[int]:
        out = []
        for path, _, _ in cases:
            status, headers, _ = h.get(path)
            assert status == 200, path
            out.append(int(headers["x-ms-resource-unit"]))
        return out

    assert units() == [off for _, off, _ in cases]
    h.faults({"memberListCosts": True})
    assert units() == [on for _, _, on in cases]


# ------------------------------------------------------------------ 13. lastSuccessfulSignIn
def test_successful_sign_ins_since(h: Any, users: list[dict]) -> None:
    since = "2025-12-01"
    active = [u for u in users if u.get("signInActivity")]
    old = [u for u in active if u["signInActivity"]["lastSuccessfulSignInDateTime"] < since + "T"]
    assert old and len(old) < len(active)
    # The generator's failed last attempts: a later lastSignInDateTime than the last success.
    assert any(
        u["signInActivity"]["lastSignInDateTime"]
        > u["signInActivity"]["lastSuccessfulSignInDateTime"]
        for u in active
    )
    by_id = {u["id"]: u["signInActivity"] for u in h.get(SIGNIN + "&$top=40")[2]["value"]}
    assert all(by_id[u["id"]] == u["signInActivity"] for u in active)  # off
    h.faults({"successfulSignInsSince": since})
    by_id = {u["id"]: u["signInActivity"] for u in h.get(SIGNIN + "&$top=40")[2]["value"]}
    for u in active:
        expected = dict(u["signInActivity"])
        if u in old:
            expected |= {
                "lastSuccessfulSignInDateTime": None,
                "lastSuccessfulSignInRequestId": None,
            }
        assert by_id[u["id"]] == expected
    one = h.get(f"/users/{old[0]['id']}?$select=signInActivity")[2]["signInActivity"]
    assert one["lastSuccessfulSignInDateTime"] is None
    assert one["lastSignInDateTime"] == old[0]["signInActivity"]["lastSignInDateTime"]


# ------------------------------------------------------------------ /_sim/faults and CLI
CONFIGURED = {
    "signin_flaky_403": 0.25,
    "signin_refused_after": 5,
    "signin_empty_in_advanced_queries": True,
    "signin_empty_in_member_lists": True,
    "delta_partial_items": True,
    "delta_skips_restored": True,
    "delta_expired_answer": "gone",
    "delta_refused_properties": ("signInActivity",),
    "expand_page_cap": 100,
    "b2c": True,
    "limited_member_info": True,
    "authentication_methods_api": False,
    "rate_429_cpu": 0.1,
    "retry_after_429_cpu": 2,
    "rate_424": 0.05,
    "member_list_costs": True,
    "successful_sign_ins_since": "2023-12-01",
}
CONFIGURED_JSON = {
    "signInFlaky403": 0.25,
    "signInRefusedAfter": 5,
    "signInEmptyInAdvancedQueries": True,
    "signInEmptyInMemberLists": True,
    "deltaPartialItems": True,
    "deltaSkipsRestored": True,
    "deltaExpiredAnswer": "gone",
    "deltaRefusedProperties": ["signInActivity"],
    "expandPageCap": 100,
    "b2c": True,
    "limitedMemberInfo": True,
    "authenticationMethodsApi": False,
    "rate429Cpu": 0.1,
    "retryAfter429Cpu": 2,
    "rate424": 0.05,
    "memberListCosts": True,
    "successfulSignInsSince": "2023-12-01",
}
OFF_JSON = {
    "signInFlaky403": 0.0,
    "signInRefusedAfter": None,
    "signInEmptyInAdvancedQueries": False,
    "signInEmptyInMemberLists": False,
    "deltaPartialItems": False,
    "deltaSkipsRestored": False,
    "deltaExpiredAnswer": "syncStateNotFound",
    "deltaRefusedProperties": [],
    "expandPageCap": 0,
    "b2c": False,
    "limitedMemberInfo": False,
    "authenticationMethodsApi": True,
    "rate429Cpu": 0.0,
    "retryAfter429Cpu": 1,
    "rate424": 0.0,
    "memberListCosts": False,
    "successfulSignInsSince": None,
}


def _switches(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: settings[k] for k in OFF_JSON}


def test_switches_get_post_and_reset_to_the_configured_values(make_http: Any) -> None:
    with run_in_thread(SimConfig(users=5)) as s:
        h = make_http(s)
        assert _switches(h.faults()[1]) == OFF_JSON
        status, settings = h.faults(CONFIGURED_JSON)
        assert status == 200 and _switches(settings) == CONFIGURED_JSON
        _reset(h)
        assert _switches(h.faults()[1]) == OFF_JSON
    with run_in_thread(SimConfig(users=5, **CONFIGURED)) as s:
        h = make_http(s)
        assert _switches(h.faults()[1]) == CONFIGURED_JSON
        saved = h.faults()[1]
        assert h.faults(OFF_JSON)[0] == 200
        _reset(h)  # back to the configured values, not to "off"
        assert _switches(h.faults()[1]) == CONFIGURED_JSON
        assert h.faults(saved) == (200, saved)  # GET answers what POST accepts


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"signInFlaky403": 1.5}, "signInFlaky403 must be within 0..1"),
        ({"signInFlaky403": "0.5"}, "signInFlaky403 must be a number"),
        ({"signInRefusedAfter": -1}, "signInRefusedAfter must be a whole number"),
        ({"signInRefusedAfter": 2.5}, "signInRefusedAfter must be a whole number"),
        ({"signInRefusedAfter": True}, "signInRefusedAfter must be a whole number"),
        ({"signInEmptyInAdvancedQueries": 1}, "signInEmptyInAdvancedQueries must be true"),
        ({"signInEmptyInMemberLists": "yes"}, "signInEmptyInMemberLists must be true"),
        ({"deltaPartialItems": None}, "deltaPartialItems must be true"),
        ({"deltaSkipsRestored": 0}, "deltaSkipsRestored must be true"),
        ({"deltaExpiredAnswer": "410"}, "deltaExpiredAnswer must be one of"),
        ({"deltaRefusedProperties": "signInActivity"}, "deltaRefusedProperties must be a list"),
        ({"deltaRefusedProperties": ["nope"]}, "deltaRefusedProperties: unknown user property"),
        ({"expandPageCap": -3}, "expandPageCap must be a whole number"),
        ({"expandPageCap": 1.5}, "expandPageCap must be a whole number"),
        ({"b2c": "true"}, "b2c must be true or false"),
        ({"limitedMemberInfo": 1}, "limitedMemberInfo must be true or false"),
        ({"authenticationMethodsApi": None}, "authenticationMethodsApi must be true"),
        ({"rate429Cpu": -0.1}, "rate429Cpu must be within 0..1"),
        ({"retryAfter429Cpu": 1.5}, "retryAfter429Cpu must be a whole number"),
        ({"rate424": 2}, "rate424 must be within 0..1"),
        ({"rate424": False}, "rate424 must be a number"),
        ({"memberListCosts": "on"}, "memberListCosts must be true or false"),
        ({"successfulSignInsSince": "December"}, "successfulSignInsSince must be an ISO date"),
        ({"successfulSignInsSince": 2023}, "successfulSignInsSince must be an ISO date"),
    ],
)
def test_bad_switch_values_are_400_and_change_nothing(h: Any, body: Any, words: str) -> None:
    before = h.faults({"b2c": True, "expandPageCap": 9})[1]
    status, answer = h.faults(body)
    assert status == 400
    assert words in answer["error"]
    assert h.faults()[1] == before


def test_cli_switches(make_http: Any) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devtools.tenantsim",
            "--users",
            "5",
            "--signin-flaky-403",
            "0.25",
            "--signin-refused-after",
            "5",
            "--signin-empty-in-advanced-queries",
            "--signin-empty-in-member-lists",
            "--delta-partial-items",
            "--delta-skips-restored",
            "--delta-expired-answer",
            "gone",
            "--delta-refused-properties",
            "signinactivity",
            "--expand-page-cap",
            "100",
            "--b2c",
            "--limited-member-info",
            "--no-authentication-methods-api",
            "--rate-429-cpu",
            "0.1",
            "--retry-after-429-cpu",
            "2",
            "--rate-424",
            "0.05",
            "--member-list-costs",
            "--successful-sign-ins-since",
            "2023-12-01",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = json.loads(proc.stdout.readline())

        class Sim:  # what Http needs from a running simulator
            base_url = line["graph"].removesuffix("/v1.0")

        settings = make_http(Sim()).faults()[1]
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert _switches(settings) == CONFIGURED_JSON


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--signin-flaky-403", "2"], "signin_flaky_403 must be within 0..1"),
        (["--signin-refused-after", "-1"], "signin_refused_after must be a whole number"),
        (["--delta-expired-answer", "410"], "invalid choice"),
        (["--delta-refused-properties", "nope"], "unknown user property"),
        (["--expand-page-cap", "-1"], "expand_page_cap must be a whole number"),
        (["--rate-429-cpu", "1.5"], "rate_429_cpu must be within 0..1"),
        (["--rate-424", "-1"], "rate_424 must be within 0..1"),
        (["--successful-sign-ins-since", "soon"], "must be an ISO date"),
    ],
)
def test_cli_rejects_bad_switches(args: list[str], words: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "devtools.tenantsim", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert words in done.stderr
