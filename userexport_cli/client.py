"""The app's HTTP API and the downloads, through two httpx clients built once.

`api` carries the credentials (AppAuth, to the app's origin only); `storage` fetches the
read-only SAS URLs and carries none. Every answer is turned into a result, an ApiProblem (a 4xx
with problem details, for the command to word) or a CliError with its exit code.

Retries: GETs are retried on 429 and 5xx, and on connection failures once the app has answered
at least once in this run, for up to RETRY_WINDOW_SECONDS (a wait survives an app restart).
POST and DELETE are sent once: a repeated POST could start a second export.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from .auth import AppAuth
from .errors import ApiProblem, CliError, Exit
from .verify import FileCheck

TIMEOUT = httpx.Timeout(60.0, connect=15.0)
RETRY_WINDOW_SECONDS = 60.0
DEFAULT_RETRY_AFTER = 5.0
MAX_RETRY_AFTER = 60.0
USER_AGENT = "userexport-cli"


@dataclass
class Started:
    job: dict[str, Any]  # {"id", "status", "statusUrl"}, or a replay's full description
    retry_after: float  # seconds before the first look at it
    replayed: bool  # the Idempotency-Key was seen before: this is the job it started


class ApiClient:
    def __init__(
        self,
        app_url: str,
        auth: AppAuth | None = None,
        *,
        transport: httpx.BaseTransport | None = None,  # tests: an httpx.MockTransport
    ) -> None:
        self.app_url = app_url
        self._auth = auth
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        self._api = httpx.Client(
            base_url=app_url, auth=auth, headers=headers, timeout=TIMEOUT, transport=transport
        )
        self._storage = httpx.Client(
            headers={"User-Agent": USER_AGENT}, timeout=TIMEOUT, transport=transport
        )
        self._answered = False  # whether the app answered once: connection failures are then
        # transient (retried), not a wrong URL

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._api.close()
        self._storage.close()
        if self._auth is not None:
            self._auth.close()

    # --- the API ----------------------------------------------------------------------------

    def start(self, body: dict[str, Any], *, idempotency_key: str | None) -> Started:
        """POST /api/exports: 202 (new, or a replay of an unfinished one) or 200 (a replay)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        answer = self._send("POST", "/api/exports", json=body, headers=headers, ok=(200, 202))
        return Started(
            job=self._json(answer),
            retry_after=retry_after(answer) or DEFAULT_RETRY_AFTER,
            replayed=answer.headers.get("Idempotent-Replayed", "").lower() == "true",
        )

    def job(self, job_id: str) -> tuple[dict[str, Any], float]:
        """GET /api/exports/{id}: the job's description and how long to wait before asking again."""
        answer = self._send("GET", job_path(job_id), ok=(200, 202), retry=True)
        return self._json(answer), retry_after(answer) or DEFAULT_RETRY_AFTER

    def latest(self, series: str) -> dict[str, Any]:
        """GET /api/exports/latest?series=NAME: the series' newest export with files, as GET
        /api/exports/{id} describes it (404 ApiProblem: none in the series)."""
        answer = self._send(
            "GET", "/api/exports/latest", params={"series": series}, ok=(200,), retry=True
        )
        return self._json(answer)

    def jobs(self, *, page_size: int, next_link: str | None = None) -> dict[str, Any]:
        """GET /api/exports: one page, {"value": [...], "nextLink"?}."""
        params = {"pageSize": str(page_size)}
        if next_link is not None:
            # Only its query is taken, sent to the app's own URL: the credentials go nowhere
            # else, and a key a link might carry (`code`) is left out (the header has it).
            query = httpx.URL(next_link).params
            params = {name: value for name, value in query.items() if name != "code"}
        return self._json(self._send("GET", "/api/exports", params=params, ok=(200,), retry=True))

    def cancel(self, job_id: str) -> dict[str, Any]:
        """DELETE /api/exports/{id}: the cancelled job's description (409: ApiProblem)."""
        return self._json(self._send("DELETE", job_path(job_id), ok=(200, 202)))

    def download(self, url: str, path: Path, *, expected: dict[str, Any] | None = None) -> None:
        """Streams a SAS URL to `path`, through a hidden partial file renamed at the end, so a
        file at `path` is always complete; with `expected` (the job's facts of the file), only
        when its rows, bytes and SHA-256 are those (else nothing is written and the exit is
        MISMATCH)."""
        host = httpx.URL(url).host
        partial = path.with_name(f".{path.name}.partial")
        try:
            with self._storage.stream("GET", url) as answer:
                if answer.status_code != 200:
                    raise CliError(
                        Exit.UNREACHABLE,
                        f"storage ({host}) answered {answer.status_code} "
                        f"{answer.reason_phrase} to the download of {path.name}.",
                    )
                check = FileCheck()
                with partial.open("wb") as file:
                    for chunk in answer.iter_bytes():
                        check.add(chunk)
                        file.write(chunk)
            wrong = check.mismatch(expected) if expected else None
            if wrong:
                raise CliError(
                    Exit.MISMATCH,
                    f"{path.name} is not the file the export committed ({wrong}); it was not "
                    "written. Download it again; if it differs again, the blob was changed "
                    "after the export.",
                )
            os.replace(partial, path)
        except httpx.TransportError as error:
            raise CliError(
                Exit.UNREACHABLE, f"cannot download {path.name} from storage ({host}): {error}"
            ) from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()

    # --- plumbing ---------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        url: str,
        *,
        ok: tuple[int, ...],
        retry: bool = False,
        **options: Any,
    ) -> httpx.Response:
        deadline = time.monotonic() + RETRY_WINDOW_SECONDS
        backoff = 1.0
        while True:
            try:
                answer = self._api.request(method, url, **options)
            except httpx.TransportError as error:
                if retry and self._answered and time.monotonic() + backoff < deadline:
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 15.0)
                    continue
                raise CliError(
                    Exit.UNREACHABLE, f"cannot reach the app at {self.app_url}: {describe(error)}"
                ) from None
            self._answered = True
            status = answer.status_code
            if retry and (status == 429 or status >= 500):
                wait = min(retry_after(answer) or backoff, MAX_RETRY_AFTER)
                if time.monotonic() + wait < deadline:
                    time.sleep(wait)
                    backoff = min(backoff * 2, 15.0)
                    continue
            if status in ok:
                return answer
            raise self._refusal(answer)

    def _refusal(self, answer: httpx.Response) -> Exception:
        status, reason = answer.status_code, answer.reason_phrase
        problem = self._problem(answer)
        if status == 429 and answer.request.method == "POST":
            wait = retry_after(answer)
            later = f"in {wait:.0f} s" if wait else "later"
            detail = (problem or {}).get("detail") or "too many exports are queued."
            return CliError(
                Exit.BUSY, f"the app started nothing: {detail} Run the command again {later}."
            )
        if status in (401, 403):
            return CliError(
                Exit.UNREACHABLE,
                f"the app refused the credentials ({status} {reason}): check --key or "
                "USEREXPORT_KEY, or --entra and --audience.",
            )
        if problem is not None and 400 <= status < 500 and status != 429:
            return ApiProblem(status, problem)
        detail = f": {problem.get('detail')}" if problem and problem.get("detail") else ""
        if status == 404:
            return CliError(
                Exit.UNREACHABLE,
                f"{self.app_url} has no userexport API (404 at {answer.request.url.path}); "
                "check --url.",
            )
        if status == 405:
            return CliError(
                Exit.UNREACHABLE,
                f"the app does not support {answer.request.method} "
                f"{answer.request.url.path} (405); is it an older version?",
            )
        return CliError(Exit.UNREACHABLE, f"the app answered {status} {reason}{detail}")

    @staticmethod
    def _problem(answer: httpx.Response) -> dict[str, Any] | None:
        if "json" not in answer.headers.get("Content-Type", ""):
            return None
        try:
            body = answer.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    @staticmethod
    def _json(answer: httpx.Response) -> dict[str, Any]:
        try:
            body = answer.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise CliError(
                Exit.UNREACHABLE,
                f"the app's answer to {answer.request.method} {answer.request.url.path} "
                f"({answer.status_code}) is not a JSON object; check --url.",
            )
        return body


def job_path(job_id: str) -> str:
    return f"/api/exports/{quote(job_id, safe='')}"


def retry_after(answer: httpx.Response) -> float | None:
    """Retry-After in seconds (the API sends seconds; an HTTP date is not expected)."""
    try:
        seconds = float(answer.headers.get("Retry-After", ""))
    except ValueError:
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def describe(error: httpx.TransportError) -> str:
    """A transport error in a few words: what kind, and the reason the OS or TLS gave."""
    kind = {
        httpx.ConnectTimeout: "connection timed out",
        httpx.ReadTimeout: "no answer in time",
        httpx.WriteTimeout: "could not send in time",
        httpx.PoolTimeout: "no connection free",
    }.get(type(error))
    text = str(error) or type(error).__name__
    if kind:
        return kind
    if "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in text:
        return f"TLS failed ({text})"
    return text
