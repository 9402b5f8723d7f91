"""Access tokens of the simulated tenant, shaped like the v1.0 tokens Entra issues to managed
identities, signed RS256 with a per-process key that anyone can verify through the tenant's
OpenID metadata and JWKS (openid.py), as a real resource (App Service authentication, say) does.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa

GRAPH_AUDIENCES = frozenset(
    {
        "https://graph.microsoft.com",
        "https://graph.microsoft.com/",
        "00000003-0000-0000-c000-000000000000",
    }
)
RESOURCE_GROUP_ID = "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/tenantsim"
# Verified tokens kept with their claims: the exporter presents the same token for an hour.
_VERIFIED_CACHE_SIZE = 256


class TokenError(Exception):
    """Why a bearer token was refused (the message goes into Graph's 401 body)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def resource_to_audience(resource: str) -> str:
    """The token audience for a requested resource or scope ("/.default" dropped)."""
    return resource.removesuffix("/.default")


def _guid(*parts: str) -> str:
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def identity_resource_id(name: str) -> str:
    """The ARM resource id of the user-assigned identity `name` (the `mi_res_id` selector)."""
    return f"{RESOURCE_GROUP_ID}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"


@dataclass(frozen=True)
class ManagedIdentity:
    """A managed identity of the tenant: its client (application) id, the object id of its
    service principal (a token's `oid`) and its ARM resource id (a token's `xms_mirid`)."""

    client_id: str
    object_id: str
    resource_id: str
    name: str = ""

    @classmethod
    def named(cls, tenant_id: str, name: str) -> ManagedIdentity:
        """The user-assigned identity `name` of a tenant: the same ids for the same tenant."""
        return cls(
            client_id=_guid(tenant_id, name, "client"),
            object_id=_guid(tenant_id, name, "object"),
            resource_id=identity_resource_id(name),
            name=name,
        )

    def as_json(self) -> dict[str, str]:
        return {
            "name": self.name,
            "clientId": self.client_id,
            "objectId": self.object_id,
            "resourceId": self.resource_id,
        }


def _thumbprint(key: rsa.RSAPublicKey) -> str:
    # RFC 7638 JWK thumbprint: the key id, as stable as the key.
    numbers = key.public_numbers()
    n = _b64(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big"))
    e = _b64(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big"))
    canonical = f'{{"e":"{e}","kty":"RSA","n":"{n}"}}'.encode()
    digest = hashes.Hash(hashes.SHA256())
    digest.update(canonical)
    return _b64(digest.finalize())


@dataclass
class TokenIssuer:
    """Mints and verifies the tokens of one simulated tenant."""

    tenant_id: str
    roles: tuple[str, ...]
    lifetime: int
    key: rsa.RSAPrivateKey | None = None
    _verified: dict[str, dict[str, Any]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.key is None:
            self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_key = self.key.public_key()
        self.key_id = _thumbprint(self.public_key)
        # The default identity's object id stays the same for the life of the process, like
        # a managed identity's in Azure.
        self.object_id = str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))

    @property
    def issuer(self) -> str:
        """The `iss` of the tokens (v1.0 tokens, as managed identities get)."""
        return f"https://sts.windows.net/{self.tenant_id}/"

    @property
    def issuer_v2(self) -> str:
        """The tenant's v2.0 issuer, as its v2.0 OpenID metadata names it."""
        return f"https://login.microsoftonline.com/{self.tenant_id}/v2.0"

    def jwks(self) -> dict[str, Any]:
        """The tenant's signing keys as a JWK Set (Entra's /discovery/v2.0/keys shape)."""
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.public_key, as_dict=True)
        key = {
            "kty": "RSA",
            "use": "sig",
            "kid": self.key_id,
            "x5t": self.key_id,
            "n": jwk["n"],
            "e": jwk["e"],
            "issuer": self.issuer_v2,
        }
        return {"keys": [key]}

    def mint(
        self,
        resource: str,
        client_id: str,
        now: float | None = None,
        *,
        identity: ManagedIdentity | None = None,
    ) -> tuple[str, int]:
        """A signed token for `resource`, as the managed identity `identity` (default: the
        tenant's default identity with client id `client_id`), and its expiry (epoch seconds).

        Graph tokens carry the configured app roles; a token for any other resource carries
        none (no app roles of that resource are assigned to the identity)."""
        iat = int(time.time() if now is None else now)
        exp = iat + self.lifetime
        audience = resource_to_audience(resource)
        if identity is None:
            identity = ManagedIdentity(
                client_id, self.object_id, identity_resource_id("tenantsim"), "tenantsim"
            )
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": self.issuer,
            "iat": iat,
            "nbf": iat,
            "exp": exp,
            "aio": "tenantsim",
            "appid": identity.client_id,
            "appidacr": "2",
            "idp": self.issuer,
            "idtyp": "app",
            "oid": identity.object_id,
            "rh": "0.tenantsim.",
            "sub": identity.object_id,
            "tid": self.tenant_id,
            "uti": secrets.token_urlsafe(16),
            "ver": "1.0",
            "xms_mirid": identity.resource_id,
        }
        if audience in GRAPH_AUDIENCES:
            claims["roles"] = list(self.roles)
        headers = {"typ": "JWT", "kid": self.key_id, "x5t": self.key_id}
        return jwt.encode(claims, self.key, algorithm="RS256", headers=headers), exp

    def verify(self, token: str, audiences: frozenset[str], now: float | None = None) -> dict:
        """The claims of a valid, current token of this tenant for one of `audiences`; else
        TokenError."""
        t = time.time() if now is None else now
        claims = self._verified.get(token)
        if claims is None:
            claims = self._check_signature(token)
        if t >= float(claims.get("exp", 0)):
            self._verified.pop(token, None)
            raise TokenError("Lifetime validation failed, the token is expired.")
        if t + 300 < float(claims.get("nbf", 0)):  # Entra allows 5 minutes of clock skew
            raise TokenError("Lifetime validation failed, the token is not yet valid.")
        if claims.get("aud") not in audiences:
            raise TokenError("Access token validation failure. Invalid audience.")
        return claims

    def _check_signature(self, token: str) -> dict[str, Any]:
        if token.count(".") != 2:
            raise TokenError("IDX14100: JWT is not well formed, there are no dots (.).")
        try:
            claims = jwt.decode(
                token,
                self.public_key,
                algorithms=["RS256"],
                issuer=self.issuer,
                options={"verify_aud": False, "verify_exp": False, "verify_nbf": False},
            )
        except jwt.InvalidSignatureError:
            raise TokenError("Access token validation failure. Invalid signature.") from None
        except jwt.InvalidIssuerError:
            raise TokenError("Access token validation failure. Invalid issuer.") from None
        except jwt.PyJWTError:
            raise TokenError("Access token validation failure. Invalid token.") from None
        if len(self._verified) >= _VERIFIED_CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = claims
        return claims
