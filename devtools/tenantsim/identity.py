"""The managed identity endpoint, App Service protocol (IDENTITY_ENDPOINT/IDENTITY_HEADER)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from .tokens import ManagedIdentity, TokenIssuer, resource_to_audience

IDENTITY_PATH = "/msi/token"
# The query parameters that select a user-assigned identity (App Service 2019-08-01; msal sends
# object_id, App Service documents principal_id for the same thing).
SELECTORS = ("client_id", "object_id", "principal_id", "mi_res_id")


def identity_answer(
    query: Mapping[str, str],
    headers: Mapping[str, str],
    expected_secret: str,
    issuer: TokenIssuer,
    default_client_id: str,
    identities: tuple[ManagedIdentity, ...] = (),
) -> tuple[int, dict[str, Any]]:
    """Status and JSON body for GET {IDENTITY_ENDPOINT}?api-version=...&resource=...

    Without a selector the token is the default identity's. `client_id`, `object_id` (or
    `principal_id`) or `mi_res_id` select one of `identities` (the app's user-assigned
    identities); a `client_id` that names none of them gets a token of the default identity
    under that client id, as before user-assigned identities existed here; an unknown object or
    resource id gets 400."""
    secret = headers.get("X-IDENTITY-HEADER")
    if secret is None:
        return 400, _error(400, "Required header X-IDENTITY-HEADER is missing.")
    if not hmac.compare_digest(secret.encode(), expected_secret.encode()):
        return 401, _error(401, "X-IDENTITY-HEADER does not match.")
    if not query.get("api-version"):
        return 400, _error(400, "Required query parameter api-version is missing.")
    resource = query.get("resource")
    if not resource:
        return 400, _error(400, "Required query parameter resource is missing.")
    selectors = {name: query[name] for name in SELECTORS if query.get(name)}
    if len(selectors) > 1:
        return 400, _error(400, f"Only one of {', '.join(SELECTORS)} may be given.")
    identity = _select(selectors, identities)
    if isinstance(identity, str):
        return 400, _error(400, identity)
    client_id = identity.client_id if identity else query.get("client_id") or default_client_id
    token, expires_on = issuer.mint(resource, client_id, identity=identity)
    return 200, {
        "access_token": token,
        "expires_on": str(expires_on),
        "resource": resource_to_audience(resource),
        "token_type": "Bearer",
        "client_id": client_id,
    }


def _select(
    selectors: Mapping[str, str], identities: tuple[ManagedIdentity, ...]
) -> ManagedIdentity | str | None:
    """The user-assigned identity the selector names, None for the default identity, or why
    there is none."""
    if not selectors:
        return None
    ((name, value),) = selectors.items()
    for identity in identities:
        known = {
            "client_id": identity.client_id,
            "object_id": identity.object_id,
            "principal_id": identity.object_id,
            "mi_res_id": identity.resource_id,
        }[name]
        if known.lower() == value.lower():
            return identity
    if name == "client_id":
        return None
    return f"No managed identity with {name} {value} is assigned to this app."


def _error(status: int, message: str) -> dict[str, Any]:
    # App Service answers {"statusCode", "message"}; error/error_description help OAuth clients.
    return {
        "statusCode": status,
        "message": message,
        "error": "invalid_request" if status == 400 else "unauthorized_client",
        "error_description": message,
    }
