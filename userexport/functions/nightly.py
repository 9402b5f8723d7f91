"""Timer trigger: the nightly export, on the UTC NCRONTAB schedule of an app setting."""

from __future__ import annotations

import logging

import azure.functions as func

from .. import api
from ..clients import get_clients

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.timer_trigger(arg_name="timer", schedule="%USEREXPORT_NIGHTLY_SCHEDULE%")
async def nightly_export(timer: func.TimerRequest) -> None:
    clients = await get_clients()
    response = await api.create_export(clients, body=b"", trigger="timer", links=api.Links(""))
    log.info(
        "Nightly export queued as job %s (past due: %s).", response.body.get("id"), timer.past_due
    )
