"""Following a job until it is finished: polls honouring Retry-After, shows progress."""

from __future__ import annotations

import time
from typing import Any

from .client import ApiClient
from .errors import CliError, Exit
from .progress import FINAL, ProgressDisplay

MIN_POLL_SECONDS = 1.0
MAX_POLL_SECONDS = 30.0


class WaitTimedOut(Exception):
    """--timeout passed with the job still unfinished; `job` is its last description."""

    def __init__(self, job: dict[str, Any], timeout: float) -> None:
        super().__init__(f"still {job.get('status')} after {timeout:g} s")
        self.job = job
        self.timeout = timeout


def wait_for(
    client: ApiClient,
    job_id: str,
    display: ProgressDisplay,
    *,
    timeout: float | None = None,
    first_delay: float = 0.0,
) -> dict[str, Any]:
    """The job's final description. `first_delay`: the Retry-After of the answer that started it."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = first_delay
    job: dict[str, Any] = {"id": job_id, "status": "queued"}
    try:
        while True:
            if delay:
                if deadline is not None:
                    # The last look is at the deadline itself.
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        display.abandon()
                        raise WaitTimedOut(job, timeout or 0.0)
                    delay = min(delay, remaining)
                time.sleep(delay)
            job, retry_after = client.job(job_id)
            if job.get("status") in FINAL:
                display.finish(job)
                return job
            display.update(job)
            delay = min(max(retry_after, MIN_POLL_SECONDS), MAX_POLL_SECONDS)
    except KeyboardInterrupt:
        display.abandon()
        raise CliError(
            Exit.INTERRUPTED,
            f"interrupted; export {job_id} goes on. Follow it with `userexport wait {job_id}` "
            f"or stop it with `userexport cancel {job_id}`.",
        ) from None
