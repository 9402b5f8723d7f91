"""What every instance knows about a Graph bucket, and the board they share it on.

Graph's throttling budget is per app and tenant, whatever the number of instances: on Flex
Consumption a big export runs on many at once. The limiter (limiter.py) publishes its pace on
a PaceBoard and reads what the others published; the board itself is storage's
(userexport/pacestore.py keeps it in rows of the jobs table).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class SharedPace:
    """What the board said when last read."""

    bucket_rate: float | None  # RU per second the bucket served everyone; None: not learnt
    instances: int  # active instances drawing on the bucket, this one included
    paces: float = 0.0  # the paces of the active instances together (RU per second)
    seconds_per_user: float | None = None  # listing only: how long a page takes per user

    def share(self) -> float | None:
        """This instance's share of the bucket's rate."""
        return self.bucket_rate / self.instances if self.bucket_rate else None


class PaceBoard(Protocol):
    """Where the instances of one tenant share each bucket's pace; every call best effort."""

    async def read(self, bucket: str) -> SharedPace | None: ...

    async def publish(self, bucket: str, *, rate: float | None, served: float) -> None: ...

    async def claim_burst(self, bucket: str) -> bool: ...

    async def learn(self, bucket: str, **values: float) -> None: ...
