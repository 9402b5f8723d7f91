"""Tokens a third party can verify: the tenant's OpenID metadata and JWKS, user-assigned
identities at the managed identity endpoint, and tokens for other audiences."""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from devtools.tenantsim import RunningSim, SimConfig, run_in_thread
from devtools.tenantsim.config import DEFAULT_ROLES

API = "api://userexport-local"


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSim]:
    config = SimConfig(users=5, seed=3, identity_header="s", identities=("logicapp", "intruder"))
    with run_in_thread(config) as s:
        yield s


def token_answer(http: Any, resource: str, **selector: str) -> tuple[int, Any]:
    query = urllib.parse.urlencode({"api-version": "2019-08-01", "resource": resource, **selector})
    status, _, body = http.request(
        "GET",
        f"{http.sim.identity_url}?{query}",
        headers={"X-IDENTITY-HEADER": http.sim.identity_header},
        auth=False,
    )
    return status, body


def token_for(http: Any, resource: str, **selector: str) -> str:
    status, body = token_answer(http, resource, **selector)
    assert status == 200, body
    return str(body["access_token"])


def verify_as_a_third_party(http: Any, token: str, audience: str) -> dict[str, Any]:
    """What a resource does: the keys come from the issuer's metadata, nothing is shared."""
    status, _, config = http.request(
        "GET", f"{http.sim.open_id_issuer}/.well-known/openid-configuration", auth=False
    )
    assert status == 200, config
    status, _, jwks = http.request("GET", config["jwks_uri"], auth=False)
    assert status == 200, jwks
    header = jwt.get_unverified_header(token)
    (key,) = [k for k in jwks["keys"] if k["kid"] == header["kid"]]
    return jwt.decode(
        token,
        jwt.PyJWK(key).key,
        algorithms=["RS256"],
        audience=audience,
        issuer=f"https://sts.windows.net/{http.sim.tenant_id}/",
    )


def test_metadata_and_keys_have_entras_shape(make_http: Any, sim: RunningSim) -> None:
    http = make_http(sim)
    tid = sim.tenant_id
    status, _, v2 = http.request(
        "GET", f"{sim.base_url}/{tid}/v2.0/.well-known/openid-configuration", auth=False
    )
    assert status == 200
    assert v2["issuer"] == f"https://login.microsoftonline.com/{tid}/v2.0"
    assert v2["jwks_uri"] == f"{sim.base_url}/{tid}/discovery/v2.0/keys"
    assert v2["id_token_signing_alg_values_supported"] == ["RS256"]
    status, _, v1 = http.request(
        "GET", f"{sim.base_url}/{tid}/.well-known/openid-configuration", auth=False
    )
    assert status == 200 and v1["issuer"] == f"https://sts.windows.net/{tid}/"
    status, _, keys = http.request("GET", v2["jwks_uri"], auth=False)
    assert status == 200
    (key,) = keys["keys"]
    assert {"kty", "use", "kid", "n", "e"} <= set(key) and key["kty"] == "RSA"
    assert "d" not in key and "p" not in key, "never the private part"
    status, _, body = http.request(
        "GET", f"{sim.base_url}/not-{tid}/v2.0/.well-known/openid-configuration", auth=False
    )
    assert status == 400 and body["error"] == "invalid_tenant"


def test_graph_tokens_verify_with_the_published_keys(make_http: Any, sim: RunningSim) -> None:
    http = make_http(sim)
    claims = verify_as_a_third_party(
        http, token_for(http, "https://graph.microsoft.com"), "https://graph.microsoft.com"
    )
    assert claims["roles"] == list(DEFAULT_ROLES)
    assert claims["tid"] == sim.tenant_id and claims["ver"] == "1.0"
    assert claims["appid"] == sim.state.config.client_id
    assert claims["oid"] == claims["sub"] == sim.state.issuer.object_id


def test_tokens_for_another_audience_carry_no_graph_roles(make_http: Any, sim: RunningSim) -> None:
    http = make_http(sim)
    token = token_for(http, f"{API}/.default")
    claims = verify_as_a_third_party(http, token, API)
    assert claims["aud"] == API and "roles" not in claims
    # ...and Graph refuses them.
    status, _, body = http.get("/users", headers={"Authorization": f"Bearer {token}"})
    assert status == 401 and body["error"]["code"] == "InvalidAuthenticationToken"
    with pytest.raises(jwt.InvalidAudienceError):
        verify_as_a_third_party(http, token, "https://graph.microsoft.com")


@pytest.mark.parametrize("selector", ["client_id", "object_id", "principal_id", "mi_res_id"])
def test_a_user_assigned_identity_is_selected_by_any_of_its_ids(
    make_http: Any, sim: RunningSim, selector: str
) -> None:
    http = make_http(sim)
    logicapp = sim.identities["logicapp"]
    value = {
        "client_id": logicapp.client_id,
        "object_id": logicapp.object_id,
        "principal_id": logicapp.object_id,
        "mi_res_id": logicapp.resource_id,
    }[selector]
    status, body = token_answer(http, API, **{selector: value})
    assert status == 200, body
    assert body["client_id"] == logicapp.client_id
    claims = verify_as_a_third_party(http, body["access_token"], API)
    assert claims["oid"] == logicapp.object_id and claims["appid"] == logicapp.client_id
    assert claims["xms_mirid"] == logicapp.resource_id
    assert logicapp.resource_id.endswith("/userAssignedIdentities/logicapp")


def test_identities_are_distinct_and_stable(make_http: Any, sim: RunningSim) -> None:
    logicapp, intruder = sim.identities["logicapp"], sim.identities["intruder"]
    assert logicapp.object_id != intruder.object_id
    assert logicapp.client_id != intruder.client_id
    assert sim.state.issuer.object_id not in (logicapp.object_id, intruder.object_id)
    with run_in_thread(SimConfig(users=1, seed=3, identities=("logicapp",))) as again:
        assert again.identities["logicapp"] == logicapp, "same tenant, same name: same ids"
    start = sim.start_line()
    assert start["openIdIssuer"] == f"{sim.base_url}/{sim.tenant_id}/v2.0"
    assert [i["name"] for i in start["identities"]] == ["logicapp", "intruder"]


def test_unknown_selectors(make_http: Any, sim: RunningSim) -> None:
    http = make_http(sim)
    for selector in ("object_id", "mi_res_id"):
        status, body = token_answer(http, API, **{selector: "00000000-0000-0000-0000-00000000000f"})
        assert status == 400 and "No managed identity" in body["message"], body
    status, body = token_answer(
        http, API, client_id=sim.identities["logicapp"].client_id, object_id="x"
    )
    assert status == 400, body
    # An unknown client id still gets the default identity's token under that client id.
    status, body = token_answer(http, API, client_id="11111111-2222-3333-4444-555555555555")
    assert status == 200 and body["client_id"] == "11111111-2222-3333-4444-555555555555"


def test_a_forged_or_foreign_token_is_refused(make_http: Any, sim: RunningSim) -> None:
    http = make_http(sim)
    token = token_for(http, "https://graph.microsoft.com")
    head, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["oid"] = sim.identities["logicapp"].object_id
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(jwt.InvalidSignatureError):
        verify_as_a_third_party(http, f"{head}.{forged}.{sig}", "https://graph.microsoft.com")
    with run_in_thread(SimConfig(users=1, seed=3)) as other:  # same tenant id, another key
        foreign = token_for(make_http(other), "https://graph.microsoft.com")
    status, _, _ = http.get("/users", headers={"Authorization": f"Bearer {foreign}"})
    assert status == 401


def test_cli_option_and_bad_names() -> None:
    from devtools.tenantsim.config import config_from_args

    assert config_from_args(["--identity", "a", "--identity", "b-2"]).identities == ("a", "b-2")
    for bad in (("a b",), ("x", "x")):
        with pytest.raises(ValueError):
            SimConfig(identities=bad)
