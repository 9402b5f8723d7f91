"""Names of the Graph v1.0 user properties the simulator knows, and Graph's default set."""

from __future__ import annotations

# Graph's default property set for GET /users (user-list.md), in the order Graph prints them.
DEFAULT_SELECT: tuple[str, ...] = (
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
)

# Every structural property of microsoft.graph.user (user.resource.json); properties the
# simulator does not store are answered as null when selected, like an unset property.
USER_PROPERTIES: frozenset[str] = frozenset(
    (
        "aboutMe",
        "accountEnabled",
        "ageGroup",
        "assignedLicenses",
        "assignedPlans",
        "birthday",
        "businessPhones",
        "city",
        "companyName",
        "consentProvidedForMinor",
        "country",
        "createdDateTime",
        "creationType",
        "department",
        "displayName",
        "employeeHireDate",
        "employeeId",
        "employeeOrgData",
        "employeeType",
        "externalUserState",
        "externalUserStateChangeDateTime",
        "faxNumber",
        "givenName",
        "hireDate",
        "id",
        "identities",
        "imAddresses",
        "interests",
        "isResourceAccount",
        "jobTitle",
        "legalAgeGroupClassification",
        "licenseAssignmentStates",
        "lastPasswordChangeDateTime",
        "mail",
        "mailboxSettings",
        "mailNickname",
        "mobilePhone",
        "mySite",
        "officeLocation",
        "onPremisesDistinguishedName",
        "onPremisesDomainName",
        "onPremisesExtensionAttributes",
        "onPremisesImmutableId",
        "onPremisesLastSyncDateTime",
        "onPremisesProvisioningErrors",
        "onPremisesSamAccountName",
        "onPremisesSecurityIdentifier",
        "onPremisesSyncEnabled",
        "onPremisesUserPrincipalName",
        "otherMails",
        "passwordPolicies",
        "passwordProfile",
        "pastProjects",
        "postalCode",
        "preferredDataLocation",
        "preferredLanguage",
        "preferredName",
        "provisionedPlans",
        "proxyAddresses",
        "responsibilities",
        "schools",
        "securityIdentifier",
        "showInAddressList",
        "signInActivity",
        "signInSessionsValidFromDateTime",
        "skills",
        "state",
        "streetAddress",
        "surname",
        "usageLocation",
        "userPrincipalName",
        "userType",
        "deletedDateTime",
    )
)

# Only returned by GET /users/{id}; Graph answers 501 when they are selected on the collection.
SINGLE_USER_ONLY: frozenset[str] = frozenset(
    (
        "aboutMe",
        "birthday",
        "hireDate",
        "interests",
        "mySite",
        "pastProjects",
        "preferredName",
        "responsibilities",
        "schools",
        "skills",
        "mailboxSettings",
    )
)

# Keys of a tenant-file line that are not user properties but are kept.
EXTRA_KEYS: frozenset[str] = frozenset({"authentication", "manager", "_sim"})

# Navigation properties that $expand accepts.
EXPANDABLE: frozenset[str] = frozenset({"manager"})
