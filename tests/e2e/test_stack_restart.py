"""LocalStack.restart_azurite: a storage outage that keeps blobs, queue messages and rows."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from azure.data.tables.aio import TableClient
from azure.identity.aio import ManagedIdentityCredential
from azure.storage.blob.aio import ContainerClient
from azure.storage.queue.aio import QueueClient

from devtools.stack import LocalStack

from .conftest import running_stack

pytestmark = pytest.mark.timeout(60)
CONTAINER, QUEUE, TABLE = "restart-check", "restart-check", "RestartCheck"
KINDS = ("blob", "queue", "table")


class Clients:
    """One blob container, queue and table, reached as the app reaches storage: the managed
    identity (the simulator's endpoint) and https trusting the stack's CA."""

    def __init__(self, stack: LocalStack) -> None:
        uri = {k: stack.env[f"AzureWebJobsStorage__{k}ServiceUri"] for k in KINDS}
        self.credential = ManagedIdentityCredential()
        common = {"credential": self.credential, "connection_verify": stack.env["SSL_CERT_FILE"]}
        self.blobs = ContainerClient(uri["blob"], CONTAINER, **common)
        self.queue = QueueClient(uri["queue"], QUEUE, **common)
        self.table = TableClient(uri["table"], TABLE, **common)

    async def close(self) -> None:
        for client in (self.blobs, self.queue, self.table, self.credential):
            await client.close()


async def test_restart_azurite_keeps_blobs_messages_and_rows(tmp_path: Path) -> None:
    with running_stack(tmp_path, users=50) as stack:
        before = stack.azurite_pid
        clients = Clients(stack)
        try:
            await clients.blobs.create_container()
            await clients.blobs.upload_blob("a/b.csv", b"id,name\n1,Ada\n")
            await clients.queue.create_queue()
            await clients.queue.send_message("job-1")
            await clients.table.create_table()
            await clients.table.create_entity({"PartitionKey": "p", "RowKey": "r", "n": 7})
        finally:
            await clients.close()

        stack.restart_azurite(down_seconds=0.5)
        assert stack.azurite_pid != before

        # New clients: what is checked is the data, not how a client reconnects.
        clients = Clients(stack)
        try:
            blob = await clients.blobs.download_blob("a/b.csv")
            assert await blob.readall() == b"id,name\n1,Ada\n"
            assert [m.content for m in await clients.queue.peek_messages(5)] == ["job-1"]
            row = await clients.table.get_entity("p", "r")
            assert row["n"] == 7
            await clients.blobs.upload_blob("after.txt", b"ok")  # and it takes writes again
        finally:
            await clients.close()
        after = stack.azurite_pid
    # close() stopped the restarted Azurite too.
    with pytest.raises(ProcessLookupError):
        os.kill(after, 0)
