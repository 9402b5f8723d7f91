"""Where the app is and how to authenticate to it: flags first, then environment variables."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

import httpx

from .auth import AppAuth, EntraToken
from .client import ApiClient
from .errors import CliError, Exit

URL_VARIABLE = "USEREXPORT_URL"
KEY_VARIABLE = "USEREXPORT_KEY"
AUDIENCE_VARIABLE = "USEREXPORT_AUDIENCE"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def app_url(value: str | None) -> str:
    """The app's base URL, e.g. https://myapp.azurewebsites.net (a trailing /api is dropped)."""
    if not value:
        raise CliError(
            Exit.USAGE,
            f"--url (or {URL_VARIABLE}) is needed: the function app's URL, e.g. "
            "https://<app>.azurewebsites.net",
        )
    try:
        url = httpx.URL(value.strip())
    except httpx.InvalidURL:
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise CliError(
            Exit.USAGE, "--url: give the app's http(s) URL, e.g. https://<app>.azurewebsites.net"
        )
    if url.query or url.fragment:
        # A ?code=KEY here would end up in messages; the key has its own flag.
        raise CliError(
            Exit.USAGE,
            f"--url: give the app's URL without a query; pass a key with --key or {KEY_VARIABLE}.",
        )
    path = url.path.rstrip("/").removesuffix("/api")
    return str(url.copy_with(path=path or "/")).rstrip("/")


def connect(args: argparse.Namespace, env: Mapping[str, str]) -> ApiClient:
    """The API client the flags and the environment describe."""
    url = app_url(args.url or env.get(URL_VARIABLE))
    key = args.key or env.get(KEY_VARIABLE) or None
    token = None
    if args.entra:
        audience = args.audience or env.get(AUDIENCE_VARIABLE)
        if not audience:
            raise CliError(
                Exit.USAGE,
                f"--entra needs --audience (or {AUDIENCE_VARIABLE}): the Application ID URI "
                "App Service authentication accepts, e.g. api://userexport-prod",
            )
        token = EntraToken(audience)
    parsed = httpx.URL(url)
    if (key or token) and parsed.scheme != "https" and parsed.host not in LOOPBACK:
        raise CliError(
            Exit.USAGE,
            "--url: use https, so the key or token does not cross the network in clear "
            "(http only for 127.0.0.1 or localhost).",
        )
    auth = AppAuth(parsed, key=key, token=token) if key or token else None
    return ApiClient(url, auth)
