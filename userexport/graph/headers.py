"""What the headers of a Graph answer say about its budget: the cost of the request, the share
of the bucket used, why a 429 came and how long to wait. Names in any casing; kiota's
HeadersCollection keeps each value as a set, a $batch item's headers as plain strings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

WARN = 0.8  # Graph sends x-ms-throttle-limit-percentage past this share of the budget


def header(headers: Mapping[str, object] | None, wanted: str) -> str | None:
    """One header's value, whatever its casing; None when absent."""
    for name, value in (headers or {}).items():
        if name.lower() == wanted:
            if isinstance(value, set | list | tuple):
                value = next(iter(value), None)
            return None if value is None else str(value)
    return None


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else math.nan
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def resource_units(headers: Mapping[str, object] | None) -> int:
    """x-ms-resource-unit: what the request cost (1 when Graph did not say)."""
    cost = _number(header(headers, "x-ms-resource-unit"))
    return 1 if cost is None else max(1, int(cost))


def used_share(headers: Mapping[str, object] | None) -> float | None:
    """x-ms-throttle-limit-percentage: the share of the budget used, 0.8 to 1.8; None when
    absent (under 80 %) or not a number."""
    used = _number(header(headers, "x-ms-throttle-limit-percentage"))
    if used is None:
        return None
    return used / 100 if used > 5 else used  # a percentage written as 85


def about_budget(headers: Mapping[str, object] | None) -> bool:
    """Whether a 429 is about the resource-unit budget, the only throttling a pace can learn
    from. `x-ms-throttle-information` gives the reason and "can have any value", such as
    CPULimitExceeded or WriteLimitExceeded, and Graph also throttles on a tenant's data volume
    (throttling-limits.md): those say nothing about the bucket's rate. Absent, it is assumed
    to be the budget."""
    text = (header(headers, "x-ms-throttle-information") or "").strip()
    return not text or "resourceunit" in text.lower()


def retry_after_seconds(headers: Mapping[str, object] | None) -> float | None:
    """Seconds a Retry-After header asks to wait; None when absent or not a number (an HTTP
    date is rare from Graph: backing off instead is safe)."""
    seconds = _number(header(headers, "retry-after"))
    return None if seconds is None else min(max(0.0, seconds), 3600.0)
