"""The clients the app uses, built once per process (per event loop) from the settings."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ResourceExistsError
from azure.data.tables.aio import TableServiceClient
from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential
from azure.storage.blob.aio import BlobServiceClient, ContainerClient
from azure.storage.queue import TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient
from msgraph import GraphServiceClient

from .authmethods import AuthMethodsReader
from .blobsink import SasMinter
from .graph import GraphReader
from .jobs import JobStore
from .settings import (
    EXPORTS_CONTAINER,
    GRAPH_SCOPE,
    JOBS_QUEUE,
    JOBS_TABLE,
    POISON_QUEUE,
    Settings,
)


@dataclass
class Clients:
    settings: Settings
    exports: ContainerClient
    sas: SasMinter
    jobs: JobStore
    queue: QueueClient
    poison_queue: QueueClient
    graph: GraphReader
    auth_methods: AuthMethodsReader
    tables: TableServiceClient

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
                storage.connection_string, name, message_encode_policy=encode
            )
        return QueueClient(
            storage.queue_uri or "", name, credential=credential, message_encode_policy=encode
        )

    if storage.connection_string:
        blobs = BlobServiceClient.from_connection_string(storage.connection_string)
        tables = TableServiceClient.from_connection_string(storage.connection_string)
    else:
        blobs = BlobServiceClient(storage.blob_uri or "", credential=credential)
        tables = TableServiceClient(storage.table_uri or "", credential=credential)
    graph_client = GraphServiceClient(credentials=credential, scopes=[GRAPH_SCOPE])
    graph_client.request_adapter.base_url = settings.graph_base_url
    graph = GraphReader(graph_client)
    return Clients(
        settings=settings,
        exports=blobs.get_container_client(EXPORTS_CONTAINER),
        sas=SasMinter(blobs, lifetime=settings.sas_lifetime),
        jobs=JobStore(tables.get_table_client(JOBS_TABLE)),
        queue=queue(JOBS_QUEUE),
        poison_queue=queue(POISON_QUEUE),
        graph=graph,
        auth_methods=AuthMethodsReader(graph, limiter=graph.limiter),
        tables=tables,
    )


_cache: dict[int, Clients] = {}


async def get_clients() -> Clients:
    """The clients of the running event loop: async clients cannot cross loops."""
    loop_id = id(asyncio.get_running_loop())
    clients = _cache.get(loop_id)
    if clients is None:
        clients = build_clients(Settings.from_env())
        await clients.ensure_resources()
        _cache.clear()  # a new loop means the old one is gone (tests call functions directly)
        _cache[loop_id] = clients
    return clients
