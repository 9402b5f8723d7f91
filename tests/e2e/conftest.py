"""The real stack for end-to-end tests: Azurite (https + OAuth), tenantsim and devhost."""

from __future__ import annotations

import contextlib
import csv
import io
import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import aiohttp.connector
import httpx
import orjson
import pytest
from azure.data.tables.aio import TableClient
from azure.identity.aio import ManagedIdentityCredential
from azure.storage.blob.aio import ContainerClient
from azure.storage.queue import TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient

from devtools.stack import LocalStack
from devtools.tenantsim import SimConfig, iter_users
from tests.conftest import ROOMY_ADMISSION
from userexport.columns import DEFAULT_COLUMN_NAMES, resolve
from userexport.csvfile import CsvEncoder
from userexport.messages import ExportMessage
from userexport.settings import EXPORTS_CONTAINER, JOBS_QUEUE, JOBS_TABLE, POISON_QUEUE

USERS = 2500
SEED = 7


# Tests of partitioned runs use tenants of a few hundred or thousand users, which the app
# would list as one sequence (small tenant) or in fewer partitions (little work): split every
# listing into 8 partitions unless a test says otherwise.
SPLIT_EVERY_LISTING = {
    "USEREXPORT_PARTITIONS": "8",
    "USEREXPORT_SMALL_TENANT_USERS": "0",
    "USEREXPORT_PARTITION_SECONDS": "0",
    **ROOMY_ADMISSION,  # with no small tenant, every export needs a place (admission.py)
}


@contextlib.contextmanager
def running_stack(workdir: Path, **options: Any) -> Iterator[LocalStack]:
    """A LocalStack, with its settings in this process's environment while it runs."""
    options["app_env"] = {**SPLIT_EVERY_LISTING, **options.get("app_env", {})}
    with LocalStack(workdir=workdir, **options) as running:
        # The app's clients, built in this process by tests that call the worker directly,
        # verify TLS with aiohttp's default context, made when aiohttp was imported (before
        # the stack's CA existed): it learns to trust that CA too, as SSL_CERT_FILE says.
        aiohttp.connector._SSL_CONTEXT_VERIFIED.load_verify_locations(
            cafile=running.env["SSL_CERT_FILE"]
        )
        with pytest.MonkeyPatch.context() as patch:
            for name, value in running.env.items():
                patch.setenv(name, value)
            yield running


@contextlib.contextmanager
def app_settings(stack: LocalStack) -> Iterator[None]:
    """This stack's app settings in the environment, for code run in-process against it (other
    stacks of the same test module may have set theirs since)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in stack.env.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    # Per-user latency makes an export last a few seconds, so its states can be watched; a
    # short time budget makes longer partitions continue across queue messages.
    with running_stack(
        tmp_path_factory.mktemp("stack"),
        users=USERS,
        seed=SEED,
        sim_args=["--latency-per-user-ms", "0.5"],
        app_env={"USEREXPORT_TIME_BUDGET_SECONDS": "1"},
    ) as running:
        yield running


@pytest.fixture(scope="session")
def api(stack: LocalStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.api_url, timeout=60) as client:
        yield client


@pytest.fixture(scope="session")
def storage_http(stack: LocalStack) -> Iterator[httpx.Client]:
    """A plain HTTP client that trusts the local CA, as a script downloading a SAS URL would."""
    trust = ssl.create_default_context(cafile=stack.env["SSL_CERT_FILE"])
    with httpx.Client(timeout=60, verify=trust) as client:
        yield client


class Storage:
    """What a test inspects in Azure Storage, through the real SDKs and the managed identity."""

    def __init__(self, stack: LocalStack) -> None:
        self._env = stack.env
        # aiohttp read SSL_CERT_FILE when it was imported, before the stack existed.
        self._trust = stack.env["SSL_CERT_FILE"]
        self.credential = ManagedIdentityCredential()
        self.table = TableClient(
            self._env["AzureWebJobsStorage__tableServiceUri"],
            JOBS_TABLE,
            credential=self.credential,
            connection_verify=self._trust,
        )
        self.queue = self.queue_client(JOBS_QUEUE)
        self.poison = self.queue_client(POISON_QUEUE)
        self.exports = ContainerClient(
            self._env["AzureWebJobsStorage__blobServiceUri"],
            EXPORTS_CONTAINER,
            credential=self.credential,
            connection_verify=self._trust,
        )

    def queue_client(self, name: str) -> QueueClient:
        """A queue client that sends base64 messages, as the app and the Functions host do."""
        return QueueClient(
            self._env["AzureWebJobsStorage__queueServiceUri"],
            name,
            credential=self.credential,
            message_encode_policy=TextBase64EncodePolicy(),
            connection_verify=self._trust,
        )

    async def send_job_message(self, job_id: str, *, partition: int | None = None) -> None:
        """A message as the app sends it: a job's plan step, or one of its partitions."""
        await self.queue.send_message(ExportMessage(job_id, partition).encode())

    async def close(self) -> None:
        for client in (self.table, self.queue, self.poison, self.exports, self.credential):
            await client.close()

    async def plan_prefixes(self, job_id: str) -> list[str]:
        """The UPN prefixes the job's partitions listed, in the order their rows are written."""
        rows = self.table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": f"parts-{job_id}"}
        )
        parts = sorted([(r["RowKey"], orjson.loads(r["prefixes"])) async for r in rows])
        return [prefix for _, prefixes in parts for prefix in prefixes]

    async def job_ids(self) -> set[str]:
        return {e["RowKey"] async for e in self.table.list_entities(select=["RowKey"])}

    async def blob_names(self) -> set[str]:
        return {b.name async for b in self.exports.list_blobs()}


@pytest.fixture
async def storage(stack: LocalStack) -> Storage:
    store = Storage(stack)
    yield store
    await store.close()


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


# Columns whose values the oracle below reads straight from the tenant's data.
ORACLE_COLUMNS = {
    "objectId": "id",
    "userPrincipalName": "userPrincipalName",
    "displayName": "displayName",
}


def oracle_csv(users: list[dict[str, Any]], *, prefixes: list[str]) -> bytes:
    """The bytes an exact export of ORACLE_COLUMNS (formulaGuard off) must have, built with the
    csv module straight from the tenant's data, not with the app's encoder: for each UPN prefix
    of the plan in turn ("" for all), its users in listing order."""
    ordered = [u for p in prefixes for u in users if u["userPrincipalName"].lower().startswith(p)]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(ORACLE_COLUMNS)
    writer.writerows([u.get(prop) or "" for prop in ORACLE_COLUMNS.values()] for u in ordered)
    return "\ufeff".encode() + text.getvalue().encode()


def emails(users: Iterable[dict[str, Any]]) -> dict[str, str]:
    """What the authenticationEmail column must hold, by object id: the first email method of
    each user that has one (straight from the tenant's data)."""
    return {
        u["id"]: u["authentication"]["emailMethods"][0]["emailAddress"]
        for u in users
        if (u.get("authentication") or {}).get("emailMethods")
    }


def download(stack: LocalStack, url: str) -> bytes:
    """What a script gets from a SAS URL (trusting the stack's CA)."""
    trust = ssl.create_default_context(cafile=stack.env["SSL_CERT_FILE"])
    with httpx.Client(timeout=60, verify=trust) as client:
        answer = client.get(url)
        answer.raise_for_status()
        return answer.content


def expected_csv(
    config: SimConfig,
    *,
    prefixes: list[str],
    columns: tuple[str, ...] = DEFAULT_COLUMN_NAMES,
) -> bytes:
    """The exact bytes of an uninterrupted export of the simulated tenant, built in-process
    from the tenant's own data: for each UPN prefix of the plan in turn ("" for all), its users
    in listing order, with their authentication methods."""
    encoder = CsvEncoder(resolve(columns))
    users = list(iter_users(config))
    ordered = [u for p in prefixes for u in users if u["userPrincipalName"].lower().startswith(p)]
    methods = {u["id"]: u.get("authentication") or {} for u in users}
    return encoder.header() + encoder.rows(ordered, methods)


ORACLE_BODY = {"columns": list(ORACLE_COLUMNS), "formulaGuard": False}


def finished(api: httpx.Client, started: httpx.Response, *, timeout: float = 180) -> dict:
    """The final state (200) of the export a POST started (202)."""
    assert started.status_code == 202, started.text
    final = wait_for_export(api, started.headers["Location"], timeout=timeout)[-1]
    assert final.status_code == 200, final.text
    return final.json()


def run_export(api: httpx.Client, body: dict | None = None, *, timeout: float = 180) -> dict:
    """Starts an export with this client of the API and waits for its final state: the one way
    the e2e tests run an export over HTTP."""
    return finished(api, api.post("/api/exports", json=body or {}), timeout=timeout)


def export(stack: LocalStack, body: dict | None = None, *, timeout: float = 180) -> dict:
    """run_export on this stack's API."""
    with httpx.Client(base_url=stack.api_url, timeout=60) as client:
        return run_export(client, body, timeout=timeout)


def parse(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def set_faults(stack: LocalStack, faults: dict) -> None:
    """Sets the simulated tenant's faults at run time (tenantsim's /_sim/faults)."""
    httpx.post(stack.sim["faults"], json=faults, timeout=10).raise_for_status()


def read_csv(data: bytes) -> list[list[str]]:
    assert data.startswith("\ufeff".encode()), "the file starts with a UTF-8 BOM"
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def start(api: httpx.Client, body: dict | None = None) -> httpx.Response:
    answer = api.post("/api/exports", json=body) if body is not None else api.post("/api/exports")
    assert answer.status_code == 202, answer.text
    return answer


def job_events(stack: LocalStack, job_id: str) -> list[dict[str, Any]]:
    """A job's telemetry events (userexport/telemetry.py), from every devhost's log, in order."""
    found = []
    for log in stack.devhost_logs:
        for line in log.read_text(errors="replace").splitlines():
            _, marker, entry = line.partition(" event ")
            if marker and entry.startswith("{"):
                event = orjson.loads(entry)
                if event["jobId"] == job_id:
                    found.append(event)
    return found


def wait_until(
    api: httpx.Client, job_id: str, done: Callable[[dict], bool], timeout: float = 90
) -> dict:
    """Polls the export until `done` says it got where the test wants it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = api.get(f"/api/exports/{job_id}").json()
        if done(body):
            return body
        time.sleep(0.3)
    raise AssertionError(f"export {job_id} never reached the state wanted: {body}")
