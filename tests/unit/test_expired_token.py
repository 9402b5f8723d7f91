"""Recovering from an expired page token: list again, pass over what was written, say so if
the directory changed in between."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from userexport.exporter import EXPIRED_PAGE_TOKEN, _PartitionRun
from userexport.graph import GraphError, UsersPage
from userexport.jobs import Checkpoint, Job, Partition, Status

PAGES = {
    None: UsersPage([{"id": "a"}, {"id": "b"}], "p2"),
    "p2": UsersPage([{"id": "c"}, {"id": "d"}], "p3"),
    "p3": UsersPage([{"id": "e"}], None),
}


async def fetch(link: str | None) -> UsersPage:
    if link == "stale":
        raise GraphError(400, EXPIRED_PAGE_TOKEN, "The specified page token value has expired.")
    return PAGES[link]


def export() -> _PartitionRun:
    job = Job("1", Status.RUNNING, "http", datetime.now(UTC), {"fileName": "x.csv"})
    return _PartitionRun(clients=None, job=job, part=Partition("1", 0, [""]), deadline=0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("written", "last_id", "users", "next_link"),
    [
        (1, "a", ["b"], "p2"),
        (2, "b", ["c", "d"], "p3"),
        (3, "c", ["d"], "p3"),
        (4, "d", ["e"], None),
    ],
)
async def test_listing_restarts_after_the_users_written(written, last_id, users, next_link):
    progress = Checkpoint(next_link="stale", started=True, prefix_users=written, last_id=last_id)
    got, link, notes = await export()._next_page(progress, fetch)
    assert [u["id"] for u in got] == users
    assert link == next_link
    assert notes == []


async def test_a_changed_directory_is_reported():
    progress = Checkpoint(next_link="stale", started=True, prefix_users=3, last_id="x")
    _, _, notes = await export()._next_page(progress, fetch)
    assert len(notes) == 1 and notes[0][4] == EXPIRED_PAGE_TOKEN


async def test_other_errors_are_not_swallowed():
    async def refuse(link: str | None) -> UsersPage:
        raise GraphError(403, "Authorization_RequestDenied", "no")

    with pytest.raises(GraphError):
        await export()._next_page(Checkpoint(next_link="p2", started=True, prefix_users=2), refuse)
