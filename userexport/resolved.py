"""A job's request resolved once into what every step reads: the columns (bound to the licence
names the plan read), the Graph query its filter becomes, the $select and $expand, how
sign-in activity is read, the authentication lookups. The plan step resolves the request
before there is a plan; each later step (a partition, the changes run, the commit) resolves
the job once when its message arrives, from the request and the plan, and carries it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .columns import (
    SIGN_IN_ACTIVITY,
    Column,
    ColumnContext,
    graph_expand,
    graph_select,
    lookups,
    reads_report,
    resolve,
)
from .csvfile import CsvEncoder
from .filters import GraphQuery, to_graph_query
from .jobs import Job
from .request import ExportRequest


@dataclass(frozen=True)
class Resolved:
    columns: tuple[Column, ...]
    query: GraphQuery
    expand: list[str] | None
    # How signInActivity is read (Plan.sign_in): "listing", "byId", or None (not at all).
    sign_in: str | None
    lookups: tuple[str, ...]  # the authentication-method lists read per user
    formula_guard: bool
    # The registration report: read by the partitions (its columns, or fewerLookups), unless
    # Graph refused it (Plan.report False); `fewer_lookups`: only users it cannot rule out are
    # looked up.
    report: bool = False
    fewer_lookups: bool = False

    @classmethod
    def request(cls, request: ExportRequest) -> Resolved:
        """What the plan step starts from: the request alone (no licence names, no plan)."""
        columns = resolve(request.columns)
        fewer = request.fewer_lookups and bool(lookups(columns))
        return cls(
            columns=columns,
            query=to_graph_query(request.filter),
            expand=graph_expand(columns),
            sign_in="listing" if SIGN_IN_ACTIVITY in graph_select(columns) else None,
            lookups=lookups(columns),
            formula_guard=request.formula_guard,
            report=reads_report(columns) or fewer,
            fewer_lookups=fewer,
        )

    @classmethod
    def job(cls, job: Job) -> Resolved:
        """A planned job, as its partitions, changes run and commit read it."""
        plan, request = job.plan, job.request
        context = ColumnContext(skus=(plan.skus if plan else None) or {}, as_of=job.started_at)
        columns = resolve(request.columns, context)
        chosen = tuple(plan.lookups) if plan is not None and plan.lookups is not None else None
        fewer = request.fewer_lookups and bool(lookups(columns) if chosen is None else chosen)
        readable = plan is None or plan.report is not False
        return cls(
            columns=columns,
            query=to_graph_query(request.filter),
            expand=graph_expand(columns),
            sign_in=plan.sign_in if plan else None,
            lookups=lookups(columns) if chosen is None else chosen,
            formula_guard=request.formula_guard,
            report=(reads_report(columns) or fewer) and readable,
            fewer_lookups=fewer and readable,
        )

    def select(self, *, sign_in: bool | None = None) -> list[str]:
        """$select for the columns; signInActivity in it when sign-in is read in the listing
        (or, with `sign_in`, as that says)."""
        with_sign_in = self.sign_in == "listing" if sign_in is None else sign_in
        return graph_select(self.columns, sign_in=with_sign_in)

    def encoder(self) -> CsvEncoder:
        return CsvEncoder(self.columns, formula_guard=self.formula_guard)

    @property
    def reads_sign_in(self) -> bool:
        """Whether the columns ask for signInActivity at all."""
        return SIGN_IN_ACTIVITY in graph_select(self.columns)
