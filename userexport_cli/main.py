"""The `userexport` command line: the parser, and main() turning errors into exit codes."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from . import commands
from .connection import AUDIENCE_VARIABLE, KEY_VARIABLE, URL_VARIABLE, connect
from .errors import CliError, Exit
from .request import FILTER_FLAGS

EPILOG = (
    "exit codes: 0 succeeded (or estimated, for --dry-run), 1 failed or cancelled (or a wait "
    "timed out), 2 usage or input error, 3 completed with errors, 4 cannot reach or authorise "
    "with the app. "
    f"Environment: {URL_VARIABLE}, {KEY_VARIABLE}, {AUDIENCE_VARIABLE}. See docs/cli.md."
)
# filter key -> (metavar, help)
FILTER_HELP = {
    "userType": (None, "Member or Guest"),
    "accountEnabled": ("true|false", "enabled or disabled accounts"),
    "department": ("NAME", "exactly this department"),
    "companyName": ("NAME", "exactly this company name"),
    "domain": ("DOMAIN", "UPN ends in @DOMAIN, e.g. contoso.com"),
    "userPrincipalNamePrefix": ("PREFIX", "UPN starts with PREFIX"),
    "displayNamePrefix": ("PREFIX", "display name starts with PREFIX"),
    "createdAfter": ("DATE", "created on or after: ISO 8601 date, or date-time with offset"),
    "createdBefore": ("DATE", "created on or before: ISO 8601 date, or date-time with offset"),
    "group": ("ID", "only the members of this group (object id), nested groups' users too"),
    "administrativeUnit": ("ID", "only the user members of this administrative unit (object id)"),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Callable[..., int] = args.run
    try:
        with connect(args, os.environ) as client:
            return int(run(client, args))
    except CliError as error:
        print(f"userexport: {error.message}", file=sys.stderr, flush=True)
        return int(error.code)
    except KeyboardInterrupt:
        print("userexport: interrupted.", file=sys.stderr, flush=True)
        return int(Exit.INTERRUPTED)
    except BrokenPipeError:
        # stdout closed early (`| head`): nothing more to say, and nowhere to say it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return int(Exit.FAILED)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="userexport",
        description="Start, follow, cancel and download exports of a userexport function app.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    add_connection_flags(parser, suppress=False)
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    def command(name: str, run: Callable[..., int], help_: str) -> argparse.ArgumentParser:
        sub = subparsers.add_parser(name, help=help_, description=help_, epilog=EPILOG)
        add_connection_flags(sub, suppress=True)
        sub.set_defaults(run=run)
        return sub

    start = command("start", commands.start, "start an export (and, with --wait, follow it)")
    start.add_argument(
        "--columns",
        metavar="A,B,C",
        help="column names in order, or a preset: adminCenter (the default: the admin "
        "center's 25), preview, mfa (MFA and self-service password reset registration, from "
        "Graph's registration report), all",
    )
    for key, (flag, dest) in FILTER_FLAGS.items():
        metavar, help_ = FILTER_HELP[key]
        options: dict[str, Any] = {"dest": dest, "metavar": metavar, "help": help_}
        if key == "userType":
            options.update(choices=["Member", "Guest"], type=str.capitalize)
        if key == "accountEnabled":
            options["type"] = _boolean
        start.add_argument(flag, **options)
    start.add_argument("--file-name", metavar="NAME.csv", help="the download's file name")
    start.add_argument(
        "--no-formula-guard",
        action="store_true",
        help="do not prefix ' to cells a spreadsheet would run as formulas",
    )
    start.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="starting again with the same key (and flags) within 24 h gives the same export",
    )
    start.add_argument(
        "--dry-run",
        action="store_true",
        help="plan and estimate only, exporting nothing: with --wait, prints how many users, "
        "partitions, Graph requests and RU it would take, and how long",
    )
    start.add_argument(
        "--series",
        metavar="NAME",
        help="file the export under a series (letters, digits, _ and -; 1 to 63 characters, "
        "the first a letter or digit); `userexport latest --series NAME` finds its newest",
    )
    start.add_argument(
        "--mode",
        choices=["full", "delta"],
        help="full (the default) exports every user; delta (needs --series) exports what "
        "changed since the series' last run, as a changes file",
    )
    start.add_argument(
        "--snapshot",
        action="store_true",
        help="with --mode delta: also rebuild the full CSV from the last one and the changes",
    )
    start.add_argument(
        "--redefine",
        action="store_true",
        help="with --series: change the series' definition (columns, filter, mode, formula "
        "guard, snapshot) to this run's on purpose; its latest and retention then go by it",
    )
    start.add_argument(
        "--fewer-lookups",
        action="store_true",
        help="read Graph's registration report first and look up authentication methods only "
        "for users it lists with a phone or email method (fewer requests; the report may lag "
        "a few hours, so a method registered since is missed); not with --mode delta",
    )
    start.add_argument("--wait", action="store_true", help="follow the export until it ends")
    add_wait_flags(start)

    status = command("status", commands.status, "show an export")
    status.add_argument("id", metavar="ID", help="the export's id")

    listing = command("list", commands.list_jobs, "list exports, newest first")
    listing.add_argument(
        "--page-size", type=_page_size, default=50, metavar="N", help="1 to 200 (default 50)"
    )
    listing.add_argument("--all", action="store_true", help="every page, not just the first")

    waiting = command("wait", commands.wait, "follow an export until it ends")
    waiting.add_argument("id", metavar="ID", help="the export's id")
    add_wait_flags(waiting)

    cancelling = command("cancel", commands.cancel, "cancel a queued or running export")
    cancelling.add_argument("id", metavar="ID", help="the export's id")

    downloading = command("download", commands.download, "download a finished export's files")
    downloading.add_argument("id", metavar="ID", help="the export's id")
    downloading.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="folder for the files"
    )
    downloading.add_argument("--force", action="store_true", help="overwrite files in DIR")

    newest = command(
        "latest",
        commands.latest,
        "show the newest export of a series that has files (and, with --out, download them)",
    )
    newest.add_argument("--series", required=True, metavar="NAME", help="the series' name")
    newest.add_argument(
        "--out", type=Path, metavar="DIR", help="download its files into DIR (as download does)"
    )
    newest.add_argument("--force", action="store_true", help="overwrite files in DIR")
    return parser


def add_connection_flags(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The flags every command takes, before or after its name. A subcommand's copies default
    to "not given", so they never undo the same flag given before the command's name."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    group = parser.add_argument_group("connection and output")
    group.add_argument(
        "--url", default=default(None), help=f"the function app's URL (env {URL_VARIABLE})"
    )
    group.add_argument(
        "--key",
        default=default(None),
        help=f"a function key, sent as x-functions-key (env {KEY_VARIABLE}, preferred)",
    )
    group.add_argument(
        "--entra",
        action="store_true",
        default=default(False),
        help="send an Entra token from azure-identity's DefaultAzureCredential (App Service "
        "authentication); a key, if given, is sent too",
    )
    group.add_argument(
        "--audience",
        default=default(None),
        help=f"Application ID URI the token is for, with --entra (env {AUDIENCE_VARIABLE})",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print one JSON document on stdout",
    )


def add_wait_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="download the files into DIR when it ends (implies --wait); the CSV's path is the "
        "last line printed",
    )
    parser.add_argument("--force", action="store_true", help="overwrite files in DIR")
    parser.add_argument(
        "--timeout",
        type=_seconds,
        metavar="S",
        help="stop waiting after S seconds (exit 1; the export goes on)",
    )


def _boolean(value: str) -> bool:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise argparse.ArgumentTypeError(f"{value!r} is not true or false")


def _page_size(value: str) -> int:
    if value.isdigit() and 1 <= int(value) <= 200:
        return int(value)
    raise argparse.ArgumentTypeError(f"{value!r} is not a whole number from 1 to 200")


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds >= 0 and seconds != float("inf"):
        return seconds
    raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds (0 or more)")


def _version() -> str:
    try:
        return metadata.version("userexport")
    except metadata.PackageNotFoundError:
        return "(not installed)"
