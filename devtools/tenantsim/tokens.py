"""JWT-shaped access tokens (HS256 with a per-process key) for the identity endpoint."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

GRAPH_AUDIENCES = frozenset(
    {
        "https://graph.microsoft.com",
        "https://graph.microsoft.com/",
        "00000003-0000-0000-c000-000000000000",
    }
)


class TokenError(Exception):
    """Why a bearer token was refused (the message goes into Graph's 401 body)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def resource_to_audience(resource: str) -> str:
    """The token audience for a requested resource or scope ("/.default" dropped)."""
    return resource.removesuffix("/.default")


@dataclass
class TokenIssuer:
    """Mints and verifies tokens of one simulated tenant."""

    tenant_id: str
    roles: tuple[str, ...]
    lifetime: int
    key: bytes = b""

    def __post_init__(self) -> None:
        if not self.key:
            self.key = secrets.token_bytes(32)
        # The identity's object id stays the same for the life of the process, like Azure's.
        self.object_id = str(uuid.UUID(bytes=hashlib.sha256(self.key).digest()[:16], version=4))

    @property
    def issuer(self) -> str:
        return f"https://sts.windows.net/{self.tenant_id}/"

    def mint(self, resource: str, client_id: str, now: float | None = None) -> tuple[str, int]:
        """A signed token for `resource` and its expiry (epoch seconds)."""
        iat = int(time.time() if now is None else now)
        exp = iat + self.lifetime
        claims: dict[str, Any] = {
            "aud": resource_to_audience(resource),
            "iss": self.issuer,
            "iat": iat,
            "nbf": iat,
            "exp": exp,
            "aio": "tenantsim",
            "appid": client_id,
            "appidacr": "2",
            "idp": self.issuer,
            "idtyp": "app",
            "oid": self.object_id,
            "rh": "0.tenantsim.",
            "roles": list(self.roles),
            "sub": self.object_id,
            "tid": self.tenant_id,
            "uti": secrets.token_urlsafe(16),
            "ver": "1.0",
            "xms_mirid": "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/"
            "tenantsim/providers/Microsoft.ManagedIdentity/userAssignedIdentities/tenantsim",
        }
        header = {"typ": "JWT", "alg": "HS256", "kid": "tenantsim"}
        signing_input = f"{_b64(orjson.dumps(header))}.{_b64(orjson.dumps(claims))}"
        sig = hmac.new(self.key, signing_input.encode("ascii"), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(sig)}", exp

    def verify(self, token: str, audiences: frozenset[str], now: float | None = None) -> dict:
        """The claims of a valid, current token for one of `audiences`; else TokenError."""
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenError("IDX14100: JWT is not well formed, there are no dots (.).")
        signing_input = f"{parts[0]}.{parts[1]}".encode("ascii", "replace")
        expected = hmac.new(self.key, signing_input, hashlib.sha256).digest()
        try:
            sig = _unb64(parts[2])
            claims = orjson.loads(_unb64(parts[1]))
        except (ValueError, orjson.JSONDecodeError):
            raise TokenError("Access token validation failure. Invalid token.") from None
        if not hmac.compare_digest(sig, expected) or not isinstance(claims, dict):
            raise TokenError("Access token validation failure. Invalid signature.")
        t = time.time() if now is None else now
        if t >= float(claims.get("exp", 0)):
            raise TokenError("Lifetime validation failed, the token is expired.")
        if t + 300 < float(claims.get("nbf", 0)):  # Entra allows 5 minutes of clock skew
            raise TokenError("Lifetime validation failed, the token is not yet valid.")
        if claims.get("aud") not in audiences:
            raise TokenError("Access token validation failure. Invalid audience.")
        return claims
