"""The flags of `start` as the body of POST /api/exports, and the way back: the flag that a
problem's `field` (a JSON path such as `columns[2]` or `filter.createdAfter`) is about."""

from __future__ import annotations

import argparse
import re
from typing import Any

from .errors import CliError, Exit

# filter key -> (flag, argparse dest), in the API's order
FILTER_FLAGS: dict[str, tuple[str, str]] = {
    "userType": ("--user-type", "user_type"),
    "accountEnabled": ("--account-enabled", "account_enabled"),
    "department": ("--department", "department"),
    "companyName": ("--company-name", "company_name"),
    "domain": ("--domain", "domain"),
    "userPrincipalNamePrefix": ("--upn-prefix", "upn_prefix"),
    "displayNamePrefix": ("--display-name-prefix", "display_name_prefix"),
    "createdAfter": ("--created-after", "created_after"),
    "createdBefore": ("--created-before", "created_before"),
    "group": ("--group", "group"),
    "administrativeUnit": ("--administrative-unit", "administrative_unit"),
}
PRESETS = ("adminCenter", "preview", "mfa", "all")  # names --columns passes as they are
FIELD_FLAGS = {
    "columns": "--columns",
    "fileName": "--file-name",
    "formulaGuard": "--no-formula-guard",
    "dryRun": "--dry-run",
    "filter": "the filter flags",
    "Idempotency-Key": "--idempotency-key",
    "pageSize": "--page-size",
    "series": "--series",
    "mode": "--mode",
    "snapshot": "--snapshot",
    "redefine": "--redefine",
    "fewerLookups": "--fewer-lookups",
}
_FIELD_HEAD = re.compile(r"[A-Za-z-]+")
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]{1,255}")


def export_body(args: argparse.Namespace) -> dict[str, Any]:
    """The POST body: only what was given, so the app's defaults apply to the rest."""
    body: dict[str, Any] = {}
    if args.columns is not None:
        body["columns"] = parse_columns(args.columns)
    filter_ = {
        key: getattr(args, dest)
        for key, (_, dest) in FILTER_FLAGS.items()
        if getattr(args, dest) is not None
    }
    if filter_:
        body["filter"] = filter_
    if args.file_name is not None:
        body["fileName"] = args.file_name
    if args.no_formula_guard:
        body["formulaGuard"] = False
    if getattr(args, "dry_run", False):
        body["dryRun"] = True
    if getattr(args, "series", None) is not None:
        body["series"] = args.series
    if getattr(args, "mode", None) is not None:
        body["mode"] = args.mode
    if getattr(args, "snapshot", False):
        body["snapshot"] = True
    if getattr(args, "redefine", False):
        body["redefine"] = True
    if getattr(args, "fewer_lookups", False):
        body["fewerLookups"] = True
    return body


def parse_columns(value: str) -> list[str] | str:
    """`a,b,c` (blanks around names allowed) as a list, or a preset's name as it is; names are
    checked by the app."""
    if value.strip() in PRESETS:
        return value.strip()
    names = [name.strip() for name in value.split(",")]
    if not value.strip() or any(not name for name in names):
        raise CliError(Exit.USAGE, "--columns: give column names separated by commas, none empty.")
    return names


def check_idempotency_key(value: str | None) -> str | None:
    if value is not None and not _PRINTABLE_ASCII.fullmatch(value):
        raise CliError(
            Exit.USAGE,
            "--idempotency-key: 1 to 255 printable ASCII characters (letters, digits, "
            "punctuation, spaces).",
        )
    return value


def flag_for(field: str | None) -> str | None:
    """The flag behind a problem's field: `columns[2]` -> --columns, `filter.domain` -> --domain."""
    if not field:
        return None
    if field.startswith("filter."):
        key = field.removeprefix("filter.")
        flag = FILTER_FLAGS.get(key)
        return flag[0] if flag else FIELD_FLAGS["filter"]
    head = _FIELD_HEAD.match(field)
    return FIELD_FLAGS.get(head.group(0)) if head else None
