"""UsersListing walks one listing page by page from a Position a checkpoint can keep: the page
to read, how many of its users were already written, and what to check when passing over them
(after an expired page token the listing starts again and passes over what was written).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..filters import GraphQuery
from .errors import EXPIRED_PAGE_TOKEN, GraphError
from .reader import GraphReader, RawPage, page_size


@dataclass(frozen=True)
class Position:
    """Where a listing stands, as a checkpoint keeps it."""

    link: str | None = None  # the page to read next; None: the listing's first page
    started: bool = False  # a page was read, so a None link means the listing is done
    skip: int = 0  # users at the head of that page already written (or to pass over)
    written: int = 0  # users of this listing written so far
    last_id: str | None = None  # the last user written, to check a passing over against

    @property
    def done(self) -> bool:
        return self.started and self.link is None

    def after(self, users: list[dict[str, Any]]) -> Position:
        """The position once these users, read at this one, are written too."""
        if not users:
            return self
        return replace(
            self,
            skip=self.skip + len(users),
            written=self.written + len(users),
            last_id=users[-1]["id"],
        )


@dataclass(frozen=True)
class ListingStep:
    users: list[dict[str, Any]]  # the page's users not written yet (none while passing over)
    at: Position  # the position of users[0]
    next: Position  # the position after the whole page
    changed: bool = False  # passing over did not end on the last user written
    relisted: bool = False  # the page token had expired: the listing starts again


class UsersListing:
    """One listing (a filter, $select, $expand), read a page at a time from a Position."""

    def __init__(
        self,
        graph: GraphReader,
        *,
        select: list[str],
        expand: list[str] | None,
        query: GraphQuery,
    ) -> None:
        self._graph = graph
        self._query = {
            "select": select,
            "expand": expand,
            "filter": query.filter,
            "advanced": query.advanced,
            "scope": query.scope,
            "page_size": page_size(select, expand),
        }

    async def read(self, position: Position) -> ListingStep:
        """Reads the page at `position`. An expired page token gives a step that starts the
        listing again, to pass over the users written so far (Graph lists in a stable order);
        each page passed over is a step of its own, so a long relist checkpoints like any."""
        return self.step(position, await self.fetch(position))

    async def fetch(self, position: Position) -> RawPage | None:
        """The page at `position` as Graph sent it; None when its page token expired."""
        link = position.link if position.started else None
        try:
            return await self._graph.users_page_bytes(next_link=link, **self._query)
        except GraphError as error:
            if error.code != EXPIRED_PAGE_TOKEN or link is None:
                raise
            return None

    def step(self, position: Position, fetched: RawPage | None) -> ListingStep:
        """The step a page fetched at `position` makes (see read)."""
        if fetched is None:
            written, last_id = position.written, position.last_id
            again = Position(skip=written, written=written, last_id=last_id)
            return ListingStep([], again, again, relisted=True)
        page = fetched.parse()
        fetched.limiter.listed(len(page.users), fetched.seconds)  # its bucket learns the pace
        skip = min(position.skip, len(page.users))
        rest = position.skip - skip  # still to pass over on the pages after this one
        changed = False
        if skip and not rest:  # passing over ends in this page: on the last user written?
            changed = page.users[skip - 1]["id"] != position.last_id
        elif rest and not page.next_link:  # the listing ended before the users written
            changed, rest = True, 0
        users = page.users[skip:]
        at = replace(position, skip=skip)
        following = Position(
            page.next_link,
            started=True,
            skip=rest,
            written=position.written + len(users),
            last_id=users[-1]["id"] if users else position.last_id,
        )
        return ListingStep(users, at, following, changed)
