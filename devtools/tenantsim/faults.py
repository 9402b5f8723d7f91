"""Seeded, reproducible fault injection: one random.Random per fault stream."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .config import SimConfig


@dataclass(frozen=True)
class Fault:
    """What to do instead of answering: a status (503/504) or a connection reset."""

    kind: str  # "503" | "504" | "reset"
    retry_after: int  # 0: no Retry-After header


class FaultInjector:
    """Draws one number per eligible request from the stream of its target.

    Streams are per target ("users", "auth") so the n-th users page sees the same fault
    for a given seed whatever the auth-method traffic around it was.
    """

    def __init__(self, config: SimConfig) -> None:
        self.rate_reset = config.rate_reset
        self.rate_503 = config.rate_503
        self.rate_504 = config.rate_504
        self.retry_after_503 = config.retry_after_503
        self.retry_after_504 = config.retry_after_504
        self.targets = config.fault_targets
        seed = config.effective_fault_seed
        self._streams = {
            t: random.Random(f"tenantsim-faults:{seed}:{t}") for t in ("users", "auth")
        }

    @property
    def enabled(self) -> bool:
        return self.rate_reset + self.rate_503 + self.rate_504 > 0

    def draw(self, target: str) -> Fault | None:
        """The fault for the next request of `target`, or None to answer normally."""
        if not self.enabled or target not in self.targets:
            return None
        r = self._streams[target].random()
        if r < self.rate_reset:
            return Fault("reset", 0)
        r -= self.rate_reset
        if r < self.rate_503:
            return Fault("503", self.retry_after_503)
        r -= self.rate_503
        if r < self.rate_504:
            return Fault("504", self.retry_after_504)
        return None
