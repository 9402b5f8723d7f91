"""The column catalogue: each CSV column, the Graph data it needs and how it is formatted."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import orjson

from .licences import product_name

# Authentication-method lookups a column can need (Graph paths under /users/{id}/authentication).
PHONE_METHODS = "phoneMethods"
EMAIL_METHODS = "emailMethods"
# Every method of a user in one list: one request answers both authentication columns.
ALL_METHODS = "methods"
_METHOD_TYPES = {
    PHONE_METHODS: "#microsoft.graph.phoneAuthenticationMethod",
    EMAIL_METHODS: "#microsoft.graph.emailAuthenticationMethod",
}
SIGN_IN_ACTIVITY = "signInActivity"
# A user's row of the registration report (graph/registration.py), kept with its lookups.
REGISTRATION = "registrationDetails"
# Graph's value for a kind of sign-in that never happened (user-list example 11).
_NEVER = "0001-01-01T00:00:00Z"

# Or both UserAuthMethod-Phone.Read.All and UserAuthMethod-Email.Read.All (preflight.py).
_AUTH_PERMISSION = "UserAuthenticationMethod.Read.All"

User = Mapping[str, Any]
AuthData = Mapping[str, list[dict[str, Any]]]
AuthMethods = Mapping[str, AuthData]  # each user's AuthData, by user id
Value = Callable[[User, AuthData], Any]


@dataclass(frozen=True)
class ColumnContext:
    """What some columns need from the job: the tenant's SKU part numbers by SKU id (read once
    from /subscribedSkus) and the moment the export started (for daysSinceLastSignIn)."""

    skus: Mapping[str, str] = field(default_factory=dict)
    as_of: datetime | None = None


@dataclass(frozen=True)
class Column:
    name: str
    select: tuple[str, ...]
    value: Value
    lookup: str | None = None  # the authentication-method list this column reads, if any
    expand: str | None = None  # a Graph $expand this column needs, if any
    prop: str | None = None  # set when the value is just this user property (the fast path)
    bind: Callable[[ColumnContext], Value] | None = None  # the value, given the job's context
    permission: str = "User.Read.All"  # the Graph application permission it needs
    report: bool = False  # read from the registration report (REGISTRATION), not the listing


def _prop(name: str) -> Value:
    return lambda user, _auth: user.get(name)


def _first(name: str) -> Value:
    def value(user: User, _auth: AuthData) -> Any:
        items = user.get(name) or []
        return items[0] if items else None

    return value


def _joined(name: str) -> Value:
    return lambda user, _auth: ";".join(user.get(name) or [])


def _methods(auth: AuthData, lookup: str) -> list[dict[str, Any]]:
    """A user's methods of one kind: its own list, or the matching items of the whole list."""
    if lookup in auth:
        return auth[lookup] or []
    kind = _METHOD_TYPES[lookup]
    return [m for m in auth.get(ALL_METHODS) or [] if m.get("@odata.type") == kind]


def _alternate_phone(_user: User, auth: AuthData) -> Any:
    for method in _methods(auth, PHONE_METHODS):
        if method.get("phoneType") == "alternateMobile":
            return method.get("phoneNumber")
    return None


def _auth_email(_user: User, auth: AuthData) -> Any:
    methods = _methods(auth, EMAIL_METHODS)
    return methods[0].get("emailAddress") if methods else None


def _same(name: str, *, permission: str = "User.Read.All") -> Column:
    return Column(name, (name,), _prop(name), prop=name, permission=permission)


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
    Column(
        "authenticationAlternativePhoneNumber",
        (),
        _alternate_phone,
        lookup=PHONE_METHODS,
        permission=_AUTH_PERMISSION,
    ),
    Column(
        "authenticationEmail", (), _auth_email, lookup=EMAIL_METHODS, permission=_AUTH_PERMISSION
    ),
    Column("alternateEmailAddress", ("otherMails",), _joined("otherMails")),
    _same("ageGroup"),
    _same("consentProvidedForMinor"),
    _same("legalAgeGroupClassification"),
)

# User properties Graph returns on the list when $select-ed, exported under their own name;
# a complex one (identities, employeeOrgData...) whole, as compact JSON.
_EXTRA_PROPERTIES = (
    "employeeId",
    "employeeType",
    "employeeHireDate",
    "employeeOrgData",
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
    "onPremisesSecurityIdentifier",
    "onPremisesExtensionAttributes",
    "passwordPolicies",
    "lastPasswordChangeDateTime",
    "proxyAddresses",
    "businessPhones",
    "otherMails",
    "identities",
    "faxNumber",
    "officeLocation",
    "mobilePhone",
)


def _licence_ids(user: User, _auth: AuthData) -> Any:
    return ";".join(str(lic.get("skuId")) for lic in user.get("assignedLicenses") or [])


def _licence_names(
    named: Callable[[str], str | None] = lambda _sku: None,
) -> Callable[[ColumnContext], Value]:
    """Each assigned SKU by name, joined with `;`: `named`'s (product names, licences.py), else
    the tenant's part number (ENTERPRISEPACK, from /subscribedSkus), else its id."""

    def bind(context: ColumnContext) -> Value:
        skus = context.skus

        def value(user: User, _auth: AuthData) -> Any:
            ids = (str(lic.get("skuId")) for lic in user.get("assignedLicenses") or [])
            return ";".join(named(sku) or skus.get(sku, sku) for sku in ids)

        return value

    return bind


def _nested(prop: str, key: str) -> Value:
    return lambda user, _auth: (user.get(prop) or {}).get(key)


def _extension_attribute(n: int) -> Column:
    name = f"extensionAttribute{n}"
    return Column(
        f"onPremisesExtensionAttributes.{name}",
        ("onPremisesExtensionAttributes",),
        _nested("onPremisesExtensionAttributes", name),
    )


def _sign_in(key: str) -> Column:
    def value(user: User, _auth: AuthData) -> Any:
        return (user.get(SIGN_IN_ACTIVITY) or {}).get(key)

    return Column(key, (SIGN_IN_ACTIVITY,), value, permission="AuditLog.Read.All")


_SIGN_IN_KEYS = (
    "lastSignInDateTime",
    "lastNonInteractiveSignInDateTime",
    "lastSuccessfulSignInDateTime",
)


def last_successful_sign_in(user: User) -> datetime | None:
    """The user's last successful sign-in, where Graph has it. lastSignInDateTime counts
    failed attempts too ("whether the attempt was successful or not"), and
    lastSuccessfulSignInDateTime exists only since December 1, 2023 and "isn't backfilled"
    (signInActivity resource): a user without it had no successful sign-in Graph recorded."""
    text = (user.get(SIGN_IN_ACTIVITY) or {}).get("lastSuccessfulSignInDateTime")
    if not isinstance(text, str) or not text or text == _NEVER:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _days_since_sign_in(context: ColumnContext) -> Value:
    as_of = context.as_of

    def value(user: User, _auth: AuthData) -> Any:
        latest = last_successful_sign_in(user)
        if latest is None or as_of is None:
            return None
        return max(0, (as_of - latest).days)  # whole days, rounded down

    return value


CATALOGUE: dict[str, Column] = {c.name: c for c in ADMIN_CENTER_COLUMNS}
CATALOGUE.update({name: _same(name) for name in _EXTRA_PROPERTIES if name not in CATALOGUE})
# Readable by an app only with User-LifeCycleInfo.Read.All (user resource, employeeLeaveDateTime).
CATALOGUE["employeeLeaveDateTime"] = _same(
    "employeeLeaveDateTime", permission="User.Read.All, User-LifeCycleInfo.Read.All"
)
CATALOGUE["assignedLicenses"] = Column(
    "assignedLicenses",
    ("assignedLicenses",),
    _licence_ids,
    bind=_licence_names(),
    permission="User.Read.All, LicenseAssignment.Read.All",
)
CATALOGUE["assignedLicenseIds"] = Column("assignedLicenseIds", ("assignedLicenses",), _licence_ids)
CATALOGUE["assignedLicenseNames"] = Column(
    "assignedLicenseNames",
    ("assignedLicenses",),
    _licence_ids,
    bind=_licence_names(product_name),
    permission="User.Read.All, LicenseAssignment.Read.All",
)
CATALOGUE.update({c.name: c for c in (_extension_attribute(n) for n in range(1, 16))})
for _key in ("division", "costCenter"):
    CATALOGUE[f"employeeOrgData.{_key}"] = Column(
        f"employeeOrgData.{_key}", ("employeeOrgData",), _nested("employeeOrgData", _key)
    )
CATALOGUE.update({c.name: c for c in (_sign_in(key) for key in _SIGN_IN_KEYS)})
CATALOGUE["daysSinceLastSignIn"] = Column(
    "daysSinceLastSignIn",
    (SIGN_IN_ACTIVITY,),
    lambda _user, _auth: None,
    bind=_days_since_sign_in,
    permission="AuditLog.Read.All",
)
CATALOGUE[SIGN_IN_ACTIVITY] = _same(SIGN_IN_ACTIVITY, permission="AuditLog.Read.All")
CATALOGUE["manager"] = Column(
    "manager",
    (),
    lambda user, _auth: (user.get("manager") or {}).get("userPrincipalName"),
    expand="manager($select=id,userPrincipalName)",
)


def _registration(key: str) -> Column:
    """A property of the user's registration report row (userregistrationdetails.md, v1.0).
    The report leaves disabled users out: the listing's accountEnabled tells them apart from
    users the report has not caught up with yet (partition.py)."""

    def value(_user: User, auth: AuthData) -> Any:
        rows = auth.get(REGISTRATION) or [{}]
        found = rows[0].get(key)
        return ";".join(found) if isinstance(found, list) else found

    return Column(key, ("accountEnabled",), value, permission="AuditLog.Read.All", report=True)


# userRegistrationDetails' v1.0 properties (the report's lastUpdatedDateTime: when its row
# was last refreshed; the report is not live).
REGISTRATION_COLUMN_NAMES: tuple[str, ...] = (
    "isMfaRegistered",
    "isMfaCapable",
    "isSsprRegistered",
    "isSsprCapable",
    "isPasswordlessCapable",
    "methodsRegistered",
    "userPreferredMethodForSecondaryAuthentication",
    "systemPreferredAuthenticationMethods",
    "isSystemPreferredAuthenticationMethodEnabled",
    "isAdmin",
    "lastUpdatedDateTime",
)
CATALOGUE.update({name: _registration(name) for name in REGISTRATION_COLUMN_NAMES})

DEFAULT_COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in ADMIN_CENTER_COLUMNS)
# The attributes the admin center's "Download users (Preview)" adds to the list view's columns.
PREVIEW_COLUMN_NAMES: tuple[str, ...] = (
    *DEFAULT_COLUMN_NAMES,
    "assignedLicenses",
    "companyName",
    "createdDateTime",
    "creationType",
    "employeeId",
    "employeeType",
    "employeeHireDate",
    "employeeLeaveDateTime",
    "employeeOrgData",
    "externalUserState",
    "identities",
    "lastPasswordChangeDateTime",
    "lastSignInDateTime",
    "lastNonInteractiveSignInDateTime",
    "mailNickname",
    "onPremisesDistinguishedName",
    "onPremisesDomainName",
    "onPremisesExtensionAttributes",
    "onPremisesImmutableId",
    "onPremisesLastSyncDateTime",
    "onPremisesSamAccountName",
    "onPremisesSecurityIdentifier",
    "onPremisesSyncEnabled",
    "onPremisesUserPrincipalName",
    "passwordPolicies",
    "preferredLanguage",
    "proxyAddresses",
)
# Who the user is, then how they registered for MFA and self-service password reset.
MFA_COLUMN_NAMES: tuple[str, ...] = (
    "userPrincipalName",
    "displayName",
    "objectId",
    "accountEnabled",
    "userType",
    *REGISTRATION_COLUMN_NAMES,
)
PRESETS: dict[str, tuple[str, ...]] = {
    "adminCenter": DEFAULT_COLUMN_NAMES,
    "preview": PREVIEW_COLUMN_NAMES,
    "mfa": MFA_COLUMN_NAMES,
    "all": tuple(CATALOGUE),
}


def resolve(
    names: list[str] | tuple[str, ...], context: ColumnContext | None = None
) -> tuple[Column, ...]:
    """The columns for these names, in this order, their values bound to the job's context
    when given; raises KeyError naming an unknown one."""
    columns = tuple(CATALOGUE[name] for name in names)
    if context is None:
        return columns
    return tuple(replace(c, value=c.bind(context)) if c.bind else c for c in columns)


def graph_select(columns: tuple[Column, ...], *, sign_in: bool = True) -> list[str]:
    """The $select list for these columns, each property once, in first-use order; id and
    userPrincipalName always, so the errors file can name the user. Without `sign_in`,
    signInActivity is left out (Graph refused it): its columns stay, empty."""
    select = {"id": None, "userPrincipalName": None}
    for column in columns:
        select.update(dict.fromkeys(column.select))
    if not sign_in:
        select.pop(SIGN_IN_ACTIVITY, None)
    return list(select)


def graph_expand(columns: tuple[Column, ...]) -> list[str] | None:
    """The $expand list for these columns, or None when they need none."""
    return list(dict.fromkeys(c.expand for c in columns if c.expand)) or None


def lookups(columns: tuple[Column, ...]) -> tuple[str, ...]:
    """The authentication-method lists these columns read (none: no per-user requests): the
    whole methods list when they need both phones and emails, one request instead of two."""
    needed = tuple(dict.fromkeys(c.lookup for c in columns if c.lookup))
    return (ALL_METHODS,) if len(needed) > 1 else needed


def reads_report(columns: tuple[Column, ...]) -> bool:
    """Whether these columns read the registration report."""
    return any(c.report for c in columns)


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
