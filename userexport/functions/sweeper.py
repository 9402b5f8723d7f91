"""Timer trigger: the sweep that moves on stalled jobs (sweep.py), every five minutes."""

from __future__ import annotations

import logging

import azure.functions as func

from ..clients import get_clients
from ..sweep import sweep

bp = func.Blueprint()
log = logging.getLogger(__name__)

SWEEP_SCHEDULE = "0 */5 * * * *"  # every five minutes, UTC


@bp.timer_trigger(arg_name="timer", schedule=SWEEP_SCHEDULE)
async def sweep_stalled_exports(timer: func.TimerRequest) -> None:
    acted = await sweep(await get_clients())
    if acted:
        log.warning("Sweep moved on %d stalled export(s): %s", len(acted), ", ".join(acted))
