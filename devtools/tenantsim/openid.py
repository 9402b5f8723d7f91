"""The tenant's OpenID Connect metadata and signing keys, as login.microsoftonline.com serves
them, so that a third party (devhost's App Service authentication) can verify its tokens.

- GET /{tenant}/v2.0/.well-known/openid-configuration  (issuer .../{tenant}/v2.0)
- GET /{tenant}/.well-known/openid-configuration       (v1.0: issuer https://sts.windows.net/...)
- GET /{tenant}/discovery/v2.0/keys and /{tenant}/discovery/keys  (the JWK Set)

The documents point at this simulator's loopback URL for the keys; the authorization and token
endpoints they name are not served (tokens come from the managed identity endpoint only).
"""

from __future__ import annotations

from typing import Any

from .tokens import TokenIssuer

V2_METADATA_PATH = "/{tenant}/v2.0/.well-known/openid-configuration"
V1_METADATA_PATH = "/{tenant}/.well-known/openid-configuration"
V2_KEYS_PATH = "/{tenant}/discovery/v2.0/keys"
V1_KEYS_PATH = "/{tenant}/discovery/keys"


def open_id_issuer(base_url: str, tenant_id: str) -> str:
    """What authsettingsV2's `openIdIssuer` is for this simulator: the v2.0 authority whose
    `/.well-known/openid-configuration` is the tenant's metadata."""
    return f"{base_url}/{tenant_id}/v2.0"


def unknown_tenant(tenant: str) -> dict[str, Any]:
    message = (
        f"AADSTS90002: Tenant '{tenant}' not found. Check to make sure you have the correct "
        "tenant ID and are signing into the correct cloud."
    )
    return {"error": "invalid_tenant", "error_description": message, "error_codes": [90002]}


def metadata(issuer: TokenIssuer, base_url: str, *, v2: bool) -> dict[str, Any]:
    """The OpenID configuration document of the tenant (v2.0 or v1.0 endpoint)."""
    tid = issuer.tenant_id
    oauth = f"{base_url}/{tid}/oauth2/v2.0" if v2 else f"{base_url}/{tid}/oauth2"
    return {
        "issuer": issuer.issuer_v2 if v2 else issuer.issuer,
        "jwks_uri": f"{base_url}/{tid}/discovery/v2.0/keys"
        if v2
        else f"{base_url}/{tid}/discovery/keys",
        "authorization_endpoint": f"{oauth}/authorize",
        "token_endpoint": f"{oauth}/token",
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic",
        ],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "response_types_supported": ["code", "id_token", "code id_token", "token id_token"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "claims_supported": [
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "nbf",
            "oid",
            "tid",
            "appid",
            "azp",
            "roles",
            "ver",
        ],
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
        "msgraph_host": "graph.microsoft.com",
    }
