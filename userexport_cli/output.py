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
    "estimated": Exit.SUCCEEDED,  # a dry run did what was asked: it planned and estimated
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
    changes = changes_text(job)
    counts += f" ({changes})" if changes else ""
    if status == "succeeded":
        return f"Export {job_id} succeeded{counts}."
    if status == "completedWithErrors":
        said = f" ({reason})" if reason else ""
        return f"Export {job_id} completed with errors{counts}{said}; see the errors file."
    if status == "failed":
        return f"Export {job_id} failed: {reason or 'no reason given'}."
    if status == "cancelled":
        return f"Export {job_id} was cancelled{': ' + reason if reason else ''}."
    if status == "estimated":
        said = f" ({reason})" if reason else ""
        return (
            f"Export {job_id} estimated (a dry run, nothing exported): {estimate_text(job)}{said}."
        )
    return f"Export {job_id} is {status}."


def changes_text(job: dict[str, Any]) -> str | None:
    """A delta run's changes in a few words: `changes since J: 3 added, 2 updated, 1 removed`,
    or `a full run` (None for an export that is not a delta run, or not planned yet)."""
    delta = job.get("delta")
    if not isinstance(delta, dict):
        return None
    if delta.get("kind") == "full":
        return "a full run of a delta series"
    if delta.get("kind") != "changes":
        return None
    counted = [
        f"{delta[key]:,} {key}"
        for key in ("added", "updated", "removed")
        if isinstance(delta.get(key), int) and not isinstance(delta.get(key), bool)
    ]
    since = f" since {delta['since']}" if delta.get("since") else ""
    return f"changes{since}" + (f": {', '.join(counted)}" if counted else "")


def delta_rows(job: dict[str, Any]) -> list[tuple[str, object]]:
    """`status`'s lines for a delta run's `delta` block."""
    delta = job.get("delta")
    if not isinstance(delta, dict):
        return []
    counts = [
        f"{delta[key]:,} {key}"
        for key in ("added", "updated", "removed")
        if isinstance(delta.get(key), int) and not isinstance(delta.get(key), bool)
    ]
    source = delta.get("authenticationColumnsFrom")
    carried = None
    if isinstance(source, dict) and source.get("jobId"):
        at = f" ({source['at']})" if source.get("at") else ""
        carried = f"export {source['jobId']}{at}"
    return [
        ("delta run", delta.get("kind")),
        ("delta reason", delta.get("reason")),
        ("changes since", delta.get("since")),
        ("changes", ", ".join(counts) or None),
        ("authentication columns from", carried),
    ]


def estimate_text(job: dict[str, Any]) -> str:
    """What a job's plan says it takes: `2,500 users, 2 partitions, 7 Graph requests (9 RU),
    about 12 s`, then the authentication-methods pace it assumed (`authentication methods at 5
    requests per 10 s (documented)`) when it gave one (the parts the app gave)."""
    estimate = job.get("estimate") if isinstance(job.get("estimate"), dict) else {}
    total = job.get("estimatedTotal")
    parts = [f"{total:,} users" if isinstance(total, int) else "users not counted"]
    partitions = estimate.get("partitions", job.get("partitions"))
    if isinstance(partitions, int):
        parts.append(f"{partitions} partition{'' if partitions == 1 else 's'}")
    kinds = (
        "planningRequests",
        "listingRequests",
        "signInRequests",
        "lookupRequests",
        "reportRequests",
    )
    counted = [estimate.get(k) for k in kinds]
    if any(isinstance(n, int) for n in counted):
        requests = sum(n for n in counted if isinstance(n, int))
        units = estimate.get("resourceUnits")
        ru = f" ({units:,} RU)" if isinstance(units, int) else ""
        parts.append(f"{requests:,} Graph request{'' if requests == 1 else 's'}{ru}")
    seconds = estimate.get("durationSeconds")
    if isinstance(seconds, int | float) and not isinstance(seconds, bool):
        pace = estimate.get("paceSource")
        parts.append(f"about {duration(seconds)}" + (f" ({pace} pace)" if pace else ""))
    rate = estimate.get("authenticationRate")
    if isinstance(rate, int | float) and not isinstance(rate, bool):
        source = estimate.get("authenticationRateSource")
        shown = f"{rate:,.0f}" if rate >= 10 else f"{rate:.3g}"
        parts.append(
            f"authentication methods at {shown} requests per 10 s"
            + (f" ({source})" if source else "")
        )
    return ", ".join(parts)


def duration(seconds: float) -> str:
    """Seconds as a person reads them: `45 s`, `12 min`, `1 h 05 min`, `2 d 3 h`."""
    whole = max(round(seconds), 0)
    if whole < 90:
        return f"{whole} s"
    minutes = round(whole / 60)
    if minutes < 90:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def caller_text(caller: Any) -> str | None:
    """Who made a request, as the app records it: `principal <name> (<object id>)`,
    `function key key:3f9a…`, `the nightly timer`, `anonymous`; None when not recorded."""
    if not isinstance(caller, dict) or not caller.get("kind"):
        return None
    kind, id_, name = caller["kind"], caller.get("id"), caller.get("name")
    if kind == "principal":
        return f"principal {name} ({id_})" if name else f"principal {id_}"
    if kind == "functionKey":
        return f"function key {id_}"
    return "the nightly timer" if kind == "timer" else str(kind)


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
        ("place in the queue", job.get("queuePosition")),
        ("trigger", job.get("trigger")),
        ("started by", caller_text(job.get("caller"))),
        ("cancelled by", caller_text(job.get("cancelledBy"))),
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
        ("dry run", True if job.get("dryRun") else None),
        ("series", job.get("series")),
        ("mode", job.get("mode") if job.get("series") or job.get("mode") == "delta" else None),
        ("snapshot", True if job.get("snapshot") else None),
        ("fewer lookups", True if job.get("fewerLookups") else None),
        ("registration report", job.get("registrationReportTime")),
        *delta_rows(job),
        ("estimate", estimate_text(job) if job.get("estimate") else None),
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
    header = ("ID", "STATUS", "TRIGGER", "SERIES", "CREATED", "USERS", "FILE")
    rows = [header] + [
        (
            str(job.get("id", "")),
            str(job.get("status", "")),
            str(job.get("trigger", "")),
            str(job.get("series") or "-"),
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
    if job.get("status") == "estimated" and isinstance(job.get("estimatedTotal"), int):
        return f"~{job['estimatedTotal']:,}"
    for key in ("userCount", "usersWritten"):
        if isinstance(job.get(key), int):
            return f"{job[key]:,}"
    return ""
