"""The suite's lanes: every test is marked by what it starts, so a lane can be run alone.

- `stack`: real local stacks (Azurite, tenantsim, devhost processes) or the CLI against one;
- `browser`: Chromium driving the results page (on a stack too);
- `chaos`: the slice of `make chaos` that runs in the suite.

`make check` runs what is left (unit tests, tenantsim's own tests, the infra checks, the
in-process Graph tests, and tests/app: the worker and the API in the test's own process against
Azurite and the simulated tenant): the lane to run on every change. `make test` runs every lane.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from _pytest.nodeid import NodeId  # pytest 9's structured node id (pinned in requirements-dev)

HERE = Path(__file__).parent

# Stacks whose tests are not about admission.py give it room: more exports at once than any of
# them starts, a backlog none fills, a waiting export asking again every second.
# tests/e2e/test_admission.py sets its own.
ROOMY_ADMISSION = {
    "USEREXPORT_MAX_RUNNING_EXPORTS": "8",
    "USEREXPORT_MAX_QUEUED_EXPORTS": "1000",
    "USEREXPORT_ADMISSION_SECONDS": "1",
}
LANES = {"e2e": ("stack",), "cli": ("stack",), "ui": ("stack", "browser")}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    _unique_ids(items)
    for item in items:
        folder = Path(item.path).relative_to(HERE).parts[0]
        for lane in LANES.get(folder, ()):
            item.add_marker(lane)
        if Path(item.path).name == "test_chaos_slice.py":
            item.add_marker("chaos")


def _unique_ids(items: list[pytest.Item]) -> None:
    """schemathesis gives every API operation's test the function's node id: pytest-xdist, which
    hands tests to workers by id, would run one operation of eight. Each gets its own name."""
    counts = Counter(item.nodeid for item in items)
    for item in items:
        if counts[item.nodeid] > 1:
            item._id = NodeId.parse(f"{item.path.relative_to(HERE.parent).as_posix()}::{item.name}")
    repeated = [nodeid for nodeid, n in Counter(i.nodeid for i in items).items() if n > 1]
    if repeated:
        raise pytest.UsageError(f"tests share node ids, so some would never run: {repeated}")
