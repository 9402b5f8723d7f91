"""api.py in-process, with fakes for Storage: the answers a caller gets, and that bad input of
any kind is a 400 naming the field, never a 500 or an echo of the input."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from userexport import api
from userexport.jobs import Job, JobStore, Status
from userexport.settings import Settings

ENV = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}


class FakeStore(JobStore):
    """Jobs in a dict; save and fail as the real store's logic does."""

    def __init__(self) -> None:
        self.rows: dict[str, Job] = {}

    async def create(self, job: Job) -> Job:
        self.rows[job.id] = job
        return job

    async def get(self, job_id: str) -> Job | None:
        return self.rows.get(job_id)

    async def save(self, row: Any) -> Any:
        self.rows[row.id] = row
        return row

    async def partitions(self, job_id: str) -> list:
        return []

    async def list(self, *, page_size: int, cursor: str | None) -> tuple[list[Job], str | None]:
        if cursor:
            raise ValueError("not a cursor")
        return list(self.rows.values())[:page_size], None


@dataclass
class FakeQueue:
    down: bool = False
    sent: list[str] = field(default_factory=list)

    async def send_message(self, content: str, **_: Any) -> None:
        if self.down:
            raise ConnectionError("the queue service is unreachable")
        self.sent.append(content)


@dataclass
class FakeClients:
    jobs: FakeStore = field(default_factory=FakeStore)
    queue: FakeQueue = field(default_factory=FakeQueue)
    settings: Settings = field(default_factory=lambda: Settings.from_env(ENV))


async def test_a_post_records_a_queued_job_and_answers_202_with_where_to_poll():
    clients = FakeClients()
    answer = await api.create_export(clients, body=b"", trigger="http", base_url="https://app")  # type: ignore[arg-type]
    assert answer.status == 202
    job_id = answer.body["id"]
    assert answer.headers["Location"] == f"https://app/api/exports/{job_id}"
    assert clients.jobs.rows[job_id].status is Status.QUEUED
    assert clients.queue.sent == [orjson.dumps({"jobId": job_id}).decode()]


async def test_a_queue_that_cannot_be_reached_answers_503_and_fails_the_job():
    clients = FakeClients(queue=FakeQueue(down=True))
    answer = await api.create_export(clients, body=b"", trigger="http", base_url="")  # type: ignore[arg-type]
    assert answer.status == 503 and answer.content_type == "application/problem+json"
    [job] = clients.jobs.rows.values()
    assert job.status is Status.FAILED and "start it again" in (job.reason or "")


MAX_DETAIL = 400  # a problem's detail says what is wrong; it never carries the input whole

texts = st.text(max_size=300)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=10,
)
bodies = st.one_of(
    st.binary(max_size=300),
    st.dictionaries(
        st.sampled_from(["columns", "filter", "fileName", "formulaGuard"]) | texts,
        json_values,
        max_size=4,
    ).map(orjson.dumps),
)


@settings(max_examples=300, deadline=None)
@given(body=bodies)
async def test_any_body_is_accepted_or_a_400_naming_the_field(body):
    answer = await api.create_export(FakeClients(), body=body, trigger="http", base_url="")  # type: ignore[arg-type]
    assert answer.status in (202, 400)
    if answer.status == 400:
        assert answer.body["field"] and len(answer.body["field"]) <= 60
        assert len(answer.body["detail"]) <= MAX_DETAIL


@settings(max_examples=300, deadline=None)
@given(params=st.dictionaries(st.sampled_from(["pageSize", "cursor"]) | texts, texts, max_size=3))
async def test_any_query_is_answered_or_a_400_naming_the_parameter(params):
    answer = await api.list_exports(FakeClients(), params=params, base_url="")  # type: ignore[arg-type]
    assert answer.status in (200, 400)
    if answer.status == 400:
        assert answer.body["field"] and len(answer.body["detail"]) <= MAX_DETAIL


@settings(max_examples=200, deadline=None)
@given(job_id=texts)
async def test_any_id_is_a_404_with_a_short_excerpt(job_id):
    answer = await api.get_export(FakeClients(), job_id, base_url="")  # type: ignore[arg-type]
    assert answer.status == 404 and len(answer.body["detail"]) <= 100


@pytest.mark.parametrize("size", ["²", "١٢", "0", "201", "-1", "1.5", "1e2", " 5"])
async def test_page_sizes_that_are_not_1_to_200_in_ascii_digits_are_refused(size):
    answer = await api.list_exports(FakeClients(), params={"pageSize": size}, base_url="")  # type: ignore[arg-type]
    assert answer.status == 400 and answer.body["field"] == "pageSize"
