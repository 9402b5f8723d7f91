"""The errors file: one row per problem, with what to do about it (its words: reasons.py).

Refused lookups (403) need care: when the app lacks UserAuthenticationMethod.Read.All, Graph
refuses every one, and the file should say so once, not once per user. But a partition cannot
know that alone: another may be allowed. So a 403 row written while its partition has had no
lookup allowed is *held* (staged in blocks of their own); the commit keeps the held rows when
any lookup of the job succeeded, and replaces them with one row when none did.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from . import reasons
from .columns import REGISTRATION, SIGN_IN_ACTIVITY, Column
from .jobs import Partition

ERRORS_HEADER = ["objectId", "userPrincipalName", "failed", "httpStatus", "errorCode", "message"]
MESSAGE = ERRORS_HEADER.index("message")
# Refused lookups, with none allowed, before a partition stops asking: more than one page of
# users (999, two lookups each), so no single page decides it.
DENY_AFTER = 2000


class Failure(Protocol):
    """One user's lookup that failed (graph.LookupFailure, as the errors file reads it)."""

    @property
    def user_id(self) -> str: ...
    @property
    def lookup(self) -> str: ...
    @property
    def status(self) -> int | None: ...
    @property
    def code(self) -> str: ...


def reason(notices: Iterable[Sequence[str]]) -> str | None:
    """A job's `reason`: the messages of its notices (rows said once for the whole job), each
    saying what is missing from the CSV and what to do about it; None without notices."""
    return " ".join(row[MESSAGE] for row in notices) or None


def lookup_rows(failures: Iterable[Failure], users: list[dict[str, Any]]) -> list[list[str]]:
    names = {u["id"]: u.get("userPrincipalName") or "" for u in users}
    return [
        [
            f.user_id,
            names.get(f.user_id, ""),
            f"authentication/{f.lookup}",
            str(f.status),
            f.code,
            reasons.lookup_failed(f.status, f.code),
        ]
        for f in failures
    ]


def lookups_label(lookups: Sequence[str]) -> str:
    """What the errors file's `failed` column says for these lookups."""
    return "authentication/" + ",".join(lookups)


def not_looked_up_rows(
    users: list[dict[str, Any]], code: str, lookups: Sequence[str]
) -> list[list[str]]:
    """Rows for users whose lookups were not made: their partition was refused every one."""
    return [
        [
            u["id"],
            u.get("userPrincipalName") or "",
            lookups_label(lookups),
            "403",
            code,
            reasons.not_looked_up(DENY_AFTER),
        ]
        for u in users
    ]


def listing_changed_row(code: str) -> list[str]:
    """The listing started again past an expired page token (Graph's `code`)."""
    return [
        "",
        "",
        "listing",
        "400",
        code,
        reasons.LISTING_CHANGED,
    ]


def denied_everywhere(parts: list[Partition]) -> str | None:
    """The error code when Graph refused every lookup of the job and allowed none."""
    if any(p.checkpoint.lookups_succeeded for p in parts):
        return None
    refused = [p.checkpoint for p in parts if p.checkpoint.lookups_refused]
    return (refused[0].refused_code or "Forbidden") if refused else None


def denied_row(code: str, lookups: Sequence[str]) -> list[str]:
    return ["", "", lookups_label(lookups), "403", code, reasons.LOOKUPS_DENIED]


def sign_in_columns(columns: Sequence[Column]) -> str:
    """The names of the columns read from signInActivity, for a message."""
    return ", ".join(c.name for c in columns if SIGN_IN_ACTIVITY in c.select)


def sign_in_missing_rows(users: list[dict[str, Any]], columns: Sequence[Column]) -> list[list[str]]:
    """Rows for listed users whose signInActivity, read by id, Graph no longer had."""
    return [
        [
            u["id"],
            u.get("userPrincipalName") or "",
            SIGN_IN_ACTIVITY,
            "404",
            "Request_ResourceNotFound",
            reasons.sign_in_missing(sign_in_columns(columns)),
        ]
        for u in users
    ]


def sign_in_stopped_row(
    parts: list[Partition], columns: Sequence[Column], code: str
) -> list[str] | None:
    """The one row saying that Graph stopped serving signInActivity during the export (its
    refusal's `code`), if it did: the columns and how many users they are empty for."""
    stopped = [p.checkpoint for p in parts if p.checkpoint.sign_in_stopped]
    if not stopped:
        return None
    users = sum(c.users_without_sign_in for c in stopped)
    return [
        "",
        "",
        SIGN_IN_ACTIVITY,
        "403",
        code,
        reasons.sign_in_stopped(sign_in_columns(columns), users),
    ]


def methods_missing_row(
    status: int | None, code: str, lookups: Sequence[str], users: int | None = None
) -> list[str]:
    """The one row saying that this Graph has no authentication-methods API (authmethods):
    learnt before any lookup (`users` None: every user's cells are empty), or while the
    export ran (`users` of them not looked up)."""
    return [
        "",
        "",
        lookups_label(lookups),
        str(status or ""),
        code,
        reasons.methods_missing(users),
    ]


def methods_missing_everywhere(parts: list[Partition], lookups: Sequence[str]) -> list[str] | None:
    """The row for a job whose partitions learnt while they ran that the API is missing."""
    missing = [p.checkpoint for p in parts if p.checkpoint.lookups_missing]
    if not missing:
        return None
    status, _, code = (missing[0].lookups_missing or "").partition(" ")
    users = sum(c.users_not_looked_up for c in missing)
    return methods_missing_row(int(status) if status.isdigit() else None, code, lookups, users)


def report_columns(columns: Sequence[Column]) -> str:
    """The names of the columns read from the registration report, for a message."""
    return ", ".join(c.name for c in columns if c.report)


def report_refused_row(
    columns: Sequence[Column], status: int | None, code: str, *, fewer_lookups: bool
) -> list[str]:
    """The one row saying Graph refused the registration report (before or during the export)."""
    advice = reasons.report_refused(report_columns(columns), fewer_lookups=fewer_lookups)
    return ["", "", REGISTRATION, str(status or ""), code, advice]


def report_no_row_rows(users: list[dict[str, Any]], report_time: str | None) -> list[list[str]]:
    """Rows for enabled users the registration report has no row for yet."""
    advice = reasons.report_no_row(report_time)
    return [
        [u["id"], u.get("userPrincipalName") or "", REGISTRATION, "", "notInReport", advice]
        for u in users
    ]


def report_once_rows(
    parts: list[Partition], columns: Sequence[Column], *, fewer_lookups: bool
) -> list[list[str]]:
    """The rows a job's partitions count rather than write per user: disabled users (the report
    leaves them out) and a refusal learnt while they ran."""
    rows = []
    disabled = sum(p.checkpoint.users_disabled for p in parts)
    if disabled:
        advice = reasons.report_disabled(report_columns(columns), disabled)
        rows.append(["", "", REGISTRATION, "", "disabledUsers", advice])
    refused = next(
        (p.checkpoint.report_refused for p in parts if p.checkpoint.report_refused), None
    )
    if refused:
        status, _, code = refused.partition(" ")
        known = int(status) if status.isdigit() else None
        rows.append(report_refused_row(columns, known, code, fewer_lookups=fewer_lookups))
    return rows
