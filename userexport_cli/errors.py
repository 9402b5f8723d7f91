"""Exit codes, and the error that carries one up to main() with the message to show."""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    """What a script can tell from the exit status alone (docs/cli.md, "Exit codes")."""

    SUCCEEDED = 0  # the command did what was asked; for an export's outcome: succeeded
    FAILED = 1  # the export failed or was cancelled, a wait timed out, nothing to cancel
    USAGE = 2  # a bad flag, argument or value (the message names it), an unknown export id
    COMPLETED_WITH_ERRORS = 3  # the export finished, with rows in its errors file
    UNREACHABLE = 4  # the app (or storage) cannot be reached, refused the credentials, or failed
    MISMATCH = 5  # a downloaded file is not what the export committed (rows, bytes or sha256)
    BUSY = 6  # the app has too many exports queued (429): nothing was started; try again later
    INTERRUPTED = 130  # Ctrl+C (the export itself goes on)


class CliError(Exception):
    """Stops the command: main() prints `message` on stderr and exits with `code`."""

    def __init__(self, code: Exit, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ApiProblem(Exception):
    """A 4xx answer of the API with its problem details (RFC 9457), for the command to word."""

    def __init__(self, status: int, body: dict[str, object]) -> None:
        self.status = status
        self.title = str(body.get("title") or "")
        self.detail = str(body.get("detail") or self.title or f"HTTP {status}")
        field = body.get("field")
        self.field = field if isinstance(field, str) else None
        super().__init__(f"{status} {self.detail}")
