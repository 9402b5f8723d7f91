"""An app granted no AuditLog.Read.All: Graph answers the registration report 403
Authentication_MSGraphPermissionMissing (authenticationmethodsroot-list-userregistrationdetails.md
lists AuditLog.Read.All as its one application permission). The export still completes: the
report's columns empty, one notice, and fewerLookups looks every user up."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from devtools.stack import LocalStack
from tests.e2e.conftest import running_stack
from userexport.columns import REGISTRATION

from .test_app import export, fetch, records

USERS = 40
ROLES = "User.Read.All,UserAuthenticationMethod.Read.All"


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with running_stack(
        tmp_path_factory.mktemp("noaudit"),
        users=USERS,
        seed=8,
        devhosts=0,
        sim_args=["--roles", ROLES],
    ) as stack:
        yield stack


async def test_without_the_permission_the_columns_are_empty_and_every_user_is_looked_up(local, app):
    before = httpx.get(local.sim["stats"], timeout=30).json()["requests"]
    job = await export(
        app,
        {
            "columns": ["objectId", "isMfaRegistered", "authenticationEmail"],
            "fewerLookups": True,
        },
    )
    after = httpx.get(local.sim["stats"], timeout=30).json()["requests"]
    assert job["status"] == "completedWithErrors" and job["userCount"] == USERS, job
    table = records(fetch(local, job["downloadUrl"]))
    assert [row[1] for row in table[1:]] == [""] * USERS
    assert any(row[2] for row in table[1:]), "the lookups still fill authenticationEmail"
    rows = records(fetch(local, job["errorsUrl"]))[1:]
    assert len(rows) == 1, rows
    assert rows[0][2:5] == [REGISTRATION, "403", "Authentication_MSGraphPermissionMissing"]
    assert "isMfaRegistered" in rows[0][5] and "every user was looked up" in rows[0][5]
    looked_up = after.get("emailMethods", 0) - before.get("emailMethods", 0)
    assert looked_up >= USERS  # every user, besides the plan's check and probe
    assert after.get("userRegistrationDetails", 0) - before.get("userRegistrationDetails", 0) == 1
