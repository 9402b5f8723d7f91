"""The plan step's preflight: scope checks, sign-in refusals and licence names, against a fake
Graph that answers as Graph does (status and error code of each documented refusal)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from userexport.exportrequest import export_request
from userexport.graph import GraphError, UsersPage
from userexport.preflight import (
    NON_PREMIUM,
    CannotExport,
    Preflight,
    preflight,
    sign_in_refused,
)
from userexport.resolved import Resolved

GROUP = "0f3b5d4e-1a2b-4c3d-8e9f-001122334455"
NOW = datetime(2026, 11, 29, tzinfo=UTC)


class FakeGraph:
    def __init__(
        self,
        *,
        sign_in: GraphError | None = None,
        listing: GraphError | None = None,
        skus: GraphError | dict[str, str] | None = None,
        scope: GraphError | None = None,
        methods: dict[str, GraphError] | None = None,
        limited: bool = False,
    ) -> None:
        self.sign_in, self.listing, self.skus, self.scope = sign_in, listing, skus, scope
        self.limited = limited  # member lists answer ids alone (no User.Read.All)
        self.methods = methods or {}  # lookup -> the error Graph answers it with
        self.calls: list[str] = []

    async def users_page(self, *, select: list[str], scope: Any = None, **_: Any) -> UsersPage:
        self.calls.append("users:" + ",".join(select))
        error = self.sign_in if "signInActivity" in select else None
        if error or self.listing:
            raise error or self.listing  # type: ignore[misc]
        if scope is not None and self.limited:
            return UsersPage([{"id": "u1", "userPrincipalName": None}], None)
        return UsersPage([{"id": "u1", "userPrincipalName": "u1@contoso.com"}], None)

    async def authentication_methods(self, user_id: str, lookup: str) -> list[dict]:
        self.calls.append(f"{lookup}:{user_id}")
        if lookup in self.methods:
            raise self.methods[lookup]
        return []

    async def subscribed_skus(self) -> dict[str, str]:
        self.calls.append("skus")
        if isinstance(self.skus, GraphError):
            raise self.skus
        return self.skus or {}

    async def check_scope(self, scope: Any) -> None:
        self.calls.append(f"scope:{scope.kind}")
        if self.scope:
            raise self.scope


def request(**body: Any):
    return export_request(body, now=NOW)


async def check(graph: FakeGraph, asked: Any) -> Preflight:
    result = Preflight()
    await preflight(graph, Resolved.request(asked), result)  # type: ignore[arg-type]
    return result


async def test_nothing_is_read_when_no_column_needs_it():
    graph = FakeGraph()
    result = await check(graph, request(columns=["displayName"]))
    assert graph.calls == [] and result.notices == [] and result.skus is None
    assert result.lookups == [] and result.requests == 0


REFUSED = GraphError(403, "Authorization_RequestDenied", "Insufficient privileges")


async def test_both_authentication_columns_read_one_list_where_it_is_allowed():
    graph = FakeGraph()
    result = await check(graph, request())
    assert result.lookups == ["methods"]
    assert graph.calls == ["users:id", "methods:u1"] and result.requests == 2


async def test_only_the_narrow_grants_read_the_phone_and_email_lists():
    """UserAuthMethod-Phone.Read.All and -Email.Read.All do not open /methods."""
    graph = FakeGraph(methods={"methods": REFUSED})
    result = await check(graph, request())
    assert result.lookups == ["phoneMethods", "emailMethods"]
    assert graph.calls == ["users:id", "methods:u1", "phoneMethods:u1"]
    assert result.notices == []


async def test_refused_both_ways_keeps_one_list_and_the_partitions_say_so():
    graph = FakeGraph(methods={"methods": REFUSED, "phoneMethods": REFUSED})
    result = await check(graph, request())
    assert result.lookups == ["methods"] and result.notices == []


async def test_one_authentication_column_keeps_its_own_list():
    graph = FakeGraph(methods={"methods": REFUSED})
    result = await check(graph, request(columns=["authenticationEmail"]))
    assert result.lookups == ["emailMethods"] and result.notices == []
    assert graph.calls == ["users:id", "emailMethods:u1"], "one user's own list, no other"


@pytest.mark.parametrize("columns", [None, ["authenticationEmail"]])
async def test_a_graph_without_the_methods_api_is_one_notice_and_no_lookups(columns):
    """Microsoft Graph China (21Vianet) has no authentication-methods API: its answer is not
    documented; a segment Graph does not have answers 400 BadRequest."""
    missing = GraphError(400, "BadRequest", "Resource not found for the segment 'authentication'.")
    graph = FakeGraph(methods={"methods": missing, "emailMethods": missing})
    result = await check(graph, request(columns=columns))
    assert result.lookups == []
    [row] = result.notices
    assert row[3:5] == ["400", "BadRequest"] and "21Vianet" in row[5]
    assert "every user" in row[5]


async def test_a_non_premium_tenant_is_one_notice_and_the_export_goes_on():
    refusal = GraphError(403, NON_PREMIUM, "Neither tenant is B2C or tenant doesn't have premium")
    graph = FakeGraph(sign_in=refusal)
    result = await check(
        graph, request(columns=["userPrincipalName", "lastSignInDateTime", "daysSinceLastSignIn"])
    )
    assert graph.calls == ["users:id,signInActivity", "users:id"]
    [row] = result.notices
    assert row[:5] == ["", "", "signInActivity", "403", NON_PREMIUM]
    assert "P1 or P2" in row[5] and "lastSignInDateTime, daysSinceLastSignIn" in row[5]
    assert sign_in_refused(result.notices)


async def test_a_missing_audit_log_permission_says_which_permission_to_grant():
    graph = FakeGraph(sign_in=GraphError(403, "Authorization_RequestDenied", "Insufficient"))
    result = await check(graph, request(columns=["lastSignInDateTime"]))
    assert "AuditLog.Read.All" in result.notices[0][5]


async def test_a_listing_refused_too_is_the_listing_s_error_not_a_notice():
    refusal = GraphError(403, "Authorization_RequestDenied", "Insufficient")
    graph = FakeGraph(sign_in=refusal, listing=refusal)
    with pytest.raises(GraphError):
        await check(graph, request(columns=["lastSignInDateTime"]))


async def test_licence_names_are_read_once_and_a_refusal_keeps_the_ids():
    graph = FakeGraph(skus={"a": "ENTERPRISEPACK"})
    result = await check(graph, request(columns=["assignedLicenses"]))
    assert result.skus == {"a": "ENTERPRISEPACK"} and graph.calls == ["skus"]
    assert await check(FakeGraph(), request(columns=["assignedLicenseIds"])) is not None
    refused = FakeGraph(skus=GraphError(403, "Authorization_RequestDenied", "Insufficient"))
    result = await check(refused, request(columns=["assignedLicenses"]))
    assert result.skus is None
    assert result.notices[0][2] == "subscribedSkus"
    assert "LicenseAssignment.Read.All" in result.notices[0][5]
    assert not sign_in_refused(result.notices)


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (GraphError(404, "Request_ResourceNotFound", "Resource does not exist"), "names no group"),
        (GraphError(403, "Authorization_RequestDenied", "Insufficient"), "GroupMember.Read.All"),
    ],
)
async def test_a_scope_that_cannot_be_read_fails_the_job(error: GraphError, words: str):
    graph = FakeGraph(scope=error)
    with pytest.raises(CannotExport) as stopped:
        await check(graph, request(filter={"group": GROUP}))
    assert graph.calls == ["scope:group"], "nothing else is read for a scope that fails"
    assert words in stopped.value.reason and GROUP in stopped.value.reason


async def test_transient_errors_are_not_notices():
    graph = FakeGraph(skus=GraphError(503, "serviceNotAvailable", "later"))
    with pytest.raises(GraphError):
        await check(graph, request(columns=["assignedLicenses"]))


async def test_a_check_cut_short_goes_on_where_it_stopped():
    """The time budget ran out after the scope check: the next invocation does not repeat it."""
    graph = FakeGraph(sign_in=GraphError(503, "serviceNotAvailable", "later"))
    result = Preflight()
    asked = request(columns=["lastSignInDateTime", "assignedLicenses"], filter={"group": GROUP})
    with pytest.raises(GraphError):
        await preflight(graph, Resolved.request(asked), result)  # type: ignore[arg-type]
    assert result.done == ["scope"]
    assert graph.calls == ["scope:group", "users:id,userPrincipalName", "users:id,signInActivity"]
    graph.sign_in, graph.calls = None, []
    await preflight(graph, Resolved.request(asked), result)  # type: ignore[arg-type]
    assert graph.calls == ["users:id,signInActivity", "skus"]
    assert result.done == ["scope", "signIn", "licences"] and result.requests == 5


async def test_members_listed_with_their_id_alone_fail_the_job_naming_user_read_all():
    """Without a permission to read users, Graph lists a group's members with "limited
    information": the id and @odata.type, every other property null (permissions overview)."""
    graph = FakeGraph(limited=True)
    with pytest.raises(CannotExport) as refused:
        await check(graph, request(columns=["displayName"], filter={"group": GROUP}))
    assert "User.Read.All" in refused.value.reason and GROUP in refused.value.reason
    assert graph.calls == ["scope:group", "users:id,userPrincipalName"]
