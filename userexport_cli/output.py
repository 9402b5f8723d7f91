"""What goes to stdout: JSON documents for --json, short human text otherwise; and the exit
code an export's final status means."""

from __future__ import annotations

import json
import sys
from typing import Any

from .errors import Exit

OUTCOMES = {
    "succeeded": Exit.SUCCEEDED,
    "completedWithErrors": Exit.COMPLETED_WITH_ERRORS,
    "failed": Exit.FAILED,
    "cancelled": Exit.FAILED,
}


def outcome(job: dict[str, Any]) -> Exit:
    return OUTCOMES.get(str(job.get("status")), Exit.FAILED)


def emit(text: str) -> None:
    print(text, file=sys.stdout, flush=True)


def emit_json(document: Any) -> None:
    emit(json.dumps(document, indent=2, ensure_ascii=False))


def summary(job: dict[str, Any]) -> str:
    """One sentence on a job's outcome."""
    job_id, status = job.get("id"), job.get("status")
    users, errors = job.get("userCount"), job.get("errorCount")
    counts = ""
    if isinstance(users, int):
        counts = f": {users:,} users, {errors or 0:,} error{'' if errors == 1 else 's'}"
    reason = str(job.get("reason") or "").rstrip(".")
    if status == "succeeded":
        return f"Export {job_id} succeeded{counts}."
    if status == "completedWithErrors":
        said = f" ({reason})" if reason else ""
        return f"Export {job_id} completed with errors{counts}{said}; see the errors file."
    if status == "failed":
        return f"Export {job_id} failed: {reason or 'no reason given'}."
    if status == "cancelled":
        return f"Export {job_id} was cancelled{': ' + reason if reason else ''}."
    return f"Export {job_id} is {status}."


def describe(job: dict[str, Any]) -> list[str]:
    """`status`'s human output: the description's fields that are set, one per line."""
    written, total = job.get("usersWritten"), job.get("estimatedTotal")
    users = f"{written:,}" if isinstance(written, int) else None
    if users is not None and isinstance(total, int) and job.get("status") in ("queued", "running"):
        users += f" of about {total:,}"
    partitions = job.get("partitions")
    if isinstance(partitions, int) and isinstance(job.get("partitionsDone"), int):
        partitions = f"{job['partitionsDone']} of {partitions} done"
    filter_ = job.get("filter")
    rows = [
        ("id", job.get("id")),
        ("status", job.get("status")),
        ("trigger", job.get("trigger")),
        ("created", job.get("createdAt")),
        ("started", job.get("startedAt")),
        ("finished", job.get("finishedAt")),
        ("users written", users),
        ("users in file", job.get("userCount")),
        ("errors", job.get("errorCount")),
        ("partitions", partitions),
        ("estimated completion", job.get("estimatedCompletionAt")),
        ("file name", job.get("fileName")),
        ("columns", ", ".join(job.get("columns") or []) or None),
        ("filter", json.dumps(filter_) if filter_ else None),
        ("formula guard", job.get("formulaGuard")),
        ("plan note", job.get("planNote")),
        ("failing since", job.get("failingSince")),
        ("last error", job.get("lastError")),
        ("reason", job.get("reason")),
        ("files valid until", job.get("urlsExpireAt")),
    ]
    shown = [(name, value) for name, value in rows if value is not None]
    width = max(len(name) for name, _ in shown)
    return [f"{name + ':':<{width + 1}} {value}" for name, value in shown]


def table(jobs: list[dict[str, Any]]) -> list[str]:
    """`list`'s human output: one line per job, newest first as the app lists them."""
    header = ("ID", "STATUS", "TRIGGER", "CREATED", "USERS", "FILE")
    rows = [header] + [
        (
            str(job.get("id", "")),
            str(job.get("status", "")),
            str(job.get("trigger", "")),
            str(job.get("createdAt") or ""),
            _users(job),
            str(job.get("fileName", "")),
        )
        for job in jobs
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True))
        + "  "
        + row[-1]
        for row in rows
    ]


def _users(job: dict[str, Any]) -> str:
    for key in ("userCount", "usersWritten"):
        if isinstance(job.get(key), int):
            return f"{job[key]:,}"
    return ""
