"""Seeded, reproducible fault injection: one random.Random per fault stream.

FaultSettings is the part that can change while the simulator runs (POST /_sim/faults);
FaultInjector applies it: per-request faults, outage windows and slow pages.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .odata import ODataError, canonical_property

if TYPE_CHECKING:
    from .config import SimConfig

# Draw order within one number: reset, 503 and 504 first so that a seed gives the same
# stream as before 500/502 existed (their rates default to 0).
FAULT_KINDS: tuple[str, ...] = ("reset", "503", "504", "500", "502")
STATUS_KINDS: tuple[str, ...] = ("500", "502", "503", "504")  # those with a Retry-After
FAULT_TARGETS: frozenset[str] = frozenset({"users", "auth", "batch"})
DEFAULT_FAULT_TARGETS: frozenset[str] = frozenset({"users", "auth"})
OUTAGE_TARGETS: tuple[str, ...] = ("all", "batch")
OUTAGE_MODES: tuple[str, ...] = ("503", "reset")
# How an expired /users/delta token is answered (deltaExpiredAnswer; README "Graph as documented").
DELTA_EXPIRED_ANSWERS: tuple[str, ...] = (
    "syncStateNotFound",
    "SyncStateNotFound",
    "resyncRequired",
    "gone",
)
# The "Graph as documented" switches: FaultSettings fields that POST /_sim/faults/reset puts back
# to the configured value (SimConfig fields of the same name), not to "no fault".
DOCUMENTED_FIELDS: tuple[str, ...] = (
    "signin_flaky_403",
    "signin_refused_after",
    "signin_empty_in_advanced_queries",
    "signin_empty_in_member_lists",
    "delta_partial_items",
    "delta_skips_restored",
    "delta_expired_answer",
    "delta_refused_properties",
    "expand_page_cap",
    "b2c",
    "limited_member_info",
    "authentication_methods_api",
    "rate_429_cpu",
    "retry_after_429_cpu",
    "rate_424",
    "member_list_costs",
    "successful_sign_ins_since",
)


def check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be within 0..1, got {value}")


def check_seconds(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a number of seconds >= 0, got {value}")


def check_whole(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")


def parse_instant(name: str, text: Any) -> datetime:
    """An ISO 8601 date or date-time (UTC when it names no offset), e.g. `2023-12-01`."""
    if not isinstance(text, str):
        raise ValueError(f"{name} must be an ISO date such as 2023-12-01, got {text!r}")
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{name} must be an ISO date such as 2023-12-01, got {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


@dataclass(frozen=True)
class Outage:
    """A window in seconds since the simulator started in which requests fail."""

    start: float
    end: float
    target: str = "all"  # "all": every Graph request; "batch": POST $batch envelopes
    mode: str = "503"  # "503": Graph's outage answer; "reset": connection reset

    def __post_init__(self) -> None:
        check_seconds("outage start", self.start)
        check_seconds("outage end", self.end)
        if self.end <= self.start:
            raise ValueError(f"outage end ({self.end}) must be after its start ({self.start})")
        if self.target not in OUTAGE_TARGETS:
            raise ValueError(f"outage target must be one of {OUTAGE_TARGETS}, got {self.target!r}")
        if self.mode not in OUTAGE_MODES:
            raise ValueError(f"outage mode must be one of {OUTAGE_MODES}, got {self.mode!r}")

    @classmethod
    def parse(cls, text: str) -> Outage:
        """FROM:TO[:TARGET][:MODE], e.g. `30:45`, `30:45:batch`, `30:45:all:reset`."""
        parts = text.split(":")
        if not 2 <= len(parts) <= 4:
            raise ValueError(f"outage {text!r} is not FROM:TO[:TARGET][:MODE]")
        try:
            start, end = float(parts[0]), float(parts[1])
        except ValueError:
            raise ValueError(f"outage {text!r}: FROM and TO must be seconds") from None
        extra: dict[str, str] = {}
        for part in parts[2:]:
            key = "target" if part in OUTAGE_TARGETS else "mode" if part in OUTAGE_MODES else ""
            if not key or key in extra:
                raise ValueError(f"outage {text!r}: unexpected {part!r}")
            extra[key] = part
        return cls(start, end, **extra)

    def matches(self, elapsed: float, batch: bool) -> bool:
        return self.start <= elapsed < self.end and (self.target == "all" or batch)


@dataclass(frozen=True)
class FaultSettings:
    """The fault knobs that POST /_sim/faults may change; field names are SimConfig's."""

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
    outages: tuple[Outage, ...] = ()
    slow_page_rate: float = 0.0
    slow_page_seconds: float = 0.0
    page_token_ttl: float = 0.0  # seconds; 0 never expires
    delta_token_ttl: float = 604800.0  # seconds (Graph: 7 days for directory objects); 0 never
    premium: bool = True  # False: signInActivity answers 403 (no Entra ID P1/P2)
    # (user id, status): that user's authentication-method reads answer the status, as a
    # tenant file's _sim.authenticationStatus does, but switched at run time.
    authentication_status: tuple[tuple[str, int], ...] = ()
    # Graph as documented (README "Graph as documented: the switches"); off by default.
    signin_flaky_403: float = 0.0  # share of signInActivity requests answered the licence 403
    signin_refused_after: int | None = None  # N: the next N are served, then every one is 403
    signin_empty_in_advanced_queries: bool = False  # signInActivity null in advanced /users pages
    signin_empty_in_member_lists: bool = False  # signInActivity null in member-list pages
    delta_partial_items: bool = False  # delta items: id + changed properties; nulls left out
    delta_skips_restored: bool = False  # with $select, a restored user is not in a changes round
    delta_expired_answer: str = "syncStateNotFound"  # one of DELTA_EXPIRED_ANSWERS
    delta_refused_properties: tuple[str, ...] = ()  # /users/delta $select of these: 400
    expand_page_cap: int = 0  # users per page with $expand (0: no cap)
    b2c: bool = False  # an Azure AD B2C tenant: no $count, no advanced queries, no signInActivity
    limited_member_info: bool = False  # member lists without a user-read role: id and type only
    authentication_methods_api: bool = True  # False: a national cloud without the API (21Vianet)
    rate_429_cpu: float = 0.0  # share of fault-target requests answered 429 CPULimitExceeded
    retry_after_429_cpu: int = 1  # their Retry-After (0: none)
    rate_424: float = 0.0  # share of $batch envelopes answered 424 Failed Dependency
    member_list_costs: bool = False  # members 3, transitiveMembers 5, subscribedSkus 3 RU
    successful_sign_ins_since: str | None = None  # lastSuccessfulSignIn* null before this date
    # successful_sign_ins_since parsed (derived, not a setting)
    since: datetime | None = field(default=None, init=False, compare=False, repr=False)

    def forced_authentication_status(self, user_id: str) -> int | None:
        return dict(self.authentication_status).get(user_id)

    def __post_init__(self) -> None:
        for kind in FAULT_KINDS:
            check_fraction(f"rate_{kind}", self.rate(kind))
        if sum(self.rate(kind) for kind in FAULT_KINDS) > 1.0:
            raise ValueError("the fault rates must add up to at most 1")
        for kind in STATUS_KINDS:
            check_seconds(f"retry_after_{kind}", self.retry_after(kind))
        unknown = set(self.fault_targets) - FAULT_TARGETS
        if unknown:
            raise ValueError(f"unknown fault targets: {sorted(unknown)}")
        check_fraction("slow_page_rate", self.slow_page_rate)
        check_seconds("slow_page_seconds", self.slow_page_seconds)
        if self.slow_page_rate > 0 and self.slow_page_seconds <= 0:
            raise ValueError("slow pages need slow_page_seconds > 0")
        check_seconds("page_token_ttl", self.page_token_ttl)
        check_seconds("delta_token_ttl", self.delta_token_ttl)
        for name in (
            "premium",
            "signin_empty_in_advanced_queries",
            "signin_empty_in_member_lists",
            "delta_partial_items",
            "delta_skips_restored",
            "b2c",
            "limited_member_info",
            "authentication_methods_api",
            "member_list_costs",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        for name in ("signin_flaky_403", "rate_429_cpu", "rate_424"):
            check_fraction(name, getattr(self, name))
        if self.signin_refused_after is not None:
            check_whole("signin_refused_after", self.signin_refused_after)
        check_whole("expand_page_cap", self.expand_page_cap)
        check_whole("retry_after_429_cpu", self.retry_after_429_cpu)
        if self.delta_expired_answer not in DELTA_EXPIRED_ANSWERS:
            raise ValueError(
                f"delta_expired_answer must be one of {list(DELTA_EXPIRED_ANSWERS)}, "
                f"got {self.delta_expired_answer!r}"
            )
        since = None
        if self.successful_sign_ins_since is not None:
            since = parse_instant("successful_sign_ins_since", self.successful_sign_ins_since)
        # Frozen: normalise through object.__setattr__ so lists from JSON/argparse compare equal.
        object.__setattr__(self, "fault_targets", frozenset(self.fault_targets))
        object.__setattr__(self, "outages", tuple(self.outages))
        object.__setattr__(
            self, "delta_refused_properties", user_properties(self.delta_refused_properties)
        )
        object.__setattr__(self, "since", since)

    @classmethod
    def from_config(cls, config: SimConfig) -> FaultSettings:
        # Run-time only knobs (no command-line option) keep their defaults.
        names = [f.name for f in dataclasses.fields(cls) if f.init and hasattr(config, f.name)]
        return cls(**{name: getattr(config, name) for name in names})

    @classmethod
    def reset_from_config(cls, config: SimConfig) -> FaultSettings:
        """No faults at all, but Graph's configured behaviour: targets, premium, the delta
        token lifetime and the "Graph as documented" switches as the options set them."""
        names = ("fault_targets", "premium", "delta_token_ttl", *DOCUMENTED_FIELDS)
        return cls(**{name: getattr(config, name) for name in names})

    def rate(self, kind: str) -> float:
        return float(getattr(self, f"rate_{kind}"))

    def retry_after(self, kind: str) -> int:
        return int(getattr(self, f"retry_after_{kind}", 0))


def user_properties(names: Any) -> tuple[str, ...]:
    """User property names in Graph's spelling (ValueError naming an unknown one)."""
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"delta_refused_properties must be property names, got {names!r}")
    out: list[str] = []
    for name in names:
        try:
            canon = canonical_property(name)
        except ODataError:
            raise ValueError(f"unknown user property {name!r}") from None
        if canon not in out:
            out.append(canon)
    return tuple(out)


@dataclass(frozen=True)
class Fault:
    """What to do instead of answering: a status (500/502/503/504) or a connection reset."""

    kind: str  # one of FAULT_KINDS
    retry_after: int  # 0: no Retry-After header


class FaultInjector:
    """Draws one number per eligible request from the stream of its target.

    Streams are per target ("users", "auth", "batch") so the n-th users page sees the same
    fault for a given seed whatever the auth-method traffic around it was; slow pages have a
    stream of their own for the same reason.
    """

    def __init__(
        self,
        settings: FaultSettings,
        seed: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.slow_next = 0  # list pages still to delay whatever the slow-page rate says
        # signInRefusedAfter: requests selecting signInActivity still served (None: no limit)
        self.signin_left: int | None = settings.signin_refused_after
        self._clock = clock
        self._started = clock()
        # One stream per target and per kind of draw, so a new kind never moves an old one's.
        self._streams = {
            t: random.Random(f"tenantsim-faults:{seed}:{t}")
            for t in (*sorted(FAULT_TARGETS), "slowPage", "signInFlaky403", "429cpu", "424")
        }

    def elapsed(self) -> float:
        """Seconds since the simulator started: the time base of outage windows."""
        return self._clock() - self._started

    @property
    def enabled(self) -> bool:
        return any(self.settings.rate(kind) for kind in FAULT_KINDS)

    def draw(self, target: str) -> Fault | None:
        """The fault for the next request of `target`, or None to answer normally."""
        if not self.enabled or target not in self.settings.fault_targets:
            return None
        r = self._streams[target].random()
        for kind in FAULT_KINDS:
            rate = self.settings.rate(kind)
            if r < rate:
                return Fault(kind, self.settings.retry_after(kind))
            r -= rate
        return None

    def signin_flaky(self) -> bool:
        """Whether the next request selecting signInActivity gets the licence 403 anyway."""
        rate = self.settings.signin_flaky_403
        return rate > 0 and self._streams["signInFlaky403"].random() < rate

    def cpu_429(self, target: str) -> bool:
        """Whether the next request of `target` is throttled for CPU (429, not charged)."""
        rate = self.settings.rate_429_cpu
        if rate <= 0 or target not in self.settings.fault_targets:
            return False
        return self._streams["429cpu"].random() < rate

    def failed_dependency(self) -> bool:
        """Whether the next $batch envelope is answered 424 before any item runs."""
        rate = self.settings.rate_424
        return rate > 0 and self._streams["424"].random() < rate

    def outage(self, batch: bool) -> Outage | None:
        """The outage window the current request falls in, if any."""
        elapsed = self.elapsed()
        return next((o for o in self.settings.outages if o.matches(elapsed, batch)), None)

    def slow_page(self) -> float:
        """Seconds to hold the next list page back (0: answer at once)."""
        seconds = self.settings.slow_page_seconds
        if self.slow_next > 0:
            self.slow_next -= 1
            return seconds
        rate = self.settings.slow_page_rate
        if rate > 0 and self._streams["slowPage"].random() < rate:
            return seconds
        return 0.0
