"""The `filter` of POST /api/exports: a structured filter, validated, and its Graph `$filter`.

Callers never write OData. They send a small JSON object; `parse_filter` validates it into a
normalized dict (what a job records) and `to_graph_query` turns that dict into the `$filter`
text, with every caller-supplied string inside a single-quoted, `''`-escaped literal, plus
whether Graph needs the advanced query parameters for it.

Which clauses need advanced queries (ConsistencyLevel: eventual + $count=true), per
"Advanced query capabilities on Microsoft Entra ID objects" (learn.microsoft.com/graph/
aad-advanced-queries, its per-property table includes/filter-directory-objects.md in
microsoftgraph/microsoft-graph-docs-contrib) for the user properties used here:

- default (no advanced parameters): `eq` on userType, accountEnabled and department;
  `startsWith` on userPrincipalName and displayName; `ge`/`le` on createdDateTime.
- advanced: `endsWith` (only on mail, otherMails, userPrincipalName, proxyAddresses), and
  every operator on companyName, `eq` included.
- a member list (`group`, `administrativeUnit`): any `$filter` at all.

Queries that work by default also work as advanced queries (the answer is then eventually
consistent), so one advanced clause makes the whole query advanced. The same page notes that
advanced queries are not available in Azure AD B2C tenants and do not support `$expand`.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .errors import InvalidFilter

MAX_STRING_LENGTH = 256  # displayName, the longest of these Graph properties, is at most 256

# The supported keys, in the order the normalized dict and the $filter clauses use.
KEYS = (
    "userType",
    "accountEnabled",
    "department",
    "companyName",
    "domain",
    "userPrincipalNamePrefix",
    "displayNamePrefix",
    "createdAfter",
    "createdBefore",
    "group",
    "administrativeUnit",
)
SCOPE_KEYS = ("group", "administrativeUnit")  # whose members to list instead of /users
USER_TYPES = ("Member", "Guest")

# ISO 8601 in the shapes people send: a date, or a date and time with Z or an offset.
# A time without an offset is refused: its time zone would be a guess.
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?(?:[Zz]|[+-]\d{2}:?\d{2})"
)
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_KEY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_NORMALIZED_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_OBJECT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class Scope:
    """Whose users to list: a group's transitive user members, or an administrative unit's
    user members; no Scope means every user (/users)."""

    kind: str  # "group" or "administrativeUnit"
    id: str


@dataclass(frozen=True)
class GraphQuery:
    """What GraphReader.users_page needs: the $filter text, whether it is advanced, and the
    scope it lists."""

    filter: str | None
    advanced: bool
    scope: Scope | None = None


def parse_filter(value: object) -> dict[str, object] | None:
    """The normalized filter a job records, or None when the request has none.

    Keys come out in KEYS order; userType in Graph's casing, domain in lower case,
    datetimes as YYYY-MM-DDTHH:MM:SSZ (UTC). An empty object is a valid filter matching
    every user. Raises InvalidFilter naming the offending field.
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidFilter(
            "filter",
            f"filter must be a JSON object with any of these keys: {', '.join(KEYS)}.",
        )
    for key in value:
        if key not in KEYS:
            raise _unknown_key(key)

    out: dict[str, object] = {}
    for key in KEYS:
        if key not in value:
            continue
        raw = value[key]
        field = f"filter.{key}"
        if key == "userType":
            out[key] = _user_type(raw, field)
        elif key == "accountEnabled":
            if not isinstance(raw, bool):
                raise InvalidFilter(field, f"{field} must be true or false (a JSON boolean).")
            out[key] = raw
        elif key == "domain":
            out[key] = _domain(raw, field)
        elif key in SCOPE_KEYS:
            out[key] = _object_id(raw, field)
        elif key in ("createdAfter", "createdBefore"):
            # ge/le are inclusive, and createdDateTime comes in whole seconds (Graph's documented
            # examples; not checked on a live tenant), so rounding a fractional bound inwards
            # (after: up, before: down) selects the same users.
            out[key] = _datetime(raw, field, round_up=key == "createdAfter")
        else:
            out[key] = _text(raw, field)

    after, before = out.get("createdAfter"), out.get("createdBefore")
    # The normalized form sorts as text in time order, so a string comparison suffices.
    if isinstance(after, str) and isinstance(before, str) and after > before:
        raise InvalidFilter(
            "filter.createdAfter",
            f"filter.createdAfter ({after}) is later than filter.createdBefore ({before}); "
            "no user could match. Swap them or widen the range.",
        )
    if all(key in out for key in SCOPE_KEYS):
        raise InvalidFilter(
            "filter.administrativeUnit",
            "filter.administrativeUnit cannot be combined with filter.group: Graph lists the "
            "members of one of them at a time. Export each and join the files.",
        )
    return out


def to_graph_query(filter: dict[str, Any] | None) -> GraphQuery:
    """The Graph $filter for a filter from parse_filter (None or {} means no $filter)."""
    # Validate again: the dict may come back from job storage, and only values that pass
    # parse_filter are guaranteed to be safe to put into OData text.
    normalized = parse_filter(filter)
    if not normalized:
        return GraphQuery(None, False)
    clauses: list[str] = []
    advanced = False
    scope: Scope | None = None
    for key, value in normalized.items():
        if key in SCOPE_KEYS:
            scope = Scope(key, str(value))
        elif key == "userType":
            clauses.append(f"userType eq {_literal(value)}")
        elif key == "accountEnabled":
            clauses.append(f"accountEnabled eq {'true' if value is True else 'false'}")
        elif key == "department":
            clauses.append(f"department eq {_literal(value)}")
        elif key == "companyName":
            clauses.append(f"companyName eq {_literal(value)}")
            advanced = True  # companyName is indexed only in the advanced query store
        elif key == "domain":
            clauses.append(f"endsWith(userPrincipalName,{_literal('@' + str(value))})")
            advanced = True  # endsWith is advanced-only
        elif key == "userPrincipalNamePrefix":
            clauses.append(f"startsWith(userPrincipalName,{_literal(value)})")
        elif key == "displayNamePrefix":
            clauses.append(f"startsWith(displayName,{_literal(value)})")
        elif key == "createdAfter":
            clauses.append(f"createdDateTime ge {_datetime_literal(value)}")
        elif key == "createdBefore":
            clauses.append(f"createdDateTime le {_datetime_literal(value)}")
    text = " and ".join(clauses) or None
    # Graph filters a member list only as an advanced query, whatever the clause.
    return GraphQuery(text, advanced or bool(scope and text), scope)


def _literal(value: object) -> str:
    """An OData string literal: single quotes, a quote inside doubled (OData ABNF SQUOTE-in-
    string), so the value can never end the literal early."""
    if not isinstance(value, str):  # parse_filter guarantees it; never format anything else
        raise TypeError("string literal expected")
    return "'" + value.replace("'", "''") + "'"


def _datetime_literal(value: object) -> str:
    # DateTimeOffset literals are unquoted in OData v4 (Graph refuses quoted ones), so
    # insist on the exact normalized shape: it contains nothing but digits, '-', ':', T, Z.
    if not isinstance(value, str) or not _NORMALIZED_DATETIME.fullmatch(value):
        raise TypeError("normalized datetime expected")
    return value


def _unknown_key(key: object) -> InvalidFilter:
    known = ", ".join(KEYS)
    if not isinstance(key, str) or not _KEY_NAME.fullmatch(key):
        # Do not echo an arbitrary (long, odd) key into the field name of the answer.
        return InvalidFilter("filter", f"filter has a key that is not supported; known: {known}.")
    hint = difflib.get_close_matches(key, KEYS, n=1, cutoff=0.6)
    lower = {k.lower(): k for k in KEYS}
    suggestion = lower.get(key.lower()) or (hint[0] if hint else None)
    did_you_mean = f" Did you mean {suggestion!r}?" if suggestion else ""
    return InvalidFilter(
        f"filter.{key}", f"Unknown filter key {key!r}.{did_you_mean} Known keys: {known}."
    )


def _text(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidFilter(field, f"{field} must be a string.")
    if not value.strip():
        raise InvalidFilter(field, f"{field} must not be empty or blank.")
    if len(value) > MAX_STRING_LENGTH:
        raise InvalidFilter(field, f"{field} is longer than {MAX_STRING_LENGTH} characters.")
    # Control characters (and lone surrogates) have no business in a search term and make
    # the logged or echoed query unreadable; Cf (e.g. zero-width joiners in emoji) is fine.
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value):
        raise InvalidFilter(
            field, f"{field} contains a control character (such as a tab or line break)."
        )
    return value


def _object_id(value: object, field: str) -> str:
    """A directory object id: a GUID, in lower case (Graph's ids are)."""
    if isinstance(value, str) and _OBJECT_ID.fullmatch(value.lower()):
        return value.lower()
    raise InvalidFilter(
        field,
        f"{field} must be the object id (a GUID such as 0f3b5d4e-1a2b-4c3d-8e9f-001122334455) "
        f"of the {'group' if field.endswith('group') else 'administrative unit'}, not its name.",
    )


def _user_type(value: object, field: str) -> str:
    if isinstance(value, str):
        for user_type in USER_TYPES:
            if value.lower() == user_type.lower():
                return user_type
    raise InvalidFilter(field, f"{field} must be one of: {', '.join(USER_TYPES)}.")


def _domain(value: object, field: str) -> str:
    detail = (
        f"{field} must be a DNS domain name such as contoso.com (letters, digits and hyphens, "
        "dot-separated, at least two labels; internationalized names in their xn-- form), "
        "without '@'."
    )
    if not isinstance(value, str) or len(value) > 253:
        raise InvalidFilter(field, detail)
    domain = value.lower()
    labels = domain.split(".")
    if (
        len(labels) < 2
        or not all(_DNS_LABEL.fullmatch(label) for label in labels)
        or labels[-1].isdigit()  # an IP address or a number is not a domain
        or not domain.isascii()
    ):
        raise InvalidFilter(field, detail)
    return domain


def _datetime(value: object, field: str, *, round_up: bool) -> str:
    detail = (
        f"{field} must be an ISO 8601 date (2024-05-01, meaning midnight UTC) or date and "
        "time with Z or an offset (2024-05-01T13:00:00Z, 2024-05-01T15:00:00+02:00)."
    )
    if not isinstance(value, str):
        raise InvalidFilter(field, detail)
    try:
        if _DATE.fullmatch(value):
            moment = datetime.fromisoformat(value).replace(tzinfo=UTC)
        elif _DATETIME.fullmatch(value):
            moment = datetime.fromisoformat(value.upper().replace(",", ".")).astimezone(UTC)
        else:
            raise InvalidFilter(field, detail)
        if moment.microsecond:
            moment = moment.replace(microsecond=0)
            if round_up:
                moment += timedelta(seconds=1)
    except (ValueError, OverflowError):  # 2024-02-30, 25:00, or out of datetime's range
        raise InvalidFilter(field, detail) from None
    # Not strftime: %Y does not zero-pad years before 1000 on glibc.
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}Z"
    )


def with_upn_prefix(query: GraphQuery, prefix: str) -> GraphQuery:
    """The query narrowed to UPNs starting with prefix ("" leaves it as it is): how the listing
    is partitioned. startsWith on userPrincipalName needs no advanced query."""
    if not prefix:
        return query
    clause = f"startsWith(userPrincipalName,{_literal(prefix)})"
    text = f"{query.filter} and {clause}" if query.filter else clause
    return GraphQuery(text, query.advanced or query.scope is not None, query.scope)
