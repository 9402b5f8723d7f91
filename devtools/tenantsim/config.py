"""SimConfig: every knob of the simulator, one field per command-line option."""

from __future__ import annotations

import argparse
import dataclasses
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .faults import (
    DEFAULT_FAULT_TARGETS,
    DELTA_EXPIRED_ANSWERS,
    STATUS_KINDS,
    FaultSettings,
    Outage,
)
from .generator import ShapedSeed

DEFAULT_ROLES: tuple[str, ...] = (
    "User.Read.All",
    "UserAuthenticationMethod.Read.All",
    "AuditLog.Read.All",
    "LicenseAssignment.Read.All",
    "GroupMember.Read.All",
    "AdministrativeUnit.Read.All",
)
# A user-assigned managed identity's resource name (ARM: letters, digits, '-' and '_').
IDENTITY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


@dataclass
class SimConfig:
    """Configuration of one simulated tenant; `python -m devtools.tenantsim -h` lists it."""

    host: str = "127.0.0.1"
    port: int = 0
    users: int = 100
    seed: int = 1
    # Share of the generated users with a phone or email authentication method (0..1; None:
    # the generator's own, about 70 %). Set, `seed` becomes a generator.ShapedSeed carrying it.
    phone_email_share: float | None = None
    tenant: Path | None = None
    dump: Path | None = None
    # Identity
    identity_header: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    tenant_id: str | None = None  # None: derived from the seed
    client_id: str = "8c3d6f52-7a1e-4c55-9a3e-3f1b1c6e2d90"
    # Names of user-assigned identities (ids derived from tenant and name; see README.md)
    identities: tuple[str, ...] = ()
    roles: tuple[str, ...] = DEFAULT_ROLES
    token_lifetime: int = 3600
    # Throttling: resource units per 10 s
    budget: float = 8000.0
    auth_budget: float = 8000.0
    signin_budget: float = 8000.0  # requests selecting signInActivity (real figure unknown)
    no_retry_after: bool = False
    # Latency in milliseconds
    latency_ms: float = 0.0
    latency_per_user_ms: float = 0.0
    # Faults: the start values of FaultSettings (same field names), changeable at run time
    fault_seed: int | None = None  # None: the tenant seed
    rate_500: float = 0.0
    rate_502: float = 0.0
    rate_503: float = 0.0
    rate_504: float = 0.0
    rate_reset: float = 0.0
    retry_after_500: int = 0  # seconds; 0 omits Retry-After
    retry_after_502: int = 0
    retry_after_503: int = 0
    retry_after_504: int = 0
    fault_targets: frozenset[str] = DEFAULT_FAULT_TARGETS
    outages: tuple[Outage, ...] = ()  # start/end in seconds since the simulator started
    slow_page_rate: float = 0.0
    slow_page_seconds: float = 0.0
    page_token_ttl: float = 0.0  # seconds; 0 never expires
    # /users/delta: users per page, and how long a delta round's tokens live (0: forever)
    delta_page_size: int = 200
    delta_token_ttl: float = 604800.0  # Graph's 7 days for directory objects
    # Entra ID P1/P2: without it signInActivity gets 403 (changeable at run time: "premium")
    premium: bool = True
    # Graph as documented (README "Graph as documented: the switches"): the start values of the
    # FaultSettings fields of the same names; POST /_sim/faults/reset puts these back.
    signin_flaky_403: float = 0.0
    signin_refused_after: int | None = None
    signin_empty_in_advanced_queries: bool = False
    signin_empty_in_member_lists: bool = False
    delta_partial_items: bool = False
    delta_skips_restored: bool = False
    delta_expired_answer: str = "syncStateNotFound"
    delta_refused_properties: tuple[str, ...] = ()
    expand_page_cap: int = 0
    b2c: bool = False
    limited_member_info: bool = False
    authentication_methods_api: bool = True
    rate_429_cpu: float = 0.0
    retry_after_429_cpu: int = 1
    rate_424: float = 0.0
    member_list_costs: bool = False
    successful_sign_ins_since: str | None = None
    log_level: str = "WARNING"

    def __post_init__(self) -> None:
        if self.users < 0:
            raise ValueError("users must be >= 0")
        if not 1 <= self.delta_page_size <= 10000:
            raise ValueError("delta_page_size must be within 1..10000")
        if self.budget <= 0 or self.auth_budget <= 0 or self.signin_budget <= 0:
            raise ValueError("budgets must be > 0")
        if isinstance(self.seed, ShapedSeed) and self.phone_email_share is None:
            self.phone_email_share = self.seed.phone_email_share
        if self.phone_email_share is not None:
            if self.tenant is not None:
                raise ValueError("phone_email_share shapes a generated tenant, not a tenant file")
            self.seed = ShapedSeed(self.seed, self.phone_email_share)  # ValueError outside 0..1
        self.fault_targets = frozenset(self.fault_targets)
        self.outages = tuple(self.outages)
        # Graph's spelling, as /_sim/faults shows them (ValueError on an unknown name).
        self.delta_refused_properties = self.fault_settings().delta_refused_properties
        self.roles = tuple(self.roles)
        self.identities = tuple(self.identities)
        for name in self.identities:
            if not IDENTITY_NAME.fullmatch(name):
                raise ValueError(f"identity name {name!r}: letters, digits, '-' and '_' only")
        if len(set(self.identities)) != len(self.identities):
            raise ValueError("identity names must be unique")
        if self.tenant is not None:
            self.tenant = Path(self.tenant)
        if self.dump is not None:
            self.dump = Path(self.dump)

    @property
    def effective_fault_seed(self) -> int:
        return self.seed if self.fault_seed is None else self.fault_seed

    def fault_settings(self) -> FaultSettings:
        """The fault settings a simulator starts with."""
        return FaultSettings.from_config(self)


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _outage(value: str) -> Outage:
    try:
        return Outage.parse(value)
    except ValueError as exc:  # argparse shows ArgumentTypeError messages verbatim
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser; option names mirror SimConfig's fields."""
    d = SimConfig(identity_header="")
    p = argparse.ArgumentParser(
        prog="python -m devtools.tenantsim",
        description="Simulated Entra tenant: Graph v1.0 users, auth methods, groups, "
        "administrative units, subscribedSkus, $batch, throttling, faults and a managed "
        "identity endpoint, on loopback.",
    )
    a = p.add_argument
    a("--host", default=d.host, help="bind address (default %(default)s)")
    a("--port", type=int, default=d.port, help="0 picks a free port (default)")
    a("--users", type=int, default=d.users, help="generated tenant size (default %(default)s)")
    a("--seed", type=int, default=d.seed, help="tenant seed (default %(default)s)")
    a(
        "--phone-email-share",
        type=float,
        default=d.phone_email_share,
        metavar="SHARE",
        help="share (0..1) of generated users with a phone or email authentication method, "
        "the others without (default: the generator's own, about 70 %%)",
    )
    a("--tenant", type=Path, help="serve the users of this JSON Lines file instead")
    a("--dump", type=Path, help="write the tenant as JSON Lines to this file and exit")
    a("--identity-header", help="secret the identity endpoint expects (default: random)")
    a("--tenant-id", help="tenant id in tokens (default: derived from the seed)")
    a("--client-id", default=d.client_id, help="managed identity client id")
    a(
        "--identity",
        dest="identities",
        action="append",
        default=[],
        metavar="NAME",
        help="a user-assigned managed identity the endpoint can issue tokens for (client_id, "
        "object_id or mi_res_id selects it); repeatable",
    )
    a("--roles", type=_csv, default=d.roles, help="comma-separated app roles in tokens")
    a("--token-lifetime", type=int, default=d.token_lifetime, help="seconds (default 3600)")
    a("--budget", type=float, default=d.budget, help="RU per 10 s for app+tenant")
    a("--auth-budget", type=float, default=d.auth_budget, help="RU per 10 s, auth methods")
    a(
        "--signin-budget",
        type=float,
        default=d.signin_budget,
        help="RU per 10 s for requests selecting signInActivity",
    )
    a(
        "--no-premium",
        dest="premium",
        action="store_false",
        help="a tenant without Entra ID P1/P2: signInActivity gets 403",
    )
    a("--no-retry-after", action="store_true", help="send 429s without Retry-After")
    a("--latency-ms", type=float, default=0.0, help="added to every Graph request")
    a("--latency-per-user-ms", type=float, default=0.0, help="added per returned user")
    a("--fault-seed", type=int, help="seed of the fault streams (default: --seed)")
    for status in STATUS_KINDS:
        a(f"--rate-{status}", type=float, default=0.0, help=f"share answered {status}")
    a("--rate-reset", type=float, default=0.0, help="share of connections reset unanswered")
    for status in STATUS_KINDS:
        a(f"--retry-after-{status}", type=int, default=0, help=f"on {status}s (0: none)")
    a(
        "--fault-targets",
        type=lambda v: frozenset(_csv(v)),
        default=DEFAULT_FAULT_TARGETS,
        help="comma list of users,auth,batch: which endpoints get faults (default users,auth)",
    )
    a(
        "--outage",
        dest="outages",
        type=_outage,
        action="append",
        default=[],
        metavar="FROM:TO[:TARGET][:MODE]",
        help="seconds since start during which Graph answers 503 (MODE reset: connection "
        "resets); TARGET all (default) or batch; repeatable",
    )
    a("--slow-page-rate", type=float, default=0.0, help="share of /users pages held back")
    a("--slow-page-seconds", type=float, default=0.0, help="how long a slow page is held back")
    a("--page-token-ttl", type=float, default=0.0, help="skiptoken lifetime in s (0: forever)")
    a(
        "--delta-page-size",
        type=int,
        default=d.delta_page_size,
        help="users per /users/delta page (default %(default)s)",
    )
    a(
        "--delta-token-ttl",
        type=float,
        default=d.delta_token_ttl,
        help="lifetime of /users/delta tokens in s (default 604800, 7 days; 0: forever)",
    )
    _documented_options(a, d)
    a("--log-level", default=d.log_level, help="logging level on stderr")
    return p


def _documented_options(a: Callable[..., argparse.Action], d: SimConfig) -> None:
    """Graph as documented: switches off by default (README "Graph as documented")."""
    a(
        "--signin-flaky-403",
        type=float,
        default=d.signin_flaky_403,
        metavar="RATE",
        help="share of requests selecting signInActivity answered the licence 403 anyway",
    )
    a(
        "--signin-refused-after",
        type=int,
        default=d.signin_refused_after,
        metavar="N",
        help="serve N requests selecting signInActivity, then answer every later one 403",
    )
    a(
        "--signin-empty-in-advanced-queries",
        action="store_true",
        help="signInActivity null in /users pages that are advanced queries",
    )
    a(
        "--signin-empty-in-member-lists",
        action="store_true",
        help="signInActivity null in group and administrative-unit member pages",
    )
    a(
        "--delta-partial-items",
        action="store_true",
        help="delta items: id and the changed properties only; null properties left out",
    )
    a(
        "--delta-skips-restored",
        action="store_true",
        help="with $select, restored users do not appear in a delta changes round",
    )
    a(
        "--delta-expired-answer",
        choices=DELTA_EXPIRED_ANSWERS,
        default=d.delta_expired_answer,
        help="how an expired delta token is answered (default %(default)s)",
    )
    a(
        "--delta-refused-properties",
        type=_csv,
        default=d.delta_refused_properties,
        metavar="A,B",
        help="user properties a /users/delta $select may not name (400)",
    )
    a(
        "--expand-page-cap",
        type=int,
        default=d.expand_page_cap,
        metavar="N",
        help="users per page of a listing with $expand, whatever $top says (0: no cap)",
    )
    a(
        "--b2c",
        action="store_true",
        help="an Azure AD B2C tenant: $count, advanced queries, delta and signInActivity refused",
    )
    a(
        "--limited-member-info",
        action="store_true",
        help="member lists without a user-read role give each user's type and id only",
    )
    a(
        "--no-authentication-methods-api",
        dest="authentication_methods_api",
        action="store_false",
        help="a national cloud without the authentication methods API (21Vianet)",
    )
    a(
        "--rate-429-cpu",
        type=float,
        default=d.rate_429_cpu,
        metavar="RATE",
        help="share of fault-target requests answered 429 CPULimitExceeded (not charged)",
    )
    a(
        "--retry-after-429-cpu",
        type=int,
        default=d.retry_after_429_cpu,
        metavar="S",
        help="Retry-After of those 429s in s (default %(default)s; 0: none)",
    )
    a(
        "--rate-424",
        type=float,
        default=d.rate_424,
        metavar="RATE",
        help="share of $batch envelopes answered 424 Failed Dependency",
    )
    a(
        "--member-list-costs",
        action="store_true",
        help="Graph's RU costs: members 3, transitiveMembers 5, subscribedSkus 3",
    )
    a(
        "--successful-sign-ins-since",
        default=d.successful_sign_ins_since,
        metavar="DATE",
        help="lastSuccessfulSignIn* null for users whose last success is before DATE",
    )


def config_from_args(argv: list[str] | None = None) -> SimConfig:
    """Parse a command line into a SimConfig (argparse exits 2 on bad options)."""
    parser = build_parser()
    ns = vars(parser.parse_args(argv))
    if ns["identity_header"] is None:
        del ns["identity_header"]
    names = {f.name for f in dataclasses.fields(SimConfig)}
    try:
        return SimConfig(**{k: v for k, v in ns.items() if k in names})
    except ValueError as exc:
        parser.error(str(exc))
        raise  # unreachable: parser.error exits
