"""signInActivity, /subscribedSkus and /users/{id}/authentication/methods."""

from __future__ import annotations

import json
import re
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from devtools.tenantsim import (
    SimConfig,
    TenantFileError,
    generate_user,
    iter_users,
    load_tenant_document,
    load_tenant_file,
    run_in_thread,
    subscribed_skus,
)
from devtools.tenantsim.config import config_from_args
from devtools.tenantsim.directory import RETIRED_SKU_ID
from devtools.tenantsim.generator import SKU_IDS

pytestmark = pytest.mark.timeout(60)
GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SIGNIN_KEYS = [
    "lastSignInDateTime",
    "lastSignInRequestId",
    "lastNonInteractiveSignInDateTime",
    "lastNonInteractiveSignInRequestId",
    "lastSuccessfulSignInDateTime",
    "lastSuccessfulSignInRequestId",
]
NEVER = "0001-01-01T00:00:00Z"
ALL_ROLES = ("User.Read.All", "UserAuthenticationMethod.Read.All", "AuditLog.Read.All")
TYPES = {
    f"#microsoft.graph.{t}AuthenticationMethod"
    for t in (
        "password",
        "phone",
        "email",
        "fido2",
        "microsoftAuthenticator",
        "windowsHelloForBusiness",
        "temporaryAccessPass",
        "softwareOath",
        "platformCredential",
    )
}


@pytest.fixture(scope="module")
def users(sim: Any) -> list[dict[str, Any]]:
    return list(iter_users(sim.state.config))


def _write(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


# ------------------------------------------------------------------ signInActivity data
def test_generated_sign_in_activity_is_fixed_and_graph_shaped(users: list[dict]) -> None:
    assert generate_user(7, 11) == users[11]  # no wall clock: the same every time
    never = [u for u in users if "signInActivity" not in u]
    assert 0.10 < len(never) / len(users) < 0.20
    # A guest who never accepted the invitation never signed in.
    pending = [u for u in users if u["externalUserState"] == "PendingAcceptance"]
    assert pending and all("signInActivity" not in u for u in pending)
    seen = {"noInteractive": 0, "noNonInteractive": 0, "failedLast": 0}
    for u in users:
        act = u.get("signInActivity")
        if act is None:
            continue
        assert list(act) == SIGNIN_KEYS
        for kind in ("", "NonInteractive", "Successful"):
            when, rid = act[f"last{kind}SignInDateTime"], act[f"last{kind}SignInRequestId"]
            if when == NEVER:
                assert rid == ""
                continue
            assert GUID.fullmatch(rid), rid
            assert u["createdDateTime"] <= when < "2026-11-01T00:00:00Z"
            if kind != "Successful":  # spread over the two years before 2026-11-01
                assert when >= "2024-11-01T00:00:00Z"
        assert act["lastSuccessfulSignInDateTime"] != NEVER
        seen["noInteractive"] += act["lastSignInDateTime"] == NEVER
        seen["noNonInteractive"] += act["lastNonInteractiveSignInDateTime"] == NEVER
        seen["failedLast"] += act["lastSuccessfulSignInRequestId"] not in (
            act["lastSignInRequestId"],
            act["lastNonInteractiveSignInRequestId"],
        )
    assert all(n > 10 for n in seen.values()), seen


def test_select_sign_in_activity_matches_example11(http: Any, sample: Any, users: list) -> None:
    ex = sample("user-list.example11.response.json")
    status, headers, body = http.get(
        "/users?$select=displayName,userPrincipalName,signInActivity&$top=50"
    )
    assert status == 200
    assert body["@odata.context"] == ex["@odata.context"]
    assert set(ex["value"][0]["signInActivity"]) <= set(SIGNIN_KEYS)
    for item, user in zip(body["value"], users, strict=False):
        assert list(item) == ["displayName", "userPrincipalName", "signInActivity", "id"]
        assert item["signInActivity"] == user.get("signInActivity")  # null: never signed in
    assert any(item["signInActivity"] is None for item in body["value"])
    assert headers["x-ms-resource-unit"] == "1"
    # Never in the default set, nor without being selected.
    _, _, plain = http.get("/users?$top=50")
    assert all("signInActivity" not in u for u in plain["value"])
    _, _, other = http.get("/users?$select=id,displayName&$top=5")
    assert all("signInActivity" not in u for u in other["value"])
    one = users[3]
    status, _, body = http.get(f"/users/{one['id']}?$select=id,signInActivity")
    assert status == 200 and body["signInActivity"] == one.get("signInActivity")


def test_pages_with_sign_in_activity_hold_at_most_120(http: Any, users: list) -> None:
    before = http.stats().get("signInPages", 0)
    url = "/users?%24select=id%2CsignInActivity&%24top=999"
    sizes, got = [], []
    while url:
        status, _, body = http.get(url)
        assert status == 200
        sizes.append(len(body["value"]))
        got += body["value"]
        url = body.get("@odata.nextLink")
        if url:
            assert "%24top=999" in url  # the request's $top is kept, the cap applies again
    assert sizes == [120] * 10  # 1,200 users
    assert [u["id"] for u in got] == [u["id"] for u in users]
    assert [u["signInActivity"] for u in got] == [u.get("signInActivity") for u in users]
    assert http.stats()["signInPages"] - before == 10
    # Below the cap $top still rules; $top above 999 is still a 400.
    assert len(http.get("/users?$select=signInActivity&$top=7")[2]["value"]) == 7
    assert http.get("/users?$select=signInActivity&$top=1000")[0] == 400


def test_sign_in_activity_needs_audit_log_and_premium(make_http: Any) -> None:
    config = SimConfig(users=30, roles=("User.Read.All",))
    with run_in_thread(config) as s:
        h = make_http(s)
        assert h.get("/users?$select=id")[0] == 200
        status, _, body = h.get("/users?$select=id,signInActivity")
        uid = next(iter_users(config))["id"]
        single = h.get(f"/users/{uid}?$select=signInActivity")[0]
        stats = h.stats()
    assert status == 403 and single == 403
    assert body["error"]["code"] == "Authorization_RequestDenied"
    assert body["error"]["message"] == "Insufficient privileges to complete the operation."
    assert stats["forbidden"] == 2
    with run_in_thread(SimConfig(users=30, roles=ALL_ROLES, premium=False)) as s:
        h = make_http(s)
        status, _, body = h.get("/users?$select=id,signInActivity")
        assert h.get("/users?$select=id")[0] == 200
        assert h.faults()[1]["premium"] is False
        # Switched at run time, and back to the configured value by a reset.
        assert h.faults({"premium": True}) == (200, h.faults()[1])
        assert h.get("/users?$select=id,signInActivity")[0] == 200
        assert h.request("POST", s.faults_url + "/reset", auth=False)[0] == 204
        assert h.faults()[1]["premium"] is False
        assert h.get("/users?$select=signInActivity")[0] == 403
        assert h.faults({"premium": "no"})[0] == 400
    assert status == 403
    assert body["error"]["code"] == "Authentication_RequestFromNonPremiumTenantOrB2CTenant"
    message = "Neither tenant is B2C or tenant doesn't have premium license"
    assert body["error"]["message"] == message


def test_premium_can_be_switched_off_while_running(h_small: Any) -> None:
    h = h_small
    assert h.faults()[1]["premium"] is True
    assert h.get("/users?$select=signInActivity")[0] == 200
    assert h.faults({"premium": False})[1]["premium"] is False
    batch = {
        "requests": [
            {"id": "1", "method": "GET", "url": "/users?$select=id,signInActivity"},
            {"id": "2", "method": "GET", "url": "/users?$select=id"},
        ]
    }
    status, _, body = h.request("POST", "/$batch", body=batch)
    codes = {r["id"]: r["status"] for r in body["responses"]}
    assert status == 200 and codes == {"1": 403, "2": 200}
    h.request("POST", h.sim.faults_url + "/reset", auth=False)
    assert h.faults()[1]["premium"] is True


@pytest.fixture
def h_small(make_http: Any) -> Any:
    with run_in_thread(SimConfig(users=300, seed=5)) as s:
        yield make_http(s)


def test_sign_in_requests_draw_from_their_own_bucket(make_http: Any) -> None:
    # 3 RU per 10 s for signInActivity: three pages at 1 RU, then 429s; other lists go on.
    with run_in_thread(SimConfig(users=500, signin_budget=3)) as s:
        h = make_http(s)
        codes = [h.get("/users?$select=id,signInActivity&$top=10")[0] for _ in range(4)]
        status, headers, _ = h.get("/users?$select=id,signInActivity&$top=10")
        plain = h.get("/users?$select=id&$top=10")[0]
        stats = h.stats()
    assert codes == [200, 200, 200, 429] and status == 429
    assert int(headers["Retry-After"]) >= 1
    assert plain == 200
    assert stats["throttledByEndpoint"] == {"users": 2}
    assert stats["signInPages"] == 3


def test_cli_options() -> None:
    config = config_from_args(["--no-premium", "--signin-budget", "50"])
    assert config.premium is False and config.signin_budget == 50
    default = config_from_args([])
    assert default.premium is True and default.signin_budget == 8000
    assert {"AuditLog.Read.All", "LicenseAssignment.Read.All"} <= set(default.roles)
    assert {"GroupMember.Read.All", "AdministrativeUnit.Read.All"} <= set(default.roles)
    with pytest.raises(SystemExit):
        config_from_args(["--signin-budget", "0"])


# ------------------------------------------------------------------ subscribedSkus
def test_subscribed_skus(http: Any, users: list[dict], sim: Any) -> None:
    status, headers, body = http.get("/subscribedSkus")
    assert status == 200
    assert body["@odata.context"] == "https://graph.microsoft.com/v1.0/$metadata#subscribedSkus"
    assert headers["x-ms-resource-unit"] == "1"
    skus = body["value"]
    assert skus == subscribed_skus(sim.state.config)
    listed = {s["skuId"] for s in skus}
    assert listed == set(SKU_IDS) - {RETIRED_SKU_ID}
    held = {lic["skuId"] for u in users for lic in u["assignedLicenses"]}
    assert RETIRED_SKU_ID in held  # a retired subscription some users still hold
    parts = {s["skuId"]: s["skuPartNumber"] for s in skus}
    assert parts["06ebc4ee-1bb5-47dd-8120-11324bc54e06"] == "SPE_E5"
    assert parts["f30db892-07e9-47e9-837c-80727f46fd3d"] == "FLOW_FREE"
    for sku in skus:
        assert set(sku) == {
            "accountName",
            "accountId",
            "appliesTo",
            "capabilityStatus",
            "consumedUnits",
            "id",
            "skuId",
            "skuPartNumber",
            "subscriptionIds",
            "prepaidUnits",
            "servicePlans",
        }
        assert sku["id"] == f"{sim.tenant_id}_{sku['skuId']}"
        assert sku["accountId"] == sim.tenant_id
        assert sku["appliesTo"] == "User" and sku["capabilityStatus"] == "Enabled"
        holders = sum(
            any(lic["skuId"] == sku["skuId"] for lic in u["assignedLicenses"]) for u in users
        )
        assert sku["consumedUnits"] == holders > 0
        assert sku["prepaidUnits"]["enabled"] >= holders
        assert set(sku["prepaidUnits"]) == {"enabled", "suspended", "warning", "lockedOut"}
    _, _, picked = http.get("/subscribedSkus?$select=skuId,skuPartNumber")
    assert picked["value"] == [
        {"skuId": s["skuId"], "skuPartNumber": s["skuPartNumber"], "id": s["id"]} for s in skus
    ]
    assert http.get("/subscribedSkus?$select=nope")[0] == 400
    assert http.stats()["requests"]["subscribedSkus"] >= 2


@pytest.mark.parametrize(
    ("roles", "status"),
    [
        (("User.Read.All",), 403),
        (("LicenseAssignment.Read.All",), 200),
        (("Organization.Read.All",), 200),
        (("Directory.Read.All",), 200),
    ],
)
def test_subscribed_skus_permissions(make_http: Any, roles: tuple, status: int) -> None:
    with run_in_thread(SimConfig(users=10, roles=roles)) as s:
        got, _, body = make_http(s).get("/subscribedSkus")
    assert got == status
    if status == 403:
        assert body["error"]["code"] == "Authorization_RequestDenied"


def test_subscribed_skus_from_a_tenant_file(tmp_path: Path, make_http: Any) -> None:
    sku = {
        "@odata.type": "#microsoft.graph.subscribedSku",
        "skuId": "c7df2760-2c81-4ef7-b578-5b5392b571df",
        "skuPartNumber": "ENTERPRISEPREMIUM",
        "consumedUnits": 1,
        "prepaidUnits": {"enabled": 5, "suspended": 0, "warning": 0, "lockedOut": 0},
    }
    user = {
        "id": "u1",
        "userPrincipalName": "u1@x.test",
        "assignedLicenses": [{"disabledPlans": [], "skuId": sku["skuId"]}],
    }
    path = _write(tmp_path / "t.jsonl", [sku, user])
    assert load_tenant_document(path).skus == [{k: v for k, v in sku.items() if k[0] != "@"}]
    with run_in_thread(SimConfig(tenant=path)) as s:
        h = make_http(s)
        _, _, body = h.get("/subscribedSkus")
        users = h.list_all("/users?$select=id,assignedLicenses")
    assert body["value"] == [{k: v for k, v in sku.items() if k[0] != "@"}]
    assert users == [{"id": "u1", "assignedLicenses": user["assignedLicenses"]}]
    # A file without subscribedSku lines lists none.
    bare = _write(tmp_path / "bare.jsonl", [user])
    with run_in_thread(SimConfig(tenant=bare)) as s:
        assert make_http(s).get("/subscribedSkus")[2]["value"] == []


# ------------------------------------------------------------------ authentication methods
def test_methods_list_holds_every_method_and_keeps_the_invariant(
    http: Any, users: list[dict]
) -> None:
    seen: set[str] = set()
    for u in users:
        auth = u["authentication"]
        methods = auth["methods"]
        assert methods[0]["@odata.type"] == "#microsoft.graph.passwordAuthenticationMethod"
        assert methods[0]["id"] == "28c10230-6103-485e-b985-444c60001490"
        assert methods[0]["password"] is None
        strip = [{k: v for k, v in m.items() if k != "@odata.type"} for m in methods]
        phones = [s for s, m in zip(strip, methods, strict=True) if "phone" in m["@odata.type"]]
        emails = [s for s, m in zip(strip, methods, strict=True) if "email" in m["@odata.type"]]
        assert phones == auth["phoneMethods"] and emails == auth["emailMethods"]
        assert all(set(m) >= {"@odata.type", "id"} for m in methods)
        seen |= {m["@odata.type"] for m in methods}
    assert seen == TYPES
    richest = max(users, key=lambda u: len(u["authentication"]["methods"]))
    status, headers, body = http.get(f"/users/{richest['id']}/authentication/methods")
    assert status == 200
    assert body == {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('"
        + richest["id"]
        + "')/authentication/methods",
        "value": richest["authentication"]["methods"],
    }
    assert headers["x-ms-resource-unit"] == "1"


def test_methods_in_batch_match_the_phone_and_email_lists(http: Any, users: list) -> None:
    picked = [u for u in users if u["authentication"]["phoneMethods"]][:6]
    reqs = []
    for i, u in enumerate(picked):
        for kind in ("methods", "phoneMethods", "emailMethods"):
            reqs.append(
                {
                    "id": f"{i}-{kind}",
                    "method": "GET",
                    "url": f"/users/{urllib.parse.quote(u['userPrincipalName'], safe='')}"
                    f"/authentication/{kind}",
                }
            )
    before = http.stats()["requests"].get("methods", 0)
    status, _, body = http.request("POST", "/$batch", body={"requests": reqs})
    assert status == 200
    got = {r["id"]: r["body"]["value"] for r in body["responses"]}
    for i in range(len(picked)):
        methods = got[f"{i}-methods"]
        typed = [m for m in methods if m["@odata.type"].endswith("phoneAuthenticationMethod")]
        assert [{k: v for k, v in m.items() if k != "@odata.type"} for m in typed] == got[
            f"{i}-phoneMethods"
        ]
        emails = [m for m in methods if m["@odata.type"].endswith("emailAuthenticationMethod")]
        assert [m["emailAddress"] for m in emails] == [
            m["emailAddress"] for m in got[f"{i}-emailMethods"]
        ]
    assert http.stats()["requests"]["methods"] - before == len(picked)


def test_methods_permissions_bucket_and_forced_status(tmp_path: Path, make_http: Any) -> None:
    with run_in_thread(SimConfig(users=5, roles=("UserAuthMethod-Phone.Read.All",))) as s:
        h = make_http(s)
        uid = next(iter_users(s.state.config))["id"]
        assert h.get(f"/users/{uid}/authentication/phoneMethods")[0] == 200
        assert h.get(f"/users/{uid}/authentication/methods")[0] == 403
    with run_in_thread(SimConfig(users=5, auth_budget=2)) as s:
        h = make_http(s)
        codes = [h.get(f"/users/{uid}/authentication/methods")[0] for _ in range(3)]
        stats = h.stats()
    assert codes == [200, 200, 429]
    assert stats["throttledByEndpoint"] == {"methods": 1}
    path = _write(
        tmp_path / "t.jsonl",
        [{"id": "gone", "_sim": {"authenticationStatus": 404}}, {"id": "bare"}],
    )
    with run_in_thread(SimConfig(tenant=path)) as s:
        h = make_http(s)
        assert h.get("/users/gone/authentication/methods")[0] == 404
        assert h.get("/users/bare/authentication/methods")[2]["value"] == []
        assert h.get("/users/nobody/authentication/methods")[0] == 404


def test_tenant_file_methods(tmp_path: Path) -> None:
    phone = {"phoneNumber": "+1 5555550100", "phoneType": "mobile", "smsSignInState": "ready"}
    phone["id"] = "3179e48a-750b-4051-897c-87b9720928f7"
    email = {"id": "3ddfcfc8-9383-446f-83cc-3ab9be4be18f", "emailAddress": "a@b.test"}
    fido = {"@odata.type": "#microsoft.graph.fido2AuthenticationMethod", "id": "k1"}
    typed_phone = {"@odata.type": "#microsoft.graph.phoneAuthenticationMethod"} | phone
    typed_email = {"@odata.type": "#microsoft.graph.emailAuthenticationMethod"} | email
    lines = [
        {"id": "full", "authentication": {"methods": [fido, typed_phone, typed_email]}},
        {
            "id": "old",
            "createdDateTime": "2020-01-01T00:00:00Z",
            "authentication": {"phoneMethods": [phone]},
        },
        {"id": "none"},
    ]
    users = load_tenant_file(_write(tmp_path / "t.jsonl", lines))
    assert users[0]["authentication"] == {
        "phoneMethods": [phone],
        "emailMethods": [email],
        "methods": [fido, typed_phone, typed_email],
    }
    assert users[1]["authentication"]["methods"] == [
        {
            "@odata.type": "#microsoft.graph.passwordAuthenticationMethod",
            "id": "28c10230-6103-485e-b985-444c60001490",
            "password": None,
            "createdDateTime": "2020-01-01T00:00:00Z",
        },
        typed_phone,
    ]
    assert users[1]["authentication"]["emailMethods"] == []
    assert "authentication" not in users[2]
    bad = [
        {"id": "x", "authentication": {"methods": [typed_phone], "phoneMethods": []}},
    ]
    with pytest.raises(TenantFileError) as err:
        load_tenant_file(_write(tmp_path / "bad.jsonl", [{"id": "ok"}, *bad]))
    assert err.value.line == 2
    untyped = [{"id": "x", "authentication": {"methods": [phone]}}]
    with pytest.raises(TenantFileError):
        load_tenant_file(_write(tmp_path / "untyped.jsonl", untyped))
