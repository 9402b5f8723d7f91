"""The managed identity endpoint, App Service protocol (IDENTITY_ENDPOINT/IDENTITY_HEADER)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from .tokens import TokenIssuer, resource_to_audience

IDENTITY_PATH = "/msi/token"


def identity_answer(
    query: Mapping[str, str],
    headers: Mapping[str, str],
    expected_secret: str,
    issuer: TokenIssuer,
    default_client_id: str,
) -> tuple[int, dict[str, Any]]:
    """Status and JSON body for GET {IDENTITY_ENDPOINT}?api-version=...&resource=..."""
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
    client_id = query.get("client_id") or default_client_id
    token, expires_on = issuer.mint(resource, client_id)
    return 200, {
        "access_token": token,
        "expires_on": str(expires_on),
        "resource": resource_to_audience(resource),
        "token_type": "Bearer",
        "client_id": client_id,
    }


def _error(status: int, message: str) -> dict[str, Any]:
    # App Service answers {"statusCode", "message"}; error/error_description help OAuth clients.
    return {
        "statusCode": status,
        "message": message,
        "error": "invalid_request" if status == 400 else "unauthorized_client",
        "error_description": message,
    }
