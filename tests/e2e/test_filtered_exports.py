"""Filters end to end through devhost over HTTP: each gives exactly the users it names, a quote
cannot inject, a bad one is a 400 naming its field. Split from test_exports.py so the two run
on different workers."""

from __future__ import annotations

import pytest

from devtools.tenantsim import SimConfig, iter_users

from .conftest import SEED, USERS, Storage, read_csv, start, wait_for_export


@pytest.mark.parametrize(
    ("filter_", "keep"),
    [
        ({"userType": "Guest"}, lambda u: u["userType"] == "Guest"),
        (
            {"accountEnabled": False, "userType": "Member"},
            lambda u: u["accountEnabled"] is False and u["userType"] == "Member",
        ),
        (
            {"domain": "fabrikam.com"},
            lambda u: u["userPrincipalName"].lower().endswith("@fabrikam.com"),
        ),
        (
            {"createdAfter": "2022-01-01", "createdBefore": "2023-06-30T12:00:00+02:00"},
            lambda u: "2022-01-01T00:00:00Z" <= u["createdDateTime"] <= "2023-06-30T10:00:00Z",
        ),
    ],
)
def test_filter_gives_exactly_the_matching_users(api, storage_http, filter_, keep):
    expected = {u["id"] for u in iter_users(SimConfig(users=USERS, seed=SEED)) if keep(u)}
    assert 0 < len(expected) < USERS
    started = start(api, {"columns": ["objectId"], "filter": filter_})
    done = wait_for_export(api, started.headers["Location"])[-1].json()
    assert done["filter"] == api.get("/api/exports").json()["value"][0]["filter"]
    rows = read_csv(storage_http.get(done["downloadUrl"]).content)[1:]
    ids = [row[0] for row in rows]
    assert len(ids) == len(set(ids)) == done["userCount"]
    assert set(ids) == expected


def test_department_filter_with_quotes_cannot_inject(api, storage_http):
    users = list(iter_users(SimConfig(users=USERS, seed=SEED)))
    department = next(u["department"] for u in users if u.get("department"))
    attack = department + "' or accountEnabled eq true or department eq '"
    done = wait_for_export(
        api,
        start(api, {"columns": ["objectId"], "filter": {"department": attack}}).headers["Location"],
    )[-1].json()
    assert done["status"] == "succeeded" and done["userCount"] == 0
    assert read_csv(storage_http.get(done["downloadUrl"]).content) == [["objectId"]]


async def test_bad_filter_is_400_and_nothing_is_queued(api, storage: Storage):
    jobs_before = await storage.job_ids()
    answer = api.post("/api/exports", json={"filter": {"createdAfter": "yesterday"}})
    assert answer.status_code == 400
    assert answer.json()["field"] == "filter.createdAfter"
    assert await storage.job_ids() == jobs_before
