"""The clients the app uses, built once per process (per event loop) from the settings.

One set per instance, even when many invocations start at once: one credential (one token
cache), one connection pool per service, one adaptive limiter per Graph bucket (one picture of
Graph's throttling, shared with the other instances through the jobs table: pacestore.py). Storage
calls retry connection failures and server errors with exponential backoff (an Azurite
restart, a storage blip); Graph's retries are the limiters' (graph/).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.data.tables.aio import TableServiceClient
from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential
from azure.storage.blob.aio import BlobServiceClient, ContainerClient
from azure.storage.queue import TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient
from msgraph import GraphServiceClient

from . import telemetry
from .blobsink import SasMinter
from .graph import AdaptiveLimiter, AuthMethodsReader, GraphReader
from .idempotency import IdempotencyStore
from .jobs import JobStore
from .pacestore import PaceStore
from .series import SeriesStore
from .settings import EXPORTS_CONTAINER, JOBS_QUEUE, JOBS_TABLE, POISON_QUEUE, Settings

log = logging.getLogger(__name__)

# About a minute of retries, 1 s to 32 s apart: longer than a storage blip, shorter than a budget.
BLOB_QUEUE_RETRY: dict[str, Any] = {"retry_total": 6, "initial_backoff": 1, "increment_base": 2}
TABLE_RETRY: dict[str, Any] = {
    "retry_total": 7,
    "retry_connect": 7,
    "retry_read": 7,
    "retry_status": 7,
    "retry_backoff_factor": 1.0,
    "retry_backoff_max": 32,
}


@dataclass
class Clients:
    settings: Settings
    exports: ContainerClient
    sas: SasMinter
    jobs: JobStore
    idempotency: IdempotencyStore
    queue: QueueClient
    poison_queue: QueueClient
    graph: GraphReader
    pace: PaceStore
    series: SeriesStore
    auth_methods: AuthMethodsReader
    tables: TableServiceClient
    blobs: BlobServiceClient
    credential: AsyncTokenCredential

    async def ensure_resources(self) -> None:
        """Creates the container, table and queues when missing (infra/ creates them in Azure)."""
        creates: list[Callable[[], Awaitable[object]]] = [
            self.exports.create_container,
            lambda: self.tables.create_table(JOBS_TABLE),
            self.queue.create_queue,
            self.poison_queue.create_queue,
        ]
        for create in creates:
            try:
                await create()
            except ResourceExistsError:
                pass
            except HttpResponseError as error:
                # infra/ gives the identity rights on the exports container only, not to create
                # containers: Azure refuses the create (403) of the container it deployed.
                if error.status_code != 403:
                    raise
                log.info("Not allowed to create a resource infra/ deploys (403); using it.")

    async def close(self) -> None:
        """Closes every client's sessions (the host's shutdown, a test's end)."""
        closers = [self.queue, self.poison_queue, self.blobs, self.tables, self.credential]
        for client in closers:
            await client.close()
        await self.graph.close()


def build_clients(settings: Settings) -> Clients:
    if settings.credential == "default":
        credential: AsyncTokenCredential = DefaultAzureCredential(
            managed_identity_client_id=settings.client_id
        )
    else:
        credential = ManagedIdentityCredential(client_id=settings.client_id)
    storage = settings.storage
    encode = TextBase64EncodePolicy()  # the Functions queue trigger expects base64

    def queue(name: str) -> QueueClient:
        if storage.connection_string:
            return QueueClient.from_connection_string(
                storage.connection_string, name, message_encode_policy=encode, **BLOB_QUEUE_RETRY
            )
        return QueueClient(
            storage.queue_uri or "",
            name,
            credential=credential,
            message_encode_policy=encode,
            **BLOB_QUEUE_RETRY,
        )

    if storage.connection_string:
        tables = TableServiceClient.from_connection_string(storage.connection_string, **TABLE_RETRY)
    else:
        tables = TableServiceClient(storage.table_uri or "", credential=credential, **TABLE_RETRY)
    # The exports live in a storage account of their own (infra/: nobody with rights on them
    # has rights on the host's storage, where the deployed code is), reached with the identity.
    if storage.exports_uri:
        blobs = BlobServiceClient(storage.exports_uri, credential=credential, **BLOB_QUEUE_RETRY)
    else:
        blobs = BlobServiceClient.from_connection_string(
            storage.connection_string or "", **BLOB_QUEUE_RETRY
        )
    graph_client = GraphServiceClient(credentials=credential, scopes=[settings.graph_scope])
    graph_client.request_adapter.base_url = settings.graph_base_url
    # Graph's budget is per app and tenant, shared by every instance: so is what they learn.
    pace = PaceStore(tables.get_table_client(JOBS_TABLE), tenant=settings.client_id or "default")
    graph = GraphReader(
        graph_client,
        limiter=AdaptiveLimiter(bucket="listing", shared=pace),
        sign_in_limiter=AdaptiveLimiter(bucket="signIn", shared=pace),
        auth_limiter=AdaptiveLimiter(bucket="auth", shared=pace),
        storm_seconds=settings.storm_seconds,
    )
    return Clients(
        settings=settings,
        exports=blobs.get_container_client(EXPORTS_CONTAINER),
        sas=SasMinter(blobs, lifetime=settings.sas_lifetime),
        jobs=JobStore(tables.get_table_client(JOBS_TABLE), on_finished=telemetry.finished),
        idempotency=IdempotencyStore(tables.get_table_client(JOBS_TABLE)),
        queue=queue(JOBS_QUEUE),
        poison_queue=queue(POISON_QUEUE),
        graph=graph,
        pace=pace,
        series=SeriesStore(tables.get_table_client(JOBS_TABLE)),
        auth_methods=AuthMethodsReader(graph, storm_seconds=settings.storm_seconds),
        tables=tables,
        blobs=blobs,
        credential=credential,
    )


# The running loop's clients, as a task every caller awaits: invocations that start together
# share the one build instead of racing to make several.
_cache: dict[int, asyncio.Task[Clients]] = {}


async def get_clients() -> Clients:
    """The clients of the running event loop: async clients cannot cross loops."""
    loop_id = id(asyncio.get_running_loop())
    task = _cache.get(loop_id)
    if task is None or (task.done() and task.exception() is not None):
        _cache.clear()  # a new loop means the old one is gone (tests call functions directly)
        task = _cache[loop_id] = asyncio.ensure_future(_build())
    return await asyncio.shield(task)


async def _build() -> Clients:
    clients = build_clients(Settings.from_env())
    await clients.ensure_resources()
    return clients


async def close_clients() -> None:
    """Closes the running loop's clients, if any were built."""
    task = _cache.pop(id(asyncio.get_running_loop()), None)
    if task is not None and task.done() and task.exception() is None:
        await task.result().close()
