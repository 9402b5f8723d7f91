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
        "employeeLeaveDateTime",
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

# microsoft.graph.group properties the simulator serves (GET /groups/{id}): the ones a tenant
# file's group line may hold; the others read as null. DEFAULT_GROUP_SELECT is what GET
# answers without $select.
DEFAULT_GROUP_SELECT: tuple[str, ...] = (
    "id",
    "deletedDateTime",
    "classification",
    "createdDateTime",
    "description",
    "displayName",
    "expirationDateTime",
    "groupTypes",
    "isAssignableToRole",
    "mail",
    "mailEnabled",
    "mailNickname",
    "membershipRule",
    "membershipRuleProcessingState",
    "onPremisesSyncEnabled",
    "preferredDataLocation",
    "proxyAddresses",
    "renewedDateTime",
    "securityEnabled",
    "securityIdentifier",
    "visibility",
)
GROUP_PROPERTIES: frozenset[str] = frozenset(DEFAULT_GROUP_SELECT)  # Graph's default: all of them
# microsoft.graph.administrativeUnit (GET /directory/administrativeUnits/{id}).
DEFAULT_AU_SELECT: tuple[str, ...] = (
    "id",
    "deletedDateTime",
    "displayName",
    "description",
    "isMemberManagementRestricted",
    "membershipRule",
    "membershipRuleProcessingState",
    "membershipType",
    "visibility",
)
AU_PROPERTIES: frozenset[str] = frozenset(DEFAULT_AU_SELECT)
# microsoft.graph.subscribedSku (GET /subscribedSkus), in the order Graph prints them.
SKU_PROPERTIES: tuple[str, ...] = (
    "accountName",
    "accountId",
    "appliesTo",
    "capabilityStatus",
    "consumedUnits",
    "id",
    "skuId",
    "skuPartNumber",
    "subscriptionIds",
    "prepaidUnits",
    "servicePlans",
)
