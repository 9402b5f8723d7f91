"""Credentials for the app: a function key, an Entra token, or both, and only ever to the app.

The key goes in the `x-functions-key` header (never in a URL, so no log or message shows it);
the token comes from azure-identity's DefaultAzureCredential (environment, workload identity,
managed identity, Azure CLI, ...) for `<audience>/.default` and goes in `Authorization`.
Requests to any other origin (storage's SAS URLs, a link elsewhere) carry neither.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator
from typing import Any

import httpx

from .errors import CliError, Exit

TOKEN_MARGIN_SECONDS = 300  # a token this close to expiry is fetched again


def origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


class EntraToken:
    """An access token for one audience, fetched when first needed and again near its expiry."""

    def __init__(self, audience: str) -> None:
        audience = audience.strip().rstrip("/")
        self.scope = audience if audience.endswith("/.default") else f"{audience}/.default"
        self._credential: Any = None
        self._token = ""
        self._expires_on = 0.0

    def get(self) -> str:
        if self._token and self._expires_on - time.time() > TOKEN_MARGIN_SECONDS:
            return self._token
        # Imported here: only --entra needs azure-identity, and it takes a while to import.
        from azure.core.exceptions import ClientAuthenticationError
        from azure.identity import DefaultAzureCredential

        # Its own warnings repeat what the message below says.
        logging.getLogger("azure.identity").setLevel(logging.ERROR)
        if self._credential is None:
            self._credential = DefaultAzureCredential()
        try:
            token = self._credential.get_token(self.scope)
        except ClientAuthenticationError as error:
            raise CliError(
                Exit.UNREACHABLE,
                f"could not get an Entra token for {self.scope} (--entra): {error.message}",
            ) from None
        self._token, self._expires_on = token.token, float(token.expires_on)
        return self._token

    def close(self) -> None:
        if self._credential is not None:
            self._credential.close()


class AppAuth(httpx.Auth):
    """Adds the key and the token to requests for the app's origin, and to nothing else."""

    def __init__(
        self, app_url: httpx.URL, *, key: str | None = None, token: EntraToken | None = None
    ) -> None:
        self._origin = origin(app_url)
        self._key = key
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if origin(request.url) == self._origin:
            if self._key:
                request.headers["x-functions-key"] = self._key
            if self._token is not None:
                request.headers["Authorization"] = f"Bearer {self._token.get()}"
        yield request

    def close(self) -> None:
        if self._token is not None:
            self._token.close()
