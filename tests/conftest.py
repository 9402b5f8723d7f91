"""The suite's lanes: every test is marked by what it starts, so a lane can be run alone.

- `stack`: real local stacks (Azurite, tenantsim, devhost processes) or the CLI against one;
- `browser`: Chromium driving the results page (on a stack too);
- `chaos`: the slice of `make chaos` that runs in the suite.

`make check` runs what is left (unit tests, tenantsim's own tests, the infra checks and the
in-process Graph tests): the lane to run on every change. `make test` runs every lane.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent
LANES = {"e2e": ("stack",), "cli": ("stack",), "ui": ("stack", "browser")}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(item.path).relative_to(HERE).parts[0]
        for lane in LANES.get(folder, ()):
            item.add_marker(lane)
        if Path(item.path).name == "test_chaos_slice.py":
            item.add_marker("chaos")
