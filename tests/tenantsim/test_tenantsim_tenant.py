"""The synthetic tenant and the tenant file: determinism, realism, round trips, errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devtools.tenantsim import (
    SimConfig,
    TenantFileError,
    dump_tenant,
    generate_user,
    iter_users,
    load_tenant_file,
    run_in_thread,
)

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(60)

REQUIRED: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "userPrincipalName": (str,),
    "displayName": (str, type(None)),
    "surname": (str, type(None)),
    "givenName": (str, type(None)),
    "mail": (str, type(None)),
    "userType": (str,),
    "jobTitle": (str, type(None)),
    "department": (str, type(None)),
    "accountEnabled": (bool,),
    "usageLocation": (str, type(None)),
    "streetAddress": (str, type(None)),
    "state": (str, type(None)),
    "country": (str, type(None)),
    "officeLocation": (str, type(None)),
    "city": (str, type(None)),
    "postalCode": (str, type(None)),
    "businessPhones": (list,),
    "mobilePhone": (str, type(None)),
    "otherMails": (list,),
    "ageGroup": (str, type(None)),
    "consentProvidedForMinor": (str, type(None)),
    "legalAgeGroupClassification": (str, type(None)),
    "employeeId": (str, type(None)),
    "employeeType": (str, type(None)),
    "companyName": (str, type(None)),
    "createdDateTime": (str,),
    "onPremisesSyncEnabled": (bool, type(None)),
    "onPremisesSamAccountName": (str, type(None)),
    "proxyAddresses": (list,),
    "assignedLicenses": (list,),
    "onPremisesExtensionAttributes": (dict,),
    "preferredLanguage": (str, type(None)),
    "identities": (list,),
    "creationType": (str, type(None)),
    "externalUserState": (str, type(None)),
    "mailNickname": (str,),
}
GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture(scope="module")
def tenant() -> list[dict[str, Any]]:
    return list(iter_users(SimConfig(users=4000, seed=3)))


def test_generate_user_is_pure_and_matches_iter_users(tenant: list[dict[str, Any]]) -> None:
    assert generate_user(3, 17) == tenant[17] == generate_user(3, 17)
    assert generate_user(4, 17) != tenant[17]
    assert len({u["id"] for u in tenant}) == len(tenant)
    assert len({u["userPrincipalName"].lower() for u in tenant}) == len(tenant)


def test_every_property_has_graphs_type(tenant: list[dict[str, Any]]) -> None:
    for u in tenant:
        for name, types in REQUIRED.items():
            assert isinstance(u[name], types), (name, u[name])
        assert GUID.fullmatch(u["id"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", u["createdDateTime"])
        assert set(u["onPremisesExtensionAttributes"]) == {
            f"extensionAttribute{i}" for i in range(1, 16)
        }
        for lic in u["assignedLicenses"]:
            assert lic["disabledPlans"] == [] and GUID.fullmatch(lic["skuId"])


def _any(tenant: list[dict[str, Any]], pred: Any) -> bool:
    return any(pred(u) for u in tenant)


def test_tenant_is_realistic(tenant: list[dict[str, Any]]) -> None:
    texts = [str(v) for u in tenant for k, v in u.items() if isinstance(v, str) and k != "id"]
    blob = "\x00".join(texts)
    checks = {
        "guest #EXT#": _any(
            tenant,
            lambda u: re.fullmatch(
                r"[^@]+_[^@]+#EXT#@fabrikam\.onmicrosoft\.com", u["userPrincipalName"]
            ),
        ),
        "b2c objectId@domain": _any(
            tenant, lambda u: u["userPrincipalName"].startswith(u["id"] + "@")
        ),
        "disabled": _any(tenant, lambda u: u["accountEnabled"] is False),
        "no displayName": _any(tenant, lambda u: u["displayName"] is None),
        "cjk": re.search(r"[\u4e00-\u9fff\u3040-\u30ff]", blob) is not None,
        "rtl": re.search(r"[\u0590-\u06ff]", blob) is not None,
        "emoji": re.search(r"[\U0001F300-\U0001FAFF]", blob) is not None,
        "combining": "\u0301" in blob,
        "comma": _any(tenant, lambda u: "," in (u["department"] or "")),
        "quote": _any(tenant, lambda u: '"' in (u["companyName"] or "")),
        "lf": _any(tenant, lambda u: "\n" in (u["jobTitle"] or "").replace("\r\n", "")),
        "crlf": _any(tenant, lambda u: "\r\n" in (u["department"] or "")),
        "tab": "\t" in blob,
        "=": _any(tenant, lambda u: u["department"] == "=SUM(A1)"),
        "-": _any(tenant, lambda u: u["jobTitle"] == "-Engineer"),
        "+": _any(tenant, lambda u: (u["department"] or "").startswith("+")),
        "@": _any(tenant, lambda u: u["jobTitle"] == "@home"),
        "several otherMails": _any(tenant, lambda u: len(u["otherMails"]) >= 2),
        "empty businessPhones": _any(tenant, lambda u: u["businessPhones"] == []),
        "phone format": _any(
            tenant,
            lambda u: (
                re.fullmatch(r"\+1 425 555 \d{4}", (u["businessPhones"] or [""])[0]) is not None
            ),
        ),
        "manager": _any(tenant, lambda u: "manager" in u),
    }
    assert [k for k, ok in checks.items() if not ok] == []
    kinds = {
        m["phoneType"] for u in tenant for m in u.get("authentication", {}).get("phoneMethods", [])
    }
    assert kinds == {"mobile", "alternateMobile", "office"}
    assert _any(tenant, lambda u: u.get("authentication", {}).get("emailMethods"))
    assert {u["ageGroup"] for u in tenant} == {"Minor", "NotAdult", "Adult", None}
    assert {u["consentProvidedForMinor"] for u in tenant} == {
        "Granted",
        "Denied",
        "NotRequired",
        None,
    }
    assert {u["legalAgeGroupClassification"] for u in tenant} >= {
        "MinorWithParentalConsent",
        "MinorNoParentalConsentRequired",
        "NotAdult",
        "Adult",
        None,
    }
    years = {u["createdDateTime"][:4] for u in tenant}
    assert len(years) >= 10
    auth = [u["authentication"] for u in tenant]
    share = sum(bool(a["phoneMethods"] or a["emailMethods"]) for a in auth) / len(tenant)
    assert 0.2 < share < 0.9


def test_dump_is_byte_identical_and_round_trips(tmp_path: Path, make_http: Any) -> None:
    config = SimConfig(users=1500, seed=21)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert dump_tenant(config, a) == 1500
    dump_tenant(SimConfig(users=1500, seed=21), b)
    assert a.read_bytes() == b.read_bytes()
    dump_tenant(SimConfig(users=1500, seed=22), b)
    assert a.read_bytes() != b.read_bytes()
    generated = list(iter_users(config))
    from_file = SimConfig(tenant=a)
    assert list(iter_users(from_file)) == generated
    assert load_tenant_file(a) == generated
    with run_in_thread(from_file) as sim:
        served = make_http(sim).list_all("/users?$select=id,userPrincipalName,department&$top=999")
    assert served == [
        {"id": u["id"], "userPrincipalName": u["userPrincipalName"], "department": u["department"]}
        for u in generated
    ]


def test_cli_dump_matches_api_and_unknown_keys_are_ignored(tmp_path: Path) -> None:
    out = tmp_path / "cli.jsonl"
    cmd = [sys.executable, "-m", "devtools.tenantsim", "--users", "200", "--seed", "9"]
    done = subprocess.run([*cmd, "--dump", str(out)], cwd=ROOT, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    api = tmp_path / "api.jsonl"
    dump_tenant(SimConfig(users=200, seed=9), api)
    assert out.read_bytes() == api.read_bytes()
    extra = tmp_path / "extra.jsonl"
    extra.write_text(json.dumps({"id": "a", "userPrincipalName": "a@x.test", "bogus": 1}) + "\n")
    assert load_tenant_file(extra) == [{"id": "a", "userPrincipalName": "a@x.test"}]


@pytest.mark.parametrize(
    "bad",
    [
        "{not json",
        "[1, 2]",
        '{"userPrincipalName": "no-id@x.test"}',
        '{"id": "z", "authentication": {"phoneMethods": "x"}}',
        '{"id": "z", "_sim": {"authenticationStatus": "soon"}}',
    ],
)
def test_malformed_line_reports_its_number(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "bad.jsonl"
    good = [json.dumps({"id": f"u{i}", "userPrincipalName": f"u{i}@x.test"}) for i in range(2)]
    path.write_text("\n".join([*good, bad, good[0]]) + "\n")
    with pytest.raises(TenantFileError) as err:
        load_tenant_file(path)
    assert err.value.line == 3
    done = subprocess.run(
        [sys.executable, "-m", "devtools.tenantsim", "--port", "0", "--tenant", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "line 3" in done.stderr
    assert done.stdout == ""
