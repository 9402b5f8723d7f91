"""The plan step: what the export needs is checked (preflight.py), the users are counted and
the listing split into partitions (planning.py), a delta series' run chosen (delta.py), and
the estimate made; then one partition row and one queue message per partition.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, replace

from . import admission, budget, errorsfile, telemetry
from .clients import Clients
from .continuation import continue_later
from .delta import plan_delta
from .errors import JobConflict, JobStopped, OutOfTime
from .graph import BATCH_SIZE, REPORT_PARTITIONS, REPORT_ROWS, GraphError, meter, page_size
from .graph.registration import PROBE_URL
from .jobs import Job, Partition, PartitionStatus, Plan, Status, utcnow
from .messages import ExportMessage, Outcome
from .planning import (
    DOCUMENTED_AUTH_RATE,
    SECONDS_PER_USER,
    Pace,
    estimate,
    listing_cost,
    plan_listing,
)
from .preflight import Preflight, preflight, sign_in_refused
from .resolved import Resolved

log = logging.getLogger(__name__)

PROBE_USERS = BATCH_SIZE  # requests the plan's probe sends: one $batch


async def plan_job(clients: Clients, job_id: str) -> Outcome:
    """The plan step: the checks, the counts, the partitions (one row and one message each) and
    the estimate, made once however often its message is delivered."""
    job = await clients.jobs.get(job_id)
    if job is None or job.status.finished:
        log.info("Export job %s is unknown or finished; plan message dropped.", job_id)
        return Outcome.SKIPPED
    if job.status is Status.QUEUED and job.plan is not None:  # planned, waiting for a place
        if not await admission.admit(clients, job):
            return await _wait_turn(clients, job)
        job.status = Status.RUNNING
        job = await _save_or_reload(clients, job)
    elif job.status is Status.QUEUED:
        job.status, job.started_at = Status.RUNNING, utcnow()
        job = await _save_or_reload(clients, job)
    if job.status is not Status.RUNNING:  # cancelled meanwhile
        return Outcome.SKIPPED
    if job.plan is None:
        settings = clients.settings
        counts = dict(job.plan_counts or {})  # what earlier invocations counted
        with budget.budget(settings.time_budget_seconds, failing_since=job.failing_since) as spent:
            try:
                plan = await clients.jobs.while_running(job.id, _make_plan(clients, job, counts))
            except OutOfTime:
                job.plan_counts = counts
                return await _plan_later(clients, job, spent)
            except JobStopped:
                return Outcome.SKIPPED
        job.plan, job.plan_counts, job.preflight, job.failing_since = plan, None, None, None
        job.graph = meter.saved(job.graph)
        if job.request.dry_run:  # ends with its plan and estimate: no partitions, no files
            job.status, job.finished_at = Status.ESTIMATED, utcnow()
            job.reason = errorsfile.reason(plan.notices)
        job = await _save_or_reload(clients, job)
        if job.status is Status.ESTIMATED:
            log.info("Export job %s estimated (dry run): %s", job.id, plan.estimate)
            return Outcome.FINISHED
        if job.status is not Status.RUNNING:  # cancelled while counting: no partitions
            return Outcome.SKIPPED
        if not await admission.admit(clients, job):
            job.status = Status.QUEUED  # planned; its partitions wait for a place
            return await _wait_turn(clients, job)
        if job.plan is None:
            raise RuntimeError(f"job {job_id} has no plan after planning")
    # Replayed (a crash, a duplicate), this only adds what is missing and re-queues what is
    # not done; a partition message that finds its partition leased or done does nothing.
    for index, prefixes in enumerate(job.plan.partitions):
        await clients.jobs.add_partition(Partition(job.id, index, prefixes))
    for part in await clients.jobs.partitions(job.id):
        if part.status is not PartitionStatus.DONE:
            await clients.queue.send_message(ExportMessage(job.id, part.index).encode())
    log.info("Export job %s planned: %d partition(s).", job.id, len(job.plan.partitions))
    telemetry.planned(job)
    return Outcome.PLANNED


async def _make_plan(clients: Clients, job: Job, counts: dict[str, int]) -> Plan:
    """Checks what the export needs (preflight), counts and splits the listing, and estimates
    its Graph requests. What the checks found is kept on the job (saved with the counts when
    planning continues in a new message), so each is made once."""
    checked = Preflight(**(job.preflight or {}))
    resolved = Resolved.request(job.request)
    try:
        await preflight(clients.graph, resolved, checked)
    finally:
        job.preflight = asdict(checked)
    if checked.total is not None:  # the methods check counted the users: one request less
        counts.setdefault("", checked.total)
    query, expand = resolved.query, resolved.expand
    sign_in = sign_in_source(resolved, checked.notices)
    select = resolved.select(sign_in=sign_in == "listing")
    delta = None
    if job.request.delta:
        delta = await plan_delta(clients, job, select=select, notices=checked.notices)
    if delta is not None and delta.kind == "changes":
        # One partition reads the changes and rebuilds the snapshot (delta.ChangesRun).
        previous = await clients.jobs.get(delta.since)
        plan = Plan([[""]], estimated_total=previous.user_count if previous else None)
        plan.skus, plan.notices, plan.lookups, plan.delta = (
            checked.skus,
            checked.notices,
            checked.lookups,
            delta,
        )
        return plan
    pace = await _known_pace(clients, "signIn" if sign_in == "listing" else "listing")
    reads_report = bool(resolved.report and checked.report)
    if pace.auth_rate is None:
        if checked.lookups and checked.user_id:
            lookup = f"/users/{checked.user_id}/authentication/{checked.lookups[0]}"
            pace = await _probe(clients, job, [lookup] * PROBE_USERS, pace)
        elif reads_report:
            pace = await _probe(clients, job, [PROBE_URL] * PROBE_USERS, pace)
    cost = listing_cost(
        query,
        page_size=page_size(select, expand),
        expand=expand is not None,
        sign_in_by_id=sign_in == "byId",
        lookups=len(checked.lookups or ()),
        report=reads_report,
    )
    plan = await plan_listing(
        clients.graph,
        query,
        partitions=min(clients.settings.partitions, REPORT_PARTITIONS)
        if reads_report
        else clients.settings.partitions,
        counts=counts,
        expand=expand is not None,
        small=clients.settings.small_tenant_users,
        wanted=lambda total: pace.partitions_for(
            total, cost=cost, seconds=clients.settings.partition_seconds
        ),
        report_rows=REPORT_ROWS if reads_report else None,
    )
    plan.skus, plan.notices, plan.lookups = checked.skus, checked.notices, checked.lookups
    plan.delta, plan.sign_in, plan.report = delta, sign_in, checked.report
    started = job.started_at or utcnow()
    plan.estimate = estimate(
        plan,
        counts,
        cost=cost,
        # The methods check's request counted the users too (counts[""]): not twice.
        preflight_requests=checked.requests - (checked.total is not None),
        pace=pace,
        planning_seconds=(utcnow() - started).total_seconds(),
    )
    return plan


def sign_in_source(resolved: Resolved, notices: list[list[str]]) -> str | None:
    """How the export reads signInActivity (Plan.sign_in): not at all without a sign-in column
    or when Graph refused it; by id beside an advanced query or a member list, which give it
    empty or not at all (msgraph-sdk-powershell #1898, microsoft-graph-docs-contrib #5593);
    else in the listing."""
    if not resolved.reads_sign_in or sign_in_refused(notices):
        return None
    query = resolved.query
    return "byId" if query.advanced or query.scope is not None else "listing"


async def _known_pace(clients: Clients, listing: str) -> Pace:
    """What the instances learnt about this tenant's listing and lookup buckets, if anything."""
    found = {bucket: await clients.pace.read(bucket) for bucket in (listing, "auth")}
    shared, auth = found[listing], found["auth"]
    per_user = shared.seconds_per_user if shared else None
    rates = (shared.bucket_rate if shared else None, auth.bucket_rate if auth else None)
    return Pace(
        seconds_per_user=per_user or SECONDS_PER_USER,
        listing_rate=rates[0],
        auth_rate=rates[1],
        learnt=bool(per_user or rates[0] or rates[1]),
        auth_source="learnt" if rates[1] else "documented",
    )


async def _probe(clients: Clients, job: Job, urls: list[str], pace: Pace) -> Pace:
    """Which world the tenant is in, before planning lookups or report pages nobody learnt a
    rate for: one timed $batch of PROBE_USERS of them, all of the one user the methods check
    read, or of a report query nobody answers (each counts against the limit all the same: no
    listing request for it). Throttled, the rate is what Graph served of it per 10 s, at least
    the documented five, and the instances learn it; served whole, the lookups go at the app's
    budget, as fast as a partition's $batches of that latency go."""
    try:
        served, throttled, took = await clients.auth_methods.probe(urls)
    except GraphError as error:  # it only informs the estimate: the documented limit stands
        log.warning("Export job %s: the lookups' probe failed (%s).", job.id, error.summary)
        return pace
    log.info(
        "Export job %s: probe of %d lookups, %d throttled.", job.id, served + throttled, throttled
    )
    if not served + throttled:
        return pace
    pace = pace.timed_batch(took)
    if throttled:
        # Served fewer than the documented five: the bucket was partly spent already (the
        # preflight's check), so the documented limit is the rate; more: the tenant's own.
        rate = max(served / 10.0, DOCUMENTED_AUTH_RATE)
        await clients.pace.learn("auth", rate=rate)
        return replace(pace, auth_rate=rate, auth_source="probed")
    return replace(pace, auth_source="probed")


async def _plan_later(clients: Clients, job: Job, spent: budget.Budget) -> Outcome:
    """Graph kept failing while counting: plan again in a new message, or give up past the cap."""

    async def save(_pause: float) -> None:
        job.failing_since, job.last_error = spent.failing_since, spent.last_error
        job.graph = meter.saved(job.graph)
        await _save_or_reload(clients, job)

    return await continue_later(clients, ExportMessage(job.id), spent, save=save)


async def _wait_turn(clients: Clients, job: Job) -> Outcome:
    """Saves the job as queued (its row moving on, so the sweep sees it alive) and asks again
    in a new plan message, USEREXPORT_ADMISSION_SECONDS later."""
    job = await _save_or_reload(clients, job)
    if job.status is not Status.QUEUED:  # cancelled meanwhile
        return Outcome.SKIPPED
    wait = clients.settings.admission_seconds
    await clients.queue.send_message(
        ExportMessage(job.id).encode(), visibility_timeout=max(1, round(wait))
    )
    log.info("Export job %s waits for a place; asks again in %.0f s.", job.id, wait)
    return Outcome.WAITING


async def _save_or_reload(clients: Clients, job: Job) -> Job:
    """Saves the job; if a twin invocation saved first, carries on with what it saved."""
    try:
        return await clients.jobs.save(job)
    except JobConflict:
        fresh = await clients.jobs.get(job.id)
        if fresh is None:
            raise
        return fresh
