"""The host.json settings devhost honours, with the Functions host's defaults."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


def _seconds(timespan: str) -> float:
    hours, minutes, seconds = timespan.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


@dataclass(frozen=True)
class HostSettings:
    route_prefix: str = "api"
    batch_size: int = 16
    new_batch_threshold: int = 8
    max_dequeue_count: int = 5
    visibility_timeout: float = 0.0
    max_polling_interval: float = 60.0
    message_encoding: str = "base64"

    @classmethod
    def load(cls, path: Path) -> HostSettings:
        extensions = json.loads(path.read_text()).get("extensions", {})
        queues = extensions.get("queues", {})
        batch_size = int(queues.get("batchSize", cls.batch_size))
        return cls(
            route_prefix=extensions.get("http", {}).get("routePrefix", cls.route_prefix),
            batch_size=batch_size,
            new_batch_threshold=int(queues.get("newBatchThreshold", batch_size // 2)),
            max_dequeue_count=int(queues.get("maxDequeueCount", cls.max_dequeue_count)),
            visibility_timeout=_seconds(queues.get("visibilityTimeout", "00:00:00")),
            max_polling_interval=_seconds(queues.get("maxPollingInterval", "00:01:00")),
            message_encoding=queues.get("messageEncoding", cls.message_encoding),
        )
