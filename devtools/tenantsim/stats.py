"""Counters behind GET /_sim/stats, so tests and benchmarks can see what a client did."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Stats:
    """Plain counters; the server is single-threaded (one event loop), so no locking."""

    requests: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    throttled: int = 0
    throttled_by_endpoint: Counter[str] = field(default_factory=Counter)
    resource_units: int = 0
    users_returned: int = 0
    auth_methods_returned: int = 0
    signin_pages: int = 0  # list pages answered with signInActivity selected
    delta_items_returned: int = 0  # users and @removed entries in /users/delta pages
    writes: Counter[str] = field(default_factory=Counter)  # by write API, apart from reads
    unauthorized: int = 0
    forbidden: int = 0

    def reset(self) -> None:
        fresh = Stats()
        self.__dict__.update(fresh.__dict__)

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "statuses": dict(self.statuses),
            "throttled": self.throttled,
            "throttledByEndpoint": dict(self.throttled_by_endpoint),
            "resourceUnits": self.resource_units,
            "faults": dict(self.faults),
            "usersReturned": self.users_returned,
            "authMethodsReturned": self.auth_methods_returned,
            "signInPages": self.signin_pages,
            "deltaItemsReturned": self.delta_items_returned,
            "writes": dict(self.writes),
            "unauthorized": self.unauthorized,
            "forbidden": self.forbidden,
        }
