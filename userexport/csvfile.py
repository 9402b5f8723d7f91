"""Streaming CSV encoding: UTF-8 with BOM, CRLF, RFC 4180 quoting and a formula-injection guard."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .columns import AuthData, Column, cell

BOM = "\ufeff".encode()

# Spreadsheets run a cell that starts with one of these as a formula (OWASP CSV injection).
_ALWAYS_GUARDED = ("=", "@", "\t", "\r")
_SIGNS = ("+", "-")
_FIRST = frozenset("=@\t\r+-")  # a cheap first look: most cells start with none of these
# A phone number: '+', digits, then groups of digits separated by spaces (e.g. +1 425 555 0100).
_PHONE = re.compile(r"\+\d{1,4}(?: [\d()\-.]+)+")


def guard(text: str) -> str:
    """Prefixes ' to a cell a spreadsheet would run as a formula; phone numbers stay as they are."""
    if text.startswith(_ALWAYS_GUARDED):
        return "'" + text
    if text.startswith(_SIGNS) and not _PHONE.fullmatch(text):
        return "'" + text
    return text


class CsvEncoder:
    """Turns Graph user dicts into CSV bytes, one batch of rows at a time."""

    def __init__(self, columns: tuple[Column, ...], *, formula_guard: bool = True) -> None:
        self._columns = columns
        self._guard = formula_guard
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\r\n")

    def header(self) -> bytes:
        """The BOM and the header row: the first bytes of the file."""
        return BOM + self.encode([[c.name for c in self._columns]])

    def rows(self, users: Iterable[Mapping[str, Any]], auth: Mapping[str, AuthData]) -> bytes:
        return self.encode(self.cells(users, auth))

    def cells(
        self, users: Iterable[Mapping[str, Any]], auth: Mapping[str, AuthData]
    ) -> list[list[Any]]:
        """The users' rows as cells, before encoding (a delta run merges some with a snapshot's
        row: encode() then writes them as rows() would)."""
        # The hot loop of an export: plain properties are read straight from the dict; None and
        # booleans pass as they are (csv.writer writes them as cell() would); the guard looks
        # at text only when its first character could start a formula.
        getters = [(c.prop, c.value) for c in self._columns]
        guarded = self._guard
        empty: AuthData = {}
        rows = []
        for user in users:
            user_auth = auth.get(user.get("id", ""), empty)
            row: list[Any] = []
            for prop, value in getters:
                v = user.get(prop) if prop else value(user, user_auth)
                if v is not None and v.__class__ is not str and v.__class__ is not bool:
                    v = cell(v)  # numbers, lists, objects
                if guarded and v and v.__class__ is str and v[0] in _FIRST:
                    v = guard(v)
                row.append(v)
            rows.append(row)
        return rows

    def encode(self, rows: list[list[Any]]) -> bytes:
        self._writer.writerows(rows)
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text.encode("utf-8")


def encode_rows(header: list[str], rows: Iterable[list[str]], *, with_header: bool) -> bytes:
    """Plain CSV bytes for small files (the errors file), BOM and header first when asked."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    if with_header:
        writer.writerow(header)
    writer.writerows([guard(v) if v else v for v in row] for row in rows)
    data = buffer.getvalue().encode("utf-8")
    return BOM + data if with_header else data
