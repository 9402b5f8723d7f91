"""Deterministic synthetic tenant: each user is a pure function of (seed, index).

Nothing is materialised: one keyed BLAKE2b digest per user supplies every random choice,
and the values come from small precomputed pools, so a million-user tenant costs no memory
and generation stays fast (no random.Random per user). signInActivity, the group traits and
the authentication methods beyond phones and email (the "additions" at the end) draw from
digests with other personalisations, so the original values stay byte-identical; listings
that need none of them use generate_user_lite.

A ShapedSeed (SimConfig's --phone-email-share) is the same tenant with another share of users
holding a phone or email authentication method; a plain int seed gives the tenant as it
always was.
"""

from __future__ import annotations

import base64
import calendar
import functools
import hashlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

TENANT_DOMAIN = "fabrikam.onmicrosoft.com"
VANITY_DOMAIN = "fabrikam.com"
B2C_DOMAIN = "fabrikamb2c.onmicrosoft.com"

# Fixed ids Graph uses for the three phone method types (phoneauthenticationmethod.md).
PHONE_METHOD_IDS = {
    "mobile": "3179e48a-750b-4051-897c-87b9720928f7",
    "alternateMobile": "b6332ec1-7057-4abe-9331-3d72feddfe41",
    "office": "e37fc753-ff3b-4958-9484-eaa9425c82bc",
}
EMAIL_METHOD_ID = "3ddfcfc8-9383-446f-83cc-3ab9be4be18f"

# (display form, ASCII alias form): UPNs and mail must not contain accents.
FIRST_NAMES: tuple[tuple[str, str], ...] = (
    ("Adele", "adele"),
    ("Alex", "alex"),
    ("Megan", "megan"),
    ("Lynne", "lynne"),
    ("Grady", "grady"),
    ("Diego", "diego"),
    ("Isaiah", "isaiah"),
    ("Johanna", "johanna"),
    ("Lee", "lee"),
    ("Miriam", "miriam"),
    ("Nestor", "nestor"),
    ("Patti", "patti"),
    ("Pradeep", "pradeep"),
    ("Zoë", "zoe"),
    ("José", "jose"),
    ("François", "francois"),
    ("Łukasz", "lukasz"),
    ("Søren", "soren"),
    ("Rene\u0301e", "renee"),  # combining acute accent, not the precomposed é
    ("美咲", "misaki"),
    ("太郎", "taro"),
    ("지민", "jimin"),
    ("محمد", "mohammed"),
    ("فاطمة", "fatima"),
    ("דוד", "david"),
    ("Анна", "anna"),
    ("Siobhán", "siobhan"),
    ("Jane", "jane"),
)
LAST_NAMES: tuple[tuple[str, str], ...] = (
    ("Vance", "vance"),
    ("Wilber", "wilber"),
    ("Bowen", "bowen"),
    ("Robbins", "robbins"),
    ("Archie", "archie"),
    ("Siciliani", "siciliani"),
    ("Henderson", "henderson"),
    ("Lauer", "lauer"),
    ("Gu", "gu"),
    ("Zimmerman", "zimmerman"),
    ("Fernandez", "fernandez"),
    ("Gupta", "gupta"),
    ("O'Brien", "obrien"),
    ("Müller", "muller"),
    ("García", "garcia"),
    ("Nguyễn", "nguyen"),
    ("山田", "yamada"),
    ("김", "kim"),
    ("الحسن", "alhassan"),
    ("כהן", "cohen"),
    ("Иванов", "ivanov"),
    ("Smith-Jones", "smithjones"),
    ("van der Berg", "vanderberg"),
)
JOB_TITLES: tuple[str | None, ...] = (
    "Engineer",
    "Senior Engineer",
    "-Engineer",
    "Product Manager",
    "Designer",
    "Director, Sales",
    'Marketing "Guru"',
    "Accountant",
    "Support Agent",
    "@home",
    "=1+1",
    "Consultant\nPart-time",
    "Analyst\r\nLevel 2",
    "Tech\tLead",
    "エンジニア",
    "مهندس",
    "Chef 👩‍🍳",
    None,
    None,
)
DEPARTMENTS: tuple[str | None, ...] = (
    "Sales",
    "Marketing",
    "Engineering",
    "Finance",
    "Human Resources",
    "Legal",
    "Operations",
    "IT",
    "Research, Development",
    'Legal "Compliance"',
    "=SUM(A1)",
    "Ops\nNight shift",
    "Support\r\nTier 2",
    "Data\tScience",
    "+Growth",
    "-Overhead",
    "@home",
    "研究開発",
    "المبيعات",
    None,
)
COMPANIES: tuple[str | None, ...] = (
    "Fabrikam",
    "Fabrikam, Inc.",
    "Contoso Ltd.",
    'Northwind "Traders"',
    "Adatum",
    "株式会社ファブリカム",
    None,
)
OFFICES: tuple[str | None, ...] = (
    "Building 1",
    "18/2111",
    "Remote",
    "@home",
    "Tokyo 東京",
    "Dubai دبي",
    None,
)
# city, state, country, postalCode, usageLocation, phone prefix
LOCATIONS: tuple[tuple[str | None, str | None, str, str | None, str, str], ...] = (
    ("Redmond", "WA", "United States", "98052", "US", "+1 425"),
    ("Seattle", "WA", "United States", "98101", "US", "+1 206"),
    ("New York", "NY", "United States", "10001", "US", "+1 212"),
    ("London", None, "United Kingdom", "SW1A 1AA", "GB", "+44 20"),
    ("Paris", "Île-de-France", "France", "75001", "FR", "+33 1"),
    ("München", "Bayern", "Germany", "80331", "DE", "+49 89"),
    ("東京", "東京都", "Japan", "100-0001", "JP", "+81 3"),
    ("Tel Aviv", "Tel Aviv", "Israel", "6100000", "IL", "+972 3"),
    ("Dubai", "Dubai", "United Arab Emirates", None, "AE", "+971 4"),
    ("São Paulo", "SP", "Brazil", "01000-000", "BR", "+55 11"),
    ("Sydney", "NSW", "Australia", "2000", "AU", "+61 2"),
    (None, None, "India", "560001", "IN", "+91 80"),
)
STREETS: tuple[str, ...] = (
    "Microsoft Way",
    "Main St",
    "1st Ave, Suite 200",
    '"Old" Mill Rd',
    "Rue de Rivoli",
    "Hauptstraße",
    "中央通り",
    "Apt 5\nBuilding B",
)
EXTERNAL_DOMAINS: tuple[str, ...] = (
    "contoso.com",
    "adatum.com",
    "northwind.example",
    "outlook.com",
    "gmail.com",
)
LANGUAGES: tuple[str | None, ...] = (
    "en-US",
    "en-GB",
    "fr-FR",
    "de-DE",
    "ja-JP",
    "he-IL",
    "ar-AE",
    "pt-BR",
    None,
)
EMPLOYEE_TYPES: tuple[str | None, ...] = ("Employee", "Contractor", "Intern", "Vendor", None)
SKU_IDS: tuple[str, ...] = (
    "cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46",
    "06ebc4ee-1bb5-47dd-8120-11324bc54e06",
    "05e9a617-0261-4cee-bb44-138d3ef5d965",
    "f30db892-07e9-47e9-837c-80727f46fd3d",
)
EXTENSION_VALUES: tuple[str | None, ...] = ("CC-1001", "CC-2002", "=cmd|' /C calc'!A0", "a,b", None)
AGE_GROUPS: tuple[str | None, ...] = ("Minor", "NotAdult", "Adult", None)
CONSENTS: tuple[str | None, ...] = ("Granted", "Denied", "NotRequired", None)
_LEGAL_MINOR = {
    "Granted": "MinorWithParentalConsent",
    "Denied": "MinorWithoutParentalConsent",
    "NotRequired": "MinorNoParentalConsentRequired",
    None: "MinorWithoutParentalConsent",
}
_EXT_KEYS = tuple(f"extensionAttribute{i}" for i in range(1, 16))
_CREATED_BASE = 1325376000  # 2012-01-01T00:00:00Z
_CREATED_SPAN = 13 * 365 * 86400
_INDEX_IN_UPN = re.compile(r"\.(\d+)[@_]")
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-([0-9a-f]{12})")
MANAGER_SHARE = 0.7
_M48 = (1 << 48) - 1
_MUL = 0x9E3779B97F4B & _M48 | 1
_MUL_INV = pow(_MUL, -1, 1 << 48)


@dataclass(frozen=True)
class _SeedContext:
    key: bytes
    mask: int
    tenant_id: str


@functools.lru_cache(maxsize=16)
def _context(seed: int) -> _SeedContext:
    base = hashlib.blake2b(f"tenantsim:{seed}".encode(), digest_size=32).digest()
    mask = int.from_bytes(base[16:22], "big")
    t = base[22:32].hex() + base[0:6].hex()
    tenant_id = f"{t[0:8]}-{t[8:12]}-4{t[13:16]}-a{t[17:20]}-{t[20:32]}"
    return _SeedContext(key=base[:16], mask=mask, tenant_id=tenant_id)


def tenant_id_for_seed(seed: int) -> str:
    """The deterministic tenant id of a generated tenant."""
    return _context(seed).tenant_id


def _digest(ctx: _SeedContext, index: int) -> bytes:
    return hashlib.blake2b(index.to_bytes(8, "little"), digest_size=64, key=ctx.key).digest()


def _user_id(ctx: _SeedContext, index: int, d: bytes) -> str:
    # The index, scrambled by a 48-bit bijection, is the last group: an id maps back to
    # its user in O(1) without any index of ids.
    h = d[:11].hex()
    tail = ((index * _MUL) & _M48) ^ ctx.mask
    return f"{h[0:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[d[8] & 3]}{h[19:22]}-{tail:012x}"


def user_id(seed: int, index: int) -> str:
    """The id of generated user `index` without generating the rest of it."""
    ctx = _context(seed)
    return _user_id(ctx, index, _digest(ctx, index))


def candidate_indexes(seed: int, key: str) -> list[int]:
    """Indexes a user key (id or userPrincipalName) may denote; callers verify the match."""
    ctx = _context(seed)
    out: list[int] = []
    low = key.lower()
    for m in _GUID.finditer(low):
        out.append(((int(m.group(1), 16) ^ ctx.mask) * _MUL_INV) & _M48)
    for m in _INDEX_IN_UPN.finditer(low):
        out.append(int(m.group(1)))
    return out


class ShapedSeed(int):
    """A tenant seed that also says which share of the users have a phone or email
    authentication method (`phone_email_share`, 0..1). It is the seed's tenant in every other
    respect (the same users, ids, tenant id, directory and other methods; str() and f-strings
    give the plain number), but compares and hashes apart from the plain seed and from other
    shares, so caches keyed by seed keep the tenants apart.

    Which users have them: in every block of PHONE_EMAIL_BLOCK users by index (0-99,
    100-199, ...), exactly as many as the share gives, counted cumulatively (users 0..100k-1
    hold floor(share x 100k), the share rounded to millionths), the block's users with the
    lowest keyed BLAKE2b digest of a personalisation of their own: a pure function of (seed,
    share, index), whatever the tenant's size. A chosen user keeps the phones and email it has
    with the plain seed; one that has none there gets phones drawn from the same bytes. The
    others have neither (their other methods stay)."""

    phone_email_share: float

    def __new__(cls, seed: int, phone_email_share: float) -> ShapedSeed:
        if not 0.0 <= phone_email_share <= 1.0:
            raise ValueError("phone_email_share must be within 0..1")
        shaped = super().__new__(cls, seed)
        shaped.phone_email_share = float(phone_email_share)
        return shaped

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, int):
            return NotImplemented
        share = getattr(other, "phone_email_share", None)
        return int(self) == int(other) and share == self.phone_email_share

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash((int(self), self.phone_email_share))

    def __getnewargs__(self) -> tuple[int, float]:  # pickle, copy
        return int(self), self.phone_email_share


PHONE_EMAIL_BLOCK = 100
_SHARE_PERSON = b"tenantsim-share"
_PER_MILLION = 1_000_000


def _phone_email_share(seed: int) -> float | None:
    """The seed's share of users with a phone or email method; None: the generator's own."""
    return seed.phone_email_share if isinstance(seed, ShapedSeed) else None


@functools.lru_cache(maxsize=64)
def _phone_email_block(key: bytes, block: int, per_million: int) -> frozenset[int]:
    """The offsets in block `block` of the users who have a phone or email method."""
    size = PHONE_EMAIL_BLOCK
    start = block * size
    chosen = ((start + size) * per_million) // _PER_MILLION - (start * per_million) // _PER_MILLION
    ranked = sorted(
        range(size),
        key=lambda k: hashlib.blake2b(
            (start + k).to_bytes(8, "little"), digest_size=8, key=key, person=_SHARE_PERSON
        ).digest(),
    )
    return frozenset(ranked[:chosen])


def has_phone_or_email(seed: int, index: int) -> bool:
    """Whether generated user `index` of tenant `seed` has a phone or email authentication
    method (without generating the user)."""
    ctx = _context(seed)
    share = _phone_email_share(seed)
    if share is None:
        d = _digest(ctx, index)
        return d[46] < 150 or d[49] < 80
    return _chosen(ctx, index, share)


def _chosen(ctx: _SeedContext, index: int, share: float) -> bool:
    block, offset = divmod(index, PHONE_EMAIL_BLOCK)
    per_million = round(share * _PER_MILLION)
    return offset in _phone_email_block(ctx.key, block, per_million)


def generate_user(seed: int, index: int) -> dict[str, Any]:
    """The full user `index` of tenant `seed`: with "authentication" (phoneMethods,
    emailMethods and the full "methods" list, a password for everyone), "manager" if any and
    "signInActivity" unless the user never signed in. A ShapedSeed sets who has phone or
    email methods."""
    ctx = _context(seed)
    d = _digest(ctx, index)
    user = _base_user(ctx, index, d, _phone_email_share(seed))
    _add_extras(ctx, index, d, user)
    return user


def generate_user_lite(seed: int, index: int) -> dict[str, Any]:
    """User `index` without signInActivity and without the "methods" list: what listings,
    filters and scans read (they never need those), about a third cheaper to produce."""
    ctx = _context(seed)
    return _base_user(ctx, index, _digest(ctx, index), _phone_email_share(seed))


def _base_user(
    ctx: _SeedContext, index: int, d: bytes, phone_email_share: float | None = None
) -> dict[str, Any]:
    # Every value here comes from the digest `d` exactly as before signInActivity and the
    # other additions existed: those draw from digests of their own (_extra_digest).
    uid = _user_id(ctx, index, d)
    kind = d[11]
    first, fa = FIRST_NAMES[d[12] % len(FIRST_NAMES)]
    last, la = LAST_NAMES[d[13] % len(LAST_NAMES)]
    nameless = d[14] < 6
    if nameless:
        given: str | None = None
        surname: str | None = None
        display: str | None = None
        alias = f"user.{index}"
    else:
        given, surname = first, last
        alias = f"{fa}.{la}.{index}"
        v = d[14]
        if v < 14:
            display = f"{first} {last} 🚀"
        elif v < 22:
            display = f"{last}, {first}"
        elif v < 28:
            display = f'{first} "{fa[:3]}" {last}'
        elif v < 31:
            display = f"{first}\n{last}"
        elif v < 34:
            display = f"{first}\t{last}"
        elif v < 36:
            display = f"={first}+{last}"
        else:
            display = f"{first} {last}"

    loc = LOCATIONS[d[20] % len(LOCATIONS)]
    prefix = loc[5]
    if kind < 205:
        user_type = "Member"
        domain = VANITY_DOMAIN if d[50] & 1 else TENANT_DOMAIN
        upn = f"{alias}@{domain}"
        mail = None if d[56] < 12 else f"{alias}@{VANITY_DOMAIN}"
        nickname = alias
        creation_type = None
        ext_state = None
        identities = [
            {"signInType": "userPrincipalName", "issuer": TENANT_DOMAIN, "issuerAssignedId": upn}
        ]
        proxies = [f"SMTP:{mail}", f"smtp:{alias}@{TENANT_DOMAIN}"] if mail else []
        synced = d[36] < 110
    elif kind < 240:
        user_type = "Guest"
        ext = EXTERNAL_DOMAINS[d[50] % len(EXTERNAL_DOMAINS)]
        mail = f"{alias}@{ext}"
        nickname = f"{alias}_{ext}#EXT#"
        upn = f"{nickname}@{TENANT_DOMAIN}"
        creation_type = "Invitation"
        ext_state = "PendingAcceptance" if d[51] < 50 else "Accepted"
        identities = [{"signInType": "federated", "issuer": ext, "issuerAssignedId": None}]
        proxies = [f"SMTP:{mail}"]
        synced = False
    else:
        # B2C-style local account: objectId@domain UPN, the real address only in identities.
        user_type = "Member"
        ext = EXTERNAL_DOMAINS[d[50] % len(EXTERNAL_DOMAINS)]
        upn = f"{uid}@{B2C_DOMAIN}"
        mail = None
        nickname = uid[:8]
        creation_type = "LocalAccount"
        ext_state = None
        identities = [
            {
                "signInType": "emailAddress",
                "issuer": B2C_DOMAIN,
                "issuerAssignedId": f"{alias}@{ext}",
            },
            {"signInType": "userPrincipalName", "issuer": B2C_DOMAIN, "issuerAssignedId": upn},
        ]
        proxies = []
        synced = False

    n_other = d[29] % 5
    if n_other > 3:
        n_other = 0
    other_mails = [f"{alias}.{k}@{EXTERNAL_DOMAINS[(d[50] + k) % 5]}" for k in range(n_other)]
    if user_type != "Member" or creation_type is not None:
        other_mails = other_mails or [mail or f"{alias}@outlook.com"]

    ag = d[30]
    if ag < 10:
        age_group: str | None = "Minor"
    elif ag < 18:
        age_group = "NotAdult"
    elif ag < 30:
        age_group = "Adult"
    else:
        age_group = None
    consent = CONSENTS[d[31] % 4] if age_group else None
    if age_group == "Minor":
        legal: str | None = _LEGAL_MINOR[consent]
    else:
        legal = age_group

    phone_n = int.from_bytes(d[24:26], "little") % 10000
    mobile_n = int.from_bytes(d[27:29], "little") % 10000
    created = _CREATED_BASE + int.from_bytes(d[32:36], "little") % _CREATED_SPAN
    sku = d[38] % len(SKU_IDS)
    n_lic = d[37] % 3
    ext_attrs = dict.fromkeys(_EXT_KEYS)
    if d[39] < 128:
        ext_attrs["extensionAttribute1"] = EXTENSION_VALUES[d[39] % len(EXTENSION_VALUES)]
        ext_attrs["extensionAttribute15"] = EXTENSION_VALUES[d[40] % len(EXTENSION_VALUES)]
    sparse = d[57] < 10  # a few users with nearly everything null

    user: dict[str, Any] = {
        "id": uid,
        "userPrincipalName": upn,
        "displayName": display,
        "givenName": given,
        "surname": surname,
        "mail": mail,
        "mailNickname": nickname,
        "userType": user_type,
        "accountEnabled": d[15] >= 18,
        "jobTitle": None if sparse else JOB_TITLES[d[16] % len(JOB_TITLES)],
        "department": None if sparse else DEPARTMENTS[d[17] % len(DEPARTMENTS)],
        "companyName": COMPANIES[d[18] % len(COMPANIES)],
        "officeLocation": None if sparse else OFFICES[d[19] % len(OFFICES)],
        "streetAddress": None if sparse else f"{d[21] + 1} {STREETS[d[22] % len(STREETS)]}",
        "city": loc[0],
        "state": loc[1],
        "country": None if sparse else loc[2],
        "postalCode": loc[3],
        "usageLocation": loc[4],
        "businessPhones": [] if d[23] < 70 else [f"{prefix} 555 {phone_n:04d}"],
        "mobilePhone": None if d[26] < 100 else f"{prefix} 555 {mobile_n:04d}",
        "otherMails": other_mails,
        "ageGroup": age_group,
        "consentProvidedForMinor": consent,
        "legalAgeGroupClassification": legal,
        "employeeId": None if d[52] < 60 else str(100000 + int.from_bytes(d[53:56], "little")),
        "employeeType": EMPLOYEE_TYPES[d[41] % len(EMPLOYEE_TYPES)],
        "createdDateTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created)),
        "creationType": creation_type,
        "externalUserState": ext_state,
        "onPremisesSyncEnabled": True if synced else None,
        "onPremisesSamAccountName": f"{la[:12]}{index}" if synced else None,
        "proxyAddresses": proxies,
        "assignedLicenses": [
            {"disabledPlans": [], "skuId": SKU_IDS[(sku + k) % len(SKU_IDS)]} for k in range(n_lic)
        ],
        "onPremisesExtensionAttributes": ext_attrs,
        "preferredLanguage": LANGUAGES[d[40] % len(LANGUAGES)],
        "identities": identities,
    }

    if index > 0 and d[42] < int(256 * MANAGER_SHARE):
        mgr = int.from_bytes(d[43:46], "little") % index  # a lower index: no cycles
        user["manager"] = {"id": _user_id(ctx, mgr, _digest(ctx, mgr))}

    p = d[46]
    has_methods = p < 150 or d[49] < 80
    if phone_email_share is not None:
        chosen = _chosen(ctx, index, phone_email_share)
        if chosen and not has_methods:
            p -= 150  # 0..105: a mobile phone at least, drawn from the same bytes
        has_methods = chosen
    if has_methods:
        phones: list[dict[str, Any]] = []
        cc = prefix.split(" ", 1)[0]
        if p < 120:
            ready = "ready" if d[47] & 1 else "notConfigured"
            phones.append(_phone("mobile", f"{cc} {mobile_n + 5550000:07d}", ready))
            if d[47] < 110:
                phones.append(_phone("alternateMobile", f"{cc} {phone_n + 4440000:07d}"))
        if p < 60 or 120 <= p < 150:
            phones.append(_phone("office", f"{cc} {phone_n + 3330000:07d}x{d[48]}"))
        emails = []
        if d[49] < 80:
            emails.append({"id": EMAIL_METHOD_ID, "emailAddress": f"{alias}@outlook.com"})
        user["authentication"] = {"phoneMethods": phones, "emailMethods": emails}
    _add_profile(ctx, index, user, created=created, sam=user["onPremisesSamAccountName"])
    return user


def _phone(kind: str, number: str, state: str = "notSupported") -> dict[str, Any]:
    return {
        "phoneNumber": number,
        "phoneType": kind,
        "smsSignInState": state,
        "id": PHONE_METHOD_IDS[kind],
    }


# ---------------------------------------------------------------------------- additions
# Everything below draws from digests of its own (other BLAKE2b personalisations), so the
# values above stay byte-identical to tenants generated before these additions.
PASSWORD_METHOD_ID = "28c10230-6103-485e-b985-444c60001490"
NEVER = "0001-01-01T00:00:00Z"  # Graph's value for a kind of sign-in that never happened
SIGNIN_END = calendar.timegm((2026, 11, 1, 0, 0, 0))  # sign-ins lie in the two years before
_SIGNIN_SPAN = 730 * 86400
_EXTRA_PERSON = b"tenantsim-extra"
_AUTH_PERSON = b"tenantsim-auth"
NEVER_SIGNED_IN = 33  # e[2] below this: never signed in (so do guests pending acceptance)
# Group traits of the extra digest (directory.py builds the groups from them).
PROJECT_X_BELOW = 8  # e[0] below this: member of "Project X" (about 3 %)
CYCLE_A_BELOW = 5  # e[1] below this: "Cycle A"; below CYCLE_B_BELOW: "Cycle B"
CYCLE_B_BELOW = 10
_TYPE = "#microsoft.graph."
_FIDO_MODELS = (
    ("NFC key", "2fc0579f-8113-47ea-b116-555a8db9202a"),  # the docs' example key
    ("USB-C key", "2fc0579f-8113-47ea-b116-555a8db9202a"),
)
_FIDO_NAMES = ("Red key", "Backup key", "Yubi 🔑", "Key, blue")
_PHONE_DEVICES = ("iPhone 15", "Pixel 8", "Galaxy S23", "iPhone SE")
_APP_VERSIONS = ("6.2401.0119", "6.8.7", "6.2312.8201")


_PROFILE_PERSON = b"tenantsim-prof"
DIVISIONS: tuple[str, ...] = ("Retail", "Wholesale", "Corporate", "R&D, Labs", "=Field Ops")
PASSWORD_POLICIES: tuple[str | None, ...] = (
    None,
    "DisablePasswordExpiration",
    "DisableStrongPassword",
    "DisablePasswordExpiration, DisableStrongPassword",
)


def _add_profile(
    ctx: _SeedContext, index: int, user: dict[str, Any], *, created: int, sam: str | None
) -> None:
    """The admin center's preview attributes the original generator left unset: employee and
    password fields for most users, on-premises fields for synced ones, a few more extension
    attributes. From a digest of their own, so every earlier value stays as it was."""
    p = hashlib.blake2b(
        index.to_bytes(8, "little"), digest_size=32, key=ctx.key, person=_PROFILE_PERSON
    ).digest()
    day = 86400
    user["employeeHireDate"] = _iso(created + _u32(p[0:4]) % (400 * day)) if p[4] < 170 else None
    user["employeeLeaveDateTime"] = (
        _iso(SIGNIN_END + _u32(p[5:9]) % (180 * day)) if p[9] < 10 else None
    )
    user["employeeOrgData"] = (
        {
            "division": DIVISIONS[p[10] % len(DIVISIONS)],
            "costCenter": f"CC-{_u32(p[11:15]) % 9000 + 1000}",
        }
        if p[15] < 160
        else None
    )
    user["lastPasswordChangeDateTime"] = _iso(created + _u32(p[16:20]) % (500 * day))
    user["passwordPolicies"] = PASSWORD_POLICIES[p[20] % len(PASSWORD_POLICIES)]
    user["faxNumber"] = f"+1 425 555 {_u32(p[21:25]) % 10000:04d}" if p[25] < 20 else None
    if sam is not None:  # synced from on-premises Active Directory
        immutable = base64.b64encode(p[0:16]).decode()
        user["onPremisesImmutableId"] = immutable
        user["onPremisesDistinguishedName"] = f"CN={sam},OU=Users,DC=fabrikam,DC=local"
        user["onPremisesDomainName"] = "fabrikam.local"
        user["onPremisesUserPrincipalName"] = f"{sam}@fabrikam.local"
        user["onPremisesLastSyncDateTime"] = _iso(SIGNIN_END - _u32(p[26:30]) % day)
        user["onPremisesSecurityIdentifier"] = (
            f"S-1-5-21-1004336348-1177238915-682003330-{index + 1000}"
        )
    extension = user["onPremisesExtensionAttributes"]
    for n in range(2, 15):
        if p[30] < 60 and (p[31] + n) % 5 == 0:
            extension[f"extensionAttribute{n}"] = f"EA{n}-{p[n] % 50}"


def _extra_digest(ctx: _SeedContext, index: int) -> bytes:
    return hashlib.blake2b(
        index.to_bytes(8, "little"), digest_size=64, key=ctx.key, person=_EXTRA_PERSON
    ).digest()


def _iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _guid(b: bytes) -> str:
    h = b[:16].hex()
    return f"{h[0:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[b[8] & 3]}{h[17:20]}-{h[20:32]}"


def _u32(b: bytes) -> int:
    return int.from_bytes(b[:4], "little")


def directory_traits(seed: int, index: int) -> tuple[int, int, int, int]:
    """What group and administrative-unit membership of generated user `index` depends on,
    without generating the user: (index into DEPARTMENTS or -1 when the user has no
    department, index into LOCATIONS, project byte, cycle byte)."""
    ctx = _context(seed)
    d = _digest(ctx, index)
    e = _extra_digest(ctx, index)
    dept = -1 if d[57] < 10 else d[17] % len(DEPARTMENTS)
    if dept >= 0 and DEPARTMENTS[dept] is None:
        dept = -1
    return dept, d[20] % len(LOCATIONS), e[0], e[1]


def held_skus(seed: int, index: int) -> tuple[str, ...]:
    """The skuIds in generated user `index`'s assignedLicenses (one digest, no user)."""
    d = _digest(_context(seed), index)
    sku = d[38] % len(SKU_IDS)
    return tuple(SKU_IDS[(sku + k) % len(SKU_IDS)] for k in range(d[37] % 3))


def _add_extras(ctx: _SeedContext, index: int, d: bytes, user: dict[str, Any]) -> None:
    e = _extra_digest(ctx, index)
    created = _CREATED_BASE + int.from_bytes(d[32:36], "little") % _CREATED_SPAN
    activity = _sign_in_activity(e, created, user.get("externalUserState"))
    if activity is not None:
        user["signInActivity"] = activity
    auth = user.get("authentication")
    phones = auth["phoneMethods"] if auth else []
    emails = auth["emailMethods"] if auth else []
    methods: list[dict[str, Any]] = [password_method(user["createdDateTime"])]
    methods += [{"@odata.type": _TYPE + "phoneAuthenticationMethod"} | m for m in phones]
    methods += [{"@odata.type": _TYPE + "emailAuthenticationMethod"} | m for m in emails]
    methods += _other_methods(ctx, index, created)
    user["authentication"] = {"phoneMethods": phones, "emailMethods": emails, "methods": methods}


def password_method(created: str | None) -> dict[str, Any]:
    """The password item of a methods list (Graph never returns the password itself)."""
    return {
        "@odata.type": _TYPE + "passwordAuthenticationMethod",
        "id": PASSWORD_METHOD_ID,
        "password": None,
        "createdDateTime": created,
    }


def _sign_in_activity(e: bytes, created: int, ext_state: str | None) -> dict[str, Any] | None:
    if ext_state == "PendingAcceptance" or e[2] < NEVER_SIGNED_IN:
        return None  # Graph leaves signInActivity out for a user who never signed in
    span = max(1, SIGNIN_END - max(created, SIGNIN_END - _SIGNIN_SPAN))
    kind = e[3]
    interactive = None if kind < 20 else SIGNIN_END - 1 - _u32(e[4:8]) % span
    # About a quarter never signed in non-interactively (the 0001-01-01 sentinel); a user who
    # never signed in interactively always did non-interactively (else: no activity at all).
    non_interactive = None if 20 <= kind < 80 else SIGNIN_END - 1 - _u32(e[8:12]) % span
    i_id, n_id, s_id = _guid(e[16:32]), _guid(e[32:48]), _guid(e[48:64])
    # The last successful sign-in: the latest of both, unless the last interactive attempt
    # failed (e[12] < 40): then an earlier interactive one succeeded.
    succeeded = [(t, r) for t, r in ((interactive, i_id), (non_interactive, n_id)) if t]
    if interactive is not None and e[12] < 40:
        succeeded = [(t, r) for t, r in succeeded if r != i_id]
        succeeded.append((max(created, interactive - int.from_bytes(e[13:16], "little")), s_id))
    last_ok, last_ok_id = max(succeeded)
    return {
        "lastSignInDateTime": _iso(interactive) if interactive else NEVER,
        "lastSignInRequestId": i_id if interactive else "",
        "lastNonInteractiveSignInDateTime": _iso(non_interactive) if non_interactive else NEVER,
        "lastNonInteractiveSignInRequestId": n_id if non_interactive else "",
        "lastSuccessfulSignInDateTime": _iso(last_ok),
        "lastSuccessfulSignInRequestId": last_ok_id,
    }


def _other_methods(ctx: _SeedContext, index: int, created: int) -> list[dict[str, Any]]:
    """FIDO2 keys, Authenticator, Windows Hello, TAP, software OATH and platform credentials
    for some users, from a digest of their own."""
    m = hashlib.blake2b(
        index.to_bytes(8, "little"), digest_size=64, key=ctx.key, person=_AUTH_PERSON
    ).digest()
    span = max(1, SIGNIN_END - created)

    def when(k: int) -> str:
        return _iso(created + _u32(m[k : k + 4]) % span)

    out: list[dict[str, Any]] = []
    if m[0] < 26:
        model, aaguid = _FIDO_MODELS[m[6] % len(_FIDO_MODELS)]
        out.append(
            {
                "@odata.type": _TYPE + "fido2AuthenticationMethod",
                "id": base64.urlsafe_b64encode(m[8:26]).decode().rstrip("="),
                "displayName": _FIDO_NAMES[m[7] % len(_FIDO_NAMES)],
                "createdDateTime": when(26),
                "aaGuid": aaguid,
                "model": model,
                "attestationCertificates": [m[30:50].hex()],
                "attestationLevel": "attested" if m[6] & 4 else "notAttested",
            }
        )
    if m[1] < 64:
        out.append(
            {
                "@odata.type": _TYPE + "microsoftAuthenticatorAuthenticationMethod",
                "id": _guid(m[34:50]),
                "displayName": _PHONE_DEVICES[m[50] % len(_PHONE_DEVICES)],
                "deviceTag": "SoftwareTokenActivated",
                "phoneAppVersion": _APP_VERSIONS[m[51] % len(_APP_VERSIONS)],
                "createdDateTime": when(52) if m[51] & 8 else None,
            }
        )
    if m[2] < 38:
        out.append(
            {
                "@odata.type": _TYPE + "windowsHelloForBusinessAuthenticationMethod",
                "id": _guid(m[40:56]),
                "displayName": f"FABRIKAM-PC-{_u32(m[56:60]) % 10000:04d}",
                "createdDateTime": when(44),
                "keyStrength": "weak" if m[60] < 20 else "normal",
            }
        )
    if m[3] < 8:
        start = created + _u32(m[44:48]) % span
        out.append(
            {
                "@odata.type": _TYPE + "temporaryAccessPassAuthenticationMethod",
                "id": _guid(m[20:36]),
                "createdDateTime": _iso(start),
                "startDateTime": _iso(start),
                "lifetimeInMinutes": 60 if m[61] & 1 else 480,
                "isUsableOnce": bool(m[61] & 2),
                "isUsable": False,
                "methodUsabilityReason": "Expired",
                "temporaryAccessPass": None,
            }
        )
    if m[4] < 13:
        out.append(
            {
                "@odata.type": _TYPE + "softwareOathAuthenticationMethod",
                "id": _guid(m[24:40]),
                "secretKey": None,
            }
        )
    if m[5] < 8:
        out.append(
            {
                "@odata.type": _TYPE + "platformCredentialAuthenticationMethod",
                "id": base64.urlsafe_b64encode(m[12:30]).decode().rstrip("="),
                "displayName": f"FABRIKAM-MAC-{_u32(m[58:62]) % 1000:03d}",
                "createdDateTime": when(48),
                "keyStrength": "normal",
                "platform": "macOS",
            }
        )
    return out


def directory_scan(seed: int, start: int, stop: int) -> Iterator[tuple[int, int, int, int, int]]:
    """For users start..stop-1: (department index or -1, location index, project byte,
    cycle byte, license bits) from their digests alone, a few times faster than generating
    them; license bits: first SKU index * 4 + number of licenses (see held_skus)."""
    ctx = _context(seed)
    key = ctx.key
    blake2b = hashlib.blake2b
    n_dept = len(DEPARTMENTS)
    n_loc = len(LOCATIONS)
    n_sku = len(SKU_IDS)
    for index in range(start, stop):
        raw = index.to_bytes(8, "little")
        d = blake2b(raw, digest_size=64, key=key).digest()
        e = blake2b(raw, digest_size=64, key=key, person=_EXTRA_PERSON).digest()
        dept = -1 if d[57] < 10 else d[17] % n_dept
        if dept >= 0 and DEPARTMENTS[dept] is None:
            dept = -1
        yield dept, d[20] % n_loc, e[0], e[1], (d[38] % n_sku) * 4 + d[37] % 3
