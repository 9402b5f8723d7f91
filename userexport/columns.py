"""The column catalogue: each CSV column, the Graph data it needs and how it is formatted."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

# Authentication-method lookups a column can need (Graph paths under /users/{id}/authentication).
PHONE_METHODS = "phoneMethods"
EMAIL_METHODS = "emailMethods"

User = Mapping[str, Any]
AuthData = Mapping[str, list[dict[str, Any]]]


@dataclass(frozen=True)
class Column:
    name: str
    select: tuple[str, ...]
    value: Callable[[User, AuthData], Any]
    lookup: str | None = None  # the authentication-method list this column reads, if any
    expand: str | None = None  # a Graph $expand this column needs, if any
    prop: str | None = None  # set when the value is just this user property (the fast path)


def _prop(name: str) -> Callable[[User, AuthData], Any]:
    return lambda user, _auth: user.get(name)


def _first(name: str) -> Callable[[User, AuthData], Any]:
    def value(user: User, _auth: AuthData) -> Any:
        items = user.get(name) or []
        return items[0] if items else None

    return value


def _joined(name: str) -> Callable[[User, AuthData], Any]:
    return lambda user, _auth: ";".join(user.get(name) or [])


def _alternate_phone(_user: User, auth: AuthData) -> Any:
    for method in auth.get(PHONE_METHODS) or []:
        if method.get("phoneType") == "alternateMobile":
            return method.get("phoneNumber")
    return None


def _auth_email(_user: User, auth: AuthData) -> Any:
    methods = auth.get(EMAIL_METHODS) or []
    return methods[0].get("emailAddress") if methods else None


def _same(name: str) -> Column:
    return Column(name, (name,), _prop(name), prop=name)


# The Entra admin center's "Download users" columns, in its order.
ADMIN_CENTER_COLUMNS: tuple[Column, ...] = (
    _same("userPrincipalName"),
    _same("displayName"),
    _same("surname"),
    _same("mail"),
    _same("givenName"),
    Column("objectId", ("id",), _prop("id"), prop="id"),
    _same("userType"),
    _same("jobTitle"),
    _same("department"),
    _same("accountEnabled"),
    _same("usageLocation"),
    _same("streetAddress"),
    _same("state"),
    _same("country"),
    Column("physicalDeliveryOfficeName", ("officeLocation",), _prop("officeLocation")),
    _same("city"),
    _same("postalCode"),
    Column("telephoneNumber", ("businessPhones",), _first("businessPhones")),
    Column("mobile", ("mobilePhone",), _prop("mobilePhone")),
    Column("authenticationAlternativePhoneNumber", (), _alternate_phone, lookup=PHONE_METHODS),
    Column("authenticationEmail", (), _auth_email, lookup=EMAIL_METHODS),
    Column("alternateEmailAddress", ("otherMails",), _joined("otherMails")),
    _same("ageGroup"),
    _same("consentProvidedForMinor"),
    _same("legalAgeGroupClassification"),
)

# User properties Graph returns on the list when $select-ed, exported under their own name.
_EXTRA_PROPERTIES = (
    "employeeId",
    "employeeType",
    "employeeHireDate",
    "companyName",
    "createdDateTime",
    "creationType",
    "externalUserState",
    "mailNickname",
    "preferredLanguage",
    "onPremisesSyncEnabled",
    "onPremisesSamAccountName",
    "onPremisesImmutableId",
    "onPremisesDistinguishedName",
    "onPremisesDomainName",
    "onPremisesUserPrincipalName",
    "onPremisesLastSyncDateTime",
    "passwordPolicies",
    "proxyAddresses",
    "businessPhones",
    "otherMails",
    "identities",
    "faxNumber",
    "officeLocation",
    "mobilePhone",
)


def _license_skus(user: User, _auth: AuthData) -> Any:
    return ";".join(str(lic.get("skuId")) for lic in user.get("assignedLicenses") or [])


def _extension_attribute(n: int) -> Column:
    def value(user: User, _auth: AuthData) -> Any:
        return (user.get("onPremisesExtensionAttributes") or {}).get(f"extensionAttribute{n}")

    return Column(
        f"onPremisesExtensionAttributes.extensionAttribute{n}",
        ("onPremisesExtensionAttributes",),
        value,
    )


CATALOGUE: dict[str, Column] = {c.name: c for c in ADMIN_CENTER_COLUMNS}
CATALOGUE.update({name: _same(name) for name in _EXTRA_PROPERTIES if name not in CATALOGUE})
CATALOGUE["assignedLicenses"] = Column("assignedLicenses", ("assignedLicenses",), _license_skus)
CATALOGUE.update({c.name: c for c in (_extension_attribute(n) for n in range(1, 16))})
CATALOGUE["manager"] = Column(
    "manager",
    (),
    lambda user, _auth: (user.get("manager") or {}).get("userPrincipalName"),
    expand="manager($select=id,userPrincipalName)",
)

DEFAULT_COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in ADMIN_CENTER_COLUMNS)


def resolve(names: list[str] | tuple[str, ...]) -> tuple[Column, ...]:
    """The columns for these names, in this order; raises KeyError naming an unknown one."""
    return tuple(CATALOGUE[name] for name in names)


def graph_select(columns: tuple[Column, ...]) -> list[str]:
    """The $select list for these columns, each property once, in first-use order; id and
    userPrincipalName always, so the errors file can name the user."""
    select = {"id": None, "userPrincipalName": None}
    for column in columns:
        select.update(dict.fromkeys(column.select))
    return list(select)


def graph_expand(columns: tuple[Column, ...]) -> list[str] | None:
    """The $expand list for these columns, or None when they need none."""
    return list(dict.fromkeys(c.expand for c in columns if c.expand)) or None


def lookups(columns: tuple[Column, ...]) -> tuple[str, ...]:
    """The authentication-method lists these columns read (none: no per-user requests)."""
    return tuple(dict.fromkeys(c.lookup for c in columns if c.lookup))


def cell(value: Any) -> str:
    """A Graph value as CSV text: null -> empty, booleans as True/False, complex as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, float)):
        return str(value)
    return orjson.dumps(value).decode()
