"""The tenant file: JSON Lines, one user per line in Graph's shape (see README.md)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from .properties import EXTRA_KEYS, USER_PROPERTIES

_KEEP = USER_PROPERTIES | EXTRA_KEYS


class TenantFileError(ValueError):
    """A line of a tenant file is not a valid user; carries its 1-based line number."""

    def __init__(self, path: Path, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason


def _check_methods(auth: Any) -> str | None:
    if not isinstance(auth, dict):
        return '"authentication" must be an object'
    for key in ("phoneMethods", "emailMethods"):
        methods = auth.get(key, [])
        if not isinstance(methods, list) or not all(isinstance(m, dict) for m in methods):
            return f'"authentication.{key}" must be a list of objects'
    return None


def parse_user_line(raw: bytes) -> dict[str, Any]:
    """One line to a user dict, unknown keys dropped; ValueError/TypeError say why not."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise TypeError("a line must be a JSON object")
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
    return {k: v for k, v in obj.items() if k in _KEEP}


def load_tenant_file(path: Path) -> list[dict[str, Any]]:
    """All users of a tenant file; TenantFileError names the first bad line."""
    users: list[dict[str, Any]] = []
    seen: set[str] = set()
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue  # blank lines (e.g. a trailing newline) carry no user
            try:
                user = parse_user_line(raw)
            except (ValueError, TypeError) as exc:
                raise TenantFileError(path, lineno, str(exc)) from None
            if user["id"].lower() in seen:
                raise TenantFileError(path, lineno, f"duplicate id {user['id']}")
            seen.add(user["id"].lower())
            users.append(user)
    return users


def dump_users(users: Iterable[dict[str, Any]], path: Path) -> int:
    """Write users as JSON Lines (byte-stable for equal input); returns the count."""
    n = 0
    with open(path, "wb") as fh:
        buf: list[bytes] = []
        for user in users:
            buf.append(orjson.dumps(user))
            n += 1
            if len(buf) >= 4096:
                fh.write(b"\n".join(buf) + b"\n")
                buf.clear()
        if buf:
            fh.write(b"\n".join(buf) + b"\n")
    return n
