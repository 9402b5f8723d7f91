"""Who may call the API, end to end: the two ways a Logic App calls it (docs/deploy.md,
"Calling from Logic Apps").

- Function keys, enforced by devhost as by the Functions host. A Logic App's HTTP action with
  the asynchronous pattern on does not send its custom headers again when it follows the
  Location (Azure/logicapps#611), so the key travels in the URL: POST ...?code=KEY, then only
  the Location, statusUrl and nextLink, which carry the same code, with no header at all.
- App Service authentication with a managed identity: the routes at auth level anonymous
  (USEREXPORT_HTTP_AUTH_LEVEL), devhost checking Entra bearer tokens as authsettingsV2 does, the
  caller a user-assigned identity of the simulated tenant (azure-identity's
  ManagedIdentityCredential against its identity endpoint). Logic Apps sends the action's
  managed identity authentication on every poll (Azure/logicapps#611, MicrosoftDocs/
  architecture-center#4307).

And the app's own guard: anonymous routes without App Service authentication do not start.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import io
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import azure.functions as func
import httpx
import pytest
from aiohttp import web
from azure.identity import ManagedIdentityCredential

from devtools.devhost.auth import EasyAuth as Gate
from devtools.devhost.auth import EasyAuthSettings, FunctionKeys
from devtools.devhost.http import HttpRoutes
from devtools.stack import EasyAuth, LocalStack, StackError
from devtools.tenantsim import SimConfig, serve

from .conftest import app_settings, download, running_stack

USERS = 150
SEED = 11
# Keys made by token_urlsafe may start with "-": the stack must pass them as values, not flags.
FUNCTION_KEY = "-fk-" + secrets.token_urlsafe(24)
MASTER_KEY = "-mk-" + secrets.token_urlsafe(24)
AUDIENCE = "api://userexport-local"
COLUMNS = ["userPrincipalName", "objectId"]


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Function keys enforced, as in Azure with the default auth level FUNCTION."""
    with running_stack(
        tmp_path_factory.mktemp("keyed"),
        users=USERS,
        seed=SEED,
        function_key=FUNCTION_KEY,
        master_key=MASTER_KEY,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def entra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """App Service authentication in front, routes at auth level anonymous. The host still has
    keys (it always does in Azure): that calls pass without one shows the routes' level."""
    with running_stack(
        tmp_path_factory.mktemp("entra"),
        users=USERS,
        seed=SEED,
        function_key=FUNCTION_KEY,
        identities=("intruder",),
        easy_auth=EasyAuth(audience=AUDIENCE, allowed_identities=("logicapp",)),
        app_env={"USEREXPORT_HTTP_AUTH_LEVEL": "anonymous"},
    ) as running:
        yield running


def bare_get(url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    """One GET on a fresh connection, with no header but `headers` (and httpx's own: Host,
    Accept, Accept-Encoding, Connection, User-Agent), as a poller that keeps nothing."""
    with httpx.Client(timeout=60) as fresh:
        return fresh.get(url, headers=headers or {})


def follow_location(
    started: httpx.Response, headers: dict[str, str] | None = None, timeout: float = 180
) -> list[httpx.Response]:
    """What a Logic Apps HTTP action with the asynchronous pattern does after a 202: GET the
    Location (the latest one) after Retry-After seconds, until an answer is not 202."""
    answers = [started]
    deadline = time.monotonic() + timeout
    while answers[-1].status_code == 202:
        assert time.monotonic() < deadline, f"still 202 after {timeout} s: {answers[-1].text}"
        time.sleep(float(answers[-1].headers.get("Retry-After", "1")))
        answers.append(bare_get(answers[-1].headers["Location"], headers))
    return answers


def code_of(url: str) -> list[str]:
    return parse_qs(urlsplit(url).query).get("code", [])


def csv_rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def assert_exported(stack: LocalStack, final: httpx.Response) -> None:
    assert final.status_code == 200, final.text
    done = final.json()
    assert done["status"] == "succeeded", done
    rows = csv_rows(download(stack, done["downloadUrl"]))  # a SAS URL: no key, no token
    assert rows[0] == COLUMNS
    assert len(rows) == USERS + 1


# --- (a) function keys: the Logic Apps flow ----------------------------------------------------


def test_logic_apps_flow_code_in_the_url_then_only_the_location(keyed: LocalStack) -> None:
    with httpx.Client(timeout=60) as logic_app:
        started = logic_app.post(
            f"{keyed.api_url}/api/exports",
            params={"code": FUNCTION_KEY},
            json={"columns": COLUMNS, "formulaGuard": False},
        )
    assert started.status_code == 202, started.text
    body = started.json()
    location = started.headers["Location"]
    assert location == body["statusUrl"]
    assert code_of(location) == [FUNCTION_KEY], f"the Location carries the code: {location}"
    # Without the code the status URL is refused: the code in the Location is what works.
    bare = location.split("?")[0]
    assert bare_get(bare).status_code == 401

    answers = follow_location(started)
    assert all(code_of(a.headers["Location"]) == [FUNCTION_KEY] for a in answers[1:-1])
    final = answers[-1]
    assert code_of(final.json()["statusUrl"]) == [FUNCTION_KEY]
    assert_exported(keyed, final)


def test_missing_or_wrong_key_is_401_with_an_empty_body(keyed: LocalStack) -> None:
    url = f"{keyed.api_url}/api/exports"
    with httpx.Client(timeout=60) as client:
        for answer in (
            client.post(url, json={}),
            client.post(url, params={"code": "not-" + FUNCTION_KEY}, json={}),
            client.post(url, headers={"x-functions-key": "not-" + FUNCTION_KEY}, json={}),
            client.get(url),
            client.get(f"{url}/00000000000000000000000000", params={"code": ""}),
        ):
            assert answer.status_code == 401, (answer.request.url, answer.text)
            assert answer.content == b""


def test_the_header_and_the_master_key_work_too(keyed: LocalStack) -> None:
    url = f"{keyed.api_url}/api/exports"
    with httpx.Client(timeout=60) as client:
        assert client.get(url, headers={"x-functions-key": FUNCTION_KEY}).status_code == 200
        assert client.get(url, params={"code": MASTER_KEY}).status_code == 200
        # The admin API takes the master key only.
        admin = f"{keyed.api_url}/admin/functions/sweep_stalled_exports"
        assert client.post(admin, headers={"x-functions-key": FUNCTION_KEY}).status_code == 401
        assert client.post(admin).status_code == 401
        assert client.post(admin, headers={"x-functions-key": MASTER_KEY}).status_code == 202


def test_next_link_carries_the_code(keyed: LocalStack) -> None:
    with httpx.Client(timeout=60) as client:
        for _ in range(2):
            answer = client.post(
                f"{keyed.api_url}/api/exports",
                headers={"x-functions-key": FUNCTION_KEY},
                json={"columns": COLUMNS},
            )
            assert answer.status_code == 202, answer.text
            # Authorised by the header, not by ?code=: nothing to carry.
            assert code_of(answer.headers["Location"]) == []
        page = client.get(
            f"{keyed.api_url}/api/exports", params={"code": FUNCTION_KEY, "pageSize": "1"}
        )
    assert page.status_code == 200, page.text
    listing = page.json()
    assert len(listing["value"]) == 1
    assert code_of(listing["value"][0]["statusUrl"]) == [FUNCTION_KEY]
    next_link = listing["nextLink"]
    assert code_of(next_link) == [FUNCTION_KEY], next_link
    assert parse_qs(urlsplit(next_link).query)["pageSize"] == ["1"]
    following = bare_get(next_link)
    assert following.status_code == 200, following.text
    assert following.json()["value"][0]["id"] != listing["value"][0]["id"]


# --- (b) App Service authentication and a managed identity --------------------------------------


def token(stack: LocalStack, identity: str, audience: str = AUDIENCE) -> str:
    """What a Logic App's HTTP action gets with authentication ManagedServiceIdentity: a token
    of its identity for `audience`, from the managed identity endpoint."""
    with app_settings(stack):  # this stack's IDENTITY_ENDPOINT and IDENTITY_HEADER
        credential = ManagedIdentityCredential(client_id=stack.identity(identity)["clientId"])
        with credential:
            return credential.get_token(f"{audience}/.default").token


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def test_entra_flow_managed_identity_token_on_the_post_and_every_poll(entra: LocalStack) -> None:
    caller = bearer(token(entra, "logicapp"))
    with httpx.Client(timeout=60) as logic_app:
        started = logic_app.post(
            f"{entra.api_url}/api/exports",
            headers=caller,
            json={"columns": COLUMNS, "formulaGuard": False},
        )
    assert started.status_code == 202, started.text
    assert code_of(started.headers["Location"]) == [], "no key anywhere"
    assert bare_get(started.headers["Location"]).status_code == 401, "the poll needs the token"
    assert_exported(entra, follow_location(started, caller)[-1])


def test_entra_refusals(entra: LocalStack) -> None:
    url = f"{entra.api_url}/api/exports"
    no_token = bare_get(url)
    assert no_token.status_code == 401
    assert no_token.headers["WWW-Authenticate"].startswith("Bearer ")
    # A function key is no way around App Service authentication.
    assert bare_get(url, {"x-functions-key": FUNCTION_KEY}).status_code == 401
    # A caller's own principal headers prove nothing.
    logicapp = entra.identity("logicapp")
    forged = {"X-MS-CLIENT-PRINCIPAL-ID": logicapp["objectId"], "X-MS-CLIENT-PRINCIPAL-IDP": "aad"}
    assert bare_get(url, forged).status_code == 401
    # A valid token of an identity not on the list: authenticated, not authorised.
    assert bare_get(url, bearer(token(entra, "intruder"))).status_code == 403
    # The allowed identity's token for another audience (Graph's, another app's).
    for audience in ("https://graph.microsoft.com", "api://another-app"):
        assert bare_get(url, bearer(token(entra, "logicapp", audience))).status_code == 401
    # Garbage, and a token with its payload changed.
    assert bare_get(url, bearer("not-a-jwt")).status_code == 401
    head, payload, signature = token(entra, "intruder").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["oid"] = logicapp["objectId"]
    changed = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert bare_get(url, bearer(f"{head}.{changed}.{signature}")).status_code == 401
    assert bare_get(url, bearer(token(entra, "logicapp"))).status_code == 200


# --- (c) the app's own guard -----------------------------------------------------------------


def test_anonymous_routes_without_app_service_authentication_do_not_start(
    tmp_path: Path,
) -> None:
    message = ""
    for attempt in range(3):  # a shared machine: another process may take a port Azurite wanted
        with (
            pytest.raises(StackError) as refused,
            LocalStack(
                workdir=tmp_path / str(attempt),
                users=5,
                app_env={"USEREXPORT_HTTP_AUTH_LEVEL": "anonymous"},
            ),
        ):
            pass
        message = str(refused.value)
        if "devhost exited" in message:
            break
    assert "devhost exited" in message, message
    assert "USEREXPORT_HTTP_AUTH_LEVEL" in message, message


# --- devhost's gate, in-process: what the app receives ------------------------------------------


@contextlib.asynccontextmanager
async def gated_echo(easy_auth: EasyAuthSettings | None, keys: FunctionKeys) -> AsyncIterator[str]:
    """devhost's routes around a function that answers the headers it was given."""

    async def echo(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(json.dumps(dict(req.headers)), mimetype="application/json")

    gate = Gate(easy_auth) if easy_auth else None
    if gate:
        await gate.start()
    routes = HttpRoutes("api", keys=keys, easy_auth=gate)
    routes.add("echo", ["GET"], "req", echo, "function")
    routes.add("open", ["GET"], "req", echo, "anonymous")
    runner = web.ServerRunner(web.Server(routes.handle))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    finally:
        await runner.cleanup()
        if gate:
            await gate.close()


async def sim_token(sim: Any, audience: str, **selector: str) -> str:
    query = {"api-version": "2019-08-01", "resource": audience, **selector}
    async with httpx.AsyncClient() as client:
        answer = await client.get(
            sim.identity_url, params=query, headers={"X-IDENTITY-HEADER": sim.identity_header}
        )
    answer.raise_for_status()
    return str(answer.json()["access_token"])


async def test_gate_sets_the_principal_headers_and_drops_the_callers() -> None:
    async with serve(SimConfig(users=1, seed=5, identities=("logicapp",))) as sim:
        logicapp = sim.identities["logicapp"]
        settings = EasyAuthSettings(
            open_id_issuer=sim.open_id_issuer,
            allowed_audiences=(AUDIENCE,),
            allowed_identities=frozenset({logicapp.object_id}),
            allowed_applications=frozenset({logicapp.client_id}),
        )
        async with gated_echo(settings, FunctionKeys()) as url:
            good = await sim_token(sim, AUDIENCE, client_id=logicapp.client_id)
            async with httpx.AsyncClient() as client:
                answer = await client.get(
                    f"{url}/api/echo",
                    headers={
                        **bearer(good),
                        "X-MS-CLIENT-PRINCIPAL-ID": "someone-else",
                        "x-ms-token-aad-access-token": "forged",
                    },
                )
                assert answer.status_code == 200, answer.text
                seen = {k.lower(): v for k, v in answer.json().items()}
                assert seen["x-ms-client-principal-id"] == logicapp.object_id
                assert seen["x-ms-client-principal-idp"] == "aad"
                assert seen["x-ms-client-principal-name"] == logicapp.client_id
                assert "x-ms-token-aad-access-token" not in seen
                principal = json.loads(base64.b64decode(seen["x-ms-client-principal"]))
                assert principal["auth_typ"] == "aad"
                claims = {c["typ"]: c["val"] for c in principal["claims"]}
                oid = "http://schemas.microsoft.com/identity/claims/objectidentifier"
                assert claims[oid] == logicapp.object_id
                # allowedApplications and identities are ANDed: the default identity (another
                # client id, another object id) is refused.
                other = await sim_token(sim, AUDIENCE)
                assert (
                    await client.get(f"{url}/api/echo", headers=bearer(other))
                ).status_code == 403
                # Every route is behind it, anonymous ones too.
                assert (await client.get(f"{url}/api/open")).status_code == 401


async def test_gate_refuses_to_start_without_metadata() -> None:
    from devtools.devhost.auth import AuthSetupError

    settings = EasyAuthSettings(open_id_issuer="http://127.0.0.1:9/nowhere/v2.0", client_id="x")
    with pytest.raises(AuthSetupError, match="OpenID metadata"):
        await Gate(settings).start()


async def test_keys_by_auth_level() -> None:
    keys = FunctionKeys(frozenset({"f1", "f2"}), "m")
    async with gated_echo(None, keys) as url, httpx.AsyncClient() as client:
        cases: list[tuple[str, dict[str, Any], int]] = [
            ("/api/echo", {}, 401),
            ("/api/echo", {"params": {"code": "f2"}}, 200),
            ("/api/echo", {"headers": {"X-Functions-Key": "f1"}}, 200),
            ("/api/echo", {"params": {"code": "m"}}, 200),
            # The header wins over the query, as in the host.
            ("/api/echo", {"params": {"code": "f1"}, "headers": {"x-functions-key": "no"}}, 401),
            ("/api/open", {}, 200),
        ]
        for path, options, status in cases:
            answer = await client.get(f"{url}{path}", **options)
            assert answer.status_code == status, (path, options, answer.text)
        admin = f"{url}/admin/functions/none"
        assert (await client.post(admin, params={"code": "f1"})).status_code == 401
        assert (await client.post(admin, params={"code": "m"})).status_code == 404  # no such timer
    async with gated_echo(None, FunctionKeys()) as url, httpx.AsyncClient() as client:
        assert (await client.get(f"{url}/api/echo")).status_code == 200, "not enforced by default"
