"""The tenant file: JSON Lines, one directory object per line in Graph's shape (README.md).

A line is a user unless its "@odata.type" says otherwise: "#microsoft.graph.subscribedSku"
(an item of /subscribedSkus), "#microsoft.graph.group" or "#microsoft.graph.administrativeUnit"
(with "members": references to users and groups, which may be defined later in the file).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .generator import password_method
from .properties import AU_PROPERTIES, EXTRA_KEYS, GROUP_PROPERTIES, SKU_PROPERTIES, USER_PROPERTIES

_KEEP = USER_PROPERTIES | EXTRA_KEYS
USER_TYPE = "#microsoft.graph.user"
GROUP_TYPE = "#microsoft.graph.group"
AU_TYPE = "#microsoft.graph.administrativeUnit"
SKU_TYPE = "#microsoft.graph.subscribedSku"
PHONE_TYPE = "#microsoft.graph.phoneAuthenticationMethod"
EMAIL_TYPE = "#microsoft.graph.emailAuthenticationMethod"
_MEMBER_TYPES = frozenset({USER_TYPE, GROUP_TYPE})
_KEEP_BY_TYPE = {
    GROUP_TYPE: GROUP_PROPERTIES | {"members"},
    AU_TYPE: AU_PROPERTIES | {"members"},
    SKU_TYPE: frozenset(SKU_PROPERTIES),
}


class TenantFileError(ValueError):
    """A line of a tenant file is not valid; carries its 1-based line number."""

    def __init__(self, path: Path, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason


@dataclass
class TenantDocument:
    """Everything a tenant file holds, each kind in file order."""

    users: list[dict[str, Any]] = field(default_factory=list)
    skus: list[dict[str, Any]] = field(default_factory=list)
    groups: list[dict[str, Any]] = field(default_factory=list)
    administrative_units: list[dict[str, Any]] = field(default_factory=list)

    def others(self) -> list[dict[str, Any]]:
        """The non-user lines as written to a file (with "@odata.type")."""
        out: list[dict[str, Any]] = []
        for kind, items in (
            (SKU_TYPE, self.skus),
            (GROUP_TYPE, self.groups),
            (AU_TYPE, self.administrative_units),
        ):
            out += [{"@odata.type": kind} | item for item in items]
        return out


def _check_method_list(auth: dict[str, Any], key: str) -> str | None:
    methods = auth.get(key, [])
    if not isinstance(methods, list) or not all(isinstance(m, dict) for m in methods):
        return f'"authentication.{key}" must be a list of objects'
    return None


def _check_methods(auth: Any) -> str | None:
    if not isinstance(auth, dict):
        return '"authentication" must be an object'
    for key in ("phoneMethods", "emailMethods", "methods"):
        problem = _check_method_list(auth, key)
        if problem:
            return problem
    if any(not isinstance(m.get("@odata.type"), str) for m in auth.get("methods", [])):
        return 'every item of "authentication.methods" needs an "@odata.type"'
    return None


def _untyped(method: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in method.items() if k != "@odata.type"}


def normalize_authentication(user: dict[str, Any]) -> None:
    """Give a user's "authentication" all three lists: from "methods" when it is given (the
    phone and email items, in order, make phoneMethods and emailMethods), else methods =
    password + phoneMethods + emailMethods. ValueError if given lists disagree."""
    auth = user.get("authentication")
    if auth is None:
        return
    methods = auth.get("methods")
    if methods is not None:
        phones = [_untyped(m) for m in methods if m["@odata.type"] == PHONE_TYPE]
        emails = [_untyped(m) for m in methods if m["@odata.type"] == EMAIL_TYPE]
        for key, derived in (("phoneMethods", phones), ("emailMethods", emails)):
            if key in auth and auth[key] != derived:
                raise ValueError(
                    f'"authentication.{key}" differs from the matching items of '
                    '"authentication.methods" (give one of them)'
                )
    else:
        phones = auth.get("phoneMethods", [])
        emails = auth.get("emailMethods", [])
        methods = [password_method(user.get("createdDateTime"))]
        methods += [{"@odata.type": PHONE_TYPE} | m for m in phones]
        methods += [{"@odata.type": EMAIL_TYPE} | m for m in emails]
    user["authentication"] = {"phoneMethods": phones, "emailMethods": emails, "methods": methods}


def _parse_user(obj: dict[str, Any]) -> dict[str, Any]:
    uid = obj.get("id")
    if not isinstance(uid, str) or not uid:
        raise ValueError('"id" must be a non-empty string')
    upn = obj.get("userPrincipalName")
    if upn is not None and not isinstance(upn, str):
        raise ValueError('"userPrincipalName" must be a string')
    if "authentication" in obj:
        problem = _check_methods(obj["authentication"])
        if problem:
            raise ValueError(problem)
    sim = obj.get("_sim")
    if sim is not None:
        status = sim.get("authenticationStatus") if isinstance(sim, dict) else None
        if not isinstance(sim, dict) or (
            status is not None and (not isinstance(status, int) or not 200 <= status <= 599)
        ):
            raise ValueError('"_sim.authenticationStatus" must be an HTTP status (200..599)')
    manager = obj.get("manager")
    if manager is not None and not (isinstance(manager, dict) and "id" in manager):
        raise ValueError('"manager" must be an object with an "id"')
    activity = obj.get("signInActivity")
    if activity is not None and not isinstance(activity, dict):
        raise ValueError('"signInActivity" must be an object or null')
    licenses = obj.get("assignedLicenses")
    if licenses is not None and not (
        isinstance(licenses, list)
        and all(isinstance(x, dict) and isinstance(x.get("skuId"), str) for x in licenses)
    ):
        raise ValueError('"assignedLicenses" must be a list of objects with a "skuId"')
    user = {k: v for k, v in obj.items() if k in _KEEP}
    normalize_authentication(user)
    return user


def _parse_container(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    uid = obj.get("id")
    if not isinstance(uid, str) or not uid:
        raise ValueError('"id" must be a non-empty string')
    name = obj.get("displayName")
    if name is not None and not isinstance(name, str):
        raise ValueError('"displayName" must be a string or null')
    members = obj.get("members", [])
    if not isinstance(members, list):
        raise ValueError('"members" must be a list')
    for m in members:
        if not (
            isinstance(m, dict)
            and m.get("@odata.type") in _MEMBER_TYPES
            and isinstance(m.get("id"), str)
            and m["id"]
        ):
            raise ValueError(
                'each member must be {"@odata.type": "#microsoft.graph.user" or '
                '"#microsoft.graph.group", "id": "..."}'
            )
    out = {k: v for k, v in obj.items() if k in _KEEP_BY_TYPE[kind]}
    out["members"] = [{"@odata.type": m["@odata.type"], "id": m["id"]} for m in members]
    return out


def _parse_sku(obj: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(obj.get("skuId"), str) or not obj["skuId"]:
        raise ValueError('a subscribedSku line needs a "skuId"')
    part = obj.get("skuPartNumber")
    if part is not None and not isinstance(part, str):
        raise ValueError('"skuPartNumber" must be a string')
    return {k: v for k, v in obj.items() if k in _KEEP_BY_TYPE[SKU_TYPE]}


def parse_line(raw: bytes) -> tuple[str, dict[str, Any]]:
    """One line to (its @odata.type, the object); ValueError/TypeError say why not."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise TypeError("a line must be a JSON object")
    kind = obj.get("@odata.type", USER_TYPE)
    if kind == USER_TYPE:
        return kind, _parse_user(obj)
    if kind in (GROUP_TYPE, AU_TYPE):
        return kind, _parse_container(obj, kind)
    if kind == SKU_TYPE:
        return kind, _parse_sku(obj)
    raise ValueError(
        f'unknown "@odata.type" {kind!r}: a user (none), {SKU_TYPE}, {GROUP_TYPE} or {AU_TYPE}'
    )


def parse_user_line(raw: bytes) -> dict[str, Any]:
    """One user line to a user dict, unknown keys dropped; ValueError/TypeError say why not."""
    kind, obj = parse_line(raw)
    if kind != USER_TYPE:
        raise ValueError(f"a user line was expected, not {kind}")
    return obj


def load_tenant_document(path: Path) -> TenantDocument:
    """Every line of a tenant file; TenantFileError names the first bad line."""
    doc = TenantDocument()
    ids: dict[str, int] = {}  # lower-case directory object id -> line
    containers: list[tuple[int, str, dict[str, Any]]] = []
    skus: set[str] = set()
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue  # blank lines (e.g. a trailing newline) carry nothing
            try:
                kind, obj = parse_line(raw)
            except (ValueError, TypeError) as exc:
                raise TenantFileError(path, lineno, str(exc)) from None
            if kind == SKU_TYPE:
                if obj["skuId"].lower() in skus:
                    raise TenantFileError(path, lineno, f"duplicate skuId {obj['skuId']}")
                skus.add(obj["skuId"].lower())
                doc.skus.append(obj)
                continue
            if obj["id"].lower() in ids:
                raise TenantFileError(path, lineno, f"duplicate id {obj['id']}")
            ids[obj["id"].lower()] = lineno
            if kind == USER_TYPE:
                doc.users.append(obj)
            else:
                containers.append((lineno, kind, obj))
                (doc.groups if kind == GROUP_TYPE else doc.administrative_units).append(obj)
    users = {u["id"].lower() for u in doc.users}
    groups = {g["id"].lower() for g in doc.groups}
    for lineno, _kind, obj in containers:
        for m in obj["members"]:
            known = users if m["@odata.type"] == USER_TYPE else groups
            if m["id"].lower() not in known:
                what = "user" if m["@odata.type"] == USER_TYPE else "group"
                raise TenantFileError(path, lineno, f"member {m['id']} is no {what} of the file")
    return doc


def load_tenant_file(path: Path) -> list[dict[str, Any]]:
    """The users of a tenant file (load_tenant_document has the other lines too)."""
    return load_tenant_document(path).users


def dump_users(
    users: Iterable[dict[str, Any]], path: Path, others: Iterable[dict[str, Any]] = ()
) -> int:
    """Write users, then `others` (lines with their "@odata.type"), as JSON Lines
    (byte-stable for equal input); returns the number of users."""
    n = 0
    with open(path, "wb") as fh:
        buf: list[bytes] = []
        for user in users:
            buf.append(orjson.dumps(user))
            n += 1
            if len(buf) >= 4096:
                fh.write(b"\n".join(buf) + b"\n")
                buf.clear()
        for other in others:
            buf.append(orjson.dumps(other))
        if buf:
            fh.write(b"\n".join(buf) + b"\n")
    return n
