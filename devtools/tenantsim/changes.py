"""TenantWriter: change a running tenantsim over HTTP, through Graph's own write APIs.

For tests, the demo and benchmarks: create, update, delete, restore and purge users, and read
them back, with a token from the simulator's identity endpoint (the App Service protocol).
Synchronous (httpx.Client), so callers need no event loop.
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

_GRAPH_RESOURCE = "https://graph.microsoft.com"


class TenantWriteError(RuntimeError):
    """A write or read the simulator refused: the status and Graph's error code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code


class TenantWriter:
    """Changes a running tenantsim over HTTP, through Graph's own write APIs (a token from its
    identity endpoint)."""

    def __init__(self, *, graph_url: str, identity_url: str, identity_header: str) -> None:
        self.graph_url = graph_url.rstrip("/")
        self.identity_url = identity_url
        self._identity_header = identity_header
        # https only when the simulator ever serves it: trust the CA bundle the process uses.
        verify: bool | str = True
        if graph_url.startswith("https") and os.environ.get("SSL_CERT_FILE"):
            verify = os.environ["SSL_CERT_FILE"]
        self._client = httpx.Client(timeout=60.0, verify=verify)
        self._token: str | None = None

    # ------------------------------------------------------------------ plumbing
    def _bearer(self) -> str:
        if self._token is None:
            resp = self._client.get(
                self.identity_url,
                params={"api-version": "2019-08-01", "resource": _GRAPH_RESOURCE},
                headers={"X-IDENTITY-HEADER": self._identity_header},
            )
            resp.raise_for_status()
            self._token = str(resp.json()["access_token"])
        return self._token

    def _call(
        self,
        method: str,
        path_or_url: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        url = path_or_url if "://" in path_or_url else f"{self.graph_url}{path_or_url}"
        for fresh in (False, True):
            headers = {"Authorization": f"Bearer {self._bearer()}"}
            resp = self._client.request(method, url, json=json, params=params, headers=headers)
            if resp.status_code != 401 or fresh:
                break
            self._token = None  # the token expired: one fresh try
        if resp.status_code >= 400:
            try:
                error = resp.json().get("error") or {}
            except ValueError:
                error = {}
            raise TenantWriteError(
                resp.status_code, str(error.get("code", "")), str(error.get("message", ""))
            )
        return resp

    @staticmethod
    def _key(user_id: str) -> str:
        # UPNs of guests hold '#': percent-encode every key so it stays one path segment.
        return quote(user_id, safe="@")

    # ------------------------------------------------------------------ writes
    def create_user(self, **properties: Any) -> dict[str, Any]:
        """POST /users; needs displayName and userPrincipalName. The created user (with
        "id"); it is listed last."""
        return dict(self._call("POST", "/users", json=properties).json())

    def update_user(self, user_id: str, **properties: Any) -> None:
        """PATCH /users/{id}: set these properties (None clears one)."""
        self._call("PATCH", f"/users/{self._key(user_id)}", json=properties)

    def delete_user(self, user_id: str) -> None:
        """DELETE /users/{id}: a soft delete (restorable from the deleted items)."""
        self._call("DELETE", f"/users/{self._key(user_id)}")

    def restore_user(self, user_id: str) -> dict[str, Any]:
        """POST /directory/deletedItems/{id}/restore: the restored user (listed last)."""
        return dict(
            self._call("POST", f"/directory/deletedItems/{self._key(user_id)}/restore").json()
        )

    def purge_user(self, user_id: str) -> None:
        """DELETE /directory/deletedItems/{id}: gone for good."""
        self._call("DELETE", f"/directory/deletedItems/{self._key(user_id)}")

    # ------------------------------------------------------------------ reads
    def user(self, user_id: str, select: str | None = None) -> dict[str, Any]:
        """GET /users/{id or UPN}: its properties (TenantWriteError 404 when there is none)."""
        params = {"$select": select} if select else None
        body = self._call("GET", f"/users/{self._key(user_id)}", params=params).json()
        body.pop("@odata.context", None)  # the user's properties only
        return dict(body)

    def users(
        self, *, select: str = "id,userPrincipalName", top: int = 999
    ) -> list[dict[str, Any]]:
        """Every listed user, in listing order (the nextLinks followed)."""
        out: list[dict[str, Any]] = []
        url: str | None = None
        while True:
            if url is None:
                body = self._call("GET", "/users", params={"$select": select, "$top": str(top)})
            else:
                body = self._call("GET", url)
            page = body.json()
            out.extend(page["value"])
            url = page.get("@odata.nextLink")
            if not url:
                return out

    def deleted_users(self) -> list[dict[str, Any]]:
        """GET /directory/deletedItems/microsoft.graph.user: the soft-deleted users."""
        body = self._call("GET", "/directory/deletedItems/microsoft.graph.user").json()
        return list(body["value"])

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> TenantWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
