"""The commands: each takes the API client and the parsed flags, prints its result on stdout
and returns the exit code (or raises CliError)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from .client import ApiClient
from .download import WITH_FILES, changes_name, download_files, file_names
from .errors import ApiProblem, CliError, Exit
from .output import describe, emit, emit_json, outcome, summary, table
from .progress import FINAL, ProgressDisplay
from .request import check_idempotency_key, export_body, flag_for
from .waiting import WaitTimedOut, wait_for


def start(client: ApiClient, args: argparse.Namespace) -> int:
    body = export_body(args)
    key = check_idempotency_key(args.idempotency_key)
    waiting = args.wait or args.out is not None
    if args.timeout is not None and not waiting:
        raise CliError(Exit.USAGE, "--timeout is for waiting: add --wait or --out.")
    if args.out is not None and args.dry_run:
        raise CliError(
            Exit.USAGE, "--out: a dry run writes no files; use --wait to see its estimate."
        )
    if args.out is not None:
        check_out(args.out, args.file_name, force=args.force, changes=args.mode == "delta")
    try:
        started = client.start(body, idempotency_key=key)
    except ApiProblem as problem:
        raise refused(problem) from None
    job_id = str(started.job.get("id"))
    status = started.job.get("status")
    if started.replayed:
        note(f"--idempotency-key was used before: this is export {job_id} ({status}).")
    if not waiting:
        if args.json:
            emit_json(started.job)
        else:
            what = "Dry run" if args.dry_run else "Export"
            note(f"{what} {job_id} {status}; follow it with: userexport wait {job_id}")
            emit(job_id)
        return Exit.SUCCEEDED
    first_delay = 0.0 if status in FINAL else started.retry_after
    return follow(client, job_id, args, first_delay=first_delay)


def wait(client: ApiClient, args: argparse.Namespace) -> int:
    if args.out is not None:
        check_out(args.out, None, force=args.force)
    return follow(client, args.id, args)


def status(client: ApiClient, args: argparse.Namespace) -> int:
    return show(get_job(client, args.id), args)


def list_jobs(client: ApiClient, args: argparse.Namespace) -> int:
    try:
        page = client.jobs(page_size=args.page_size)
        jobs = list(page.get("value") or [])
        while args.all and page.get("nextLink"):
            page = client.jobs(page_size=args.page_size, next_link=str(page["nextLink"]))
            jobs += page.get("value") or []
    except ApiProblem as problem:
        raise refused(problem) from None
    more = None if args.all else page.get("nextLink")
    if args.json:
        emit_json({"value": jobs, **({"nextLink": more} if more else {})})
    elif jobs:
        for line in table(jobs):
            emit(line)
    else:
        note("No exports yet.")
    if more and not args.json:
        note("More exports are listed with --all (or a larger --page-size).")
    return Exit.SUCCEEDED


def cancel(client: ApiClient, args: argparse.Namespace) -> int:
    try:
        job = client.cancel(args.id)
    except ApiProblem as problem:
        if problem.status != 409:
            raise refused(problem, job_id=args.id) from None
        job = get_job(client, args.id)
        if args.json:
            emit_json(job)
        if job.get("status") in FINAL:
            raise CliError(
                Exit.FAILED,
                f"export {args.id} already finished ({job.get('status')}); nothing to cancel.",
            ) from None
        raise CliError(
            Exit.FAILED,
            f"export {args.id} is already writing its files; it can no longer be cancelled.",
        ) from None
    if args.json:
        emit_json(job)
    else:
        emit(f"Export {job.get('id', args.id)} cancelled.")
    return Exit.SUCCEEDED


def download(client: ApiClient, args: argparse.Namespace) -> int:
    job = get_job(client, args.id)
    if job.get("status") not in FINAL:
        raise CliError(
            Exit.FAILED,
            f"export {args.id} is {job.get('status')}, not finished; wait for it with "
            f"`userexport wait {args.id} --out {args.out}`.",
        )
    if job.get("status") not in WITH_FILES:
        if args.json:
            emit_json(job)
        raise CliError(Exit.FAILED, f"{summary(job)} It has no files.")
    return finish(client, job, args)


def latest(client: ApiClient, args: argparse.Namespace) -> int:
    """The newest export of a series that has files: shown as `status` shows an export, or
    with --out, its files downloaded as `download` does."""
    try:
        job = client.latest(args.series)
    except ApiProblem as problem:
        if problem.status == 404 and problem.field != "series":
            # An app without the route takes `latest` for an export id.
            raise CliError(
                Exit.UNREACHABLE,
                "the app does not know GET /api/exports/latest; is it an older version?",
            ) from None
        raise refused(problem) from None
    if args.out is not None:
        return finish(client, job, args)
    return show(job, args)


# --- shared steps ---------------------------------------------------------------------------


def follow(
    client: ApiClient, job_id: str, args: argparse.Namespace, *, first_delay: float = 0.0
) -> int:
    """Waits for the job with progress on stderr, then finish()."""
    display = ProgressDisplay(sys.stderr, terminal=on_terminal())
    try:
        job = wait_for(client, job_id, display, timeout=args.timeout, first_delay=first_delay)
    except WaitTimedOut as timed_out:
        if args.json:
            emit_json(timed_out.job)
        raise CliError(
            Exit.FAILED,
            f"--timeout: export {job_id} is still {timed_out.job.get('status')} after "
            f"{timed_out.timeout:g} s; it goes on (userexport wait {job_id}).",
        ) from None
    except ApiProblem as problem:
        raise refused(problem, job_id=job_id) from None
    return finish(client, job, args)


def show(job: dict[str, Any], args: argparse.Namespace) -> int:
    """Prints a job as `status` does: its JSON with --json, else its description."""
    if args.json:
        emit_json(job)
    else:
        for line in describe(job):
            emit(line)
    return Exit.SUCCEEDED


def finish(client: ApiClient, job: dict[str, Any], args: argparse.Namespace) -> int:
    """Downloads the files if --out asks for them; prints the outcome; its exit code."""
    paths = None
    if args.out is not None and job.get("status") in WITH_FILES:
        paths = download_files(client, job, args.out, force=args.force)
    if args.json:
        document = dict(job)
        if paths:
            document["downloaded"] = paths.as_json()
        emit_json(document)
    else:
        emit(summary(job))
        if paths:
            if paths.changes is not None and paths.csv is not None:
                emit(f"Changes file: {paths.changes}")
            emit(f"Errors file: {paths.errors}")
            # Last line: the CSV's path (a delta run without a snapshot: its changes file's),
            # for `| tail -n 1`.
            emit(str(paths.main))
    return outcome(job)


def get_job(client: ApiClient, job_id: str) -> dict[str, Any]:
    try:
        return client.job(job_id)[0]
    except ApiProblem as problem:
        raise refused(problem, job_id=job_id) from None


def refused(problem: ApiProblem, *, job_id: str | None = None) -> CliError:
    """A 4xx of the API as an input error, naming the flag (or the ID) it is about."""
    if problem.status == 404 and job_id is not None:
        return CliError(Exit.USAGE, f"ID: there is no export with id {job_id!r}.")
    flag = flag_for(problem.field)
    where = f"{flag}: " if flag else (f"{problem.field}: " if problem.field else "")
    return CliError(Exit.USAGE, f"{where}{problem.detail}")


def check_out(folder: Path, file_name: str | None, *, force: bool, changes: bool = False) -> None:
    """Refuses, before anything starts, an --out that is a file or already holds the files
    (with `changes`, a delta run's changes file too)."""
    if folder.exists() and not folder.is_dir():
        raise CliError(Exit.USAGE, f"--out: {folder} is not a folder.")
    if file_name and not force:
        names = list(file_names({"fileName": file_name}))
        if changes:
            names.append(changes_name({"fileName": file_name}))
        for name in names:
            if (folder / name).exists():
                raise CliError(
                    Exit.USAGE,
                    f"{folder / name} already exists; pass --force to overwrite, or choose "
                    "another --out or --file-name.",
                )


def on_terminal() -> bool:
    return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
