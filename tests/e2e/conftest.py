"""The real stack for end-to-end tests: Azurite (https + OAuth), tenantsim and devhost."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from azure.data.tables.aio import TableClient
from azure.identity.aio import ManagedIdentityCredential
from azure.storage.blob.aio import ContainerClient
from azure.storage.queue.aio import QueueClient

from devtools.stack import LocalStack
from userexport.settings import EXPORTS_CONTAINER, JOBS_QUEUE, JOBS_TABLE, POISON_QUEUE

USERS = 2500
SEED = 7


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    work = tmp_path_factory.mktemp("stack")
    # Per-user latency makes an export last a few seconds, so its states can be watched; a
    # short time budget makes every export continue across several queue messages.
    with LocalStack(
        users=USERS,
        seed=SEED,
        workdir=work,
        sim_args=["--latency-per-user-ms", "0.5"],
        app_env={"USEREXPORT_TIME_BUDGET_SECONDS": "1"},
    ) as running:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in running.env.items():
                patch.setenv(name, value)
            yield running


@pytest.fixture(scope="session")
def api(stack: LocalStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.api_url, timeout=60) as client:
        yield client


@pytest.fixture(scope="session")
def storage_http(stack: LocalStack) -> Iterator[httpx.Client]:
    """A plain HTTP client that trusts the local CA, as a script downloading a SAS URL would."""
    with httpx.Client(timeout=60, verify=stack.env["SSL_CERT_FILE"]) as client:
        yield client


class Storage:
    """What a test inspects in Azure Storage, through the real SDKs and the managed identity."""

    def __init__(self, stack: LocalStack) -> None:
        env = stack.env
        self.credential = ManagedIdentityCredential()
        self.table = TableClient(
            env["AzureWebJobsStorage__tableServiceUri"], JOBS_TABLE, credential=self.credential
        )
        self.queue = QueueClient(
            env["AzureWebJobsStorage__queueServiceUri"], JOBS_QUEUE, credential=self.credential
        )
        self.poison = QueueClient(
            env["AzureWebJobsStorage__queueServiceUri"], POISON_QUEUE, credential=self.credential
        )
        self.exports = ContainerClient(
            env["AzureWebJobsStorage__blobServiceUri"],
            EXPORTS_CONTAINER,
            credential=self.credential,
        )

    async def job_ids(self) -> set[str]:
        return {e["RowKey"] async for e in self.table.list_entities(select=["RowKey"])}

    async def blob_names(self) -> set[str]:
        return {b.name async for b in self.exports.list_blobs()}

    async def queued_messages(self) -> int:
        properties = await self.queue.get_queue_properties()
        return properties.approximate_message_count


@pytest.fixture
async def storage(stack: LocalStack) -> Storage:
    store = Storage(stack)
    yield store
    for client in (store.table, store.queue, store.poison, store.exports, store.credential):
        await client.close()


def wait_for_export(
    api: httpx.Client, location: str, *, timeout: float = 120
) -> list[httpx.Response]:
    """Polls like a Logic Apps HTTP action: every Retry-After seconds until a non-202."""
    answers = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = api.get(location)
        answers.append(answer)
        if answer.status_code != 202:
            return answers
        assert "Location" in answer.headers and "Retry-After" in answer.headers
        time.sleep(float(answer.headers["Retry-After"]))
    raise AssertionError(f"the export at {location} did not finish within {timeout} s")
