"""How long a listing page takes per user it holds: what the estimate of a listing uses
(planning.py), shared with the other instances through the PaceBoard."""

from __future__ import annotations


class Latency:
    def __init__(self) -> None:
        self.seconds_per_user: float | None = None
        self._fresh = False  # learnt since it was last shared

    def listed(self, users: int, seconds: float) -> None:
        """A page of `users` took `seconds` to answer (a moving average)."""
        if users:
            per_user = seconds / users
            old = self.seconds_per_user
            self.seconds_per_user = per_user if old is None else 0.8 * old + 0.2 * per_user
            self._fresh = True

    def to_share(self) -> float | None:
        """What to share once: the average when it changed since last shared."""
        fresh, self._fresh = self._fresh, False
        return self.seconds_per_user if fresh else None
