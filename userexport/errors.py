"""The exceptions a caller's request can raise, drawn once: each names the part of the request
at fault (`field`, a JSON path such as columns[2] or filter.department), so the API answers a
400 naming it and the CLI names its flag."""

from __future__ import annotations


class InvalidRequest(ValueError):
    """The request is wrong in one field; `field` names it, `detail` says what to send."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field
        self.detail = detail


class InvalidFilter(InvalidRequest):
    """The request's filter is wrong in one place (`field`: filter.<key>)."""
