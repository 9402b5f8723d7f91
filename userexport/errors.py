"""Every exception the app raises on purpose, drawn once (GraphError, Graph's own, is in
graph/errors.py and derives from UserExportError too). What a caller reads about a job is made
in reasons.py.

- InvalidRequest (and InvalidFilter): a caller's request is wrong in one field; the API answers
  400 naming it (`field`, a JSON path such as columns[2] or filter.department), the CLI names
  its flag.
- Unauthorized: a request names no identity the app lets in (401).
- KeyReused: an Idempotency-Key came back with another body.
- InvalidMessage: a queue message no version of this app could have written.
- CannotExport: Graph will not give what the export needs; the job fails with its `reason`.
- Resync: a changes run cannot stand; the job runs in full instead, saying why.
- JobConflict, JobStopped: someone else changed or stopped the job; this work stops.
- OutOfTime: the invocation's time budget is spent; the step continues in a new message.
- TokensOutpaced: Graph's page tokens expire before the listing can go on from them.
"""

from __future__ import annotations


class UserExportError(Exception):
    """The base of the app's own exceptions."""


class InvalidRequest(UserExportError, ValueError):
    """The request is wrong in one field; `field` names it, `detail` says what to send."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field
        self.detail = detail


class InvalidFilter(InvalidRequest):
    """The request's filter is wrong in one place (`field`: filter.<key>)."""


class Unauthorized(UserExportError):
    """The request names no identity the app lets in (401); the message says why."""


class KeyReused(UserExportError):
    """The key came with a different body than the first time."""


class InvalidMessage(UserExportError, ValueError):
    """The message names no job this app could have written."""


class CannotExport(UserExportError):
    """Graph will not give what the export needs (the group or administrative unit cannot be
    listed, its members come without their properties, delta refuses a column, a changes
    run's snapshot is gone): the job fails; `reason` says why and what to do."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SnapshotUnusable(CannotExport):
    """The snapshot a changes run builds on is gone or is not this export's."""


class Resync(UserExportError):
    """The changes run cannot stand: the job runs as a full run instead; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JobConflict(UserExportError):
    """Someone else changed the row since it was read (its ETag moved on)."""


class JobStopped(UserExportError):
    """The job is no longer running (cancelled, or failed elsewhere); its work stopped."""


class OutOfTime(UserExportError):
    """The invocation's time budget is spent: checkpoint and continue in a new message."""


class TokensOutpaced(UserExportError):
    """Graph's page tokens expire before the next invocation can use them."""
