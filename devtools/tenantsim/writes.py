"""Graph's write APIs for users, so tests, the demo and benchmarks can change a running tenant:
POST /users, PATCH /users/{id}, DELETE /users/{id}, and the deleted items' restore and purge.

Writes are not throttled, faulted or delayed (they set a scene; they are not the export's
traffic) and are counted apart from reads in /_sim/stats ("writes").
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import orjson

from .odata import ODataError, canonical_property
from .properties import DEFAULT_SELECT, USER_PROPERTIES
from .responses import GRAPH_METADATA, JSON_ODATA, Answer, error_answer

if TYPE_CHECKING:
    from .graphapi import GraphApi

# Answered by Graph rather than stored: read-only, or never returned once written.
_READ_ONLY = frozenset({"id", "createdDateTime", "deletedDateTime"})
_WRITE_ONLY = frozenset({"passwordProfile"})
_REQUIRED = ("displayName", "userPrincipalName")
_INVALID = "Invalid value specified for property '{}' of resource 'User'."
DUPLICATE_UPN = "Another object with the same value for property userPrincipalName already exists."


def _bad(message: str) -> ODataError:
    return ODataError(400, "Request_BadRequest", message)


def _not_found(key: str) -> ODataError:
    return ODataError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{key}' does not exist or one of its queried reference-property objects "
        "are not present.",
    )


def _properties(body: bytes) -> dict[str, Any]:
    """A JSON object of user properties in Graph's spelling (400 on anything else)."""
    try:
        data = orjson.loads(body) if body.strip() else None
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise ODataError(400, "BadRequest", "Unable to read JSON request payload.")
    out: dict[str, Any] = {}
    for name, value in data.items():
        if name.startswith("@odata."):
            continue
        try:
            canon = canonical_property(name)
        except ODataError:
            canon = None
        if canon is None or canon not in USER_PROPERTIES:
            raise _bad(f"Property '{name}' does not exist on type 'microsoft.graph.user'.")
        if canon in _READ_ONLY:
            raise _bad(f"Property '{canon}' is read-only and cannot be set.")
        if canon == "userPrincipalName" and (not isinstance(value, str) or "@" not in value):
            raise _bad(_INVALID.format(canon))
        if canon == "displayName" and (not isinstance(value, str) or not value.strip()):
            raise _bad(_INVALID.format(canon))
        if canon not in _WRITE_ONLY:
            out[canon] = value
    return out


def _entity(context: str, user: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"@odata.context": f"{GRAPH_METADATA}#{context}"}
    body |= {k: user.get(k) for k in DEFAULT_SELECT}
    body |= {k: user.get(k) for k in extra}
    return body


class Writes:
    """The write endpoints over the GraphApi's live tenant; every change refreshes its caches."""

    def __init__(self, graph: GraphApi) -> None:
        self.graph = graph

    async def handle(self, method: str, raw_path: str, body: bytes, crid: str | None) -> Answer:
        """Answer a POST/PATCH/DELETE under /v1.0 (raw_path relative to it)."""
        segments = [unquote(s) for s in raw_path.strip("/").split("/")] if raw_path else []
        lows = [s.lower() for s in segments]
        stats = self.graph.stats
        try:
            if lows == ["users"] and method == "POST":
                stats.writes["createUser"] += 1
                return self._create(_properties(body), crid)
            if len(lows) == 2 and lows[0] == "users" and method == "PATCH":
                stats.writes["updateUser"] += 1
                return self._update(segments[1], _properties(body), crid)
            if len(lows) == 2 and lows[0] == "users" and method == "DELETE":
                stats.writes["deleteUser"] += 1
                return self._delete(segments[1])
            if len(lows) >= 3 and lows[:2] == ["directory", "deleteditems"]:
                if len(lows) == 4 and lows[3] == "restore" and method == "POST":
                    stats.writes["restoreUser"] += 1
                    return self._restore(segments[2], crid)
                if len(lows) == 3 and method == "DELETE":
                    stats.writes["purgeUser"] += 1
                    return self._purge(segments[2])
        except ODataError as exc:
            return error_answer(exc.status, exc.code, exc.message, crid)
        stats.requests["other"] += 1
        return error_answer(
            405,
            "Request_BadRequest",
            "Specified HTTP method is not allowed for the request target.",
            crid,
        )

    def _oid(self, key: str) -> int:
        tenant = self.graph.tenant
        oid = tenant.find_index(key)
        if oid is None or not tenant.listed(oid):
            raise _not_found(key)
        return oid

    def _upn_free(self, upn: Any, oid: int | None = None) -> None:
        if isinstance(upn, str):
            other = self.graph.tenant.find_index(upn)
            if other is not None and other != oid and self.graph.tenant.listed(other):
                raise _bad(DUPLICATE_UPN)

    def _create(self, props: dict[str, Any], crid: str | None) -> Answer:
        for name in _REQUIRED:
            if props.get(name) is None:
                raise _bad(
                    f"Property '{name}' is required when creating the resource of type "
                    "'microsoft.graph.user'."
                )
        self._upn_free(props["userPrincipalName"])
        user = {
            "id": str(uuid.uuid4()),
            "createdDateTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "businessPhones": [],  # Graph's collections read as [] when never set
            "userType": "Member",  # what Graph sets when the request leaves it out
        } | props
        change = self.graph.tenant.create(user)
        self.graph.changed(change)
        body = _entity("users/$entity", user, props)
        return Answer(201, body, {"Content-Type": JSON_ODATA, "request-id": str(uuid.uuid4())})

    def _update(self, key: str, props: dict[str, Any], crid: str | None) -> Answer:
        oid = self._oid(key)
        if "userPrincipalName" in props:
            self._upn_free(props["userPrincipalName"], oid)
        self.graph.changed(self.graph.tenant.update(oid, props))
        return Answer(204, None, {"request-id": str(uuid.uuid4())})

    def _delete(self, key: str) -> Answer:
        oid = self._oid(key)
        self.graph.changed(self.graph.tenant.delete(oid))
        return Answer(204, None, {"request-id": str(uuid.uuid4())})

    def _restore(self, key: str, crid: str | None) -> Answer:
        tenant = self.graph.tenant
        oid = tenant.find_deleted(key)
        if oid is None:
            raise _not_found(key)
        self._upn_free(tenant.users_changed[oid].get("userPrincipalName"), oid)
        change = tenant.restore(oid)
        self.graph.changed(change)
        user = tenant.user(oid)
        body = _entity("directoryObjects/$entity", user, {})
        body["@odata.type"] = "#microsoft.graph.user"
        return Answer(200, body, {"Content-Type": JSON_ODATA, "request-id": str(uuid.uuid4())})

    def _purge(self, key: str) -> Answer:
        tenant = self.graph.tenant
        oid = tenant.find_deleted(key)
        if oid is None:
            raise _not_found(key)
        self.graph.changed(tenant.purge(oid))
        return Answer(204, None, {"request-id": str(uuid.uuid4())})
