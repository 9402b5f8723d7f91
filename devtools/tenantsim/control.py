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
    DELTA_EXPIRED_ANSWERS,
    FAULT_TARGETS,
    STATUS_KINDS,
    FaultSettings,
    Outage,
    check_fraction,
    check_seconds,
    parse_instant,
    user_properties,
)


class ControlError(ValueError):
    """A POST /_sim/faults body that is refused (400); the message says why."""


Check = Callable[[str, float], None]
# JSON key -> (FaultSettings field, range check, whole number only)
_SCALARS: dict[str, tuple[str, Check, bool]] = {
    **{f"rate{k}": (f"rate_{k}", check_fraction, False) for k in STATUS_KINDS},
    "rateReset": ("rate_reset", check_fraction, False),
    **{f"retryAfter{k}": (f"retry_after_{k}", check_seconds, True) for k in STATUS_KINDS},
    "pageTokenTtl": ("page_token_ttl", check_seconds, False),
    "deltaTokenTtl": ("delta_token_ttl", check_seconds, False),
}
Parse = Callable[[str, Any], Any]


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ControlError(f"{key} must be true or false, got {value!r}")
    return value


def _fraction(key: str, value: Any) -> float:
    return float(_number(key, value, check_fraction))


def _whole(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ControlError(f"{key} must be a whole number >= 0, got {value!r}")
    return value


def _whole_or_null(key: str, value: Any) -> int | None:
    return None if value is None else _whole(key, value)


def _expired_answer(key: str, value: Any) -> str:
    if value not in DELTA_EXPIRED_ANSWERS:
        raise ControlError(f"{key} must be one of {list(DELTA_EXPIRED_ANSWERS)}, got {value!r}")
    return str(value)


def _properties(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ControlError(f"{key} must be a list of user property names")
    try:
        return user_properties(value)
    except ValueError as error:
        raise ControlError(f"{key}: {error}") from None


def _date_or_null(key: str, value: Any) -> str | None:
    if value is None:
        return None
    try:
        parse_instant(key, value)
    except ValueError as exc:
        raise ControlError(str(exc)) from None
    return str(value)


# Graph as documented (README "Graph as documented: the switches"): JSON key -> (field, parse)
SWITCHES: dict[str, tuple[str, Parse]] = {
    "signInFlaky403": ("signin_flaky_403", _fraction),
    "signInRefusedAfter": ("signin_refused_after", _whole_or_null),
    "signInEmptyInAdvancedQueries": ("signin_empty_in_advanced_queries", _bool),
    "signInEmptyInMemberLists": ("signin_empty_in_member_lists", _bool),
    "deltaPartialItems": ("delta_partial_items", _bool),
    "deltaSkipsRestored": ("delta_skips_restored", _bool),
    "deltaExpiredAnswer": ("delta_expired_answer", _expired_answer),
    "deltaRefusedProperties": ("delta_refused_properties", _properties),
    "expandPageCap": ("expand_page_cap", _whole),
    "b2c": ("b2c", _bool),
    "limitedMemberInfo": ("limited_member_info", _bool),
    "authenticationMethodsApi": ("authentication_methods_api", _bool),
    "rate429Cpu": ("rate_429_cpu", _fraction),
    "retryAfter429Cpu": ("retry_after_429_cpu", _whole),
    "rate424": ("rate_424", _fraction),
    "memberListCosts": ("member_list_costs", _bool),
    "successfulSignInsSince": ("successful_sign_ins_since", _date_or_null),
}
KEYS: frozenset[str] = frozenset(
    {
        *_SCALARS,
        *SWITCHES,
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


@dataclass(frozen=True)
class FaultChange:
    """A checked POST body: the new settings and the one-off actions it asks for."""

    settings: FaultSettings
    slow_next: int | None  # None: leave the count of pages still to delay as it is
    expire_page_tokens: bool
    expire_delta_tokens: bool = False
    # signInRefusedAfter was given: the count of requests still served starts anew from it
    signin_refused_set: bool = False


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
    for key, (name, parse) in SWITCHES.items():
        if key in body:
            fields[name] = parse(key, body[key])
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
    return FaultChange(settings, slow_next, expire, expire_delta, "signInRefusedAfter" in body)


def settings_json(
    settings: FaultSettings, slow_next: int, elapsed: float, signin_left: int | None = None
) -> dict[str, Any]:
    """The settings as GET /_sim/faults shows them: outages from now, ended ones left out,
    signInRefusedAfter as the requests still served (`signin_left`)."""
    out: dict[str, Any] = {key: getattr(settings, name) for key, (name, _, _) in _SCALARS.items()}
    out["premium"] = settings.premium
    for key, (name, _) in SWITCHES.items():
        out[key] = getattr(settings, name)
    out["deltaRefusedProperties"] = list(settings.delta_refused_properties)
    out["signInRefusedAfter"] = signin_left
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
