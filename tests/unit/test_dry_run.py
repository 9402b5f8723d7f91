"""`"dryRun": true`: validated like the other fields, part of the request (and of its
Idempotency-Key fingerprint), and planned like a real export that then ends `estimated` with its
estimate, no partitions and no files."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from tests.unit.test_api import FakeClients, FakeQueue, FakeStore
from userexport import api, exporter, idempotency, plan
from userexport.exportrequest import InvalidRequest, parse_export_request
from userexport.jobs import Job, Partition, Plan, Status
from userexport.messages import ExportMessage, Outcome
from userexport.request import ExportRequest

NOW = datetime(2026, 11, 27, 14, 5, 9, tzinfo=UTC)
ESTIMATE = {
    "planningRequests": 3,
    "listingRequests": 4,
    "pageSize": 999,
    "lookupRequests": 0,
    "resourceUnits": 7,
}


# ------------------------------------------------------------------ the request
def test_dry_run_is_off_unless_asked_for():
    assert parse_export_request(b"", now=NOW).dry_run is False
    assert parse_export_request(b'{"dryRun": false}', now=NOW).dry_run is False
    assert parse_export_request(b'{"dryRun": true}', now=NOW).dry_run is True


@pytest.mark.parametrize(
    "value", [b'"yes"', b'"true"', b"1", b"0", b"null", b"[]", b"{}", b'"false"']
)
def test_anything_but_a_json_boolean_is_refused_naming_dry_run(value):
    with pytest.raises(InvalidRequest) as refused:
        parse_export_request(b'{"dryRun": ' + value + b"}", now=NOW)
    assert refused.value.field == "dryRun"
    assert refused.value.detail == "dryRun must be true or false."


def test_the_recorded_request_says_whether_it_is_a_dry_run():
    request = parse_export_request(b'{"dryRun": true, "columns": "preview"}', now=NOW)
    recorded = request.to_json()
    assert recorded["dryRun"] is True
    assert ExportRequest.from_json(recorded) == request
    assert parse_export_request(b"{}", now=NOW).to_json()["dryRun"] is False


def test_a_job_recorded_before_dry_runs_existed_is_a_real_export():
    old = {"columns": ["objectId"], "filter": None, "fileName": "x.csv", "formulaGuard": True}
    assert ExportRequest.from_json(old).dry_run is False


def test_a_dry_run_is_another_body_for_the_idempotency_key():
    assert idempotency.fingerprint({}) != idempotency.fingerprint({"dryRun": True})
    assert idempotency.fingerprint({"dryRun": False}) != idempotency.fingerprint({"dryRun": True})


# ------------------------------------------------------------------ the API
async def test_a_post_with_a_bad_dry_run_is_a_400_that_writes_and_queues_nothing():
    clients = FakeClients()
    answer = await api.create_export(
        clients, body=b'{"dryRun": "yes"}', trigger="http", links=api.Links("")
    )  # type: ignore[arg-type]
    assert answer.status == 400
    assert answer.content_type == "application/problem+json"
    assert answer.body["field"] == "dryRun" and "dryRun" in answer.body["detail"]
    assert clients.jobs.rows == {} and clients.queue.sent == []


async def test_a_dry_run_is_queued_like_any_export():
    clients = FakeClients()
    answer = await api.create_export(
        clients, body=b'{"dryRun": true}', trigger="http", links=api.Links("https://app")
    )  # type: ignore[arg-type]
    assert answer.status == 202 and answer.body["status"] == "queued"
    job = clients.jobs.rows[answer.body["id"]]
    assert job.status is Status.QUEUED and job.request.dry_run is True
    assert clients.queue.sent == [orjson.dumps({"jobId": job.id}).decode()]
    status = await api.get_export(clients, job.id, links=api.Links("https://app"))  # type: ignore[arg-type]
    assert status.status == 202 and status.body["dryRun"] is True


async def test_the_nightly_export_is_never_a_dry_run():
    clients = FakeClients()
    answer = await api.create_export(clients, body=b"", trigger="timer", links=api.Links(""))  # type: ignore[arg-type]
    job = clients.jobs.rows[answer.body["id"]]
    assert job.request.dry_run is False
    described = await api.get_export(clients, job.id, links=api.Links(""))  # type: ignore[arg-type]
    assert described.body["dryRun"] is False


def estimated_job(clients: FakeClients) -> Job:
    job = Job(
        "8204060443060-0128817f",
        Status.ESTIMATED,
        "http",
        NOW,
        ExportRequest(("objectId",), None, "x.csv", dry_run=True),
        started_at=NOW,
        finished_at=NOW,
        plan=Plan([["a", "b"], ["c"]], estimated_total=2500, estimate=dict(ESTIMATE)),
    )
    clients.jobs.rows[job.id] = job
    return job


async def test_an_estimated_job_answers_200_with_its_estimate_and_no_files():
    clients = FakeClients()
    job = estimated_job(clients)
    answer = await api.get_export(clients, job.id, links=api.Links("https://app"))  # type: ignore[arg-type]
    assert answer.status == 200 and "Retry-After" not in answer.headers
    body = answer.body
    assert body["status"] == "estimated" and body["dryRun"] is True
    assert body["estimate"] == ESTIMATE
    assert body["estimatedTotal"] == 2500 and body["partitions"] == 2
    assert body["userCount"] is None and body["usersWritten"] == 0
    for absent in ("downloadUrl", "errorsUrl", "urlsExpireAt"):
        assert absent not in body
    listed = await api.list_exports(clients, params={}, links=api.Links("https://app"))  # type: ignore[arg-type]
    assert [j["status"] for j in listed.body["value"]] == ["estimated"]


async def test_an_estimated_job_cannot_be_cancelled_like_any_finished_job():
    clients = FakeClients()
    job = estimated_job(clients)
    answer = await api.cancel_export(clients, job.id, links=api.Links(""))  # type: ignore[arg-type]
    assert answer.status == 409 and "dry run" in answer.body["detail"]
    assert clients.jobs.rows[job.id].status is Status.ESTIMATED


def test_estimated_is_finished_without_files():
    assert Status.ESTIMATED.finished and not Status.ESTIMATED.has_files


# ------------------------------------------------------------------ the worker's plan step
class PlanningStore(FakeStore):
    """FakeStore that also keeps partition rows."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: dict[tuple[str, int], Partition] = {}

    async def add_partition(self, partition: Partition) -> None:
        self.parts.setdefault((partition.job_id, partition.index), partition)

    async def partitions(self, job_id: str) -> list[Partition]:
        return [p for (j, _), p in sorted(self.parts.items()) if j == job_id]


@dataclass
class PlanningClients(FakeClients):
    jobs: PlanningStore = field(default_factory=PlanningStore)
    queue: FakeQueue = field(default_factory=FakeQueue)


NOTICE = ["", "", "signInActivity", "403", "Forbidden", "Sign-in columns are empty: no P1."]


@pytest.fixture
def planned(monkeypatch) -> list[str]:
    """_make_plan replaced by one that returns a two-partition plan with an estimate."""
    made: list[str] = []

    async def make_plan(clients: Any, job: Job, counts: dict[str, int]) -> Plan:
        made.append(job.id)
        return Plan([["a"], ["b"]], estimated_total=20, estimate=dict(ESTIMATE), notices=[NOTICE])

    monkeypatch.setattr(plan, "_make_plan", make_plan)
    return made


async def queued(clients: PlanningClients, body: bytes) -> str:
    answer = await api.create_export(clients, body=body, trigger="http", links=api.Links(""))  # type: ignore[arg-type]
    clients.queue.sent.clear()
    return answer.body["id"]


async def test_a_dry_run_is_planned_then_ends_estimated_without_partitions(planned):
    clients = PlanningClients()
    job_id = await queued(clients, b'{"dryRun": true}')
    outcome = await exporter.run_message(clients, ExportMessage(job_id), message_id="m1")  # type: ignore[arg-type]
    assert outcome is Outcome.FINISHED and planned == [job_id]
    job = clients.jobs.rows[job_id]
    assert job.status is Status.ESTIMATED
    assert job.started_at is not None and job.finished_at is not None
    assert job.plan is not None and job.plan.estimate == ESTIMATE
    assert job.reason == NOTICE[5]
    assert clients.jobs.parts == {} and clients.queue.sent == []
    # A second delivery of the plan message finds it finished and does nothing.
    again = await exporter.run_message(clients, ExportMessage(job_id), message_id="m2")  # type: ignore[arg-type]
    assert again is Outcome.SKIPPED and planned == [job_id]
    assert clients.jobs.parts == {} and clients.queue.sent == []


async def test_a_real_export_is_planned_into_partitions_as_before(planned):
    clients = PlanningClients()
    job_id = await queued(clients, b"{}")
    outcome = await exporter.run_message(clients, ExportMessage(job_id), message_id="m1")  # type: ignore[arg-type]
    assert outcome is Outcome.PLANNED
    assert clients.jobs.rows[job_id].status is Status.RUNNING
    assert len(clients.jobs.parts) == 2
    assert [orjson.loads(m)["partition"] for m in clients.queue.sent] == [0, 1]
