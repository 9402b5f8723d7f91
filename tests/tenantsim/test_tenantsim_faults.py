"""Every fault the simulator can produce: 500/502, outage windows, slow pages, expired page
tokens, $batch envelope faults, and changing them at run time through /_sim/faults."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from devtools.tenantsim import Outage, RunningSim, SimConfig, iter_users, run_in_thread
from devtools.tenantsim.faults import FaultInjector, FaultSettings

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(60)
EVENTUAL = {"ConsistencyLevel": "eventual"}
INNER = {"date", "request-id", "client-request-id"}
DEFAULTS = {
    "rate500": 0.0,
    "rate502": 0.0,
    "rate503": 0.0,
    "rate504": 0.0,
    "rateReset": 0.0,
    "retryAfter500": 0,
    "retryAfter502": 0,
    "retryAfter503": 0,
    "retryAfter504": 0,
    "pageTokenTtl": 0.0,
    "deltaTokenTtl": 604800.0,
    "premium": True,
    "authenticationStatus": {},
    "targets": ["auth", "users"],
    "outages": [],
    "slowPages": {"rate": 0.0, "seconds": 0.0, "next": 0},
    # Graph as documented (test_tenantsim_documented.py): every switch off
    "signInFlaky403": 0.0,
    "signInRefusedAfter": None,
    "signInEmptyInAdvancedQueries": False,
    "signInEmptyInMemberLists": False,
    "deltaPartialItems": False,
    "deltaSkipsRestored": False,
    "deltaExpiredAnswer": "syncStateNotFound",
    "deltaRefusedProperties": [],
    "expandPageCap": 0,
    "b2c": False,
    "limitedMemberInfo": False,
    "authenticationMethodsApi": True,
    "rate429Cpu": 0.0,
    "retryAfter429Cpu": 1,
    "rate424": 0.0,
    "memberListCosts": False,
    "successfulSignInsSince": None,
}


@pytest.fixture
def sim() -> Iterator[RunningSim]:
    """A fresh small tenant per test: these tests change its fault settings."""
    with run_in_thread(SimConfig(users=30, seed=3)) as s:
        yield s


@pytest.fixture
def h(sim: RunningSim, make_http: Any) -> Any:
    return make_http(sim)


def _batch(*urls: str) -> dict[str, Any]:
    return {"requests": [{"id": str(i), "method": "GET", "url": u} for i, u in enumerate(urls)]}


def _uid(sim: RunningSim) -> str:
    return next(iter(iter_users(sim.state.config)))["id"]


# ------------------------------------------------------------------ 500 and 502
@pytest.mark.parametrize(
    ("status", "code", "retry_after"),
    [(500, "generalException", 0), (502, "BadGateway", 7), (503, "serviceNotAvailable", 2)],
)
def test_server_errors_in_graphs_shape(
    h: Any, sim: RunningSim, sample: Any, status: int, code: str, retry_after: int
) -> None:
    ex = sample("error.example.response.json")
    assert h.faults({f"rate{status}": 1, f"retryAfter{status}": retry_after})[0] == 200
    got, headers, body = h.get("/users", headers={"client-request-id": "crid-1"})
    assert got == status
    assert set(body) == set(ex) and body["error"]["code"] == code and body["error"]["message"]
    assert set(body["error"]["innerError"]) == INNER
    assert body["error"]["innerError"]["client-request-id"] == "crid-1"
    assert headers.get("Retry-After") == (str(retry_after) if retry_after else None)
    assert headers["x-ms-resource-unit"] == "2"
    # The same fault on an auth-method read, and counted by kind.
    assert h.get(f"/users/{_uid(sim)}/authentication/emailMethods")[0] == status
    assert h.stats()["faults"] == {str(status): 2}


def test_500_and_502_keep_the_streams_of_older_seeds(make_http: Any) -> None:
    """500/502 take the end of each draw, so a seed's resets, 503s and 504s stay put."""

    def run(**rates: float) -> list[int | str]:
        config = SimConfig(users=30, seed=2, rate_503=0.2, rate_504=0.1, rate_reset=0.1, **rates)
        with run_in_thread(config) as s:
            h = make_http(s)
            close = {"Connection": "close"}
            return [h.status("GET", "/users?$top=5", headers=close) for _ in range(60)]

    before = run()
    after = run(rate_500=0.15, rate_502=0.15)
    assert [a for b, a in zip(before, after, strict=True) if b != 200] == [
        b for b in before if b != 200
    ]
    assert {a for b, a in zip(before, after, strict=True) if b == 200} == {200, 500, 502}


def test_one_users_authentication_reads_answer_a_status_set_at_run_time(
    h: Any, sim: RunningSim
) -> None:
    first, second = [u["id"] for u in list(iter_users(sim.state.config))[:2]]
    assert h.faults({"authenticationStatus": {first: 503}})[0] == 200
    assert h.get(f"/users/{first}/authentication/methods")[0] == 503
    assert h.get(f"/users/{second}/authentication/methods")[0] == 200
    assert h.faults({"authenticationStatus": {first: "no"}})[0] == 400
    assert h.faults({"authenticationStatus": {}})[0] == 200
    assert h.get(f"/users/{first}/authentication/methods")[0] == 200


# ------------------------------------------------------------------ $batch
def test_batch_envelope_and_items_are_faulted_apart(h: Any, sim: RunningSim) -> None:
    uid = _uid(sim)
    body = _batch(f"/users/{uid}/authentication/phoneMethods", "/users?$top=2")
    # Items keep their own targets, the envelope is not faulted by default...
    h.faults({"rate502": 1, "targets": ["auth"]})
    status, _, answer = h.request("POST", "/$batch", body=body)
    assert status == 200
    assert [r["status"] for r in answer["responses"]] == [502, 200]
    assert answer["responses"][0]["body"]["error"]["code"] == "BadGateway"
    # ...unless "batch" is a target: then the whole call fails before any item runs.
    h.faults({"targets": ["batch"]})
    before = h.stats()["requests"].get("batchItems", 0)
    status, _, answer = h.request("POST", "/$batch", body=body)
    assert status == 502 and answer["error"]["code"] == "BadGateway"
    assert h.stats()["requests"].get("batchItems", 0) == before
    h.faults({"rate502": 0, "rateReset": 1})
    assert h.status("POST", "/$batch", body=body) == "reset"
    assert h.get("/users")[0] == 200
    assert h.stats()["faults"] == {"502": 2, "reset": 1}


# ------------------------------------------------------------------ outages
def test_outage_fails_every_graph_request_but_not_identity_or_sim(make_http: Any) -> None:
    config = SimConfig(users=10, outages=(Outage(0, 600), Outage(600, 700, "batch")))
    with run_in_thread(config) as s:
        h = make_http(s)
        answers = [
            h.get("/users"),
            h.get("/users/$count", headers=EVENTUAL),
            h.get(f"/users/{_uid(s)}"),
            h.get("/users", auth=False),  # before authentication, as a front door fails
            h.request("POST", "/$batch", body=_batch("/users")),
            h.get("/$batch"),
        ]
        stats = h.stats()
        _, settings = h.faults()
    assert [a[0] for a in answers] == [503] * 6
    assert all("Retry-After" not in a[1] for a in answers)
    assert {a[2]["error"]["code"] for a in answers} == {"serviceNotAvailable"}
    assert stats["faults"] == {"outage": 6}
    assert stats["requests"] == {"identity": 1}  # the token was served
    assert [(o["target"], o["mode"]) for o in settings["outages"]] == [
        ("all", "503"),
        ("batch", "503"),
    ]
    assert 595 < settings["outages"][0]["end"] <= 600  # seconds from now


def test_batch_outage_and_reset_mode(h: Any) -> None:
    status, settings = h.faults({"outages": [{"start": 0, "end": 60, "target": "batch"}]})
    assert status == 200 and settings["outages"][0]["mode"] == "503"
    assert h.get("/users")[0] == 200
    assert h.get("/users/$count", headers=EVENTUAL)[0] == 200
    assert h.request("POST", "/$batch", body=_batch("/users"))[0] == 503
    h.faults({"outages": [{"start": 0, "end": 60, "mode": "reset"}]})
    assert h.status("GET", "/users") == "reset"
    assert h.status("POST", "/$batch", body=_batch("/users")) == "reset"
    assert h.stats()["faults"] == {"outage": 3}


def test_outage_window_opens_and_closes(h: Any) -> None:
    h.faults({"outages": [{"start": 0, "end": 3}, {"start": 600, "end": 900}]})
    seen = [h.get("/users")[0]]
    deadline = time.monotonic() + 30
    while seen[-1] != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
        seen.append(h.get("/users")[0])
    assert seen[0] == 503 and seen[-1] == 200
    # The ended window is gone, the later one still waits.
    assert [o["end"] - o["start"] for o in h.faults()[1]["outages"]] == [pytest.approx(300)]


def test_outage_boundaries_in_simulator_time() -> None:
    clock = [100.0]
    settings = FaultSettings(outages=(Outage(5, 10), Outage(20, 30, "batch")))
    faults = FaultInjector(settings, seed=1, clock=lambda: clock[0])
    seen = []
    for t in (4.99, 5, 9.99, 10, 25):
        clock[0] = 100 + t
        seen.append((faults.outage(batch=False) is not None, faults.outage(batch=True) is not None))
    assert seen == [(False, False), (True, True), (True, True), (False, False), (False, True)]


# ------------------------------------------------------------------ slow pages
def test_next_slow_pages_are_list_pages_only(h: Any, sim: RunningSim) -> None:
    assert h.faults({"slowPages": {"next": 2, "seconds": 0.2}})[1]["slowPages"] == {
        "rate": 0.0,
        "seconds": 0.2,
        "next": 2,
    }
    # Neither $count, a single user, nor a list page inside $batch is a slow page.
    assert h.get("/users/$count", headers=EVENTUAL)[0] == 200
    assert h.get(f"/users/{_uid(sim)}")[0] == 200
    assert h.request("POST", "/$batch", body=_batch("/users?$top=3"))[0] == 200
    assert h.faults()[1]["slowPages"]["next"] == 2
    first = h.get("/users?$top=10")[2]
    assert h.faults()[1]["slowPages"]["next"] == 1
    pages = [first, h.get(first["@odata.nextLink"])[2], h.get("/users?$top=10")[2]]
    assert all(len(p["value"]) == 10 for p in pages)  # held back, then answered in full
    assert h.faults()[1]["slowPages"]["next"] == 0
    assert h.stats()["faults"] == {"slowPage": 2}


def test_slow_page_is_held_back_while_others_are_answered(sim: RunningSim, h: Any) -> None:
    h.faults({"slowPages": {"next": 1, "seconds": 120}})
    token = h.token()

    async def scenario() -> tuple[bool, int]:
        auth = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession() as session:

            async def get(url: str) -> int:
                async with session.get(sim.graph_url + url, headers=auth) as r:
                    await r.read()
                    return r.status

            slow = asyncio.ensure_future(get("/users?$top=5"))
            while h.stats()["faults"].get("slowPage") != 1:  # the slow page is being held
                await asyncio.sleep(0.05)
            status = await get("/users?$top=5")
            held = not slow.done()
            slow.cancel()
            return held, status

    held, status = asyncio.run(scenario())
    assert held and status == 200


def test_slow_page_rate_is_seeded(make_http: Any) -> None:
    def slow_pages(fault_seed: int) -> int:
        config = SimConfig(
            users=40, fault_seed=fault_seed, slow_page_rate=0.3, slow_page_seconds=0.01
        )
        with run_in_thread(config) as s:
            h = make_http(s)
            for _ in range(40):
                assert h.get("/users?$top=1")[0] == 200
            return int(h.stats()["faults"].get("slowPage", 0))

    first = slow_pages(5)
    assert 0 < first < 40
    assert slow_pages(5) == first


# ------------------------------------------------------------------ page tokens
def test_expire_page_tokens_issued_so_far(h: Any) -> None:
    first = h.get("/users?$top=10")[2]
    second = h.get(first["@odata.nextLink"])[2]
    assert h.faults({"expirePageTokens": True})[0] == 200
    for link in (first["@odata.nextLink"], second["@odata.nextLink"]):
        status, _, body = h.get(link)
        assert status == 400 and body["error"]["code"] == "Directory_ExpiredPageToken"
        assert set(body["error"]["innerError"]) == INNER
    # A listing started again gets tokens that work.
    assert len(h.list_all("/users?$top=10")) == 30
    assert h.stats()["faults"] == {"expiredPageToken": 2}
    assert "expirePageTokens" not in h.faults()[1]  # an action, not a setting


# ------------------------------------------------------------------ /_sim/faults
def test_get_post_and_reset(h: Any) -> None:
    assert h.faults() == (200, DEFAULTS)
    status, after = h.faults({"rate503": 0.25, "retryAfter503": 3, "pageTokenTtl": 60})
    assert status == 200
    assert after == DEFAULTS | {"rate503": 0.25, "retryAfter503": 3, "pageTokenTtl": 60}
    # Keys not in a body keep their value; GET answers what POST accepts.
    assert h.faults({"rate504": 0.5})[1]["rate503"] == 0.25
    saved = h.faults()[1]
    assert h.request("POST", h.sim.base_url + "/_sim/faults/reset", auth=False)[0] == 204
    assert h.faults()[1] == DEFAULTS
    assert h.faults(saved) == (200, saved)
    # Unauthenticated like /_sim/stats, and never counted in them.
    assert h.stats()["requests"] == {}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"rate418": 1}, "unknown keys ['rate418']"),
        ({"rate500": 1.5}, "rate500 must be within 0..1"),
        ({"rate500": True}, "rate500 must be a number"),
        ({"rate500": 0.6, "rate502": 0.6}, "add up to at most 1"),
        ({"retryAfter503": 1.5}, "whole number"),
        ({"retryAfter503": -1}, ">= 0"),
        ({"targets": ["users", "groups"]}, "unknown targets ['groups']"),
        ({"targets": "users"}, "list of strings"),
        ({"outages": {"start": 0, "end": 1}}, "list of objects"),
        ({"outages": [{"start": 5, "end": 1}]}, "must be after its start"),
        ({"outages": [{"start": 0}]}, "needs start and end"),
        ({"outages": [{"start": 0, "end": 1, "target": "users"}]}, "outage target"),
        ({"outages": [{"start": 0, "end": 1, "mode": "504"}]}, "outage mode"),
        ({"outages": [{"start": 0, "end": 1, "until": 3}]}, "unknown keys ['until']"),
        ({"slowPages": {"next": 2}}, "seconds > 0"),
        ({"slowPages": {"next": 1.5, "seconds": 1}}, "whole number"),
        ({"slowPages": {"rate": 0.5, "seconds": 1, "every": 2}}, "unknown keys ['every']"),
        ({"expirePageTokens": "yes"}, "true or false"),
        ([{"rate500": 1}], "JSON object"),
        (b"rate500=1", "must be JSON"),
    ],
)
def test_bad_bodies_are_400_and_change_nothing(h: Any, body: Any, words: str) -> None:
    before = h.faults({"rate503": 0.1})[1]
    status, answer = h.faults(body)
    assert status == 400
    assert words in answer["error"]
    assert h.faults()[1] == before


def test_runtime_rates_apply_to_the_next_request(h: Any) -> None:
    assert h.get("/users")[0] == 200
    h.faults({"rate500": 1})
    assert h.get("/users")[0] == 500
    h.faults({"rate500": 0, "rate504": 1, "retryAfter504": 9})
    status, headers, body = h.get("/users")
    assert (status, headers["Retry-After"], body["error"]["code"]) == (504, "9", "UnknownError")
    h.request("POST", h.sim.base_url + "/_sim/faults/reset", auth=False)
    assert h.get("/users")[0] == 200


# ------------------------------------------------------------------ command line
def test_cli_fault_options(make_http: Any) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devtools.tenantsim",
            "--users",
            "5",
            "--rate-500",
            "0.1",
            "--rate-502",
            "0.2",
            "--retry-after-500",
            "4",
            "--retry-after-502",
            "5",
            "--fault-targets",
            "users,batch",
            "--outage",
            "600:660",
            "--outage",
            "700:760:batch:reset",
            "--slow-page-rate",
            "0.5",
            "--slow-page-seconds",
            "90",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = json.loads(proc.stdout.readline())

        class Sim:  # what Http needs from a running simulator
            base_url = line["graph"].removesuffix("/v1.0")

        settings = make_http(Sim()).faults()[1]
        assert line["faults"] == Sim.base_url + "/_sim/faults"
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert settings | {"outages": []} == DEFAULTS | {
        "rate500": 0.1,
        "rate502": 0.2,
        "retryAfter500": 4,
        "retryAfter502": 5,
        "targets": ["batch", "users"],
        "slowPages": {"rate": 0.5, "seconds": 90.0, "next": 0},
    }
    assert [(o["target"], o["mode"]) for o in settings["outages"]] == [
        ("all", "503"),
        ("batch", "reset"),
    ]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--outage", "10"], "FROM:TO"),
        (["--outage", "10:5"], "must be after its start"),
        (["--outage", "1:5:users"], "unexpected 'users'"),
        (["--rate-500", "0.7", "--rate-503", "0.7"], "add up to at most 1"),
        (["--fault-targets", "users,groups"], "unknown fault targets"),
        (["--slow-page-rate", "0.5"], "slow_page_seconds > 0"),
    ],
)
def test_cli_rejects_bad_fault_options(args: list[str], words: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "devtools.tenantsim", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert words in done.stderr
