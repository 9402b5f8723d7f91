"""Graph endpoints of the simulator: shapes, OData, auth, $batch, throttling."""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from devtools.tenantsim import SimConfig, iter_users, run_in_thread

pytestmark = pytest.mark.timeout(60)

Pred = Callable[[dict[str, Any]], bool]
EVENTUAL = {"ConsistencyLevel": "eventual"}


def q(text: str) -> str:
    return urllib.parse.quote(text, safe="")


@pytest.fixture(scope="module")
def users(sim: Any) -> list[dict[str, Any]]:
    return list(iter_users(sim.state.config))


def _claims(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


# ------------------------------------------------------------------ shapes vs samples
def test_default_listing_matches_example1(http: Any, sample: Any) -> None:
    ex = sample("user-list.example1.response.json")
    status, headers, body = http.get("/users?$top=3")
    assert status == 200
    assert body["@odata.context"] == ex["@odata.context"]
    assert set(body) == {"@odata.context", "@odata.nextLink", "value"}
    assert len(body["value"]) == 3
    for item in body["value"]:
        assert set(item) == set(ex["value"][0])
    assert headers["x-ms-resource-unit"] == "2"
    assert headers["Content-Type"].startswith("application/json")


def test_select_listing_matches_example9(http: Any, sample: Any) -> None:
    ex = sample("user-list.example9.response.json")
    status, headers, body = http.get("/users?$select=id,mail,assignedLicenses&$top=50")
    assert status == 200
    assert body["@odata.context"] == ex["@odata.context"]
    assert all(set(u) == set(ex["value"][0]) for u in body["value"])
    licenses = [lic for u in body["value"] for lic in u["assignedLicenses"]]
    assert licenses and all(set(lic) == {"disabledPlans", "skuId"} for lic in licenses)
    assert headers["x-ms-resource-unit"] == "1"


def test_select_always_adds_id(http: Any, users: list[dict[str, Any]]) -> None:
    _, _, body = http.get("/users?$select=displayName&$top=2")
    assert body["value"] == [{"displayName": u["displayName"], "id": u["id"]} for u in users[:2]]
    assert body["@odata.context"].endswith("#users(displayName)")


def test_auth_method_lists_match_samples(http: Any, sample: Any, users: list[dict]) -> None:
    phones = sample("phonemethods.list.response.json")["value"]
    emails = sample("emailmethods.list.response.json")["value"]
    user = next(u for u in users if len(u.get("authentication", {}).get("phoneMethods", [])) > 1)
    status, _, body = http.get(f"/users/{user['id']}/authentication/phoneMethods")
    assert status == 200
    assert body["value"] == user["authentication"]["phoneMethods"]
    assert all(set(m) == set(phones[0]) for m in body["value"])
    assert {m["id"] for m in phones} >= {m["id"] for m in body["value"]}
    user = next(u for u in users if u.get("authentication", {}).get("emailMethods"))
    # userPrincipalName works as key too, with '#' of guests percent-encoded
    status, _, body = http.get(f"/users/{q(user['userPrincipalName'])}/authentication/emailMethods")
    assert status == 200
    assert [set(m) for m in body["value"]] == [set(emails[0])]


def test_guest_upn_key_and_empty_methods(http: Any, users: list[dict]) -> None:
    guest = next(u for u in users if "#EXT#" in u["userPrincipalName"])
    status, _, body = http.get(
        f"/users/{q(guest['userPrincipalName'])}/authentication/phoneMethods"
    )
    assert status == 200
    assert body["value"] == guest.get("authentication", {}).get("phoneMethods", [])
    bare = next(u for u in users if not u["authentication"]["emailMethods"])
    assert http.get(f"/users/{bare['id']}/authentication/emailMethods")[2]["value"] == []


def test_error_body_matches_graph(http: Any, sample: Any) -> None:
    ex = sample("batch.response.json")["responses"][2]["body"]
    status, _, body = http.get("/users/no-such-user/authentication/phoneMethods")
    assert status == 404
    assert set(body) == set(ex)
    assert set(body["error"]) == set(ex["error"])
    assert set(body["error"]["innerError"]) == set(ex["error"]["innerError"])
    assert body["error"]["code"] == "Request_ResourceNotFound"
    status, _, body = http.get("/groups")
    assert status == 400 and set(body["error"]) == set(ex["error"])


# ------------------------------------------------------------------ auth
def test_missing_or_bad_token_gets_401(http: Any) -> None:
    status, headers, body = http.get("/users", auth=False)
    assert status == 401
    assert body["error"]["code"] == "InvalidAuthenticationToken"
    assert "WWW-Authenticate" in headers
    token = http.token()
    head, payload, sig = token.split(".")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged["roles"] = ["Directory.ReadWrite.All"]
    fake = base64.urlsafe_b64encode(orjson.dumps(forged)).rstrip(b"=").decode()
    for bad in (f"{head}.{fake}.{sig}", "not-a-jwt", http.token("https://storage.azure.com")):
        status, _, body = http.get("/users", headers={"Authorization": f"Bearer {bad}"})
        assert status == 401, bad
        assert body["error"]["code"] == "InvalidAuthenticationToken"


def test_expired_token_gets_401(make_http: Any) -> None:
    # Lifetimes of a few seconds: on a loaded machine (tests run 4 at once) a second can pass
    # between the token and its first use.
    with run_in_thread(SimConfig(users=5, token_lifetime=4)) as s:
        h = make_http(s)
        token = h.token()
        assert h.get("/users", headers={"Authorization": f"Bearer {token}"})[0] == 200
        time.sleep(5.1)
        status, _, body = h.get("/users", headers={"Authorization": f"Bearer {token}"})
    assert status == 401
    assert "expired" in body["error"]["message"]


def test_identity_endpoint(http: Any, sim: Any) -> None:
    url = f"{sim.identity_url}?api-version=2019-08-01&resource=https://graph.microsoft.com/.default"
    assert http.request("GET", url, auth=False)[0] == 400
    status, _, body = http.request("GET", url, headers={"X-IDENTITY-HEADER": "x"}, auth=False)
    assert status == 401 and "message" in body
    status, _, body = http.request(
        "GET",
        url + "&client_id=11111111-2222-3333-4444-555555555555",
        headers={"X-IDENTITY-HEADER": sim.identity_header},
        auth=False,
    )
    assert status == 200
    assert set(body) == {"access_token", "expires_on", "resource", "token_type", "client_id"}
    assert body["token_type"] == "Bearer" and body["expires_on"].isdigit()
    claims = _claims(body["access_token"])
    assert claims["aud"] == "https://graph.microsoft.com"
    assert claims["iss"] == f"https://sts.windows.net/{sim.tenant_id}/"
    assert claims["tid"] == sim.tenant_id
    assert claims["appid"] == "11111111-2222-3333-4444-555555555555"
    assert claims["exp"] - claims["iat"] == 3600 and claims["nbf"] <= claims["iat"]
    assert claims["roles"] == [
        "User.Read.All",
        "UserAuthenticationMethod.Read.All",
        "AuditLog.Read.All",
        "LicenseAssignment.Read.All",
        "GroupMember.Read.All",
        "AdministrativeUnit.Read.All",
    ]
    assert int(body["expires_on"]) == claims["exp"]


def test_storage_token_passes_azurite_basic_checks(http: Any) -> None:
    # The checks of Azurite 3.37 BlobTokenAuthenticator.authenticateBasic (no signature).
    import re

    claims = _claims(http.token("https://storage.azure.com"))
    now = time.time()
    assert claims["iss"].startswith("https://sts.windows.net/")
    assert re.fullmatch(r"https://storage\.azure\.com/?", claims["aud"])
    assert claims["nbf"] <= now < claims["exp"] and "iat" in claims


def test_missing_roles_give_403(make_http: Any) -> None:
    with run_in_thread(SimConfig(users=5, roles=("User.Read.All",))) as s:
        h = make_http(s)
        uid = next(iter_users(s.state.config))["id"]
        assert h.get("/users")[0] == 200
        status, _, body = h.get(f"/users/{uid}/authentication/phoneMethods")
        assert status == 403
        assert body["error"]["code"] == "Authorization_RequestDenied"
    with run_in_thread(SimConfig(users=5, roles=("UserAuthenticationMethod.Read.All",))) as s:
        h = make_http(s)
        assert h.get("/users")[0] == 403
        assert h.get(f"/users/{uid}/authentication/phoneMethods")[0] == 200


# ------------------------------------------------------------------ paging and OData
def test_paging_keeps_query_and_lists_everyone_once(http: Any, users: list[dict]) -> None:
    got = http.list_all("/users?%24select=id%2CuserPrincipalName&%24top=500")
    assert [u["id"] for u in got] == [u["id"] for u in users]
    _, _, first = http.get("/users?%24select=id%2CuserPrincipalName&%24top=500")
    link = first["@odata.nextLink"]
    assert link.startswith(http.sim.graph_url + "/users?")
    assert "%24select=id%2CuserPrincipalName" in link and "%24top=500" in link
    assert "$skiptoken=" in link


def test_top_limits(http: Any) -> None:
    assert len(http.get("/users?$top=999")[2]["value"]) == 999
    status, _, body = http.get("/users?$top=1000")
    assert status == 400 and body["error"]["code"] == "Request_UnsupportedQuery"
    assert http.get("/users?$top=0")[0] == 400
    assert http.get("/users?$top=abc")[0] == 400


def _created(u: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(u["createdDateTime"])


FILTERS: list[tuple[str, Pred]] = [
    ("userType eq 'Guest'", lambda u: u["userType"] == "Guest"),
    ("accountEnabled eq false", lambda u: u["accountEnabled"] is False),
    ("department eq '=SUM(A1)'", lambda u: u["department"] == "=SUM(A1)"),
    ("companyName eq 'Fabrikam, Inc.'", lambda u: u["companyName"] == "Fabrikam, Inc."),
    ("companyName eq 'northwind \"traders\"'", lambda u: u["companyName"] == 'Northwind "Traders"'),
    (
        "startsWith(userPrincipalName,'adele')",
        lambda u: u["userPrincipalName"].lower().startswith("adele"),
    ),
    (
        "startswith(displayName, 'O''Brien')",
        lambda u: (u["displayName"] or "").lower().startswith("o'brien"),
    ),
    ("startsWith(mail,'zoe.')", lambda u: (u["mail"] or "").startswith("zoe.")),
    (
        "createdDateTime ge 2020-01-01T00:00:00Z and createdDateTime le 2021-06-30T00:00:00Z",
        lambda u: (
            datetime(2020, 1, 1, tzinfo=UTC) <= _created(u) <= datetime(2021, 6, 30, tzinfo=UTC)
        ),
    ),
    (
        "userType eq 'Member' and accountEnabled eq true and department eq 'Sales'",
        lambda u: u["userType"] == "Member" and u["accountEnabled"] and u["department"] == "Sales",
    ),
    (
        "(department eq 'IT' or department eq 'Legal') and userType eq 'Member'",
        lambda u: u["department"] in ("IT", "Legal") and u["userType"] == "Member",
    ),
    (
        "department in ('Finance', 'Marketing')",
        lambda u: u["department"] in ("Finance", "Marketing"),
    ),
]


@pytest.mark.parametrize(("text", "pred"), FILTERS, ids=[f[0] for f in FILTERS])
def test_filters_match_python(http: Any, users: list[dict], text: str, pred: Pred) -> None:
    expected = [u["id"] for u in users if pred(u)]
    assert expected, "the filter should match somebody in the test tenant"
    got = http.list_all(f"/users?$select=id&$top=100&$filter={q(text)}")
    assert [u["id"] for u in got] == expected


ADVANCED: list[tuple[str, Pred]] = [
    ("department ne 'Sales'", lambda u: u["department"] != "Sales"),
    ("not(userType eq 'Member')", lambda u: u["userType"] != "Member"),
    ("endsWith(mail,'@outlook.com')", lambda u: (u["mail"] or "").endswith("@outlook.com")),
    ("jobTitle eq null", lambda u: u["jobTitle"] is None),
]


@pytest.mark.parametrize(("text", "pred"), ADVANCED, ids=[f[0] for f in ADVANCED])
def test_advanced_filters_need_eventual_and_count(
    http: Any, users: list[dict], text: str, pred: Pred
) -> None:
    status, _, body = http.get(f"/users?$select=id&$filter={q(text)}")
    assert status == 400 and body["error"]["code"] == "Request_UnsupportedQuery"
    expected = [u["id"] for u in users if pred(u)]
    url = f"/users?$select=id&$top=999&$count=true&$filter={q(text)}"
    _, _, first = http.get(url, headers=EVENTUAL)
    assert first["@odata.count"] == len(expected)
    got = http.list_all(url, headers=EVENTUAL)
    assert [u["id"] for u in got] == expected


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("nosuch eq 'x'", "BadRequest"),
        ("department eq 'unterminated", "BadRequest"),
        ("department eq", "BadRequest"),
        ("accountEnabled eq 'yes'", "BadRequest"),
        ("contains(displayName,'a')", "Request_UnsupportedQuery"),
        ("assignedLicenses/any(x:x/skuId eq 1)", "Request_UnsupportedQuery"),
        ("department xx 'a'", "BadRequest"),
    ],
)
def test_bad_filters_are_400(http: Any, text: str, code: str) -> None:
    status, _, body = http.get(f"/users?$filter={q(text)}")
    assert status == 400
    assert body["error"]["code"] == code


def test_percent_encoded_values(http: Any, users: list[dict]) -> None:
    expected = [u["id"] for u in users if u["jobTitle"] == "=1+1"]
    got = http.list_all(
        f"/users?%24select=id&%24filter={q(chr(106) + 'obTitle eq ' + chr(39) + '=1+1' + chr(39))}"
    )
    assert [u["id"] for u in got] == expected
    guest = next(u for u in users if "#EXT#" in u["userPrincipalName"])
    text = f"userPrincipalName eq '{guest['userPrincipalName']}'"
    got = http.list_all(f"/users?$select=id&$filter={q(text)}")
    assert [u["id"] for u in got] == [guest["id"]]


def test_count(http: Any, users: list[dict]) -> None:
    status, headers, body = http.get("/users/$count", headers=EVENTUAL)
    assert status == 200 and body == str(len(users))
    assert headers["Content-Type"].startswith("text/plain")
    assert http.get("/users/%24count", headers=EVENTUAL)[2] == str(len(users))
    status, _, body = http.get("/users/$count")
    assert status == 400
    guests = sum(u["userType"] == "Guest" for u in users)
    text = q("userType eq 'Guest'")
    assert http.get(f"/users/$count?$filter={text}", headers=EVENTUAL)[2] == str(guests)
    _, _, first = http.get("/users?$count=true&$top=10&$select=id", headers=EVENTUAL)
    assert first["@odata.count"] == len(users)
    _, _, second = http.get(first["@odata.nextLink"], headers=EVENTUAL)
    assert "@odata.count" not in second
    assert http.get("/users?$count=true")[0] == 400


def test_expand_manager(http: Any, users: list[dict]) -> None:
    by_id = {u["id"]: u for u in users}
    got = http.list_all("/users?$select=id&$expand=manager($select=id,userPrincipalName)&$top=400")
    assert len(got) == len(users)
    with_mgr = [u for u in got if "manager" in u]
    assert len(with_mgr) > len(got) // 2
    for item in got:
        ref = by_id[item["id"]].get("manager")
        if ref is None:
            assert "manager" not in item
            continue
        mgr = by_id[ref["id"]]
        assert item["manager"] == {
            "@odata.type": "#microsoft.graph.user",
            "id": mgr["id"],
            "userPrincipalName": mgr["userPrincipalName"],
        }
    _, headers, _ = http.get("/users?$select=id&$expand=manager($select=id)&$top=1")
    assert headers["x-ms-resource-unit"] == "2"
    assert http.get("/users?$expand=memberOf")[0] == 400


def test_unsupported_options(http: Any) -> None:
    assert http.get("/users?$skip=5")[0] == 400
    assert http.get("/users?$select=nosuchproperty")[0] == 400
    assert http.get("/users?$select=aboutMe")[0] == 501


def test_expired_page_token(make_http: Any) -> None:
    with run_in_thread(SimConfig(users=30, page_token_ttl=1)) as s:
        h = make_http(s)
        _, _, first = h.get("/users?$top=10")
        assert h.get(first["@odata.nextLink"])[0] == 200
        time.sleep(1.2)
        status, _, body = h.get(first["@odata.nextLink"])
        stats = h.get(s.stats_url)[2]
        assert h.get("/users?$skiptoken=garbage!")[0] == 400
    assert status == 400
    assert body["error"]["code"] == "Directory_ExpiredPageToken"
    assert set(body["error"]["innerError"]) == {"date", "request-id", "client-request-id"}
    assert stats["faults"]["expiredPageToken"] == 1


# ------------------------------------------------------------------ $batch
def _item(i: int, url: str) -> dict[str, Any]:
    return {"id": str(i), "method": "GET", "url": url}


def test_batch_limits(http: Any, users: list[dict]) -> None:
    uid = users[0]["id"]
    reqs = [_item(i, f"/users/{uid}/authentication/phoneMethods") for i in range(21)]
    status, _, body = http.request("POST", "/$batch", body={"requests": reqs})
    assert status == 400 and body["error"]["code"] == "BadRequest"
    dup = [_item(1, "/users"), _item(1, "/users")]
    assert http.request("POST", "/$batch", body={"requests": dup})[0] == 400
    assert http.request("POST", "/$batch", body={"nothing": []})[0] == 400


def test_batch_dispatches_items(http: Any, sample: Any, users: list[dict]) -> None:
    ex = sample("batch.response.json")
    u = users[1]
    reqs = [
        _item(1, f"/users/{u['id']}/authentication/phoneMethods"),
        _item(2, f"users/{u['id']}/authentication/emailMethods"),
        _item(3, f"/v1.0/users/{q(u['userPrincipalName'])}/authentication/phoneMethods"),
        _item(4, "/users/nobody/authentication/phoneMethods"),
        {"id": "5", "method": "DELETE", "url": f"/users/{u['id']}"},
        {
            "id": "6",
            "method": "GET",
            "url": "users?$select=id,displayName&$filter=department ne 'Sales'&$count=true&$top=2",
            "headers": {"ConsistencyLevel": "eventual"},
        },
    ]
    status, _, body = http.request("POST", "/$batch", body={"requests": reqs})
    assert status == 200
    assert set(body) == set(ex)
    by_id = {r["id"]: r for r in body["responses"]}
    assert all(set(r) == set(ex["responses"][0]) for r in body["responses"])
    auth = u.get("authentication", {})
    assert by_id["1"]["status"] == 200
    assert by_id["1"]["body"]["value"] == auth.get("phoneMethods", [])
    assert by_id["2"]["body"]["value"] == auth.get("emailMethods", [])
    assert by_id["3"]["body"]["value"] == auth.get("phoneMethods", [])
    assert by_id["4"]["status"] == 404
    assert by_id["5"]["status"] == 405
    assert by_id["6"]["status"] == 200 and "@odata.count" in by_id["6"]["body"]
    assert by_id["1"]["headers"]["x-ms-resource-unit"] == "1"


def test_batch_items_are_throttled_one_by_one(make_http: Any) -> None:
    with run_in_thread(SimConfig(users=50, auth_budget=5)) as s:
        h = make_http(s)
        ids = [u["id"] for u in iter_users(s.state.config)][:20]
        reqs = [_item(i, f"/users/{uid}/authentication/phoneMethods") for i, uid in enumerate(ids)]
        status, _, body = h.request("POST", "/$batch", body={"requests": reqs})
        stats = h.get(s.stats_url)[2]
    assert status == 200
    codes = [r["status"] for r in body["responses"]]
    assert codes.count(200) == 5 and codes.count(429) == 15
    throttled = [r for r in body["responses"] if r["status"] == 429]
    assert all(int(r["headers"]["Retry-After"]) >= 1 for r in throttled)
    assert throttled[0]["body"]["error"]["code"] == "TooManyRequests"
    assert stats["throttled"] == 15


# ------------------------------------------------------------------ throttling
def test_429_shape_and_retry_after(make_http: Any, sample: Any) -> None:
    ex = sample("error.429.response.json")
    with run_in_thread(SimConfig(users=20, budget=4)) as s:
        h = make_http(s)
        assert [h.get("/users")[0] for _ in range(2)] == [200, 200]
        status, headers, body = h.get("/users")
        assert status == 429
        assert int(headers["Retry-After"]) >= 1
        assert set(body["error"]) == set(ex["error"])
        assert set(body["error"]["innerError"]) >= set(ex["error"]["innerError"])
        assert "x-ms-resource-unit" in headers
        assert float(headers["x-ms-throttle-limit-percentage"]) > 0.8
        h.request("POST", s.stats_url + "/reset", auth=False)
        assert h.get(s.stats_url)[2]["throttled"] == 0
    with run_in_thread(SimConfig(users=20, budget=2, no_retry_after=True)) as s:
        h = make_http(s)
        h.get("/users")
        status, headers, _ = h.get("/users")
        assert status == 429 and "Retry-After" not in headers


def test_forced_statuses_from_tenant_file(tmp_path: Path, make_http: Any) -> None:
    lines = [
        {"id": "u-ok", "userPrincipalName": "ok@x.test", "authentication": {"phoneMethods": []}},
        {"id": "u-gone", "userPrincipalName": "gone@x.test", "_sim": {"authenticationStatus": 404}},
        {"id": "u-deny", "userPrincipalName": "deny@x.test", "_sim": {"authenticationStatus": 403}},
        {"id": "u-busy", "userPrincipalName": "busy@x.test", "_sim": {"authenticationStatus": 429}},
        {"id": "u-boom", "userPrincipalName": "boom@x.test", "_sim": {"authenticationStatus": 500}},
    ]
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    with run_in_thread(SimConfig(tenant=path)) as s:
        h = make_http(s)
        got = {x["id"]: h.get(f"/users/{x['id']}/authentication/phoneMethods")[:2] for x in lines}
        listed = h.list_all("/users?$select=id")
    assert {k: v[0] for k, v in got.items()} == {
        "u-ok": 200,
        "u-gone": 404,
        "u-deny": 403,
        "u-busy": 429,
        "u-boom": 500,
    }
    assert "Retry-After" in got["u-busy"][1]
    assert [u["id"] for u in listed] == [x["id"] for x in lines]


@pytest.mark.parametrize("prefix", ["a", "M", "ma", "mar", "b7", "0", "'", "zz"])
def test_upn_prefix_filters_served_from_the_index(
    http: Any, users: list[dict], prefix: str
) -> None:
    # startsWith(userPrincipalName,...) alone takes the UPN-index path: same answer as a scan.
    text = f"startsWith(userPrincipalName,'{prefix.replace(chr(39), chr(39) * 2)}')"
    expected = [u["id"] for u in users if u["userPrincipalName"].lower().startswith(prefix.lower())]
    got = http.list_all(f"/users?$select=id&$top=100&$filter={q(text)}")
    assert [u["id"] for u in got] == expected
    _, _, count = http.get(f"/users/$count?$filter={q(text)}", headers=EVENTUAL)
    assert int(count) == len(expected)
