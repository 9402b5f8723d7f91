"""What stands in front of the functions in Azure, for devhost: the Functions host's keys and
App Service authentication ("Easy Auth", authsettingsV2 with the Microsoft identity provider
and unauthenticatedClientAction Return401).

Function keys, as the host checks them: a route at auth level `function` takes a function key
(or the master key), `admin` (the admin API, /admin/functions/{name}) the master key only,
`anonymous` nothing. The key is the `x-functions-key` header, else the `code` query parameter.
A missing or wrong key gets 401 with an empty body.

App Service authentication, as documented for the Microsoft provider (configure-authentication-
provider-aad.md): every request needs `Authorization: Bearer <access token>` signed by a key of
the issuer's OpenID metadata (JWKS), current, issued by that tenant, for one of the allowed
audiences (registration.clientId is always one): else 401. Then the built-in authorization
policy, a logical AND: `allowedApplications` (client ids, checked against `appid` or `azp`) and
`allowedPrincipals.identities` (object ids, checked against `oid`), each when non-empty: else
403. A request that passes reaches the app with X-MS-CLIENT-PRINCIPAL, -ID, -NAME and -IDP
set from the token; such headers sent by the caller are dropped first, always.

Emulated, not copied: the 401's WWW-Authenticate header and the NAME header of an app-only
token (which has no name claim: devhost uses `appid`) are devhost's choices. Tokens of the
tenant's v1.0 issuer (https://sts.windows.net/<tenant>/, what managed identities get) and v2.0
issuer are both accepted whichever the metadata names.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import jwt
from aiohttp import web

log = logging.getLogger("devhost.auth")

KEY_HEADER = "x-functions-key"
KEY_QUERY = "code"
# Headers App Service authentication sets; a caller's own are dropped.
PRINCIPAL_PREFIXES = ("x-ms-client-principal", "x-ms-token-")
CLOCK_SKEW_SECONDS = 300
KEY_REFRESH_SECONDS = 10.0  # at most one JWKS refetch for an unknown key id per this
# Claim types as App Service maps them in X-MS-CLIENT-PRINCIPAL (the others keep their names).
CLAIM_TYPES = {
    "oid": "http://schemas.microsoft.com/identity/claims/objectidentifier",
    "tid": "http://schemas.microsoft.com/identity/claims/tenantid",
    "sub": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier",
    "roles": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
    "scp": "http://schemas.microsoft.com/identity/claims/scope",
    "idp": "http://schemas.microsoft.com/identity/claims/identityprovider",
    "upn": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
    "unique_name": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
    "email": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
}
NAME_TYPE = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"
ROLE_TYPE = CLAIM_TYPES["roles"]


class AuthSetupError(RuntimeError):
    """App Service authentication cannot start (its issuer's metadata cannot be read)."""


@dataclass(frozen=True)
class FunctionKeys:
    """The host's keys; enforced once any is given."""

    function_keys: frozenset[str] = frozenset()
    master_key: str | None = None

    @property
    def enforced(self) -> bool:
        return bool(self.function_keys or self.master_key)

    def allows(self, level: str, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
        """Whether a request with these headers and query may call a route at `level`."""
        if not self.enforced or level == "anonymous":
            return True
        key = headers.get(KEY_HEADER) or query.get(KEY_QUERY) or ""
        if not key:
            return False
        if self.master_key and hmac.compare_digest(key.encode(), self.master_key.encode()):
            return True
        if level != "function":  # admin and system levels take the master key only
            return False
        return any(hmac.compare_digest(key.encode(), k.encode()) for k in self.function_keys)


@dataclass(frozen=True)
class EasyAuthSettings:
    """The parts of authsettingsV2 devhost emulates (identityProviders.azureActiveDirectory)."""

    open_id_issuer: str  # registration.openIdIssuer (here: tenantsim's loopback authority)
    client_id: str = ""  # registration.clientId: always an allowed audience
    allowed_audiences: tuple[str, ...] = ()  # validation.allowedAudiences
    # validation.defaultAuthorizationPolicy
    allowed_identities: frozenset[str] = frozenset()  # allowedPrincipals.identities (oid)
    allowed_applications: frozenset[str] = frozenset()  # allowedApplications (appid / azp)
    # globalValidation.unauthenticatedClientAction AllowAnonymous: a request without a token
    # reaches the app (with no principal headers), as when authentication is only optional.
    allow_anonymous: bool = False

    @property
    def audiences(self) -> tuple[str, ...]:
        return tuple(a for a in (self.client_id, *self.allowed_audiences) if a)


def tenant_issuers(issuer: str) -> frozenset[str]:
    """The metadata's issuer and its twin of the other token version, same tenant."""
    parts = urlsplit(issuer).path.strip("/").split("/")
    tenant = parts[0] if parts and parts[0] else ""
    if not tenant:
        return frozenset({issuer})
    return frozenset(
        {
            issuer,
            f"https://sts.windows.net/{tenant}/",
            f"https://login.microsoftonline.com/{tenant}/v2.0",
        }
    )


@dataclass
class EasyAuth:
    """App Service authentication in front of devhost's routes."""

    settings: EasyAuthSettings
    _metadata: dict[str, Any] = field(default_factory=dict, init=False)
    _keys: dict[str, Any] = field(default_factory=dict, init=False)
    _issuers: frozenset[str] = field(default=frozenset(), init=False)
    _fetched_at: float = field(default=0.0, init=False)
    _session: aiohttp.ClientSession | None = field(default=None, init=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    async def start(self) -> None:
        """Reads the issuer's OpenID metadata and signing keys; AuthSetupError if it cannot."""
        if not self.settings.audiences:
            raise AuthSetupError("App Service authentication needs a client id or an audience.")
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        url = self.settings.open_id_issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            async with self._session.get(url) as answer:
                answer.raise_for_status()
                self._metadata = await answer.json(content_type=None)
            await self._fetch_keys()
        except (aiohttp.ClientError, ValueError, KeyError, OSError) as error:
            await self.close()
            raise AuthSetupError(
                f"App Service authentication cannot read the OpenID metadata of "
                f"{self.settings.open_id_issuer} ({error})."
            ) from None
        self._issuers = tenant_issuers(str(self._metadata["issuer"]))
        log.info(
            "App Service authentication on: issuer %s, audiences %s, %d allowed identities, "
            "%d allowed applications.",
            self._metadata["issuer"],
            ", ".join(self.settings.audiences),
            len(self.settings.allowed_identities),
            len(self.settings.allowed_applications),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _fetch_keys(self) -> None:
        assert self._session is not None
        async with self._session.get(self._metadata["jwks_uri"]) as answer:
            answer.raise_for_status()
            jwks = await answer.json(content_type=None)
        keys = {}
        for jwk in jwks.get("keys", []):
            if jwk.get("kty") == "RSA" and jwk.get("kid"):
                keys[jwk["kid"]] = jwt.PyJWK(jwk, algorithm="RS256").key
        self._keys = keys
        self._fetched_at = time.monotonic()

    async def _key(self, kid: str) -> Any:
        if kid not in self._keys and time.monotonic() - self._fetched_at > KEY_REFRESH_SECONDS:
            async with self._lock:
                if kid not in self._keys:
                    try:
                        await self._fetch_keys()
                    except (aiohttp.ClientError, ValueError, OSError) as error:
                        log.warning("Refetching the signing keys failed (%s).", error)
        return self._keys.get(kid)

    async def authenticate(self, request: web.BaseRequest) -> web.Response | dict[str, str]:
        """The request's headers as the app gets them (the caller's principal headers dropped,
        App Service's set), or the 401/403 answer."""
        headers = {
            name: value
            for name, value in request.headers.items()
            if not name.lower().startswith(PRINCIPAL_PREFIXES)
        }
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            if self.settings.allow_anonymous:
                return headers
            return self._unauthorized(request, "no bearer token")
        try:
            claims = await self._validate(token.strip())
        except jwt.PyJWTError as error:
            return self._unauthorized(request, str(error))
        policy = self.settings
        app_id = claims.get("appid") or claims.get("azp")
        if policy.allowed_applications and app_id not in policy.allowed_applications:
            log.info("403: application %s is not in allowedApplications.", app_id)
            return web.Response(status=403)
        if policy.allowed_identities and claims.get("oid") not in policy.allowed_identities:
            log.info("403: identity %s is not in allowedPrincipals.identities.", claims.get("oid"))
            return web.Response(status=403)
        headers.update(principal_headers(claims))
        return headers

    async def _validate(self, token: str) -> dict[str, Any]:
        header = jwt.get_unverified_header(token)
        if header.get("alg") != "RS256":
            raise jwt.InvalidAlgorithmError(f"algorithm {header.get('alg')!r} is not accepted")
        key = await self._key(str(header.get("kid", "")))
        if key is None:
            raise jwt.InvalidKeyError("the token's signing key is not the issuer's")
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=["RS256"],
            audience=list(self.settings.audiences),
            leeway=CLOCK_SKEW_SECONDS,
            options={"require": ["exp", "nbf", "iat", "iss", "aud"]},
        )
        if claims["iss"] not in self._issuers:
            raise jwt.InvalidIssuerError(f"issuer {claims['iss']!r} is not the tenant's")
        return claims

    def _unauthorized(self, request: web.BaseRequest, why: str) -> web.Response:
        log.info("401: %s.", why)
        resource = self.settings.client_id or self.settings.audiences[0]
        challenge = (
            f'Bearer realm="{request.host}" '
            f'authorization_uri="{self._metadata.get("authorization_endpoint", "")}" '
            f'resource_id="{resource}"'
        )
        return web.Response(status=401, headers={"WWW-Authenticate": challenge})


def principal_headers(claims: Mapping[str, Any]) -> dict[str, str]:
    """The X-MS-CLIENT-PRINCIPAL* headers App Service sets for a validated token."""
    mapped = []
    for name, value in claims.items():
        for item in value if isinstance(value, list) else [value]:
            mapped.append({"typ": CLAIM_TYPES.get(name, name), "val": str(item)})
    principal = {"auth_typ": "aad", "claims": mapped, "name_typ": NAME_TYPE, "role_typ": ROLE_TYPE}
    encoded = base64.b64encode(json.dumps(principal, separators=(",", ":")).encode()).decode()
    name = next(
        (
            str(claims[c])
            for c in ("unique_name", "upn", "preferred_username", "name", "email", "appid", "azp")
            if claims.get(c)
        ),
        str(claims.get("sub", "")),
    )
    return {
        "X-MS-CLIENT-PRINCIPAL": encoded,
        "X-MS-CLIENT-PRINCIPAL-ID": str(claims.get("oid") or claims.get("sub", "")),
        "X-MS-CLIENT-PRINCIPAL-NAME": name,
        "X-MS-CLIENT-PRINCIPAL-IDP": "aad",
    }
