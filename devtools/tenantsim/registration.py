"""GET /reports/authenticationMethods/userRegistrationDetails: the registration report, derived
from each user's own authentication methods so that it and the methods APIs agree.

As Microsoft documents it (authenticationmethodsroot-list-userregistrationdetails.md and
userregistrationdetails.md in microsoft-graph-docs-contrib; entra-docs
howto-authentication-methods-activity.md):
- application permission AuditLog.Read.All (else 403 Authentication_MSGraphPermissionMissing),
  and a tenant with Entra ID P1/P2 (else 403 Authentication_RequestFromNonPremiumTenantOrB2CTenant,
  reported for this API in microsoft-graph-docs-contrib #8777);
- "This method doesn't work for disabled users": they are left out;
- `$filter` on userPrincipalName with `eq` or `startswith()` (case-insensitive), paged with
  `@odata.nextLink` (the page size is not documented: 1000 here, as users report);
- the report is not live ("a latency of up to a few hours"): every row carries the report's
  time, REPORT_TIME, as its lastUpdatedDateTime;
- it counts against the identity and access reports limit, the same bucket as authentication
  methods reads (throttling-limits.md: five requests per 10 seconds per app per tenant).
"""

from __future__ import annotations

import re
from typing import Any

from .generator import SIGNIN_END, _iso

PATH = ("reports", "authenticationmethods", "userregistrationdetails")
PAGE_SIZE = 1000
REPORT_TIME = _iso(SIGNIN_END - 3 * 3600)  # refreshed three hours before the tenant's "now"
REPORT_ROLE = "AuditLog.Read.All"

_TYPE = "#microsoft.graph."
# methodsRegistered of each method type (userregistrationdetails.md: mobilePhone, email, fido2;
# the list example: microsoftAuthenticatorPush, softwareOneTimePasscode).
_PHONES = {
    "mobile": "mobilePhone",
    "alternateMobile": "alternateMobilePhone",
    "office": "officePhone",
}
_REGISTERED = {
    "emailAuthenticationMethod": "email",
    "fido2AuthenticationMethod": "fido2",
    "microsoftAuthenticatorAuthenticationMethod": "microsoftAuthenticatorPush",
    "windowsHelloForBusinessAuthenticationMethod": "windowsHelloForBusiness",
    "softwareOathAuthenticationMethod": "softwareOneTimePasscode",
    "temporaryAccessPassAuthenticationMethod": "temporaryAccessPass",
    "platformCredentialAuthenticationMethod": "macOsPlatformCredential",
}
# Strong second factors (isMfaRegistered), passwordless ones (isPasswordlessCapable), and what
# self-service password reset takes (isSsprRegistered: one of these is enough here).
_MFA = {
    "mobilePhone",
    "alternateMobilePhone",
    "officePhone",
    "microsoftAuthenticatorPush",
    "fido2",
    "windowsHelloForBusiness",
    "softwareOneTimePasscode",
    "macOsPlatformCredential",
}
_PASSWORDLESS = {"fido2", "windowsHelloForBusiness", "macOsPlatformCredential"}
_SSPR = {
    "mobilePhone",
    "alternateMobilePhone",
    "officePhone",
    "email",
    "microsoftAuthenticatorPush",
}
# The system-preferred method of a user's registered ones, strongest first
# (systemPreferredAuthenticationMethods: push, oath, voiceMobile, ..., sms).
_SYSTEM_ORDER = (
    ("microsoftAuthenticatorPush", "push"),
    ("softwareOneTimePasscode", "oath"),
    ("mobilePhone", "sms"),
    ("alternateMobilePhone", "voiceAlternateMobile"),
    ("officePhone", "voiceOffice"),
)
_FILTER = re.compile(
    r"\s*(?:startswith\(\s*userPrincipalName\s*,\s*'((?:[^']|'')*)'\s*\)"
    r"|userPrincipalName\s+eq\s+'((?:[^']|'')*)')\s*",
    re.IGNORECASE,
)


def methods_registered(user: dict[str, Any]) -> list[str]:
    """The report's methodsRegistered of a user, from the methods the methods APIs give."""
    auth = user.get("authentication") or {}
    found: list[str] = []
    for phone in auth.get("phoneMethods") or []:
        found.append(_PHONES.get(phone.get("phoneType"), "mobilePhone"))
    for method in auth.get("methods") or []:
        kind = str(method.get("@odata.type", "")).removeprefix(_TYPE)
        if kind in _REGISTERED:
            found.append(_REGISTERED[kind])
    if auth.get("emailMethods") and "email" not in found:
        found.append("email")
    return list(dict.fromkeys(found))


def details(user: dict[str, Any]) -> dict[str, Any] | None:
    """The user's row of the report; None for a disabled user (the report leaves them out)."""
    if user.get("accountEnabled") is False:
        return None
    admin = int(user["id"][:2], 16) < 6  # about 2 % hold an admin role (no roles simulated)
    registered = methods_registered(user)
    system = [name for method, name in _SYSTEM_ORDER if method in registered][:1]
    mfa = bool(_MFA & set(registered))
    return {
        "id": user["id"],
        "userPrincipalName": user.get("userPrincipalName"),
        "userDisplayName": user.get("displayName"),
        "userType": "guest" if user.get("userType") == "Guest" else "member",
        "isAdmin": admin,
        "isSsprRegistered": bool(_SSPR & set(registered)),
        "isSsprEnabled": True,
        "isSsprCapable": bool(_SSPR & set(registered)),
        "isMfaRegistered": mfa,
        "isMfaCapable": mfa,
        "isPasswordlessCapable": bool(_PASSWORDLESS & set(registered)),
        "isSystemPreferredAuthenticationMethodEnabled": True,
        "systemPreferredAuthenticationMethods": system,
        "userPreferredMethodForSecondaryAuthentication": system[0] if system else "",
        "methodsRegistered": registered,
        "lastUpdatedDateTime": REPORT_TIME,
    }


def upn_filter(text: str | None) -> tuple[str, bool] | None:
    """`startswith(userPrincipalName,'p')` -> ('p', True); `userPrincipalName eq 'u'` ->
    ('u', False); None without a filter. ValueError for any other filter."""
    if text is None:
        return None
    match = _FILTER.fullmatch(text)
    if match is None:
        raise ValueError(text)
    prefix, exact = match.groups()
    if prefix is not None:
        return prefix.replace("''", "'"), True
    return (exact or "").replace("''", "'"), False
