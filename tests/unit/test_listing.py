"""UsersListing: pages from a Position, passing over what was written after an expired token
or when a page is read again mid-way, and saying so when the directory changed."""

from __future__ import annotations

from typing import Any

import pytest

from userexport.filters import GraphQuery
from userexport.graph import (
    EXPIRED_PAGE_TOKEN,
    GraphError,
    Position,
    RawPage,
    UsersListing,
    UsersPage,
)

PAGES = {
    None: UsersPage([{"id": "a"}, {"id": "b"}], "p2"),
    "p2": UsersPage([{"id": "c"}, {"id": "d"}], "p3"),
    "p3": UsersPage([{"id": "e"}], None),
}


class Pace:
    """The page's bucket: what the listing told it (users, seconds) for each page."""

    def __init__(self) -> None:
        self.told: list[tuple[int, float]] = []

    def listed(self, users: int, seconds: float) -> None:
        self.told.append((users, seconds))


class Fetched:
    """A page as fetched (graph.RawPage), parsed on its turn."""

    seconds = 0.25

    def __init__(self, page: UsersPage) -> None:
        self.page, self.limiter = page, Pace()

    def parse(self) -> UsersPage:
        return self.page


class FakeGraph:
    """Pages by link; the link "stale" has an expired page token."""

    async def users_page_bytes(self, *, next_link: str | None, **_: Any) -> Fetched:
        if next_link == "stale":
            raise GraphError(400, EXPIRED_PAGE_TOKEN, "The specified page token has expired.")
        if next_link == "refused":
            raise GraphError(403, "Authorization_RequestDenied", "no")
        return Fetched(PAGES[next_link])


def listing() -> UsersListing:
    return UsersListing(FakeGraph(), select=["id"], expand=None, query=GraphQuery(None, False))  # type: ignore[arg-type]


async def read_all(position: Position) -> tuple[list[str], list[bool]]:
    """Reads to the end; the ids written and each step's `changed`."""
    ids, changes = [], []
    while not position.done:
        step = await listing().read(position)
        ids += [u["id"] for u in step.users]
        changes.append(step.changed)
        position = step.next
    return ids, changes


async def test_a_listing_from_the_start_reads_every_page():
    assert await read_all(Position()) == (["a", "b", "c", "d", "e"], [False] * 3)


async def test_parsing_a_page_tells_nobody_the_listing_tells_its_bucket():
    raw = RawPage(b'{"value": [{"id": "a"}], "@odata.nextLink": "p2"}', 0.5, Pace())  # type: ignore[arg-type]
    assert raw.parse() == UsersPage([{"id": "a"}], "p2")
    assert raw.limiter.told == []  # type: ignore[attr-defined]
    fetched = Fetched(PAGES[None])
    listing().step(Position(), fetched)  # type: ignore[arg-type]
    assert fetched.limiter.told == [(len(PAGES[None].users), Fetched.seconds)]


@pytest.mark.parametrize(
    ("written", "last_id", "rest"),
    [(1, "a", ["b", "c", "d", "e"]), (2, "b", ["c", "d", "e"]), (4, "d", ["e"]), (5, "e", [])],
)
async def test_an_expired_token_lists_again_and_passes_over_what_was_written(
    written, last_id, rest
):
    stale = Position("stale", started=True, written=written, last_id=last_id)
    step = await listing().read(stale)
    assert (
        step.relisted
        and step.users == []
        and step.next == Position(skip=written, written=written, last_id=last_id)
    )
    ids, changes = await read_all(step.next)
    assert ids == rest
    assert not any(changes)


async def test_passing_over_is_one_page_per_step():
    steps = 0
    position = Position(skip=4, written=4, last_id="d")
    while not position.done:
        step = await listing().read(position)
        steps += 1
        position = step.next
    assert steps == 3


async def test_a_page_read_again_mid_way_goes_on_after_the_last_user_written():
    at = Position("p2", started=True, skip=1, written=3, last_id="c")
    step = await listing().read(at)
    assert [u["id"] for u in step.users] == ["d"] and not step.changed
    assert step.at == at and step.next == Position("p3", started=True, written=4, last_id="d")


async def test_a_changed_directory_is_reported():
    ids, changes = await read_all(Position(skip=3, written=3, last_id="x"))
    assert ids == ["d", "e"] and changes[1]


async def test_a_listing_shorter_than_what_was_written_is_reported():
    ids, changes = await read_all(Position(skip=9, written=9, last_id="z"))
    assert ids == [] and changes[-1]


async def test_other_errors_are_not_swallowed():
    with pytest.raises(GraphError):
        await listing().read(Position("refused", started=True, written=2))
