"""GET/POST /_sim/faults: the run-time fault settings as JSON, checked like the options.

The JSON names are the command-line options in camelCase; GET answers what POST accepts, so
a harness can save the settings and POST them back later.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .faults import (
    FAULT_TARGETS,
    STATUS_KINDS,
    FaultSettings,
    Outage,
    check_fraction,
    check_seconds,
)

Check = Callable[[str, float], None]
# JSON key -> (FaultSettings field, range check, whole number only)
_SCALARS: dict[str, tuple[str, Check, bool]] = {
    **{f"rate{k}": (f"rate_{k}", check_fraction, False) for k in STATUS_KINDS},
    "rateReset": ("rate_reset", check_fraction, False),
    **{f"retryAfter{k}": (f"retry_after_{k}", check_seconds, True) for k in STATUS_KINDS},
    "pageTokenTtl": ("page_token_ttl", check_seconds, False),
    "deltaTokenTtl": ("delta_token_ttl", check_seconds, False),
}
KEYS: frozenset[str] = frozenset(
    {
        *_SCALARS,
        "targets",
        "outages",
        "slowPages",
        "expirePageTokens",
        "expireDeltaTokens",
        "premium",
        "authenticationStatus",
    }
)
_OUTAGE_KEYS = frozenset({"start", "end", "target", "mode"})
_SLOW_KEYS = frozenset({"rate", "seconds", "next"})


class ControlError(ValueError):
    """A POST /_sim/faults body that is refused (400); the message says why."""


@dataclass(frozen=True)
class FaultChange:
    """A checked POST body: the new settings and the one-off actions it asks for."""

    settings: FaultSettings
    slow_next: int | None  # None: leave the count of pages still to delay as it is
    expire_page_tokens: bool
    expire_delta_tokens: bool = False


def parse_change(body: Any, current: FaultSettings, elapsed: float) -> FaultChange:
    """Apply a POST body to `current`; keys not in the body keep their value.

    `elapsed` (seconds since the simulator started) turns outage times "from now" into the
    simulator's time base.
    """
    if not isinstance(body, dict):
        raise ControlError("the body must be a JSON object")
    unknown = sorted(set(body) - KEYS)
    if unknown:
        raise ControlError(f"unknown keys {unknown}; known keys: {sorted(KEYS)}")
    fields: dict[str, Any] = {}
    for key, (name, check, whole) in _SCALARS.items():
        if key in body:
            fields[name] = _number(key, body[key], check, whole)
    if "targets" in body:
        fields["fault_targets"] = _targets(body["targets"])
    if "outages" in body:
        fields["outages"] = _outages(body["outages"], elapsed)
    slow_next = None
    if "slowPages" in body:
        rate, seconds, slow_next = _slow_pages(body["slowPages"])
        fields["slow_page_rate"], fields["slow_page_seconds"] = rate, seconds
    if "premium" in body:
        if not isinstance(body["premium"], bool):
            raise ControlError("premium must be true or false")
        fields["premium"] = body["premium"]
    if "authenticationStatus" in body:
        fields["authentication_status"] = _statuses(body["authenticationStatus"])
    expire = body.get("expirePageTokens", False)
    if not isinstance(expire, bool):
        raise ControlError("expirePageTokens must be true or false")
    expire_delta = body.get("expireDeltaTokens", False)
    if not isinstance(expire_delta, bool):
        raise ControlError("expireDeltaTokens must be true or false")
    try:
        settings = dataclasses.replace(current, **fields)
    except ValueError as exc:  # cross-field checks, e.g. rates adding up to more than 1
        raise ControlError(str(exc)) from None
    return FaultChange(settings, slow_next, expire, expire_delta)


def settings_json(settings: FaultSettings, slow_next: int, elapsed: float) -> dict[str, Any]:
    """The settings as GET /_sim/faults shows them: outages from now, ended ones left out."""
    out: dict[str, Any] = {key: getattr(settings, name) for key, (name, _, _) in _SCALARS.items()}
    out["premium"] = settings.premium
    out["authenticationStatus"] = dict(settings.authentication_status)
    out["targets"] = sorted(settings.fault_targets)
    out["outages"] = [
        {
            "start": round(max(0.0, o.start - elapsed), 3),
            "end": round(o.end - elapsed, 3),
            "target": o.target,
            "mode": o.mode,
        }
        for o in settings.outages
        if o.end - elapsed > 0.001
    ]
    out["slowPages"] = {
        "rate": settings.slow_page_rate,
        "seconds": settings.slow_page_seconds,
        "next": slow_next,
    }
    return out


def _statuses(value: Any) -> tuple[tuple[str, int], ...]:
    """{"<user id>": status, ...}: the status each user's authentication-method reads answer."""
    if not isinstance(value, dict):
        raise ControlError("authenticationStatus must be an object of user ids to HTTP statuses")
    for user_id, status in value.items():
        if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
            raise ControlError(f"authenticationStatus[{user_id!r}] must be an HTTP status")
    return tuple(sorted(value.items()))


def _number(key: str, value: Any, check: Check, whole: bool = False) -> Any:
    # bool is an int in Python; JSON true is not a number.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ControlError(f"{key} must be a number, got {value!r}")
    if whole and not isinstance(value, int):
        raise ControlError(f"{key} must be a whole number of seconds, got {value!r}")
    try:
        check(key, value)
    except ValueError as exc:
        raise ControlError(str(exc)) from None
    return value


def _object(key: str, value: Any, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ControlError(f"{key} must be a JSON object")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ControlError(f"unknown keys {unknown} in {key}; known: {sorted(allowed)}")
    return value


def _targets(value: Any) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise ControlError("targets must be a list of strings")
    unknown = sorted(set(value) - FAULT_TARGETS)
    if unknown:
        raise ControlError(f"unknown targets {unknown}; known: {sorted(FAULT_TARGETS)}")
    return frozenset(value)


def _outages(value: Any, elapsed: float) -> tuple[Outage, ...]:
    if not isinstance(value, list):
        raise ControlError("outages must be a list of objects")
    windows = []
    for i, raw in enumerate(value):
        where = f"outages[{i}]"
        item = _object(where, raw, _OUTAGE_KEYS)
        if "start" not in item or "end" not in item:
            raise ControlError(f"{where} needs start and end (seconds from now)")
        start = _number(f"{where}.start", item["start"], check_seconds)
        end = _number(f"{where}.end", item["end"], check_seconds)
        try:
            windows.append(
                Outage(
                    elapsed + start,
                    elapsed + end,
                    str(item.get("target", "all")),
                    str(item.get("mode", "503")),
                )
            )
        except ValueError as exc:
            raise ControlError(f"{where}: {exc}") from None
    return tuple(windows)


def _slow_pages(value: Any) -> tuple[float, float, int]:
    item = _object("slowPages", value, _SLOW_KEYS)
    rate = _number("slowPages.rate", item.get("rate", 0.0), check_fraction)
    seconds = _number("slowPages.seconds", item.get("seconds", 0.0), check_seconds)
    nxt = _number("slowPages.next", item.get("next", 0), check_seconds, whole=True)
    if (rate or nxt) and not seconds:
        raise ControlError("slowPages needs seconds > 0 with a rate or next")
    return float(rate), float(seconds), int(nxt)
