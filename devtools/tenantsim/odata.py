"""OData query options for /users: $filter parsing into predicates, $select and $expand.

The filter grammar is the subset Graph's directory supports for users, with Graph's split
between basic queries and advanced ones (those need ConsistencyLevel: eventual + $count).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .properties import EXPANDABLE, SINGLE_USER_ONLY, USER_PROPERTIES

Predicate = Callable[[dict[str, Any]], bool]


class ODataError(Exception):
    """A query Graph would refuse: HTTP status, Graph error code, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


_CANONICAL = {p.lower(): p for p in USER_PROPERTIES}
_STRING_PROPS = frozenset(
    (
        "userType",
        "department",
        "companyName",
        "userPrincipalName",
        "displayName",
        "mail",
        "givenName",
        "surname",
        "jobTitle",
        "city",
        "country",
        "state",
        "usageLocation",
        "officeLocation",
        "mobilePhone",
        "id",
        "employeeId",
        "employeeType",
        "ageGroup",
        "consentProvidedForMinor",
        "creationType",
        "externalUserState",
        "postalCode",
        "streetAddress",
        "preferredLanguage",
        "mailNickname",
        "onPremisesSamAccountName",
    )
)
_BOOL_PROPS = frozenset({"accountEnabled", "onPremisesSyncEnabled"})
_DATE_PROPS = frozenset({"createdDateTime"})
_COLLECTION_PROPS = frozenset({"otherMails", "businessPhones", "proxyAddresses"})
_ENDSWITH_PROPS = frozenset({"mail", "userPrincipalName", "otherMails", "proxyAddresses"})
_COMPARE_OPS = frozenset({"eq", "ne", "ge", "le", "gt", "lt"})


def canonical_property(name: str) -> str:
    """Graph's spelling of a user property name (Graph matches names case-insensitively)."""
    canon = _CANONICAL.get(name.strip().lower())
    if canon is None:
        raise ODataError(
            400,
            "BadRequest",
            f"Could not find a property named '{name.strip()}' on type 'microsoft.graph.user'.",
        )
    return canon


# ---------------------------------------------------------------------------- tokenizer
_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>'(?:[^']|'')*')
    | (?P<punct>[(),:])
    | (?P<word>[A-Za-z_][A-Za-z0-9_./]*)
    | (?P<num>[0-9][0-9A-Za-z:.+\-]*)
    )""",
    re.VERBOSE,
)


@dataclass
class _Tok:
    kind: str  # str | punct | word | num | end
    text: str
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
    n = len(text)
    while pos < n:
        if text[pos].isspace():
            pos += 1
            continue
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise _syntax(f"character '{text[pos]}' at position {pos} is not valid")
        kind = m.lastgroup or "word"
        toks.append(_Tok(kind, m.group(kind), m.start(kind)))
        pos = m.end()
    toks.append(_Tok("end", "", n))
    return toks


def _syntax(detail: str) -> ODataError:
    return ODataError(400, "BadRequest", f"Invalid filter clause: Syntax error: {detail}.")


def _unsupported(detail: str) -> ODataError:
    return ODataError(400, "Request_UnsupportedQuery", detail)


# ---------------------------------------------------------------------------- literals
_NULL = object()


def _parse_datetime(text: str) -> datetime:
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise _syntax(f"'{text}' is not a valid DateTimeOffset literal") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _as_datetime(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return _parse_datetime(value)
    except ODataError:
        return None


@dataclass
class Filter:
    """A parsed $filter: the predicate, whether it is an advanced query, properties used."""

    predicate: Predicate
    advanced: bool
    properties: set[str] = field(default_factory=set)
    text: str = ""
    in_values: int = 0  # values of the longest `in` list (Graph allows 15 outside advanced)


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokenize(text)
        self.i = 0
        self.advanced = False
        self.props: set[str] = set()
        self.in_values = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, text: str) -> None:
        tok = self.take()
        if tok.text != text:
            raise _syntax(f"'{text}' expected at position {tok.pos}")

    def is_word(self, *words: str) -> bool:
        tok = self.peek()
        return tok.kind == "word" and tok.text.lower() in words

    # or_expr := and_expr ('or' and_expr)*
    def parse(self) -> Predicate:
        pred = self.or_expr()
        tok = self.peek()
        if tok.kind != "end":
            raise _syntax(f"unexpected '{tok.text}' at position {tok.pos}")
        return pred

    def or_expr(self) -> Predicate:
        parts = [self.and_expr()]
        while self.is_word("or"):
            self.take()
            parts.append(self.and_expr())
        if len(parts) == 1:
            return parts[0]
        return lambda u: any(p(u) for p in parts)

    def and_expr(self) -> Predicate:
        parts = [self.unary()]
        while self.is_word("and"):
            self.take()
            parts.append(self.unary())
        if len(parts) == 1:
            return parts[0]
        return lambda u: all(p(u) for p in parts)

    def unary(self) -> Predicate:
        if self.is_word("not"):
            self.take()
            self.advanced = True
            inner = self.unary()
            return lambda u: not inner(u)
        return self.primary()

    def primary(self) -> Predicate:
        tok = self.peek()
        if tok.text == "(":
            self.take()
            pred = self.or_expr()
            self.expect(")")
            return pred
        if tok.kind != "word":
            raise _syntax(f"unexpected '{tok.text or 'end of filter'}' at position {tok.pos}")
        nxt = self.toks[self.i + 1]
        if nxt.text == "(":
            return self.function()
        return self.comparison()

    def prop(self) -> str:
        tok = self.take()
        if tok.kind != "word":
            raise _syntax(f"property name expected at position {tok.pos}")
        if "/" in tok.text:
            raise _unsupported(f"Unsupported query: lambda or path '{tok.text}' in $filter.")
        name = canonical_property(tok.text)
        if name not in _STRING_PROPS | _BOOL_PROPS | _DATE_PROPS | _COLLECTION_PROPS:
            raise _unsupported(
                f"Unsupported or invalid query filter clause specified for property "
                f"'{name}' of resource 'User'."
            )
        self.props.add(name)
        return name

    def literal(self, prop: str) -> Any:
        tok = self.take()
        if tok.kind == "str":
            value: Any = tok.text[1:-1].replace("''", "'")
            if prop in _BOOL_PROPS:
                raise _type_error(prop)
            if prop in _DATE_PROPS:
                return _parse_datetime(value)
            return value
        if tok.kind == "word" and tok.text in ("true", "false"):
            if prop not in _BOOL_PROPS:
                raise _type_error(prop)
            return tok.text == "true"
        if tok.kind == "word" and tok.text == "null":
            return _NULL
        if tok.kind == "num":
            if prop in _DATE_PROPS:
                return _parse_datetime(tok.text)
            raise _type_error(prop)
        raise _syntax(f"literal expected at position {tok.pos}")

    def comparison(self) -> Predicate:
        prop = self.prop()
        op_tok = self.take()
        op = op_tok.text.lower()
        if op == "in":
            self.expect("(")
            values = [self.literal(prop)]
            while self.peek().text == ",":
                self.take()
                values.append(self.literal(prop))
            self.expect(")")
            self.in_values = max(self.in_values, len(values))
            tests = [_compare(prop, "eq", v) for v in values]
            return lambda u: any(t(u) for t in tests)
        if op not in _COMPARE_OPS:
            raise _syntax(f"unknown operator '{op_tok.text}' at position {op_tok.pos}")
        value = self.literal(prop)
        if op == "ne" or (value is _NULL):
            self.advanced = True
        if value is _NULL and op not in ("eq", "ne"):
            raise _syntax("null can only be compared with eq or ne")
        if prop in _BOOL_PROPS and op not in ("eq", "ne"):
            raise _unsupported(f"Operator '{op}' is not supported for property '{prop}'.")
        return _compare(prop, op, value)

    def function(self) -> Predicate:
        name_tok = self.take()
        fn = name_tok.text.lower()
        if fn not in ("startswith", "endswith"):
            raise _unsupported(f"Unsupported function '{name_tok.text}' in $filter.")
        self.expect("(")
        prop = self.prop()
        self.expect(",")
        tok = self.take()
        if tok.kind != "str":
            raise _syntax(f"string literal expected at position {tok.pos}")
        self.expect(")")
        needle = tok.text[1:-1].replace("''", "'").lower()
        if prop not in _STRING_PROPS | _COLLECTION_PROPS:
            raise _unsupported(f"Operator '{name_tok.text}' is not supported for '{prop}'.")
        if fn == "endswith":
            if prop not in _ENDSWITH_PROPS:
                raise _unsupported(f"Operator 'endsWith' is not supported for '{prop}'.")
            self.advanced = True

            def test(v: Any) -> bool:
                return isinstance(v, str) and v.lower().endswith(needle)
        else:

            def test(v: Any) -> bool:
                return isinstance(v, str) and v.lower().startswith(needle)

        if prop in _COLLECTION_PROPS:
            return lambda u: any(test(v) for v in (u.get(prop) or ()))
        return lambda u: test(u.get(prop))


def _type_error(prop: str) -> ODataError:
    return ODataError(
        400,
        "BadRequest",
        f"A binary operator with incompatible types was detected for property '{prop}'.",
    )


def _compare(prop: str, op: str, value: Any) -> Predicate:
    if value is _NULL:
        if op == "eq":
            return lambda u: u.get(prop) is None
        return lambda u: u.get(prop) is not None
    if prop in _BOOL_PROPS:
        if op == "eq":
            return lambda u: u.get(prop) is value
        return lambda u: u.get(prop) is not value
    if prop in _DATE_PROPS:
        cmp = _ORDER[op]
        return lambda u: (d := _as_datetime(u.get(prop))) is not None and cmp(d, value)
    needle = value.lower()
    cmp = _ORDER[op]
    if prop in _COLLECTION_PROPS:
        if op == "ne":
            return lambda u: (
                not any(isinstance(v, str) and v.lower() == needle for v in u.get(prop) or ())
            )
        return lambda u: any(
            isinstance(v, str) and cmp(v.lower(), needle) for v in u.get(prop) or ()
        )
    if op == "ne":
        return lambda u: not (isinstance(v := u.get(prop), str) and v.lower() == needle)
    return lambda u: isinstance(v := u.get(prop), str) and cmp(v.lower(), needle)


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "ge": lambda a, b: a >= b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "lt": lambda a, b: a < b,
}


def parse_filter(text: str) -> Filter:
    """Parse a $filter value; raises ODataError with Graph's status and code."""
    if not text.strip():
        raise _syntax("the filter is empty")
    parser = _Parser(text)
    pred = parser.parse()
    return Filter(pred, parser.advanced, parser.props, text, parser.in_values)


def parse_select(text: str) -> list[str]:
    """$select names in Graph's spelling, id added; 501 for single-user-only properties."""
    names: list[str] = []
    for part in text.split(","):
        if not part.strip():
            continue
        name = canonical_property(part)
        if name in SINGLE_USER_ONLY:
            raise ODataError(
                501,
                "NotImplemented",
                f"The property '{name}' does not support the requested operation on a "
                "collection of users.",
            )
        if name not in names:
            names.append(name)
    if not names:
        raise ODataError(400, "BadRequest", "The $select query option is empty.")
    return names


_EXPAND = re.compile(r"^\s*([A-Za-z]+)\s*(?:\(\s*\$select\s*=\s*([^)]*)\))?\s*$")


@dataclass
class Expand:
    """$expand=manager[($select=...)]: the navigation property and its selected fields."""

    prop: str
    select: list[str] | None


def parse_expand(text: str) -> Expand:
    m = _EXPAND.match(text)
    if m is None or m.group(1).lower() not in {e.lower() for e in EXPANDABLE}:
        raise ODataError(
            400,
            "BadRequest",
            f"Parsing OData Select and Expand failed: unsupported $expand '{text}'.",
        )
    select = parse_select(m.group(2)) if m.group(2) is not None else None
    return Expand("manager", select)
