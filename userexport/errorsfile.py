"""The errors file: one row per problem, with what to do about it.

Refused lookups (403) need care: when the app lacks UserAuthenticationMethod.Read.All, Graph
refuses every one, and the file should say so once, not once per user. But a partition cannot
know that alone: another may be allowed. So a 403 row written while its partition has had no
lookup allowed is *held* (staged in blocks of their own); the commit keeps the held rows when
any lookup of the job succeeded, and replaces them with one row when none did.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .columns import SIGN_IN_ACTIVITY, Column
from .graph import EXPIRED_PAGE_TOKEN, NON_PREMIUM, LookupFailure
from .jobs import Partition

ERRORS_HEADER = ["objectId", "userPrincipalName", "failed", "httpStatus", "errorCode", "message"]
MESSAGE = ERRORS_HEADER.index("message")
# Refused lookups, with none allowed, before a partition stops asking: more than one page of
# users (999, two lookups each), so no single page decides it.
DENY_AFTER = 2000

_LOOKUP_ADVICE = {
    403: "Graph refused this lookup: check the UserAuthenticationMethod.Read.All permission and "
    "any policy that restricts this user.",
    404: "The user was deleted after it was listed; its row holds what the listing returned.",
}

DENIED_MESSAGE = (
    "Graph refused every authentication-method lookup, so the columns "
    "authenticationAlternativePhoneNumber and authenticationEmail are empty for all users. "
    "Grant the app's managed identity the Microsoft Graph application permission "
    "UserAuthenticationMethod.Read.All (admin consent), then export again."
)


def reason(notices: Iterable[Sequence[str]]) -> str | None:
    """A job's `reason`: the messages of its notices (rows said once for the whole job), each
    saying what is missing from the CSV and what to do about it; None without notices."""
    return " ".join(row[MESSAGE] for row in notices) or None


def lookup_rows(failures: Iterable[LookupFailure], users: list[dict[str, Any]]) -> list[list[str]]:
    names = {u["id"]: u.get("userPrincipalName") or "" for u in users}
    return [
        [
            f.user_id,
            names.get(f.user_id, ""),
            f"authentication/{f.lookup}",
            str(f.status),
            f.code,
            _LOOKUP_ADVICE.get(
                f.status,
                f"Graph failed on this lookup ({f.status} {f.code or 'no code'}); the user's "
                "authentication columns are empty. Export again to retry.",
            ),
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
            f"Not looked up: Graph refused the first {DENY_AFTER} authentication-method lookups "
            "of this part of the export and allowed none, so these were not asked and this "
            "user's authentication columns are empty. Check the policies that restrict access "
            "to these users, then export again.",
        ]
        for u in users
    ]


def listing_changed_row() -> list[str]:
    return [
        "",
        "",
        "listing",
        "400",
        EXPIRED_PAGE_TOKEN,
        "Graph's page token expired, so the listing started again and passed over the users "
        "already written; the directory changed in between, so users created or deleted during "
        "the export may be missing or repeated. Export again for an exact snapshot.",
    ]


def denied_everywhere(parts: list[Partition]) -> str | None:
    """The error code when Graph refused every lookup of the job and allowed none."""
    if any(p.checkpoint.lookups_succeeded for p in parts):
        return None
    refused = [p.checkpoint for p in parts if p.checkpoint.lookups_refused]
    return (refused[0].refused_code or "Forbidden") if refused else None


def denied_row(code: str, lookups: Sequence[str]) -> list[str]:
    return ["", "", lookups_label(lookups), "403", code, DENIED_MESSAGE]


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
            "Graph no longer lists this user (deleted after it was listed), so its "
            f"{sign_in_columns(columns)} are empty; its row holds what the listing returned.",
        ]
        for u in users
    ]


def sign_in_stopped_row(parts: list[Partition], columns: Sequence[Column]) -> list[str] | None:
    """The one row saying that Graph stopped serving signInActivity during the export, if it
    did: the columns and how many users they are empty for."""
    stopped = [p.checkpoint for p in parts if p.checkpoint.sign_in_stopped]
    if not stopped:
        return None
    users = sum(c.users_without_sign_in for c in stopped)
    return [
        "",
        "",
        SIGN_IN_ACTIVITY,
        "403",
        NON_PREMIUM,
        "Microsoft Graph stopped serving sign-in activity during the export: after serving it, "
        "it answered that the tenant has no Microsoft Entra ID P1 or P2 licence to every "
        f"request for USEREXPORT_STORM_SECONDS, so {sign_in_columns(columns)} are empty for the "
        f"{users} users read after that. Graph says this now and then in tenants that have "
        "the licence: export again later to fill them.",
    ]


def methods_missing_row(
    status: int | None, code: str, lookups: Sequence[str], users: int | None = None
) -> list[str]:
    """The one row saying that this Graph has no authentication-methods API (authmethods):
    learnt before any lookup (`users` None: every user's cells are empty), or while the
    export ran (`users` of them not looked up)."""
    which = "every user" if users is None else f"the {users} users not looked up before it said so"
    return [
        "",
        "",
        lookups_label(lookups),
        str(status or ""),
        code,
        "Microsoft Graph has no authentication-methods API here: it is not available in "
        "Microsoft Graph China operated by 21Vianet (List authentication methods, national "
        "cloud availability), so authenticationAlternativePhoneNumber and authenticationEmail "
        f"are empty for {which}.",
    ]


def methods_missing_everywhere(parts: list[Partition], lookups: Sequence[str]) -> list[str] | None:
    """The row for a job whose partitions learnt while they ran that the API is missing."""
    missing = [p.checkpoint for p in parts if p.checkpoint.lookups_missing]
    if not missing:
        return None
    status, _, code = (missing[0].lookups_missing or "").partition(" ")
    users = sum(c.users_not_looked_up for c in missing)
    return methods_missing_row(int(status) if status.isdigit() else None, code, lookups, users)
