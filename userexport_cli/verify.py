"""A downloaded file checked against what the app committed: the job's `files` give each file's
rows, bytes and SHA-256 (the app's userexport/filefacts.py; this client is installed without
the app, so it counts the same way here: CSV records after the header, a CRLF inside a quoted
cell being part of its record)."""

from __future__ import annotations

import hashlib
from typing import Any


class FileCheck:
    """Fed the file's bytes as they arrive; `mismatch` says what differs from the job's."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._bytes = self._records = self._quotes = 0
        self._tail = b""  # a CR at the end of a chunk, whose LF may start the next
        self._open = False

    def add(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self._bytes += len(chunk)
        data, start = self._tail + chunk, 0
        while (end := data.find(b"\r\n", start)) >= 0:
            self._quotes += data.count(b'"', start, end)
            if self._quotes % 2 == 0:
                self._records, self._quotes, self._open = self._records + 1, 0, False
            start = end + 2
        keep = 1 if data.endswith(b"\r") else 0
        self._quotes += data.count(b'"', start, len(data) - keep)
        self._open = self._open or len(data) - keep > start
        self._tail = data[len(data) - keep :]

    def facts(self) -> dict[str, Any]:
        records = self._records + (1 if self._open or self._tail else 0)
        return {"rows": max(records - 1, 0), "bytes": self._bytes, "sha256": self._hash.hexdigest()}

    def mismatch(self, expected: dict[str, Any]) -> str | None:
        """What differs from `expected` (the job's facts of this file), None when all agree."""
        got = self.facts()
        wrong = [
            f"{name} {got[name]} where the export committed {expected[name]}"
            for name in ("rows", "bytes", "sha256")
            if name in expected and got[name] != expected[name]
        ]
        return "; ".join(wrong) or None
