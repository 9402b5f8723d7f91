"""admission.py's rules, on a store in a dict: a place per large export up to the limit, in
the order the jobs were created; small exports and the timer's run never wait; the backlog."""

from __future__ import annotations

from datetime import timedelta

from userexport import admission, api
from userexport.jobs import DeltaPlan, Job, Plan, Status, utcnow
from userexport.request import ExportRequest
from userexport.settings import Settings

from .test_api import ENV, FakeClients

REQUEST = ExportRequest(columns=("objectId",), filter=None, file_name="x.csv")


def clients(**settings: str) -> FakeClients:
    env = {**ENV, **{f"USEREXPORT_{k.upper()}": v for k, v in settings.items()}}
    return FakeClients(settings=Settings.from_env(env))


def job(clients: FakeClients, n: int, *, users: int = 50_000, trigger: str = "http") -> Job:
    """A planned export created n seconds in, waiting for its place (queued, with its plan)."""
    made = Job(
        id=f"{n:032d}",
        status=Status.QUEUED,
        trigger=trigger,
        created_at=utcnow() + timedelta(seconds=n),
        request=REQUEST,
        plan=Plan([["a"], ["b"]], estimated_total=users),
    )
    clients.jobs.rows[made.id] = made
    return made


async def test_large_exports_take_places_up_to_the_limit_and_free_them_when_done():
    c = clients(max_running_exports="1")
    first, second = job(c, 1), job(c, 2)
    assert await admission.admit(c, first)
    first.status = Status.RUNNING
    assert not await admission.admit(c, second)
    assert await admission.admit(c, first), "a place once taken is kept"
    first.status = Status.SUCCEEDED
    assert await admission.admit(c, second)
    assert c.jobs.running == [second.id]


async def test_the_older_waiting_export_goes_first():
    c = clients(max_running_exports="2")
    running = job(c, 1)
    assert await admission.admit(c, running)
    running.status = Status.RUNNING
    older, newer = job(c, 2), job(c, 3)
    assert not await admission.admit(c, newer), "the one free place is the older one's"
    assert await admission.admit(c, older)
    older.status = Status.RUNNING
    assert not await admission.admit(c, newer)


async def test_small_exports_changes_runs_and_the_timers_run_never_wait():
    c = clients(max_running_exports="1", small_tenant_users="1000")
    large = job(c, 1)
    assert await admission.admit(c, large)
    large.status = Status.RUNNING
    waiting = job(c, 2)
    assert await admission.admit(c, job(c, 3, users=1)), "one user: no place needed"
    changes = job(c, 5)
    assert changes.plan is not None
    changes.plan.delta = DeltaPlan("changes", None, "1-a", "https://link")
    assert await admission.admit(c, changes), "a changes run reads only what changed"
    assert await admission.admit(c, job(c, 4, trigger="timer")), "past the limit"
    assert len(c.jobs.running) == 2, "the timer's run holds a place"
    assert not await admission.admit(c, waiting)


async def test_the_backlog_counts_queued_exports_and_each_has_its_place():
    c = clients(max_queued_exports="3")
    jobs = [job(c, n) for n in (3, 1, 2)]
    assert await admission.backlog_full(c)
    assert [await admission.queue_position(c, j) for j in jobs] == [3, 1, 2]
    jobs[1].status = Status.RUNNING
    assert not await admission.backlog_full(c)
    assert await admission.queue_position(c, jobs[0]) == 2


async def test_the_list_shows_each_queued_exports_place():
    c = clients()
    for n in (2, 3, 1):
        job(c, n)
    listed = await api.list_exports(c, params={}, links=api.Links("https://app"))  # type: ignore[arg-type]
    places = {j["id"]: j["queuePosition"] for j in listed.body["value"]}
    assert places == {f"{n:032d}": n for n in (1, 2, 3)}
