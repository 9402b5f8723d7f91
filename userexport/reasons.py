"""What a caller reads about a job, made in one place: the job's `reason` and `lastError`, and
the message of each errors-file row. Each says what happened and what to do about it; none
holds a name, a host or a stack (ids are fine: a caller needs them to act).

The export steps decide *when* a job fails or a row is written; this module decides *what it
says*. Grouped by the step that says it.
"""

from __future__ import annotations

from datetime import timedelta

from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

from .graph import GraphError

# -- the request and its queue message -------------------------------------------------------

QUEUE_FAILED = "The export could not be queued; start it again."
CANCELLED = "Cancelled by a caller; nothing was committed."


def poisoned(last_error: str | None) -> str:
    """The host gave up on the job's queue message."""
    return (
        "The export failed on every delivery of its queue message and was given up "
        f"(last error: {last_error or 'no error was recorded'}). Start it again; if it fails "
        "the same way, the function's logs say more."
    )


def stalled(minutes: float, revivals: int, last_error: str | None) -> str:
    """The sweep revived the job as often as it may, and it still made no progress."""
    return (
        f"The export made no progress for {minutes:g} minutes, {revivals} times in a row (last "
        f"error: {last_error or 'none recorded'}). Start it again; if it stops the same way, "
        "the function's logs say more."
    )


# -- failures while it runs ------------------------------------------------------------------


def last_error(error: BaseException) -> str:
    """An error as a caller may see it (`lastError`): what failed, no host names, stack or SDK
    dump."""
    if isinstance(error, GraphError):
        return error.summary
    if isinstance(error, ServiceRequestError | ServiceResponseError):
        return "Azure Storage could not be reached"
    if isinstance(error, HttpResponseError):
        code = getattr(error, "error_code", None) or "no code"
        return f"Azure Storage answered {error.status_code} {code}"
    return f"An unexpected {type(error).__name__} (the function's logs have the details)"


def failures_outlasted(last_error: str | None, cap: timedelta) -> str:
    """Why a job fails once its failures lasted `cap` (USEREXPORT_FAILURE_CAP_MINUTES)."""
    return (
        f"{last_error or 'Microsoft Graph failed'} on every attempt for "
        f"{cap.total_seconds() / 60:g} minutes (USEREXPORT_FAILURE_CAP_MINUTES), so "
        "the export stopped. Check Microsoft Graph's health in the Microsoft 365 admin "
        "center, then start the export again."
    )


def graph_refused(error: GraphError) -> str:
    """Graph refused the export's requests for good (not a transient failure)."""
    if error.premium_refused:  # not about User.Read.All: sign-in activity needs P1/P2
        return (
            f"Microsoft Graph refused to read sign-in activity ({error.status} {error.code}): "
            "it says the tenant has no Microsoft Entra ID P1 or P2 licence (or is a B2C "
            "tenant). Graph also says this now and then in tenants that have one: export "
            "again later, or leave out the sign-in columns."
        )
    if error.status == 403:
        return (
            f"Microsoft Graph refused to list users ({error.status} {error.code}). Grant the "
            "app's managed identity the User.Read.All application permission (admin consent)."
        )
    if error.status == 401:
        return (
            f"Microsoft Graph did not accept the app's token ({error.status} {error.code}). "
            "Check the managed identity (AZURE_CLIENT_ID) and the tenant."
        )
    return (
        f"Microsoft Graph rejected the request ({error.status} {error.code}). Check the "
        "export's filter and columns, then start it again."
    )


def tokens_outpaced(relists: int) -> str:
    return (
        f"Microsoft Graph's page tokens expired {relists} times in a row before the export "
        "could go on from them, so listing again never got further. Set "
        "USEREXPORT_TIME_BUDGET_SECONDS higher (each invocation then reads more pages while its "
        "token is fresh), then export again."
    )


# -- the plan step: the scope, sign-in activity, licences ------------------------------------


def scope_not_found(field: str, name: str, scope_id: str, error: GraphError) -> str:
    return (
        f"{field} names no {name} of this tenant: Microsoft Graph answered "
        f"{error.status} {error.code} for {scope_id}. Use the {name}'s Object ID "
        "from the Entra admin center, then export again."
    )


def scope_refused(name: str, scope_id: str, permission: str, error: GraphError) -> str:
    return (
        f"Microsoft Graph refused to read the {name} {scope_id} ({error.status} "
        f"{error.code}). Grant the app's managed identity the {permission} application "
        "permission (admin consent), then export again."
    )


def limited_members(name: str, scope_id: str) -> str:
    """Why a member list whose members came with their id alone cannot be exported."""
    return (
        f"Microsoft Graph listed the members of the {name} {scope_id} with their id alone, "
        "every other property null: the app may read the member list but not users "
        '("limited information", Microsoft Graph permissions overview), so their rows would '
        "be empty. Grant the app's managed identity the User.Read.All application permission "
        "(admin consent), then export again. A group with hidden membership also needs "
        "Member.Read.Hidden."
    )


def sign_in_unreadable(columns: str, *, no_premium: bool) -> str:
    """The notice when sign-in activity cannot be read at all: `columns` are empty."""
    if no_premium:
        return (
            "Microsoft Graph reads sign-in activity only in tenants with Microsoft Entra ID P1 "
            f"or P2 (and not in B2C tenants), so {columns} are empty for every user."
        )
    return (
        f"Microsoft Graph refused to read sign-in activity, so {columns} are empty for every "
        "user. Grant the app's managed identity the AuditLog.Read.All application "
        "permission (admin consent), then export again."
    )


def licences_unread(error: GraphError) -> str:
    advice = (
        "Microsoft Graph did not list the tenant's licences, so assignedLicenses holds SKU "
        "ids instead of names (assignedLicenseNames: for SKUs newer than its product-name "
        "table)."
    )
    if error.status == 403:
        advice += (
            " Grant the app's managed identity the LicenseAssignment.Read.All application "
            "permission (admin consent), then export again."
        )
    return advice


# -- delta series ----------------------------------------------------------------------------


def changes_since(snapshot_job: str) -> str:
    return f"The changes since run {snapshot_job}."


def first_delta_run(series: str | None) -> str:
    return f"The first delta run of series {series} lists the whole tenant."


SNAPSHOT_COLUMNS_DIFFER = (
    "The columns or formulaGuard differ from the series' snapshot: a full run."
)


def full_run_due(full_job: str, days: float) -> str:
    return (
        f"The series' last full run ({full_job}) is more than {days:g} days old: a full "
        "run refreshes every column, the authentication columns too."
    )


def snapshot_gone_full_run(snapshot_job: str) -> str:
    return f"The series' snapshot (run {snapshot_job}) is gone: a full run."


def delta_link_unusable(error: GraphError, *, select_refused: bool) -> str:
    """Why a deltaLink Graph gave up on makes the run a full one."""
    if select_refused:
        return (
            f"Graph's /users/delta now refuses a property of the series' columns ({error.code}: "
            f"{error.message}), so this run lists in full."
        )
    return (
        f"Graph no longer accepts the series' deltaLink ({error.status} {error.code}): it is "
        "older than Graph keeps one (7 days), or Graph reset it, so this run resyncs in full."
    )


def delta_refused(error: GraphError, *, select_refused: bool) -> str:
    what = "this export's columns" if select_refused else "delta queries"
    return (
        f"Graph's /users/delta refused {what} ({error.status} {error.code}: "
        f"{error.message}). Leave out the columns that read the properties it names "
        '(docs/columns.md), or use "mode": "full".'
    )


def snapshot_gone(snapshot_job: str | None) -> str:
    return (
        f"The snapshot this run builds on (run {snapshot_job}) is gone. Start "
        "the export again: the series' next run lists the tenant in full."
    )


def snapshot_other_columns(snapshot_job: str | None) -> str:
    return (
        f"The snapshot this run builds on (run {snapshot_job}) has other columns "
        "than this export. Start the export again: the series' next run lists in full."
    )


def changes_out_of_time(attempts: int) -> str:
    return (
        f"The changes run ran out of time {attempts} times: reading the "
        "changes and rebuilding the snapshot takes longer than one invocation. Set "
        "USEREXPORT_TIME_BUDGET_SECONDS higher, then start the export again (the series "
        "has not moved on)."
    )


def changes_run_overtaken(series: str | None, moved: Exception) -> str:
    return (
        f"Another run of series {series} committed first ({moved}), so "
        "this run's files are not the series' latest. Start the export again."
    )


def full_run_overtaken(series: str | None, moved: Exception) -> str:
    return (
        f"Another run of series {series} committed first ({moved}); this CSV is "
        "complete, and the series' next run builds on that other run."
    )


# -- the commit ------------------------------------------------------------------------------


def too_many_blocks(most: int) -> str:
    return (
        f"The export needs more than {most} blocks, the most a blob can hold (it wrote "
        "for days). Export the users in parts with a filter (userPrincipalNamePrefix, say), "
        "then join the files."
    )


# -- errors-file rows ------------------------------------------------------------------------

LOOKUP_ADVICE = {
    403: "Graph refused this lookup: check the UserAuthenticationMethod.Read.All permission and "
    "any policy that restricts this user.",
    404: "The user was deleted after it was listed; its row holds what the listing returned.",
}


def lookup_failed(status: int | None, code: str) -> str:
    """One user's authentication-method lookup that failed."""
    return LOOKUP_ADVICE.get(
        status or 0,
        f"Graph failed on this lookup ({status} {code or 'no code'}); the user's "
        "authentication columns are empty. Export again to retry.",
    )


LOOKUPS_DENIED = (
    "Graph refused every authentication-method lookup, so the columns "
    "authenticationAlternativePhoneNumber and authenticationEmail are empty for all users. "
    "Grant the app's managed identity the Microsoft Graph application permission "
    "UserAuthenticationMethod.Read.All (admin consent), then export again."
)


def not_looked_up(refused: int) -> str:
    return (
        f"Not looked up: Graph refused the first {refused} authentication-method lookups "
        "of this part of the export and allowed none, so these were not asked and this "
        "user's authentication columns are empty. Check the policies that restrict access "
        "to these users, then export again."
    )


LISTING_CHANGED = (
    "Graph's page token expired, so the listing started again and passed over the users "
    "already written; the directory changed in between, so users created or deleted during "
    "the export may be missing or repeated. Export again for an exact snapshot."
)


def sign_in_missing(columns: str) -> str:
    return (
        "Graph no longer lists this user (deleted after it was listed), so its "
        f"{columns} are empty; its row holds what the listing returned."
    )


def sign_in_stopped(columns: str, users: int) -> str:
    return (
        "Microsoft Graph stopped serving sign-in activity during the export: after serving it, "
        "it answered that the tenant has no Microsoft Entra ID P1 or P2 licence to every "
        f"request for USEREXPORT_STORM_SECONDS, so {columns} are empty for the "
        f"{users} users read after that. Graph says this now and then in tenants that have "
        "the licence: export again later to fill them."
    )


def methods_missing(users: int | None) -> str:
    """This Graph has no authentication-methods API: learnt before any lookup (`users` None),
    or while the export ran (`users` of them not looked up)."""
    which = "every user" if users is None else f"the {users} users not looked up before it said so"
    return (
        "Microsoft Graph has no authentication-methods API here: it is not available in "
        "Microsoft Graph China operated by 21Vianet (List authentication methods, national "
        "cloud availability), so authenticationAlternativePhoneNumber and authenticationEmail "
        f"are empty for {which}."
    )


def report_refused(columns: str, *, fewer_lookups: bool) -> str:
    """Why the registration report's columns are empty (or fewerLookups looked everyone up)."""
    what = f"The columns {columns} are empty" if columns else "No column is empty"
    fewer = "; fewerLookups could not use it, so every user was looked up" if fewer_lookups else ""
    return (
        f"{what}: Graph refused the registration report (userRegistrationDetails), which needs "
        "the AuditLog.Read.All application permission and a tenant with Microsoft Entra ID P1 "
        f"or P2{fewer}. Grant the permission (and admin consent), then export again."
    )


def report_disabled(columns: str, users: int) -> str:
    """Why the report's columns are empty for disabled users: it has no row for them."""
    return (
        f"The columns {columns} are empty for the {users} disabled user(s): Graph's "
        "registration report leaves disabled users out (\"This method doesn't work for "
        'disabled users").'
    )


def report_no_row(report_time: str | None) -> str:
    """Why one enabled user's registration columns are empty."""
    when = f" (its rows are from {report_time} or later)" if report_time else ""
    return (
        "The registration report has no row for this user yet: it is not live and lags by up "
        f"to a few hours{when}, so a user created or renamed since is missing. Its columns "
        "are empty; export again later."
    )
