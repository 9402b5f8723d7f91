"""Who did what to which export: one log line per create, cancel and answer that hands out
download links, so Application Insights can answer "who downloaded the export of everyone".

The Python worker sends a log record's message, not its extra fields, to Application Insights,
so the line is its own structure: `audit ` and a JSON object (`action`, `jobId`, `caller` by
kind and id: ids are fine in logs, names are not). docs/deploy.md has the KQL.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from .caller import Caller

log = logging.getLogger("userexport.audit")

CREATE, CANCEL, DOWNLOAD_LINKS = "create", "cancel", "downloadLinks"


def record(action: str, job_id: str, caller: Caller, **details: Any) -> None:
    entry = {
        "action": action,
        "jobId": job_id,
        "caller": {"kind": caller.kind, "id": caller.id},
        **details,
    }
    log.info("audit %s", orjson.dumps(entry).decode())
