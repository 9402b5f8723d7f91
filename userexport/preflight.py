"""What the plan step reads once, before any listing: that the group or administrative unit to
export exists, whether Graph lets the app read sign-in activity, the tenant's licence names,
and how to read each user's authentication methods.

A refusal that only empties some columns (a tenant without Entra ID P1/P2, a permission not
granted) does not stop the export: it becomes a notice, one row of the errors file and a
sentence of the job's reason, and the columns stay in the header, empty. A scope that does not
exist, or cannot be read, fails the job: exporting nobody would look like a success.

Both authentication columns are read from one list per user (`/authentication/methods`), which
needs UserAuthenticationMethod.Read.All. A tenant may have granted only the narrower
UserAuthMethod-Phone.Read.All and UserAuthMethod-Email.Read.All: one user's lists tell, and
the export then reads the phone and email lists, two requests per user, as before.

The registration report (its columns, or fewerLookups) is checked with one request: refused, it
is a notice like the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import reasons
from .columns import (
    ALL_METHODS,
    EMAIL_METHODS,
    PHONE_METHODS,
    SIGN_IN_ACTIVITY,
    Column,
)
from .errors import CannotExport
from .errorsfile import methods_missing_row, report_refused_row, sign_in_columns
from .filters import GraphQuery, Scope
from .graph import (
    NON_PREMIUM,
    GraphError,
    GraphReader,
    RegistrationRefused,
    api_missing,
    check_report,
)
from .resolved import Resolved

# How long the sign-in check retries Graph's "no premium licence" before it believes it: a few
# answers (backoff of about 1, 2, 4 s), since premium tenants get it now and then (graph/reader.py).
SIGN_IN_CHECK_SECONDS = 6.0
_ALL_USERS = GraphQuery(None, False)
_SCOPE_FIELDS = {"group": "filter.group", "administrativeUnit": "filter.administrativeUnit"}
_SCOPE_PERMISSIONS = {
    "group": "GroupMember.Read.All",
    "administrativeUnit": "AdministrativeUnit.Read.All",
}
_SCOPE_NAMES = {"group": "group", "administrativeUnit": "administrative unit"}


@dataclass
class Preflight:
    """What the checks found; `done` names the checks made, so that one cut short by the
    invocation's time budget goes on, in the next, from where it stopped."""

    skus: dict[str, str] | None = None  # SKU part numbers by id; None when not needed or refused
    notices: list[list[str]] = field(default_factory=list)  # errors-file rows, said once
    requests: int = 0  # Graph requests it made
    lookups: list[str] | None = None  # the methods lists to read per user
    total: int | None = None  # the users the export lists, counted with the methods check's
    report: bool | None = None  # the registration report: None (not needed), readable or not
    user_id: str | None = None  # the user the methods check read (the plan's probe asks again)
    done: list[str] = field(default_factory=list)


def sign_in_refused(notices: list[list[str]]) -> bool:
    """Whether Graph refused signInActivity: the listing then leaves it out of $select."""
    return any(row[2] == SIGN_IN_ACTIVITY for row in notices)


async def preflight(graph: GraphReader, resolved: Resolved, result: Preflight) -> None:
    """Makes the checks `result` has not made yet, recording each in it as it is made."""
    columns, query = resolved.columns, resolved.query
    if result.lookups is None:
        result.lookups = list(resolved.lookups)
    if query.scope is not None and "scope" not in result.done:
        result.requests += 1
        await _check_scope(graph, query.scope)
        member = await _first_user(
            graph, GraphQuery(None, False, query.scope), ["id", "userPrincipalName"], result
        )
        if member is not None and not member.get("userPrincipalName"):
            raise CannotExport(limited_members_reason(query.scope))
        result.done.append("scope")
    if resolved.reads_sign_in and "signIn" not in result.done:
        await _check_sign_in(graph, query, columns, result)
        result.done.append("signIn")
    licences = any(c.bind is not None and "assignedLicenses" in c.select for c in columns)
    if licences and "licences" not in result.done:
        result.requests += 1
        try:
            result.skus = await graph.subscribed_skus()
        except GraphError as error:
            if error.transient:
                raise
            result.notices.append(_notice("subscribedSkus", error, reasons.licences_unread(error)))
        result.done.append("licences")
    if resolved.report and "report" not in result.done:
        await _check_report(graph, resolved, result)
        result.done.append("report")
    if result.lookups and "methods" not in result.done:
        await _check_methods(graph, query, result)
        result.done.append("methods")


async def _check_scope(graph: GraphReader, scope: Scope) -> None:
    name, key = _SCOPE_NAMES[scope.kind], _SCOPE_FIELDS[scope.kind]
    try:
        await graph.check_scope(scope)
    except GraphError as error:
        if error.transient:
            raise
        if error.status in (400, 404):
            raise CannotExport(reasons.scope_not_found(key, name, scope.id, error)) from None
        permission = _SCOPE_PERMISSIONS[scope.kind]
        raise CannotExport(reasons.scope_refused(name, scope.id, permission, error)) from None


def limited_members_reason(scope: Scope) -> str:
    """Why a member list whose members came with their id alone cannot be exported."""
    return reasons.limited_members(_SCOPE_NAMES[scope.kind], scope.id)


def limited_members(scope: Scope | None, users: list[dict[str, Any]]) -> bool:
    """Whether a member-list page holds a member with no userPrincipalName (which every user
    has): Graph's limited information, never a row to export."""
    return scope is not None and any(not u.get("userPrincipalName") for u in users)


async def _check_sign_in(
    graph: GraphReader, query: GraphQuery, columns: tuple[Column, ...], result: Preflight
) -> None:
    """One user of the tenant with signInActivity, through a plain query (the one that returns
    it, whatever the export's filter or scope): a 403 means it cannot be read, once Graph said
    so for SIGN_IN_CHECK_SECONDS; when the same request without it is refused too, the
    listing itself is, and that error fails the job."""
    try:
        await _first_user(graph, _ALL_USERS, ["id", SIGN_IN_ACTIVITY], result)
        return
    except GraphError as error:
        if error.status != 403:
            raise
        refusal = error
    await _first_user(graph, query, ["id"], result)
    names = sign_in_columns(columns)
    advice = reasons.sign_in_unreadable(names, no_premium=refusal.code == NON_PREMIUM)
    result.notices.append(_notice(SIGN_IN_ACTIVITY, refusal, advice))


async def _check_report(graph: GraphReader, resolved: Resolved, result: Preflight) -> None:
    """One request of the registration report: refused (no AuditLog.Read.All, or no P1/P2),
    its columns stay empty and fewerLookups looks every user up, with one notice."""
    result.requests += 1
    try:
        await check_report(graph)
        result.report = True
    except RegistrationRefused as error:
        result.report = False
        result.notices.append(
            report_refused_row(
                resolved.columns, error.status, error.code, fewer_lookups=resolved.fewer_lookups
            )
        )


async def _check_methods(graph: GraphReader, query: GraphQuery, result: Preflight) -> None:
    """One user's first methods list. Where Graph has no such API (a national cloud), no user
    is looked up: a notice. The whole methods list refused while the phone list is not, the
    export reads the phone and email lists instead. Refused both ways (no permission, or a
    policy on this user), it keeps the whole list: the partitions then say what was refused,
    as for any user."""
    assert result.lookups
    try:
        user = await _first_user(graph, query, ["id"], result, count=True)
    except GraphError as error:
        # No $count (nor advanced queries) in Azure AD B2C tenants (List users): read the
        # user plainly; planning then finds the tenant has no count either.
        if error.transient or error.status != 400 or query.advanced:
            raise
        user = await _first_user(graph, query, ["id"], result)
    if user is None:
        return
    user_id, lookup = user["id"], result.lookups[0]
    result.user_id = user_id
    result.requests += 1
    try:
        await graph.authentication_methods(user_id, lookup)
        return
    except GraphError as error:
        if error.transient:
            raise
        if api_missing(error.status or 0, error.message):
            result.notices.append(methods_missing_row(error.status, error.code, result.lookups))
            result.lookups = []
            return
        if error.status != 403 or lookup != ALL_METHODS:
            return
    result.requests += 1
    try:
        await graph.authentication_methods(user_id, PHONE_METHODS)
    except GraphError as error:
        if error.transient:
            raise
        return
    result.lookups = [PHONE_METHODS, EMAIL_METHODS]


async def _first_user(
    graph: GraphReader,
    query: GraphQuery,
    select: list[str],
    result: Preflight,
    *,
    count: bool = False,
) -> dict[str, Any] | None:
    """The first user the export would list (None: nobody), with these properties; with
    `count`, as an advanced query whose @odata.count the plan takes for its $count."""
    result.requests += 1
    page = await graph.users_page(
        next_link=None,
        select=select,
        page_size=1,
        filter=query.filter,
        advanced=query.advanced or count,
        scope=query.scope,
        patience=SIGN_IN_CHECK_SECONDS,
    )
    if count and page.count is not None:
        result.total = page.count
    return page.users[0] if page.users else None


def _notice(failed: str, error: GraphError, advice: str) -> list[str]:
    return ["", "", failed, str(error.status or ""), error.code, advice]
