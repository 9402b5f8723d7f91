"""The app in the test's own process: the fast lane's end-to-end tests (make check).

The real parts a user's system has stay real: Azurite (https, OAuth) for Blob, Queue and Table,
the simulated tenant over real HTTP for Graph and the managed identity endpoint, the real Storage
SDKs, azure-identity and msgraph-sdk in front of them. What is in-process is the function host:
devhost's `hosted` runs the app's HTTP routes and pumps its queue triggers on the test's own
event loop, so there is no host process to start, and coverage sees the worker and the API.
Crashes, restarts, several instances and the host's own HTTP stay in tests/e2e.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from devtools.devhost.host import hosted
from devtools.stack import ROOT, LocalStack
from tests.e2e.conftest import running_stack

USERS = 240
SEED = 11


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Azurite and the simulated tenant, no function host: this process hosts the app."""
    with running_stack(tmp_path_factory.mktemp("app"), users=USERS, seed=SEED, devhosts=0) as stack:
        yield stack


@pytest.fixture(scope="module")
async def app(local: LocalStack) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app hosted in this process, on the stack's settings."""
    async with (
        hosted(host_json=ROOT / "host.json") as url,
        httpx.AsyncClient(base_url=url, timeout=60) as client,
    ):
        yield client
