"""Planning a job: how many users to expect, and how to split the listing into partitions.

Partitions are ranges of UPN first characters (`startsWith(userPrincipalName,'a')`...), a
filter Graph serves without advanced queries. The plan is checked for completeness: the users
counted per prefix must add up to the users counted in all; when they do not (a UPN starting
with another character, a directory changing under us, a tenant without $count), the plan
falls back to one sequential listing, which is always complete.

Counting can take longer than one invocation's budget (a few hundred $count requests when
Graph throttles them): every count is kept in `counts`, which the job saves, so the next
invocation goes on where this one stopped.
"""

from __future__ import annotations

import asyncio
import logging
import string

from .budget import gather_all
from .filters import GraphQuery, with_upn_prefix
from .graph import GraphError, GraphReader
from .jobs import Plan

log = logging.getLogger(__name__)

# What a userPrincipalName may start with: letters (startsWith ignores case), digits and the
# few symbols Entra allows in its local part.
PREFIXES: tuple[str, ...] = (
    *string.ascii_lowercase,
    *string.digits,
    "'",
    ".",
    "-",
    "_",
    "!",
    "#",
    "^",
    "~",
)
# After a first character, a UPN may go on with any of these, or end its local part at once.
SECOND: tuple[str, ...] = (*PREFIXES, "@")
SEQUENTIAL = [[""]]
_COUNTS_AT_ONCE = 8


SCOPE_WITH_EXPAND = (
    "The manager column needs $expand, which Graph does not allow in the advanced queries that "
    "splitting a group's or administrative unit's members by UPN needs, so the listing ran as "
    "one sequence."
)


async def plan_listing(
    graph: GraphReader,
    query: GraphQuery,
    *,
    partitions: int,
    counts: dict[str, int] | None = None,
    expand: bool = False,
) -> Plan:
    """The plan; `counts` (UPN prefix -> users, "" for all) holds what an earlier invocation
    counted, and receives every new count, also when OutOfTime cuts this one short."""
    counts = {} if counts is None else counts
    limit = asyncio.Semaphore(_COUNTS_AT_ONCE)

    async def count(prefix: str) -> int:
        if prefix not in counts:
            async with limit:
                filter = with_upn_prefix(query, prefix).filter
                counts[prefix] = await graph.count_users(filter=filter, scope=query.scope)
        return counts[prefix]

    async def counted(prefixes: tuple[str, ...]) -> list[tuple[str, int]]:
        found = await gather_all(*(count(prefix) for prefix in prefixes))
        return list(zip(prefixes, found, strict=True))

    try:
        total = await count("")
    except GraphError as error:
        note = f"Graph could not count the users ({error.status} {error.code})."
        return Plan(SEQUENTIAL, None, note if partitions > 1 else None)
    if partitions > 1 and query.scope is not None and expand:
        return Plan(SEQUENTIAL, total, SCOPE_WITH_EXPAND)
    if partitions <= 1 or total == 0:  # nobody to share out: one page says so
        return Plan(SEQUENTIAL, total)

    try:
        firsts = await counted(PREFIXES)
        if sum(n for _, n in firsts) != total:
            note = (
                f"The users counted per UPN first character ({sum(n for _, n in firsts)}) do "
                f"not add up to all users ({total}), so the listing ran as one sequence."
            )
            log.warning("Partition counts disagree with the total; listing sequentially.")
            return Plan(SEQUENTIAL, total, note)
        # A first character holding more than a partition's share (names are skewed: m, j, a)
        # is split by its second character too, when those counts add up to it.
        share = total / partitions
        pieces: list[tuple[str, int]] = []
        for prefix, n in firsts:
            seconds = await counted(tuple(prefix + c for c in SECOND)) if n > share else []
            pieces += seconds if seconds and sum(c for _, c in seconds) == n else [(prefix, n)]
    except GraphError as error:
        return Plan(SEQUENTIAL, total, f"Graph could not count a partition ({error.code}).")
    return Plan(split(pieces, partitions), total)


def split(counted: list[tuple[str, int]], parts: int) -> list[list[str]]:
    """Cuts the prefixes, in order, into at most `parts` contiguous runs of about equal users.
    Keeping the order means the CSV's rows come out the same for any partition count. Prefixes
    no user had when counted are listed all the same (one cheap request each), so a user
    created since is not missed."""
    if not counted:
        return SEQUENTIAL
    runs: list[list[str]] = []
    i = 0
    for left in range(min(parts, len(counted)), 0, -1):  # runs still to make, this one too
        if left == 1:
            runs.append([prefix for prefix, _ in counted[i:]])
            break
        target = sum(n for _, n in counted[i:]) / left
        run, users = [], 0
        # Take a prefix while the run is closer to its share with it than without it, and
        # leave at least one prefix for every run still to make.
        while i < len(counted) - (left - 1) and (not run or users + counted[i][1] / 2 <= target):
            run.append(counted[i][0])
            users += counted[i][1]
            i += 1
        runs.append(run)
    return runs


def estimate(
    plan: Plan,
    counts: dict[str, int],
    *,
    page_size: int,
    lookups: int,
    expand: bool,
    preflight_requests: int,
) -> dict[str, int]:
    """Graph requests and resource units the export will take, from the counts: every prefix
    listed is at least one page; a lookup is one request (batched 20 to a $batch) and 1 RU.
    A page costs 1 RU with $select, 2 with $expand too (Graph's throttling limits)."""
    total = plan.estimated_total or 0
    prefixes = [p for run in plan.partitions for p in run]
    if prefixes == [""] or not all(p in counts for p in prefixes):
        pages = max(1, -(-total // page_size))
    else:
        pages = sum(max(1, -(-counts[p] // page_size)) for p in prefixes)
    lookup_requests = total * lookups
    planning = len(counts) + preflight_requests
    return {
        "planningRequests": planning,
        "listingRequests": pages,
        "pageSize": page_size,
        "lookupRequests": lookup_requests,
        "resourceUnits": planning + pages * (2 if expand else 1) + lookup_requests,
    }
