"""api.py in-process, with fakes for Storage: the answers a caller gets, and that bad input of
any kind is a 400 naming the field, never a 500 or an echo of the input."""

from __future__ import annotations

import base64
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
        self.running: list[str] = []

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

    async def queued(self) -> list[Job]:
        queued = [job for job in self.rows.values() if job.status is Status.QUEUED]
        return sorted(queued, key=lambda job: job.created_at)

    async def running_set(self) -> tuple[list[str], str | None]:
        return list(self.running), str(len(self.running))

    async def save_running_set(self, job_ids: list[str], etag: str | None) -> bool:
        self.running = list(job_ids)
        return True

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
    answer = await api.create_export(
        clients, body=b"", trigger="http", links=api.Links("https://app")
    )  # type: ignore[arg-type]
    assert answer.status == 202
    job_id = answer.body["id"]
    assert answer.headers["Location"] == f"https://app/api/exports/{job_id}"
    assert clients.jobs.rows[job_id].status is Status.QUEUED
    assert clients.queue.sent == [orjson.dumps({"jobId": job_id}).decode()]


async def test_a_queue_that_cannot_be_reached_answers_503_and_fails_the_job():
    clients = FakeClients(queue=FakeQueue(down=True))
    answer = await api.create_export(clients, body=b"", trigger="http", links=api.Links(""))  # type: ignore[arg-type]
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
        st.sampled_from(["columns", "filter", "fileName", "formulaGuard", "dryRun"]) | texts,
        json_values,
        max_size=4,
    ).map(orjson.dumps),
)


@settings(max_examples=300, deadline=None)
@given(body=bodies)
async def test_any_body_is_accepted_or_a_400_naming_the_field(body):
    answer = await api.create_export(FakeClients(), body=body, trigger="http", links=api.Links(""))  # type: ignore[arg-type]
    assert answer.status in (202, 400)
    if answer.status == 400:
        assert answer.body["field"] and len(answer.body["field"]) <= 60
        assert len(answer.body["detail"]) <= MAX_DETAIL


@settings(max_examples=300, deadline=None)
@given(params=st.dictionaries(st.sampled_from(["pageSize", "cursor"]) | texts, texts, max_size=3))
async def test_any_query_is_answered_or_a_400_naming_the_parameter(params):
    answer = await api.list_exports(FakeClients(), params=params, links=api.Links(""))  # type: ignore[arg-type]
    assert answer.status in (200, 400)
    if answer.status == 400:
        assert answer.body["field"] and len(answer.body["detail"]) <= MAX_DETAIL


@settings(max_examples=200, deadline=None)
@given(job_id=texts)
async def test_any_id_is_a_404_with_a_short_excerpt(job_id):
    answer = await api.get_export(FakeClients(), job_id, links=api.Links(""))  # type: ignore[arg-type]
    assert answer.status == 404 and len(answer.body["detail"]) <= 100


@pytest.mark.parametrize("size", ["²", "١٢", "0", "201", "-1", "1.5", "1e2", " 5"])
async def test_page_sizes_that_are_not_1_to_200_in_ascii_digits_are_refused(size):
    answer = await api.list_exports(FakeClients(), params={"pageSize": size}, links=api.Links(""))  # type: ignore[arg-type]
    assert answer.status == 400 and answer.body["field"] == "pageSize"


def test_links_carry_the_callers_code_url_encoded():
    links = api.Links("https://app", "k/ey+=&1")
    assert links.status("1-a") == "https://app/api/exports/1-a?code=k%2Fey%2B%3D%261"
    assert (
        links.page("5", "c=")
        == "https://app/api/exports?pageSize=5&cursor=c%3D&code=k%2Fey%2B%3D%261"
    )
    assert api.Links("https://app").status("1-a") == "https://app/api/exports/1-a"


async def test_a_post_authorised_by_code_hands_out_urls_with_the_code():
    clients = FakeClients()
    answer = await api.create_export(
        clients, body=b"", trigger="http", links=api.Links("https://app", "KEY")
    )  # type: ignore[arg-type]
    job_id = answer.body["id"]
    assert answer.headers["Location"] == answer.body["statusUrl"]
    assert answer.body["statusUrl"] == f"https://app/api/exports/{job_id}?code=KEY"
    status = await api.get_export(clients, job_id, links=api.Links("https://app", "KEY"))  # type: ignore[arg-type]
    assert status.headers["Location"].endswith("?code=KEY") and status.body["statusUrl"].endswith(
        "?code=KEY"
    )


@pytest.mark.parametrize("key", ["", " leading-space", "tab\there", "é", "x" * 256])
async def test_a_malformed_idempotency_key_is_a_400_naming_the_header(key):
    answer = await api.create_export(
        FakeClients(), body=b"", trigger="http", links=api.Links(""), idempotency_key=key
    )  # type: ignore[arg-type]
    assert answer.status == 400 and answer.body["field"] == "Idempotency-Key"


async def test_cancel_answers_200_for_a_queued_job_then_again_and_409_once_finished():
    clients = FakeClients()
    links = api.Links("https://app")
    job_id = (await api.create_export(clients, body=b"", trigger="http", links=links)).body["id"]  # type: ignore[arg-type]
    first = await api.cancel_export(clients, job_id, links=links)  # type: ignore[arg-type]
    assert first.status == 200 and first.body["status"] == "cancelled"
    assert clients.jobs.rows[job_id].status is Status.CANCELLED
    again = await api.cancel_export(clients, job_id, links=links)  # type: ignore[arg-type]
    assert again.status == 200 and again.body["status"] == "cancelled"
    status = await api.get_export(clients, job_id, links=links)  # type: ignore[arg-type]
    assert status.status == 200 and "downloadUrl" not in status.body and status.body["reason"]

    done_id = (await api.create_export(clients, body=b"", trigger="http", links=links)).body["id"]  # type: ignore[arg-type]
    clients.jobs.rows[done_id].status = Status.SUCCEEDED
    refused = await api.cancel_export(clients, done_id, links=links)  # type: ignore[arg-type]
    assert refused.status == 409 and clients.jobs.rows[done_id].status is Status.SUCCEEDED


async def test_cancel_is_refused_once_the_files_are_being_committed():
    clients = FakeClients()
    links = api.Links("")
    job_id = (await api.create_export(clients, body=b"", trigger="http", links=links)).body["id"]  # type: ignore[arg-type]
    job = clients.jobs.rows[job_id]
    job.status, job.committing = Status.RUNNING, True
    answer = await api.cancel_export(clients, job_id, links=links)  # type: ignore[arg-type]
    assert answer.status == 409 and "committing" in answer.body["detail"]
    assert job.status is Status.RUNNING


@settings(max_examples=100, deadline=None)
@given(job_id=texts)
async def test_cancelling_any_unknown_id_is_a_404(job_id):
    answer = await api.cancel_export(FakeClients(), job_id, links=api.Links(""))  # type: ignore[arg-type]
    assert answer.status == 404


def test_the_column_catalogue_marks_the_25_defaults():
    columns = api.list_columns().body["value"]
    assert sum(c["default"] for c in columns) == 25
    assert len({c["name"] for c in columns}) == len(columns)


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        b64("x"),
        b64('{"PartitionKey": "job", "RowKey": "8204060443060-0128817f"}'),
        b64("0000000000000-nothere"),  # well formed, but no such job
        b64("8204060443060-0128817f").rstrip("="),
    ],
)
async def test_a_cursor_the_api_did_not_hand_out_is_refused(cursor):
    class NoJobs(JobStore):
        def __init__(self) -> None:
            pass

        async def get(self, job_id: str):
            return None

    with pytest.raises(ValueError):
        await NoJobs().list(page_size=5, cursor=cursor)
