"""The real msgraph-sdk + ManagedIdentityCredential against the simulator."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

import orjson
import pytest
from azure.identity.aio import ManagedIdentityCredential
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph import GraphServiceClient
from msgraph.generated.users.users_request_builder import UsersRequestBuilder

from devtools.tenantsim import SimConfig, iter_users, run_in_thread

pytestmark = pytest.mark.timeout(120)
GRAPH_SCOPE = "https://graph.microsoft.com/.default"


def _stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


async def _list_all(graph_url: str, select: list[str] | None, top: int) -> list[str]:
    """Page through /users with the SDK's request builders and raw bytes, like the app."""
    credential = ManagedIdentityCredential()
    try:
        client = GraphServiceClient(credentials=credential, scopes=[GRAPH_SCOPE])
        client.request_adapter.base_url = graph_url
        params = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(select=select, top=top)
        config = RequestConfiguration(query_parameters=params)
        info = client.users.to_get_request_information(config)
        ids: list[str] = []
        while True:
            raw = await client.request_adapter.send_primitive_async(info, "bytes", {})
            page = orjson.loads(raw)
            ids.extend(u["id"] for u in page["value"])
            nxt = page.get("@odata.nextLink")
            if not nxt:
                return ids
            info = client.users.with_url(nxt).to_get_request_information()
    finally:
        await credential.close()


async def _list_models(graph_url: str, top: int) -> list[str]:
    """The typed SDK path (Kiota models) with with_url(next_link) paging."""
    credential = ManagedIdentityCredential()
    try:
        client = GraphServiceClient(credentials=credential, scopes=[GRAPH_SCOPE])
        client.request_adapter.base_url = graph_url
        params = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
            select=["id", "userPrincipalName"], top=top
        )
        config = RequestConfiguration(query_parameters=params)
        page = await client.users.get(config)
        ids: list[str] = []
        while page is not None:
            ids.extend(u.id for u in page.value or [] if u.id)
            if not page.odata_next_link:
                break
            page = await client.users.with_url(page.odata_next_link).get()
        return ids
    finally:
        await credential.close()


def test_sdk_lists_every_user_once(monkeypatch: pytest.MonkeyPatch) -> None:
    config = SimConfig(users=5000, seed=11, identity_header="mi-secret")
    expected = [u["id"] for u in iter_users(config)]
    with run_in_thread(config) as sim:
        monkeypatch.setenv("IDENTITY_ENDPOINT", sim.identity_url)
        monkeypatch.setenv("IDENTITY_HEADER", sim.identity_header)
        raw_ids = asyncio.run(_list_all(sim.graph_url, ["id", "displayName"], 999))
        stats = _stats(sim.stats_url)
    assert raw_ids == expected
    assert len(set(raw_ids)) == 5000
    assert stats["requests"]["identity"] >= 1
    assert stats["usersReturned"] == 5000


def test_sdk_typed_models_page_with_with_url(monkeypatch: pytest.MonkeyPatch) -> None:
    # Kiota models cost ~4 ms per user, so the typed path gets a smaller tenant.
    config = SimConfig(users=350, seed=13, identity_header="mi-secret")
    with run_in_thread(config) as sim:
        monkeypatch.setenv("IDENTITY_ENDPOINT", sim.identity_url)
        monkeypatch.setenv("IDENTITY_HEADER", sim.identity_header)
        ids = asyncio.run(_list_models(sim.graph_url, top=100))
    assert ids == [u["id"] for u in iter_users(config)]


def test_sdk_retry_middleware_recovers_from_429(monkeypatch: pytest.MonkeyPatch) -> None:
    # 20 RU per 10 s refills 2 RU/s: a page without $select costs 2, so pages after the
    # first ten get a 429 with Retry-After: 1 and succeed on the SDK's retry.
    config = SimConfig(users=5000, seed=12, identity_header="mi-secret", budget=20)
    expected = [u["id"] for u in iter_users(config)]
    with run_in_thread(config) as sim:
        monkeypatch.setenv("IDENTITY_ENDPOINT", sim.identity_url)
        monkeypatch.setenv("IDENTITY_HEADER", sim.identity_header)
        sim.state.graph.throttle.main.tokens = 0  # start drained so 429s come at once
        ids = asyncio.run(_list_all(sim.graph_url, None, 999))
        stats = _stats(sim.stats_url)
    assert ids == expected
    assert stats["throttled"] >= 1
    assert stats["throttledByEndpoint"]["users"] == stats["throttled"]
    assert stats["usersReturned"] == 5000


async def _sdk_additions(graph_url: str, uid: str, gid: str) -> dict[str, Any]:
    """signInActivity, methods, subscribedSkus and a group's members through typed models."""
    from msgraph.generated.groups.item.transitive_members.graph_user.count.count_request_builder import (  # noqa: E501
        CountRequestBuilder,
    )
    from msgraph.generated.groups.item.transitive_members.graph_user.graph_user_request_builder import (  # noqa: E501
        GraphUserRequestBuilder,
    )

    credential = ManagedIdentityCredential()
    out: dict[str, Any] = {}
    try:
        client = GraphServiceClient(credentials=credential, scopes=[GRAPH_SCOPE])
        client.request_adapter.base_url = graph_url
        params = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
            select=["id", "signInActivity"], top=999
        )
        page = await client.users.get(RequestConfiguration(query_parameters=params))
        out["signin_sizes"] = []
        out["signin"] = {}
        while page is not None:
            out["signin_sizes"].append(len(page.value or []))
            for u in page.value or []:
                out["signin"][u.id] = u.sign_in_activity
            if not page.odata_next_link:
                break
            page = await client.users.with_url(page.odata_next_link).get()
        methods = await client.users.by_user_id(uid).authentication.methods.get()
        out["methods"] = [(type(m).__name__, m.id) for m in methods.value or []]
        skus = await client.subscribed_skus.get()
        out["skus"] = [
            (str(s.sku_id), s.sku_part_number, s.consumed_units) for s in skus.value or []
        ]
        members = client.groups.by_group_id(gid).transitive_members.graph_user
        mparams = GraphUserRequestBuilder.GraphUserRequestBuilderGetQueryParameters(
            select=["id"], top=100
        )
        page = await members.get(RequestConfiguration(query_parameters=mparams))
        out["members"] = []
        while page is not None:
            out["members"] += [u.id for u in page.value or []]
            if not page.odata_next_link:
                break
            page = await members.with_url(page.odata_next_link).get()
        count_config = RequestConfiguration(
            query_parameters=CountRequestBuilder.CountRequestBuilderGetQueryParameters()
        )
        count_config.headers.add("ConsistencyLevel", "eventual")
        out["count"] = await members.count.get(count_config)
        return out
    finally:
        await credential.close()


def test_sdk_reads_the_additions(monkeypatch: pytest.MonkeyPatch) -> None:
    from devtools.tenantsim import members_of, subscribed_skus, tenant_groups

    config = SimConfig(users=400, seed=14, identity_header="mi-secret")
    users = list(iter_users(config))
    rich = max(users, key=lambda u: len(u["authentication"]["methods"]))
    gid = next(g["id"] for g in tenant_groups(config) if g["displayName"] == "All Staff")
    with run_in_thread(config) as sim:
        monkeypatch.setenv("IDENTITY_ENDPOINT", sim.identity_url)
        monkeypatch.setenv("IDENTITY_HEADER", sim.identity_header)
        got = asyncio.run(_sdk_additions(sim.graph_url, rich["id"], gid))
    assert got["signin_sizes"] == [120, 120, 120, 40]
    for u in users:
        act, typed = u.get("signInActivity"), got["signin"][u["id"]]
        if act is None:
            assert typed is None
            continue
        assert typed.last_sign_in_request_id == act["lastSignInRequestId"]
        never = act["lastNonInteractiveSignInDateTime"].startswith("0001")
        when = typed.last_non_interactive_sign_in_date_time
        assert (
            (when.year == 1)
            if never
            else when.isoformat().startswith(act["lastNonInteractiveSignInDateTime"][:19])
        )
    expected = [
        (m["@odata.type"].split(".")[-1], m["id"]) for m in rich["authentication"]["methods"]
    ]
    assert [(name[0].lower() + name[1:], mid) for name, mid in got["methods"]] == expected
    assert got["skus"] == [
        (s["skuId"], s["skuPartNumber"], s["consumedUnits"]) for s in subscribed_skus(config)
    ]
    staff = [u["id"] for u in members_of(config, gid)]
    assert got["members"] == staff and got["count"] == len(staff)
