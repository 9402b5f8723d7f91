"""Who made a request: the caller a job records, and the allow-list check of the anonymous level.

In front of the app stands either the Functions host, which lets a request in with a function
key (`x-functions-key`, or `?code=`), or App Service authentication, which lets in a valid
Entra token of an allowed identity and names it in `X-MS-CLIENT-PRINCIPAL-ID` and `-NAME`
(headers a caller cannot set while it is on: "can't be set by external requests", App Service
docs). So a principal is believed only where App Service authentication is in front: at the
anonymous level (where each request must name an identity of USEREXPORT_ALLOWED_CALLERS, the
app's own copy of the allow-list, else 401: WEBSITE_AUTH_ENABLED alone reads True when
unauthenticated requests are allowed too, and Flex Consumption may not set it), or when
WEBSITE_AUTH_ENABLED says it is on. Otherwise the caller is its function key, recorded by a
fingerprint: the host tells a Python function neither the key's name (its keyid claim is not
passed to the Python worker) nor anything else, and the key itself is a secret.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import Unauthorized
from .settings import Settings

PRINCIPAL_ID = "x-ms-client-principal-id"
PRINCIPAL_NAME = "x-ms-client-principal-name"
KEY_HEADER = "x-functions-key"


@dataclass(frozen=True)
class Caller:
    kind: str  # "principal", "functionKey", "timer" or "anonymous" (a local stack, no keys)
    id: str | None = None  # the principal's object id, or the key's fingerprint ("key:...")
    name: str | None = None  # the principal's name (kept on the job, never logged)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "name": self.name}

    @property
    def scope(self) -> str:
        """What an Idempotency-Key belongs to: one caller's key never answers another's."""
        return f"{self.kind}:{self.id or ''}"

    def __str__(self) -> str:  # for logs: ids only, names are personal data
        return f"{self.kind}:{self.id}" if self.id else self.kind


TIMER = Caller("timer")


def key_fingerprint(key: str) -> str:
    """A function key as a job may record it: 12 hex digits of its SHA-256, never the key.
    `az functionapp keys list` and `sha256sum` tell which key it was."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:12]


def identify(headers: Mapping[str, str], *, code: str | None, settings: Settings) -> Caller:
    """The request's caller; Unauthorized at the anonymous level for an identity App Service
    authentication did not name or the allow-list does not hold."""
    lower = {name.lower(): value for name, value in headers.items()}
    principal = (lower.get(PRINCIPAL_ID) or "").strip().lower()
    name = lower.get(PRINCIPAL_NAME) or None
    if settings.http_auth_level == "anonymous":
        if not principal:
            raise Unauthorized(
                "The request names no identity: the app takes requests only through App "
                "Service authentication, with a token of an allowed identity."
            )
        if principal not in settings.allowed_callers:
            raise Unauthorized(
                f"The identity {principal} is not one of the app's allowed callers "
                "(USEREXPORT_ALLOWED_CALLERS)."
            )
        return Caller("principal", principal, name)
    if settings.platform_auth and principal:
        return Caller("principal", principal, name)
    key = lower.get(KEY_HEADER) or code
    return Caller("functionKey", key_fingerprint(key)) if key else Caller("anonymous")
