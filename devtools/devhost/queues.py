"""Drives queue triggers from real Storage queues the way the Functions host does.

Messages are fetched in batches (batchSize) and a new batch is fetched when fewer than
newBatchThreshold are running; each message stays invisible while its function runs; on success
it is deleted; on failure it becomes visible again after visibilityTimeout, and once it has been
dequeued maxDequeueCount times it moves to `<queue>-poison`.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import logging
from collections.abc import Callable
from typing import Any

from azure.functions.queue import QueueMessage
from azure.storage.queue.aio import QueueClient

from .hostjson import HostSettings

log = logging.getLogger("devhost.queues")

MESSAGE_LEASE_SECONDS = 600  # the host keeps a running message invisible this long, renewed


class QueuePump:
    def __init__(
        self,
        *,
        queue: QueueClient,
        poison: QueueClient,
        function: Callable[..., Any],
        arg_name: str,
        host: HostSettings,
        lease_seconds: int = MESSAGE_LEASE_SECONDS,
    ) -> None:
        self._queue, self._poison = queue, poison
        self._lease = lease_seconds
        self._function, self._arg_name = function, arg_name
        self._host = host
        self._running: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        delay = 0.1
        while True:
            room = self._host.batch_size + self._host.new_batch_threshold - len(self._running)
            fetched = 0
            if len(self._running) <= self._host.new_batch_threshold and room > 0:
                try:
                    fetched = await self._fetch(min(room, self._host.batch_size))
                except Exception:
                    log.exception("Polling %s failed; retrying.", self._queue.queue_name)
            # Like the host: poll quickly while busy, back off exponentially while idle.
            delay = 0.1 if fetched else min(delay * 2, self._host.max_polling_interval)
            await asyncio.sleep(delay)

    async def _fetch(self, count: int) -> int:
        messages = [
            m
            async for m in self._queue.receive_messages(
                messages_per_page=count,
                max_messages=count,
                visibility_timeout=self._lease,
            )
        ]
        for message in messages:
            task = asyncio.create_task(self._process(message))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        return len(messages)

    async def _process(self, message: Any) -> None:
        body = message.content
        if self._host.message_encoding == "base64":
            try:
                body = base64.b64decode(body, validate=True)
            except ValueError:
                log.error("Message %s is not base64; moving it to the poison queue.", message.id)
                await self._to_poison(message)
                return
        msg = QueueMessage(
            id=message.id,
            body=body,
            dequeue_count=message.dequeue_count,
            expiration_time=message.expires_on,
            insertion_time=message.inserted_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )
        renewal = asyncio.create_task(self._renew(message))
        try:
            result = self._function(**{self._arg_name: msg})
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception(
                "Function for queue %s failed on message %s (delivery %s).",
                self._queue.queue_name,
                message.id,
                message.dequeue_count,
            )
            await _stop(renewal)
            try:
                if message.dequeue_count >= self._host.max_dequeue_count:
                    await self._to_poison(message)
                else:
                    await self._queue.update_message(
                        message, visibility_timeout=int(self._host.visibility_timeout)
                    )
            except Exception as error:  # noqa: BLE001 - it comes back when its lease ends
                log.warning("Message %s could not be released (%s).", message.id, error)
            return
        await _stop(renewal)
        try:
            await self._queue.delete_message(message)
        except Exception as error:  # noqa: BLE001 - like the host: it is delivered again
            log.warning("Message %s could not be deleted (%s).", message.id, error)

    async def _renew(self, message: Any) -> None:
        # Like the host: keep a running message invisible; a crash stops the renewals, and
        # the message comes back once its lease runs out.
        while True:
            await asyncio.sleep(self._lease / 2)
            receipt = await self._queue.update_message(message, visibility_timeout=self._lease)
            message.pop_receipt = receipt.pop_receipt

    async def _to_poison(self, message: Any) -> None:
        await self._poison.send_message(message.content)
        await self._queue.delete_message(message)
        log.warning("Message %s moved to %s.", message.id, self._poison.queue_name)

    async def stop(self) -> None:
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
