"""Planning a job: how many users to expect, and how to split the listing into partitions.

Partitions are ranges of UPN first characters (`startsWith(userPrincipalName,'a')`...), a
filter Graph serves without advanced queries. The plan is checked for completeness: the users
counted per prefix must add up to the users counted in all; when they do not (a UPN starting
with another character, a directory changing under us, a tenant without $count), the plan
falls back to one sequential listing, which is always complete.

Counting can take longer than one invocation's budget (a few hundred $count requests when
Graph throttles them): every count is kept in `counts`, which the job saves, so the next
invocation goes on where this one stopped.

How many partitions: none for a small listing (one $count says so; its page or two are all the
listing there is), else as many as the estimated work needs, USEREXPORT_PARTITION_SECONDS each
(a partition's message and counts cost about a second), up to USEREXPORT_PARTITIONS. The
estimate (requests, resource units, duration) is made from the counts and the pace the
instances learnt for this tenant (pace.py), or Graph's documented budgets where nothing was
learnt yet.
"""

from __future__ import annotations

import asyncio
import logging
import math
import string
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from .budget import gather_all
from .filters import GraphQuery, with_upn_prefix
from .graph import BATCH_SIZE, ID_BATCH, GraphError, GraphReader
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
MAX_PREFIX = 3  # characters a partition's prefix may have
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
    small: int = 0,
    wanted: Callable[[int], int] | None = None,
    report_rows: int | None = None,
) -> Plan:
    """The plan; `counts` (UPN prefix -> users, "" for all) holds what an earlier invocation
    counted, and receives every new count, also when OutOfTime cuts this one short. A listing
    of at most `small` users is one sequence; otherwise `wanted(total)` partitions, at most
    `partitions`. With `report_rows`, no prefix holds more than a partition's share of them
    where the counts allow (a partition keeps one prefix's registration report rows in
    memory), however few partitions list them."""
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
        return Plan(SEQUENTIAL, None, uncounted_note(error))
    if total <= small:  # a page or two: splitting would cost more requests than it saves
        return Plan(SEQUENTIAL, total)
    if wanted is not None:
        partitions = max(1, min(partitions, wanted(total)))
    if partitions > 1 and query.scope is not None and expand:
        return Plan(SEQUENTIAL, total, SCOPE_WITH_EXPAND)
    window = report_rows // max(1, partitions) if report_rows else None
    windowed = window is not None and total > window
    if (partitions <= 1 and not windowed) or total == 0:  # nobody to share out
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
        # is split by its second character too, and a busy second one by its third ("ma"),
        # when those counts add up to it.
        share = min(total / partitions, window or total)

        async def pieces_of(prefix: str, n: int) -> list[tuple[str, int]]:
            # Past the first character, each split lists up to 45 more (mostly tiny) prefixes:
            # only a prefix well over a share is worth it.
            if n <= share * (1 if len(prefix) == 1 else 1.25) or len(prefix) >= MAX_PREFIX:
                return [(prefix, n)]
            nexts = await counted(tuple(prefix + c for c in SECOND))
            if sum(c for _, c in nexts) != n:
                return [(prefix, n)]
            return [piece for p, c in nexts for piece in await pieces_of(p, c)]

        pieces = [piece for prefix, n in firsts for piece in await pieces_of(prefix, n)]
    except GraphError as error:
        return Plan(SEQUENTIAL, total, f"Graph could not count a partition ({error.code}).")
    runs = split(pieces, partitions)
    return Plan(runs if windowed else [_collapse(run) for run in runs], total)


def uncounted_note(error: GraphError) -> str:
    """Why a listing Graph would not count runs as one sequence (Plan.note)."""
    return (
        f"Graph did not count the users ({error.status} {error.code}; $count is not available "
        "in Azure AD B2C tenants, per List users), so the export runs as one sequential "
        "listing and its estimate has no user count."
    )


def split(counted: list[tuple[str, int]], parts: int) -> list[list[str]]:
    """Cuts the prefixes, in order, into at most `parts` contiguous runs whose largest holds as
    few users as can be: the export ends with its largest partition. Keeping the order means
    the CSV's rows come out the same for any partition count. Prefixes no user had when
    counted are listed all the same (one cheap request each), so a user created since is not
    missed."""
    if not counted:
        return SEQUENTIAL
    parts = max(1, min(parts, len(counted)))
    sizes = [n for _, n in counted]

    def runs_within(most: int) -> list[list[int]]:
        """Greedy runs (indexes) of at most `most` users each."""
        runs: list[list[int]] = [[]]
        users = 0
        for i, n in enumerate(sizes):
            if runs[-1] and users + n > most:
                runs.append([])
                users = 0
            runs[-1].append(i)
            users += n
        return runs

    low, high = max(sizes), sum(sizes)
    while low < high:  # the smallest largest run that `parts` runs allow
        mid = (low + high) // 2
        low, high = (low, mid) if len(runs_within(mid)) <= parts else (mid + 1, high)
    runs = runs_within(low)
    # Fewer runs than partitions: cut the fullest runs again, which makes none larger.
    while len(runs) < parts:
        splittable = [r for r in runs if len(r) > 1]
        if not splittable:
            break
        run = max(splittable, key=lambda r: sum(sizes[i] for i in r))
        total, best, cut = sum(sizes[i] for i in run), None, 1
        for k in range(1, len(run)):
            head = sum(sizes[i] for i in run[:k])
            worst = max(head, total - head)
            if best is None or worst < best:
                best, cut = worst, k
        at = runs.index(run)
        runs[at : at + 1] = [run[:cut], run[cut:]]
    return [[counted[i][0] for i in run] for run in runs]


def _collapse(run: list[str]) -> list[str]:
    """A run holding every child of a prefix (the prefix and each character of SECOND, in that
    order) lists the prefix instead: one listing, not 45 (mostly tiny) ones. Only the prefixes
    a partition boundary cuts through stay split."""
    while True:
        out: list[str] = []
        i = 0
        while i < len(run):
            parent = run[i][:-1]
            children = [parent + c for c in SECOND]
            if parent and run[i : i + len(children)] == children:
                out.append(parent)
                i += len(children)
            else:
                out.append(run[i])
                i += 1
        if out == run:
            return run
        run = out


# The authentication methods' documented limit until a rate is learnt or probed: "five requests
# per 10 seconds" per app per tenant, each $batch item counting (throttling-limits.md, identity
# and access reports service limits, which list authenticationMethod).
DOCUMENTED_AUTH_RATE = 0.5
# Rows a registration report page holds: not documented; about 1000, as users report.
REPORT_PAGE_ROWS = 1000


# Graph's documented budgets per app and tenant (RU per 10 s) by tenant size, for a bucket whose
# pace nobody learnt yet: 3,500 under 50 users, 5,000 up to 500, 8,000 above.
def default_rate(users: int) -> float:
    return (3500.0 if users < 50 else 5000.0 if users <= 500 else 8000.0) / 10.0


# What a page costs, in resource units (throttling-limits.md, identity and access service
# limits): GET users 2, groups/{id}/transitiveMembers 5; "Using $select decreases cost by 1",
# "Using $expand increases cost by 1", never below 1. The table does not list an
# administrative unit's members: costed as users.
_PAGE_UNITS = {None: 2, "group": 5, "administrativeUnit": 2}


@dataclass(frozen=True)
class ListingCost:
    """What the listing's requests hold and cost, resolved once by the plan step."""

    page_size: int = 999  # users a page (graph.page_size)
    page_units: int = 1  # RU a page
    sign_in_by_id: bool = False  # signInActivity read by id, ID_BATCH users a request (1 RU)
    lookups: int = 0  # authentication-method requests per user
    report: bool = False  # the registration report is read, a page per REPORT_PAGE_ROWS users

    @property
    def reading(self) -> int:
        """Pages read per listing page: a report page holds as many users as a listing page,
        is read before it and takes as long."""
        return 2 if self.report else 1

    def requests(self, users: int, pages: int) -> tuple[int, int, int]:
        """(RU of the listing's own bucket, sign-in reads by id, lookups) for this many."""
        by_id = -(-users // ID_BATCH) if self.sign_in_by_id else 0
        return pages * self.page_units + by_id, by_id, users * self.lookups


def listing_cost(
    query: GraphQuery,
    *,
    page_size: int,
    expand: bool,
    sign_in_by_id: bool,
    lookups: int,
    report: bool = False,
) -> ListingCost:
    kind = query.scope.kind if query.scope else None
    units = max(1, _PAGE_UNITS[kind] - 1 + (1 if expand else 0))  # always with $select
    return ListingCost(page_size, units, sign_in_by_id, lookups, report)


def report_requests(prefix_users: list[int]) -> int:
    """The registration report's pages for prefixes holding these many users: one at least."""
    return sum(max(1, -(-n // REPORT_PAGE_ROWS)) for n in prefix_users)


SECONDS_PER_USER = 0.001  # a page of 999 users in about a second, until one is measured
PAGE_SECONDS = 0.02  # a page's own cost, however few users it holds
# One partition's lookups without throttling: 5 $batches of 20 in flight, a second each (a dry
# run's probe times a $batch: Pace.lookups_per_second).
BATCHES_IN_FLIGHT = 5
LOOKUPS_PER_SECOND = BATCHES_IN_FLIGHT * BATCH_SIZE / 1.0
# The plan and partition messages' delivery (an idle queue is polled every 2 s at most, a busy
# one at once) and the commit: 1 to 2 s on the local stack (bench h's generous world).
OVERHEAD_SECONDS = 1.5
# An instance's own work per user listed (parse, encode, stage: 33 CPU-seconds per million in
# bench (d)); about half of it does not overlap the waits for Graph.
CPU_SECONDS_PER_USER = 0.00003
CPU_NOT_OVERLAPPED = 0.5


@dataclass(frozen=True)
class Pace:
    """What the estimate goes by: learnt by the instances (pace.py), else the defaults."""

    seconds_per_user: float = SECONDS_PER_USER
    listing_rate: float | None = None  # RU per second; None: Graph's documented budget
    auth_rate: float | None = None
    learnt: bool = False
    concurrency: int = 32  # partitions one instance starts at once (host.json's queues batchSize)
    # Where auth_rate comes from: "documented" (none known: DOCUMENTED_AUTH_RATE), "learnt"
    # (the instances', pace.py) or "probed" (the plan's probe of lookups; None there: the probe
    # was not throttled, and the lookups go at the app's whole budget).
    auth_source: str = "documented"
    lookups_per_second: float = LOOKUPS_PER_SECOND  # one partition's, unthrottled

    def timed_batch(self, seconds: float) -> Pace:
        """This pace with a partition's lookup rate from how long one $batch took."""
        rate = BATCHES_IN_FLIGHT * BATCH_SIZE / max(seconds, 0.005)
        return replace(self, lookups_per_second=rate)

    def main_rate(self, users: int) -> float:
        return self.listing_rate or default_rate(users)

    def auth(self, users: int) -> float:
        if self.auth_rate:
            return self.auth_rate
        return DOCUMENTED_AUTH_RATE if self.auth_source == "documented" else self.main_rate(users)

    def budget_seconds(self, users: int, units: int, lookups: int) -> float:
        """How long Graph's budgets take to serve this many RU and lookups: a bucket starts
        full, 10 s of its rate, then serves its rate."""
        return max(*self.budget_waits(users, units, lookups), 0.0)

    def budget_waits(self, users: int, units: int, lookups: int) -> tuple[float, float]:
        """The seconds the app's whole budget and the authentication-methods budget each take
        to serve this many RU and lookups (either may be negative: served from the start)."""
        main, auth = self.main_rate(users), self.auth(users)
        return (units + lookups - 10 * main) / main, (lookups - 10 * auth) / auth

    def partitions_for(self, total: int, *, cost: ListingCost, seconds: float) -> int:
        """How many partitions the work of `total` users needs, `seconds` each (0: no end);
        no more than keep the budgets busy: beyond that, partitions only wait on Graph's
        buckets together."""
        if seconds <= 0:
            return 1 << 30
        pages = -(-total // cost.page_size)
        units, _, lookups = cost.requests(total, pages)
        lookup_seconds = lookups / self.lookups_per_second
        listing = total * self.seconds_per_user + pages * PAGE_SECONDS
        work = cost.reading * listing + lookup_seconds
        reports = report_requests([total]) if cost.report else 0
        bound = self.budget_seconds(total, units, lookups + reports)
        return max(1, math.ceil(work / max(seconds, bound)))


def estimate(
    plan: Plan,
    counts: dict[str, int],
    *,
    cost: ListingCost,
    preflight_requests: int,
    pace: Pace | None = None,
    planning_seconds: float = 0.0,
) -> dict[str, Any]:
    """Graph requests, resource units and seconds the export will take, from the counts: every
    prefix listed is at least one page; a lookup is one request (batched 20 to a $batch) and
    1 RU; a page costs what `cost` says, and sign-in reads by id one request (1 RU) per
    ID_BATCH users. Without a count (Graph gave none), the figures are those of one page and
    `counted` is false, with no duration.

    The duration: the planning already spent, then the partitions' listing and lookups side by
    side (as many at once as an instance runs), or the time the budgets allow, whichever is
    longer, plus the share of the instance's own work that does not overlap the waits."""
    pace = pace or Pace()
    total = plan.estimated_total or 0
    prefixes = [p for run in plan.partitions for p in run]
    size = cost.page_size
    counted = prefixes != [""] and all(p in counts for p in prefixes)
    if counted:
        pages = sum(max(1, -(-counts[p] // size)) for p in prefixes)
        users = [sum(counts[p] for p in run) for run in plan.partitions]
        page_runs = [sum(max(1, -(-counts[p] // size)) for p in run) for run in plan.partitions]
    else:
        pages = max(1, -(-total // size))
        users, page_runs = [total], [pages]
    listing_units, by_id, lookup_requests = cost.requests(total, pages)
    reports = 0
    if cost.report:
        reports = report_requests([counts[p] for p in prefixes] if counted else [total])
    planning = len(counts) + preflight_requests
    out: dict[str, Any] = {
        "planningRequests": planning,
        "listingRequests": pages,
        "pageSize": size,
        "lookupRequests": lookup_requests,
        "resourceUnits": planning + listing_units + lookup_requests + reports,
        "partitions": len(plan.partitions),
    }
    if by_id:
        out["signInRequests"] = by_id
    if reports:
        out["reportRequests"] = reports
    if lookup_requests or reports:
        out["authenticationRate"] = round(pace.auth(total) * 10, 2)  # requests per 10 s
        out["authenticationRateSource"] = pace.auth_source
    if plan.estimated_total is None:
        return out | {"counted": False, "paceSource": "learned" if pace.learnt else "default"}
    per_partition = [
        cost.reading * (n * pace.seconds_per_user + p * PAGE_SECONDS)
        + n * cost.lookups / pace.lookups_per_second
        for n, p in zip(users, page_runs, strict=True)
    ]
    work = max(max(per_partition), sum(per_partition) / pace.concurrency)
    cpu = CPU_NOT_OVERLAPPED * total * CPU_SECONDS_PER_USER
    waits = pace.budget_waits(total, listing_units, lookup_requests + reports)
    budget = max(*waits, 0.0)
    seconds = planning_seconds + OVERHEAD_SECONDS + max(work, budget) + cpu
    if work >= budget:
        binding = "work"
    else:
        binding = "graphBudget" if waits[0] >= waits[1] else "authenticationBudget"
    return out | {
        "counted": True,
        "durationSeconds": round(seconds, 1),
        "paceSource": "learned" if pace.learnt else "default",
        "bindingLimit": binding,
    }
