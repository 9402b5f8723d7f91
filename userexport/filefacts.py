"""What a consumer can check a file by: its rows, its bytes and the SHA-256 of exactly the bytes
committed. The commit reads each file back once it is committed (block blobs are assembled
from blocks staged by many invocations: nothing saw the whole before), puts the facts on the
job and on the blob's metadata, so whoever holds only the SAS URL can check them too
(`x-ms-meta-sha256`, `x-ms-meta-rows`, `x-ms-meta-bytes` on its GET or HEAD).

Rows are the CSV's records after the header (RFC 4180: a CRLF inside a quoted field is not the
end of a record); the command-line client counts them the same way (userexport_cli/verify.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FileFacts:
    rows: int
    bytes: int
    sha256: str  # lowercase hex

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "bytes": self.bytes, "sha256": self.sha256}

    def metadata(self) -> dict[str, str]:
        return {"rows": str(self.rows), "bytes": str(self.bytes), "sha256": self.sha256}


class Tally:
    """The facts of a file fed to it chunk by chunk, in one pass."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._bytes = 0
        self._records = 0
        self._quotes = 0  # quotes since the current record began
        self._tail = b""  # a CR at the end of a chunk, whose LF may start the next
        self._open = False  # bytes since the last record ended

    def add(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self._bytes += len(chunk)
        data, start = (self._tail + chunk if self._tail else chunk), 0
        while (end := data.find(b"\r\n", start)) >= 0:
            self._quotes += data.count(b'"', start, end)
            if self._quotes % 2 == 0:  # balanced: the CRLF ends the record
                self._records, self._quotes, self._open = self._records + 1, 0, False
            start = end + 2
        keep = 1 if data.endswith(b"\r") else 0
        self._quotes += data.count(b'"', start, len(data) - keep)
        self._open = self._open or len(data) - keep > start
        self._tail = data[len(data) - keep :]

    def facts(self) -> FileFacts:
        records = self._records + (1 if self._open or self._tail else 0)
        return FileFacts(max(records - 1, 0), self._bytes, self._hash.hexdigest())
