"""Progress while an export runs, on stderr: one redrawn line with a bar on a terminal, plain
lines every few seconds otherwise (a log, a CI job, a pipe). No third-party code."""

from __future__ import annotations

import shutil
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

BAR_WIDTH = 20
PLAIN_INTERVAL_SECONDS = 5.0
RATE_WINDOW_SECONDS = 30.0
FINAL = ("succeeded", "completedWithErrors", "failed", "cancelled", "estimated")


class RateMeter:
    """Users per second over the observations of the last RATE_WINDOW_SECONDS (at least the last
    two), on this client's own clock, so a skew between it and the app's does not matter."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, written: int) -> float | None:
        now = self._clock()
        self._samples.append((now, written))
        while len(self._samples) > 2 and now - self._samples[0][0] > RATE_WINDOW_SECONDS:
            self._samples.popleft()
        first_time, first_written = self._samples[0]
        if now - first_time <= 0 or written < first_written:
            return None
        return (written - first_written) / (now - first_time)


def bar(fraction: float | None, width: int = BAR_WIDTH) -> str:
    """`[#####.....]`; an unknown fraction is an empty bar."""
    filled = round(min(max(fraction or 0.0, 0.0), 1.0) * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def clock_time(seconds: float) -> str:
    whole = max(round(seconds), 0)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def fraction_of(job: dict[str, Any]) -> float | None:
    written, total = _written(job), job.get("estimatedTotal")
    if job.get("status") in ("succeeded", "estimated"):
        return 1.0
    if isinstance(total, int) and total > 0:
        return min(written / total, 1.0)
    return None


def details(job: dict[str, Any], rate: float | None, now: datetime | None = None) -> list[str]:
    """What is known of the job's progress: users (of the estimated total), rate, ETA,
    partitions done; "planning" before the count."""
    status = job.get("status")
    if status == "queued":
        place = job.get("queuePosition")
        return [f"place {place} in the queue"] if isinstance(place, int) else []
    written, total = _written(job), job.get("estimatedTotal")
    if status == "estimated":  # a dry run: nothing written, the count is the answer
        return [f"about {total:,} users" if isinstance(total, int) else "planned"]
    if status == "running" and total is None and not written:
        return ["planning"]
    if isinstance(total, int) and total > 0 and status not in FINAL:
        parts = [f"{written:,} / {total:,} users"]
    else:
        parts = [f"{written:,} users"]
    if status == "running":
        if rate is not None:
            parts.append(f"{rate:,.0f}/s")
        eta = _eta(job, rate, now or datetime.now(UTC))
        if eta is not None:
            parts.append(f"ETA {clock_time(eta)}")
        if isinstance(job.get("partitions"), int) and isinstance(job.get("partitionsDone"), int):
            parts.append(f"partitions {job['partitionsDone']}/{job['partitions']}")
    return parts


def bar_line(job: dict[str, Any], rate: float | None, now: datetime | None = None) -> str:
    """`[#####.....] 1,234 / 10,000 users  512/s  ETA 0:00:17  partitions 3/8`"""
    parts = details(job, rate, now)
    status = job.get("status")
    if status == "queued":
        parts = ["queued, waiting for a worker", *parts]
    elif status != "running":
        parts.append(str(status))
    return f"{bar(fraction_of(job))} {'  '.join(parts)}"


def plain_line(job: dict[str, Any], rate: float | None, now: datetime | None = None) -> str:
    """`<id> running: 1,234 / 10,000 users (12%), 512/s, ETA 0:00:17, partitions 3/8`"""
    parts = details(job, rate, now)
    fraction = fraction_of(job)
    if parts and fraction is not None and job.get("status") == "running":
        parts[0] += f" ({fraction:.0%})"
    head = f"{job.get('id', '?')} {job.get('status', '?')}"
    return f"{head}: {', '.join(parts)}" if parts else head


class ProgressDisplay:
    """Shows each observation of the job: redrawn in place on a terminal, as a line at most every
    PLAIN_INTERVAL_SECONDS (and on each change of status) elsewhere."""

    def __init__(
        self,
        stream: TextIO,
        *,
        terminal: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._terminal = terminal
        self._clock = clock
        self._rate = RateMeter(clock)
        self._drawn = 0  # length of the line on screen (terminal)
        self._last_plain: tuple[float, object] | None = None

    def update(self, job: dict[str, Any]) -> None:
        rate = self._rate.add(_written(job)) if job.get("status") == "running" else None
        if self._terminal:
            self._draw(bar_line(job, rate))
            return
        now, status = self._clock(), job.get("status")
        last = self._last_plain
        if last is None or last[1] != status or now - last[0] >= PLAIN_INTERVAL_SECONDS:
            self._stream.write(plain_line(job, rate) + "\n")
            self._stream.flush()
            self._last_plain = (now, status)

    def finish(self, job: dict[str, Any]) -> None:
        """The last state, then a new line: what follows is printed below it."""
        if self._terminal:
            self._draw(bar_line(job, None))
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = 0
        else:
            self._stream.write(plain_line(job, None) + "\n")
            self._stream.flush()

    def abandon(self) -> None:
        """Ends a redrawn line without a final state (interrupted, timed out)."""
        if self._terminal and self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = 0

    def _draw(self, line: str) -> None:
        # Kept narrower than the terminal: a wrapped line could not be redrawn with \r.
        width = shutil.get_terminal_size().columns - 1
        line = line[: max(width, 10)]
        self._stream.write("\r" + line + " " * max(self._drawn - len(line), 0))
        self._stream.flush()
        self._drawn = len(line)


def _written(job: dict[str, Any]) -> int:
    """Users written so far; once finished, the file's count."""
    if job.get("status") in FINAL and isinstance(job.get("userCount"), int):
        return job["userCount"]
    written = job.get("usersWritten")
    return written if isinstance(written, int) else 0


def _eta(job: dict[str, Any], rate: float | None, now: datetime) -> float | None:
    """Seconds left: the app's estimatedCompletionAt, else from the rate and estimatedTotal."""
    estimate = job.get("estimatedCompletionAt")
    if isinstance(estimate, str):
        try:
            return max((datetime.fromisoformat(estimate) - now).total_seconds(), 0.0)
        except (ValueError, TypeError):  # not ISO 8601, or without a time zone
            pass
    total = job.get("estimatedTotal")
    if rate and isinstance(total, int):
        return max(total - _written(job), 0) / rate
    return None
