"""Clients.ensure_resources in Azure: infra/ gives the identity rights on the exports container
only, so creating it answers 403 (AuthorizationPermissionMismatch), which must not stop the app;
any other failure still does."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError

from userexport.clients import Clients


def refusing(status: int) -> Any:
    async def create(*_: object) -> None:
        error = HttpResponseError(message="refused")
        error.status_code = status
        raise error

    return create


async def exists(*_: object) -> None:
    raise ResourceExistsError("exists")


def clients(exports_create: Any) -> Clients:
    made: list[str] = []

    async def create_queue() -> None:
        made.append("queue")

    fake = SimpleNamespace(
        exports=SimpleNamespace(create_container=exports_create),
        tables=SimpleNamespace(create_table=exists),
        queue=SimpleNamespace(create_queue=create_queue),
        poison_queue=SimpleNamespace(create_queue=create_queue),
        made=made,
    )
    return fake  # type: ignore[return-value]


async def test_a_403_on_the_deployed_container_is_no_reason_to_stop():
    fake = clients(refusing(403))
    await Clients.ensure_resources(fake)
    assert fake.made == ["queue", "queue"], "the queues are still created"  # type: ignore[attr-defined]


async def test_other_failures_stop_the_start():
    with pytest.raises(HttpResponseError):
        await Clients.ensure_resources(clients(refusing(500)))
