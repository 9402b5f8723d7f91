"""Timer trigger: the nightly export, on the UTC NCRONTAB schedule of an app setting."""

from __future__ import annotations

import logging

import azure.functions as func
import orjson

from .. import api
from ..caller import TIMER
from ..clients import get_clients
from ..series import NIGHTLY, prune

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.timer_trigger(arg_name="timer", schedule="%USEREXPORT_NIGHTLY_SCHEDULE%")
async def nightly_export(timer: func.TimerRequest) -> None:
    """Starts the nightly series' next run (in delta mode, with its snapshot, by default), then
    applies every series' retention."""
    clients = await get_clients()
    mode = clients.settings.nightly_mode
    body = {
        "series": NIGHTLY,
        "mode": mode,
        **({"snapshot": True} if mode == "delta" else {}),
    }
    response = await api.create_export(
        clients, body=orjson.dumps(body), trigger="timer", links=api.Links(""), caller=TIMER
    )
    log.info(
        "Nightly export queued as job %s (past due: %s).", response.body.get("id"), timer.past_due
    )
    await prune(clients.jobs, clients.series, clients.exports, keep=clients.settings.series_keep)
