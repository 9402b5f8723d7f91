"""Splitting the listing into partitions, and the completeness check behind it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from userexport.filters import GraphQuery, Scope
from userexport.graph import GraphError
from userexport.jobs import Plan
from userexport.planning import (
    OVERHEAD_SECONDS,
    PREFIXES,
    SCOPE_WITH_EXPAND,
    SECOND,
    SEQUENTIAL,
    ListingCost,
    Pace,
    estimate,
    listing_cost,
    plan_listing,
    split,
)

PLAIN = ListingCost(page_size=999, page_units=1)  # /users with $select, no lookups


def test_split_keeps_the_order_and_balances():
    counted = [("a", 50), ("b", 10), ("c", 0), ("d", 40), ("e", 100)]
    runs = split(counted, 3)
    assert [p for run in runs for p in run] == ["a", "b", "c", "d", "e"], "order kept"
    assert runs == [["a"], ["b", "c", "d"], ["e"]], "the largest run is as small as can be"


def test_split_makes_the_largest_run_as_small_as_it_can():
    counted = [("a", 30), ("b", 30), ("c", 30), ("d", 45), ("e", 15), ("f", 30)]
    users = dict(counted)
    largest = {k: max(sum(users[p] for p in run) for run in split(counted, k)) for k in (4, 5)}
    assert largest == {4: 60, 5: 45}, "a+b | c | d | e+f, then a | b | c | d | e+f"


@pytest.mark.parametrize("parts", [1, 2, 5, 44, 60])
def test_split_never_loses_a_prefix(parts):
    counted = [(p, (i * 7) % 5) for i, p in enumerate(PREFIXES)]
    runs = split(counted, parts)
    assert [p for run in runs for p in run] == list(PREFIXES)
    assert 1 <= len(runs) <= parts
    assert all(runs)


class CountingGraph:
    def __init__(self, counts: dict[str | None, int], *, fail: bool = False) -> None:
        self.counts, self.fail, self.filters = counts, fail, []

    async def count_users(self, *, filter: str | None, scope: object = None) -> int:
        self.filters.append(filter)
        if self.fail:
            raise GraphError(400, "Request_UnsupportedQuery", "no $count in B2C")
        if filter is None:
            return self.counts[None]
        return self.counts.get(filter.split("'")[-2] if "'" in filter else filter, 0)


async def test_counts_that_add_up_give_partitions():
    graph = CountingGraph({None: 30, "a": 10, "m": 10, "z": 10})
    plan = await plan_listing(graph, GraphQuery(None, False), partitions=3)
    assert [run[0] for run in plan.partitions] == ["a", "m", "z"]
    assert [p for run in plan.partitions for p in run] == list(PREFIXES)
    assert plan.estimated_total == 30 and plan.note is None


async def test_counts_that_disagree_fall_back_to_one_listing():
    graph = CountingGraph({None: 31, "a": 10, "m": 10, "z": 10})
    plan = await plan_listing(graph, GraphQuery(None, False), partitions=3)
    assert plan.partitions == SEQUENTIAL
    assert "31" in plan.note


async def test_no_count_means_sequential_and_no_estimate():
    plan = await plan_listing(CountingGraph({}, fail=True), GraphQuery(None, False), partitions=4)
    assert plan.partitions == SEQUENTIAL and plan.estimated_total is None and plan.note


async def test_the_user_filter_is_kept_in_every_count():
    graph = CountingGraph({"Guest": 5, "a": 5})  # keyed by each filter's last literal
    await plan_listing(graph, GraphQuery("userType eq 'Guest'", False), partitions=2)
    assert all(f.startswith("userType eq 'Guest'") for f in graph.filters)
    assert "userType eq 'Guest' and startsWith(userPrincipalName,'a')" in graph.filters


async def test_a_crowded_first_character_is_split_by_the_second():
    graph = CountingGraph({None: 100, "a": 10, "m": 80, "z": 10, "ma": 50, "mb": 30})
    plan = await plan_listing(graph, GraphQuery(None, False), partitions=4)
    listed = [p for run in plan.partitions for p in run]
    assert "m" not in listed
    assert listed.index("ma") < listed.index("mb") < listed.index("m@") < listed.index("n")
    assert len(listed) == len(PREFIXES) - 1 + len(SECOND)
    assert any(run[0] == "mb" for run in plan.partitions), "ma and mb land in separate runs"


async def test_second_character_counts_that_disagree_keep_the_first():
    graph = CountingGraph({None: 100, "a": 10, "m": 80, "z": 10, "ma": 50, "mb": 29})
    plan = await plan_listing(graph, GraphQuery(None, False), partitions=4)
    assert [p for run in plan.partitions for p in run] == list(PREFIXES)


class ScopedGraph(CountingGraph):
    async def count_users(self, *, filter: str | None, scope: object = None) -> int:
        self.scopes = [*getattr(self, "scopes", []), scope]
        return await super().count_users(filter=filter)


async def test_a_scope_is_counted_through_its_member_list():
    scope = Scope("group", "0f3b5d4e-1a2b-4c3d-8e9f-001122334455")
    graph = ScopedGraph({None: 30, "a": 10, "m": 10, "z": 10})
    plan = await plan_listing(graph, GraphQuery(None, False, scope), partitions=3)
    assert len(plan.partitions) == 3 and set(graph.scopes) == {scope}


async def test_a_scope_with_the_manager_column_is_one_sequence_with_a_note():
    scope = Scope("group", "0f3b5d4e-1a2b-4c3d-8e9f-001122334455")
    graph = ScopedGraph({None: 30, "a": 10, "m": 10, "z": 10})
    plan = await plan_listing(graph, GraphQuery(None, False, scope), partitions=3, expand=True)
    assert plan.partitions == SEQUENTIAL and plan.estimated_total == 30
    assert plan.note == SCOPE_WITH_EXPAND
    assert graph.filters == [None], "one count, no per-prefix counts it would not use"


def test_the_estimate_counts_a_page_per_prefix_and_a_request_per_lookup():
    plan = Plan([["a", "b"], ["c"]], estimated_total=1250)
    counts = {"": 1250, "a": 1000, "b": 250, "c": 0}
    lookups = ListingCost(page_size=999, page_units=1, lookups=1)
    got = estimate(plan, counts, cost=lookups, preflight_requests=1)
    hidden = ("durationSeconds", "paceSource", "bindingLimit", "authenticationRate")
    shown = {k: v for k, v in got.items() if k not in hidden}
    assert shown.pop("authenticationRateSource") == "documented"
    assert shown == {
        "planningRequests": 5,
        "listingRequests": 2 + 1 + 1,
        "pageSize": 999,
        "lookupRequests": 1250,
        "resourceUnits": 5 + 4 + 1250,
        "partitions": 2,
        "counted": True,
    }
    assert got["paceSource"] == "default"
    sequential = Plan(SEQUENTIAL, estimated_total=1250)
    signed_in = estimate(
        sequential, {"": 1250}, cost=ListingCost(page_size=120, page_units=2), preflight_requests=0
    )
    assert signed_in["listingRequests"] == 11 and signed_in["resourceUnits"] == 1 + 22


def test_pages_cost_what_graph_documents_for_each_listing():
    """throttling-limits.md: GET users 2, groups/{id}/transitiveMembers 5, $select -1,
    $expand +1; with $expand, pages of at most 100 (microsoft-graph-docs PR #21506)."""
    group = GraphQuery(None, False, Scope("group", "g"))
    unit = GraphQuery(None, False, Scope("administrativeUnit", "u"))
    everyone = GraphQuery(None, False)

    def units(query: GraphQuery, *, expand: bool) -> int:
        return listing_cost(
            query, page_size=100, expand=expand, sign_in_by_id=False, lookups=0
        ).page_units

    assert [units(everyone, expand=False), units(everyone, expand=True)] == [1, 2]
    assert [units(group, expand=False), units(group, expand=True)] == [4, 5]
    assert units(unit, expand=False) == 1
    members = Plan(SEQUENTIAL, estimated_total=1000)
    cost = listing_cost(group, page_size=100, expand=True, sign_in_by_id=False, lookups=0)
    got = estimate(members, {"": 1000}, cost=cost, preflight_requests=0)
    assert got["pageSize"] == 100 and got["listingRequests"] == 10
    assert got["resourceUnits"] == 1 + 10 * 5


def test_sign_in_read_by_id_is_a_request_per_15_users():
    cost = ListingCost(page_size=999, page_units=4, sign_in_by_id=True)
    got = estimate(
        Plan(SEQUENTIAL, estimated_total=100), {"": 100}, cost=cost, preflight_requests=0
    )
    assert got["signInRequests"] == 7 and got["resourceUnits"] == 1 + 4 + 7


def test_without_a_count_the_estimate_says_so_and_gives_no_duration():
    got = estimate(Plan(SEQUENTIAL, None, "no count"), {}, cost=PLAIN, preflight_requests=1)
    assert got["counted"] is False and "durationSeconds" not in got


async def test_a_tenant_that_refuses_count_is_one_sequential_listing_with_a_note():
    """$count is not available in Azure AD B2C tenants (List users)."""

    class B2C:
        async def count_users(self, *, filter: str | None, scope: object = None) -> int:
            raise GraphError(400, "Request_BadRequest", "$count is not currently supported.")

    plan = await plan_listing(B2C(), GraphQuery(None, False), partitions=8)  # type: ignore[arg-type]
    assert plan.partitions == SEQUENTIAL and plan.estimated_total is None
    assert plan.note and "B2C" in plan.note and "Request_BadRequest" in plan.note


async def test_nobody_to_export_is_one_page_not_a_count_per_prefix():
    graph = CountingGraph({None: 0})
    plan = await plan_listing(graph, GraphQuery(None, False), partitions=8)
    assert plan.partitions == SEQUENTIAL and plan.estimated_total == 0
    assert graph.filters == [None]


async def test_a_small_tenant_is_one_count_and_one_listing():
    graph = CountingGraph({None: 1000, "a": 500, "b": 500})
    plan = await plan_listing(graph, GraphQuery(None, False), partitions=8, small=1000)
    assert plan.partitions == SEQUENTIAL and plan.estimated_total == 1000
    assert graph.filters == [None], "one $count, no counts per prefix"


def test_the_partition_count_follows_the_work():
    pace = Pace(auth_source="probed")  # a probe served every lookup: the app's whole budget
    lookups = ListingCost(page_size=999, page_units=1, lookups=1)
    assert pace.partitions_for(5_000, cost=PLAIN, seconds=10) == 1, "5 s of pages: one partition"
    assert pace.partitions_for(1_000_000, cost=PLAIN, seconds=10) == 103, "1,000 s of pages + 20"
    assert pace.partitions_for(10_000, cost=lookups, seconds=10) == 12, "100 s of lookups + 10"
    assert pace.partitions_for(10, cost=PLAIN, seconds=0) >= 64, "0: as many as allowed"


def test_no_more_partitions_than_keep_the_budget_busy():
    """Under a learnt auth bucket of 10 RU/s, 10,000 lookups take 1,000 s whatever the
    partitions: 100 s of lookups at full speed needs no more than one."""
    slow = Pace(auth_rate=10.0, learnt=True)
    lookups = ListingCost(page_size=999, page_units=1, lookups=1)
    assert Pace(auth_source="probed").partitions_for(10_000, cost=lookups, seconds=10) == 12
    assert slow.partitions_for(10_000, cost=lookups, seconds=10) == 1


def test_until_a_rate_is_known_lookups_are_planned_at_the_documented_limit():
    """Five per 10 s (throttling-limits.md): 300 lookups take about 590 s, and one partition
    does them all; the estimate says which limit binds and that it was assumed."""
    lookups = ListingCost(page_size=999, page_units=1, lookups=1)
    assert Pace().partitions_for(300, cost=lookups, seconds=10) == 1
    assert Pace().partitions_for(1_000_000, cost=lookups, seconds=10) == 1
    got = estimate(Plan([[""]], estimated_total=300), {"": 300}, cost=lookups, preflight_requests=2)
    assert got["bindingLimit"] == "authenticationBudget"
    assert got["authenticationRate"] == 5.0 and got["authenticationRateSource"] == "documented"
    assert 590 <= got["durationSeconds"] <= 600
    probed = estimate(
        Plan([[""]], estimated_total=300),
        {"": 300},
        cost=lookups,
        preflight_requests=2,
        pace=Pace(auth_source="probed"),
    )
    assert probed["durationSeconds"] < 10 and probed["authenticationRateSource"] == "probed"


def test_the_registration_report_is_a_page_per_thousand_users_of_each_prefix():
    cost = ListingCost(page_size=999, page_units=1, report=True)
    plan = Plan([["a", "b"], ["c"]], estimated_total=3500)
    got = estimate(plan, {"": 3500, "a": 2500, "b": 1000, "c": 0}, cost=cost, preflight_requests=1)
    assert got["reportRequests"] == 3 + 1 + 1 and got["lookupRequests"] == 0
    assert got["bindingLimit"] == "work" and got["authenticationRateSource"] == "documented"


async def test_a_window_cuts_prefixes_however_few_partitions():
    graph = CountingGraph(
        {None: 30, "a": 20, "m": 10, **{f"a{c}": 1 for c in "abcdefghijklmnopqrst"}}
    )
    plan = await plan_listing(graph, GraphQuery(None, False), partitions=1, report_rows=12)
    assert len(plan.partitions) == 1 and "a" not in plan.partitions[0]
    assert plan.partitions[0][:2] == ["aa", "ab"] and "m" in plan.partitions[0]


async def test_the_wanted_partitions_are_bounded_by_the_setting():
    graph = CountingGraph({None: 30, "a": 10, "m": 10, "z": 10})
    plan = await plan_listing(graph, GraphQuery(None, False), partitions=2, wanted=lambda total: 40)
    assert len(plan.partitions) == 2
    plan = await plan_listing(graph, GraphQuery(None, False), partitions=8, wanted=lambda t: 1)
    assert plan.partitions == SEQUENTIAL


def test_the_duration_is_the_longer_of_the_work_and_what_the_budget_allows():
    counts = {"": 3000, "a": 1500, "b": 1500}
    plan = Plan([["a"], ["b"]], estimated_total=3000)
    # Lookups under a learnt 100 RU/s auth bucket: 1,000 RU at once, then 2,000 in 20 s.
    learnt = Pace(auth_rate=100.0, learnt=True)
    got = estimate(
        plan,
        counts,
        cost=ListingCost(page_size=999, page_units=1, lookups=1),
        preflight_requests=2,
        pace=learnt,
        planning_seconds=1.5,
    )
    assert got["durationSeconds"] == pytest.approx(1.5 + OVERHEAD_SECONDS + 20.0)
    assert got["paceSource"] == "learned"
    # Without lookups, pages of a second each, the partitions side by side.
    pages = estimate(plan, counts, cost=PLAIN, preflight_requests=0)
    assert pages["durationSeconds"] == pytest.approx(OVERHEAD_SECONDS + 1.5 + 2 * 0.02, abs=0.1)


def test_the_estimate_runs_as_many_partitions_at_once_as_host_json_starts():
    host = json.loads((Path(__file__).parents[2] / "host.json").read_text())
    assert Pace().concurrency == host["extensions"]["queues"]["batchSize"]


async def test_a_crowded_second_character_is_split_by_the_third():
    graph = CountingGraph(
        {None: 100, "a": 10, "m": 80, "z": 10, "ma": 70, "mb": 10, "mar": 40, "mas": 30}
    )
    plan = await plan_listing(graph, GraphQuery(None, False), partitions=5)
    listed = [p for run in plan.partitions for p in run]
    assert "ma" not in listed and "m" not in listed
    assert listed.index("mar") < listed.index("mas") < listed.index("ma@") < listed.index("mb")
    assert len(listed) == len(PREFIXES) - 1 + 2 * len(SECOND) - 1


async def test_a_split_prefix_a_run_holds_whole_is_listed_whole():
    graph = CountingGraph({None: 100, "a": 10, "m": 80, "z": 10, "ma": 50, "mb": 30})
    plan = await plan_listing(graph, GraphQuery(None, False), partitions=4)
    assert "m" not in [p for run in plan.partitions for p in run], "m is cut between runs"
    # m (45 of 125, over a third) is split, but every one of its children lands in the second
    # run: that run lists m itself, one listing instead of 45.
    graph = CountingGraph({None: 125, "a": 40, "m": 45, "ma": 45, "z": 40})
    plan = await plan_listing(graph, GraphQuery(None, False), partitions=3)
    listed = [p for run in plan.partitions for p in run]
    assert any(f and "'ma')" in f for f in graph.filters), "m was counted by its second character"
    assert "m" in listed and "ma" not in listed, "m's children all in one run: m listed whole"


def test_the_estimate_says_which_limit_binds():
    plan = Plan(SEQUENTIAL, estimated_total=100_000)
    cost = ListingCost(page_size=999, page_units=1, lookups=1)
    counts = {"": 100_000}

    def binding(pace: Pace) -> str:
        return estimate(plan, counts, cost=cost, preflight_requests=0, pace=pace)["bindingLimit"]

    # A generous budget: the instance's own work is what takes the time.
    assert binding(Pace(listing_rate=1e9, auth_rate=1e9)) == "work"
    # Lookups at the authentication-methods limit throttling.md documents (5 per 10 s).
    assert binding(Pace(listing_rate=1e9, auth_rate=0.5)) == "authenticationBudget"
    # Every request, lookups included, under a small budget for the whole app.
    assert binding(Pace(listing_rate=5, auth_rate=1e9)) == "graphBudget"
