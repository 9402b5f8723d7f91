"""The registration report, `GET /reports/authenticationMethods/userRegistrationDetails`, read a
UPN-prefix range at a time and kept by user id for the partition listing that range.

As Microsoft documents it (authenticationmethodsroot-list-userregistrationdetails.md,
userregistrationdetails.md, throttling-limits.md in microsoft-graph-docs-contrib):
- application permission AuditLog.Read.All and Entra ID P1/P2; without either Graph answers
  403 (Authentication_MSGraphPermissionMissing, Authentication_RequestFromNonPremiumTenantOr
  B2CTenant): RegistrationRefused, and the columns stay empty with one notice;
- `$filter` takes `startswith(userPrincipalName, ...)` and `userPrincipalName eq ...`; `$top`
  and `$select` are not documented for it and never sent; pages follow `@odata.nextLink`, of
  a size Graph chooses (about 1000 rows, as users report);
- "This method doesn't work for disabled users": they have no row;
- its rows lag ("a latency of up to a few hours"): each says when it was refreshed
  (lastUpdatedDateTime), which the export keeps;
- it counts against the identity and access reports limit, "five requests per 10 seconds" per
  app and tenant, the limit that lists authenticationMethod too: its requests go through the
  authentication lookups' limiter (GraphReader.auth_limiter), one bucket for both.

A prefix's rows are kept compactly (only the properties the export reads), so the memory a
partition holds is its largest prefix's rows; the plan keeps every prefix of an export that
reads the report under REPORT_ROWS users, shared by its partitions (planning.py).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import orjson
from kiota_abstractions.base_request_configuration import RequestConfiguration

from .errors import GraphError
from .reader import GraphReader, _query_parameters

# The report rows an export's partitions may keep at once (planning.py gives each partition's
# prefixes at most its share): about 330 bytes each, id included, so some 20 MB. Fewer,
# larger prefixes mean fewer report requests (one at least per prefix, at 5 per 10 s).
REPORT_ROWS = 64_000
# Partitions an export that reads the report runs at most: each one reading it holds about
# 8 MB more at its peak (its pages in flight; bench (h), 1,000,000 users: 182 MB with 8
# partitions, 405 MB with 32), so 12 keep an instance under 250 MB.
REPORT_PARTITIONS = 12
# methodsRegistered values that are neither a phone nor an email (userregistrationdetails.md
# and the authentication-methods overview). A user whose methods are all among these has empty
# phone and email lookups; any other value, known or new, is looked up (the set is open).
NEITHER_PHONE_NOR_EMAIL = frozenset(
    {
        "microsoftAuthenticatorPush",
        "microsoftAuthenticatorPasswordless",
        "softwareOneTimePasscode",
        "hardwareOneTimePasscode",
        "fido2",
        "passKeyDeviceBound",
        "passKeyDeviceBoundAuthenticator",
        "passKeyDeviceBoundWindowsHello",
        "windowsHelloForBusiness",
        "macOsPlatformCredential",
        "temporaryAccessPass",
        "securityQuestion",
        "appPassword",
    }
)


class RegistrationRefused(GraphError):
    """Graph will not give this app the report (no AuditLog.Read.All, or no P1/P2): its 403,
    either code (module docstring)."""

    @classmethod
    def of(cls, error: GraphError) -> RegistrationRefused:
        return cls(error.status, error.code, error.message, retry_after=error.retry_after)


def _compact(value: Any) -> Any:
    """A row's value as kept: text interned (most rows repeat the same few method lists and
    times), a list joined with ';' as its column shows it; booleans and None as they are."""
    if isinstance(value, list):
        value = ";".join(str(v) for v in value)
    return sys.intern(value) if isinstance(value, str) else value


@dataclass
class Report:
    """One prefix's rows by user id, each a tuple of the `properties` the export reads (a few
    hundred bytes), and the oldest refresh time among them."""

    properties: tuple[str, ...]
    rows: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    oldest: str | None = None

    def add(self, row: dict[str, Any]) -> None:
        self.rows[str(row["id"])] = tuple(_compact(row.get(k)) for k in self.properties)
        when = row.get("lastUpdatedDateTime")
        if isinstance(when, str) and (self.oldest is None or when < self.oldest):
            self.oldest = when

    def row(self, user_id: str) -> dict[str, Any] | None:
        kept = self.rows.get(user_id)
        return None if kept is None else dict(zip(self.properties, kept, strict=True))


def needs_lookup(row: dict[str, Any] | None) -> bool:
    """Whether a user's phone and email methods must be looked up: yes without a row (disabled,
    or newer than the report), or when a registered method may be a phone or an email."""
    if row is None:
        return True
    methods = row.get("methodsRegistered") or []
    if isinstance(methods, str):  # as kept: joined
        methods = methods.split(";")
    return any(m not in NEITHER_PHONE_NOR_EMAIL for m in methods if m)


async def read_report(
    graph: GraphReader,
    prefix: str,
    *,
    properties: tuple[str, ...],
    keep: set[str] | None = None,
) -> Report:
    """These properties of the rows of the users whose UPN starts with `prefix` ("" for all),
    every page; through the authentication limiter, retried as any Graph read; with `keep`,
    only those users' rows (a filtered or scoped listing needs few of the range's).
    RegistrationRefused on a 403."""
    builder = graph.client.reports.authentication_methods.user_registration_details
    report = Report(properties)
    link: str | None = None
    while True:
        if link:
            info = builder.with_url(link).to_get_request_information()
        else:
            escaped = prefix.replace("'", "''")
            upn = f"startswith(userPrincipalName,'{escaped}')" if prefix else None
            query = _query_parameters(builder, filter=upn)
            info = builder.to_get_request_information(RequestConfiguration(query_parameters=query))
        try:
            raw = await graph.paced(info, graph.auth_limiter, raw=True)
        except GraphError as error:
            if error.status == 403:
                raise RegistrationRefused.of(error) from error
            raise
        # A parsed page (about 1,000 rows of dicts) is several times its bytes: a few at once
        # per process, whatever the partitions, keep the peak down.
        async with graph.report_pages:
            body = orjson.loads(raw) if raw else {}
            for row in body.get("value", []):
                if row.get("id") and (keep is None or row["id"] in keep):
                    report.add(row)
            link = body.get("@odata.nextLink")
            del body
        if not link:
            return report


# A query of the report no user answers: what the preflight's check and the plan's probe ask.
_NOBODY = "userPrincipalName eq 'preflight@userexport.invalid'"
PROBE_URL = "/reports/authenticationMethods/userRegistrationDetails?$filter=" + quote(_NOBODY)


async def check_report(graph: GraphReader) -> None:
    """One request that only Graph's permission and licence checks answer: a UPN no user has.
    RegistrationRefused when the report cannot be read."""
    builder = graph.client.reports.authentication_methods.user_registration_details
    query = _query_parameters(builder, filter=_NOBODY)
    info = builder.to_get_request_information(RequestConfiguration(query_parameters=query))
    try:
        await graph.paced(info, graph.auth_limiter)
    except GraphError as error:
        if error.status == 403:
            raise RegistrationRefused.of(error) from error
        raise
