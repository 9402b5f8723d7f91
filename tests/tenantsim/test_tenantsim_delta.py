"""A tenant that changes while it runs: Graph's user writes, deleted items, /users/delta, and
TenantWriter; all through real HTTP against a started simulator."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from devtools.tenantsim import RunningSim, SimConfig, run_in_thread
from devtools.tenantsim.changes import TenantWriteError, TenantWriter

pytestmark = pytest.mark.timeout(120)

EVENTUAL = {"ConsistencyLevel": "eventual"}
DOMAIN = "fabrikam.onmicrosoft.com"


def q(text: str) -> str:
    return urllib.parse.quote(text, safe="")


@pytest.fixture
def live() -> Iterator[RunningSim]:
    """A fresh small tenant per test: every test changes it."""
    with run_in_thread(
        SimConfig(users=500, seed=11, identity_header="delta-secret", delta_page_size=200)
    ) as s:
        yield s


@pytest.fixture
def writer(live: RunningSim) -> Iterator[TenantWriter]:
    with TenantWriter(
        graph_url=live.graph_url,
        identity_url=live.identity_url,
        identity_header=live.identity_header,
    ) as w:
        yield w


@pytest.fixture
def h(live: RunningSim, make_http: Any) -> Any:
    return make_http(live)


def _ids(items: list[dict[str, Any]]) -> list[str]:
    return [u["id"] for u in items]


def _count(h: Any, flt: str | None = None) -> int:
    path = "/users/$count" + (f"?$filter={q(flt)}" if flt else "")
    status, _, body = h.get(path, headers=EVENTUAL)
    assert status == 200, body
    return int(body)


def _delta_round(h: Any, url: str) -> tuple[list[dict[str, Any]], str, int]:
    """Follow a delta round's nextLinks: (items, deltaLink, pages)."""
    items: list[dict[str, Any]] = []
    pages = 0
    while True:
        status, _, body = h.get(url)
        assert status == 200, body
        pages += 1
        items.extend(body["value"])
        if "@odata.deltaLink" in body:
            assert "@odata.nextLink" not in body
            return items, body["@odata.deltaLink"], pages
        url = body["@odata.nextLink"]


# ------------------------------------------------------------------ writes
def test_create_is_listed_last_and_found(h: Any, writer: TenantWriter) -> None:
    before = writer.users()
    created = writer.create_user(
        displayName="Zed Newcomer",
        userPrincipalName=f"zed.newcomer@{DOMAIN}",
        accountEnabled=True,
        department="Sales",
        passwordProfile={"password": "x", "forceChangePasswordNextSignIn": True},
    )
    assert created["displayName"] == "Zed Newcomer" and created["id"]
    assert "passwordProfile" not in created or created["passwordProfile"] is None
    after = writer.users()
    assert _ids(after) == [*_ids(before), created["id"]]
    assert _count(h) == len(before) + 1
    got = writer.user(f"zed.newcomer@{DOMAIN}", select="id,department,createdDateTime,jobTitle")
    assert got["id"] == created["id"] and got["department"] == "Sales"
    assert got["createdDateTime"].endswith("Z") and got["jobTitle"] is None
    # Filters see it at once.
    assert _count(h, "department eq 'Sales'") >= 1
    flt = q("startsWith(userPrincipalName,'zed.n')")
    _, _, body = h.get(f"/users?$filter={flt}&$select=id")
    assert _ids(body["value"]) == [created["id"]]
    # No auth methods, but the endpoint knows the user.
    status, _, body = h.get(f"/users/{created['id']}/authentication/phoneMethods")
    assert status == 200 and body["value"] == []


def test_create_refusals(h: Any, writer: TenantWriter) -> None:
    status, _, body = h.request("POST", "/users", body={"displayName": "No Upn"})
    assert status == 400 and body["error"]["code"] == "Request_BadRequest"
    assert "userPrincipalName" in body["error"]["message"]
    status, _, body = h.request("POST", "/users", body={"userPrincipalName": f"a@{DOMAIN}"})
    assert status == 400 and "displayName" in body["error"]["message"]
    taken = writer.users()[3]["userPrincipalName"]
    status, _, body = h.request(
        "POST", "/users", body={"displayName": "Dup", "userPrincipalName": taken.upper()}
    )
    assert status == 400
    assert body["error"]["message"] == (
        "Another object with the same value for property userPrincipalName already exists."
    )
    status, _, body = h.request(
        "POST", "/users", body={"displayName": "X", "userPrincipalName": f"x@{DOMAIN}", "nope": 1}
    )
    assert status == 400 and "nope" in body["error"]["message"]
    status, _, _ = h.request("POST", "/users", body=b"{not json")
    assert status == 400
    # Writes need a Graph token like reads.
    status, _, _ = h.request(
        "POST", "/users", body={"displayName": "A", "userPrincipalName": "a@b"}, auth=False
    )
    assert status == 401


def test_rename_across_upn_prefix(h: Any, writer: TenantWriter) -> None:
    users = writer.users()
    target = users[10]
    old_prefix = target["userPrincipalName"][:4]
    old_starts = q(f"startsWith(userPrincipalName,'{old_prefix}')")
    new_starts = q("startsWith(userPrincipalName,'qqq')")
    # Warm the caches (UPN index, filter results, counts) before the change.
    _, _, old_body = h.get(f"/users?$filter={old_starts}&$select=id&$top=999")
    assert target["id"] in _ids(old_body["value"])
    assert _count(h, "startsWith(userPrincipalName,'qqq')") == 0
    _, _, body = h.get(f"/users?$filter={new_starts}&$select=id")
    assert body["value"] == []

    writer.update_user(target["id"], userPrincipalName=f"qqq.renamed@{DOMAIN}", jobTitle=None)

    _, _, body = h.get(f"/users?$filter={old_starts}&$select=id&$top=999")
    assert target["id"] not in _ids(body["value"])
    assert len(body["value"]) == len(old_body["value"]) - 1
    _, _, body = h.get(f"/users?$filter={new_starts}&$select=id,userPrincipalName")
    assert body["value"] == [{"id": target["id"], "userPrincipalName": f"qqq.renamed@{DOMAIN}"}]
    assert _count(h, "startsWith(userPrincipalName,'qqq')") == 1
    assert _count(h, "startsWith(userPrincipalName,'qq')") == 1
    # In place in the listing; found by the new UPN, not by the old one.
    assert _ids(writer.users()) == _ids(users)
    got = writer.user(f"QQQ.renamed@{DOMAIN}", select="id,jobTitle")
    assert got == {"id": target["id"], "jobTitle": None}
    with pytest.raises(TenantWriteError) as err:
        writer.user(target["userPrincipalName"])
    assert err.value.status == 404
    # An unknown user: 404.
    status, _, body = h.request(
        "PATCH", "/users/00000000-0000-4000-8000-000000000000", body={"jobTitle": "x"}
    )
    assert status == 404 and body["error"]["code"] == "Request_ResourceNotFound"


def test_delete_restore_purge(h: Any, writer: TenantWriter, live: RunningSim) -> None:
    users = writer.users(select="id,userPrincipalName,department")
    victim = next(u for u in users[:50] if u["department"])
    dept = victim["department"].replace("'", "''")
    total, in_dept = _count(h), _count(h, f"department eq '{dept}'")
    group = next(
        g
        for g in live.state.tenant.directory.objects
        if g.props["displayName"] == victim["department"]
    )
    members_path = f"/groups/{group.id}/members/microsoft.graph.user?$select=id&$top=999"
    assert victim["id"] in _ids(h.list_all(members_path))

    writer.delete_user(victim["id"])
    assert _count(h) == total - 1
    assert _count(h, f"department eq '{dept}'") == in_dept - 1
    assert victim["id"] not in _ids(writer.users())
    assert h.get(f"/users/{victim['id']}")[0] == 404
    assert h.get(f"/users/{victim['id']}/authentication/phoneMethods")[0] == 404
    assert victim["id"] not in _ids(h.list_all(members_path))
    _status, _, body = h.get(f"{members_path.split('?')[0]}/$count", headers=EVENTUAL)
    assert int(body) == len(h.list_all(members_path))
    deleted = writer.deleted_users()
    assert [d["id"] for d in deleted] == [victim["id"]]
    assert deleted[0]["deletedDateTime"] and deleted[0]["userPrincipalName"]
    assert h.request("DELETE", f"/users/{victim['id']}")[0] == 404  # already gone

    restored = writer.restore_user(victim["id"])
    assert restored["id"] == victim["id"]
    assert restored["@odata.type"] == "#microsoft.graph.user"
    assert _ids(writer.users())[-1] == victim["id"]  # listed again, at the end
    assert _count(h) == total and _count(h, f"department eq '{dept}'") == in_dept
    assert writer.deleted_users() == []
    assert victim["id"] in _ids(h.list_all(members_path))

    writer.delete_user(victim["id"])
    writer.purge_user(victim["id"])
    assert writer.deleted_users() == []
    for call in (writer.restore_user, writer.purge_user):
        with pytest.raises(TenantWriteError) as err:
            call(victim["id"])
        assert err.value.status == 404
    assert _count(h) == total - 1
    stats = h.stats()
    # Refused writes count too (the DELETE of a deleted user above).
    assert stats["writes"] == {"deleteUser": 3, "restoreUser": 2, "purgeUser": 2}
    assert "deleteUser" not in stats["requests"]


def test_listing_order_and_paging_with_changes(h: Any, writer: TenantWriter) -> None:
    users = _ids(writer.users())
    for uid in (users[0], users[7], users[8], users[250]):
        writer.delete_user(uid)
    writer.restore_user(users[7])
    new = writer.create_user(displayName="New One", userPrincipalName=f"new.one@{DOMAIN}")
    writer.update_user(users[9], displayName="Renamed In Place")
    expected = [u for u in users if u not in (users[0], users[7], users[8], users[250])]
    expected += [users[7], new["id"]]
    # Small pages cross the removed places and the tail.
    assert _ids(h.list_all("/users?$select=id&$top=7")) == expected
    _, _, body = h.get("/users?$select=id,displayName&$top=10")
    assert body["value"][6] == {"id": users[9], "displayName": "Renamed In Place"}


# ------------------------------------------------------------------ delta
def test_initial_round_then_changes(h: Any, writer: TenantWriter) -> None:
    users = writer.users(select="id,displayName,department")
    items, delta_link, pages = _delta_round(h, "/users/delta?$select=displayName,department")
    assert pages == 3  # 500 users in pages of 200
    assert _ids(items) == _ids(users)
    assert items[0] == users[0] and set(items[0]) == {"id", "displayName", "department"}
    assert delta_link.startswith(h.sim.graph_url + "/users/delta?$deltatoken=")
    status, _, first = h.get("/users/delta?$select=displayName,department")
    assert first["@odata.context"].endswith("#users(displayName,department)")
    assert first["@odata.nextLink"].startswith(h.sim.graph_url + "/users/delta?$skiptoken=")

    # Nothing changed: one page, empty, a deltaLink.
    status, _, body = h.get(delta_link)
    assert status == 200 and body["value"] == [] and "@odata.deltaLink" in body

    created = writer.create_user(displayName="Delta Added", userPrincipalName=f"da@{DOMAIN}")
    writer.update_user(users[5]["id"], department="Changed Dept")
    writer.update_user(users[5]["id"], displayName="Changed Twice")
    writer.delete_user(users[6]["id"])
    writer.delete_user(users[7]["id"])
    writer.purge_user(users[7]["id"])
    writer.delete_user(users[8]["id"])
    writer.restore_user(users[8]["id"])
    gone = writer.create_user(displayName="Short Lived", userPrincipalName=f"sl@{DOMAIN}")
    writer.delete_user(gone["id"])

    items, next_link, _ = _delta_round(h, delta_link)
    # Listing order (updated in place; created, then restored, at the end), then removals.
    assert items == [
        {"id": users[5]["id"], "displayName": "Changed Twice", "department": "Changed Dept"},
        {"id": created["id"], "displayName": "Delta Added", "department": None},
        {
            "id": users[8]["id"],
            "displayName": users[8]["displayName"],
            "department": users[8]["department"],
        },
        {"id": users[6]["id"], "@removed": {"reason": "changed"}},
        {"id": users[7]["id"], "@removed": {"reason": "deleted"}},
    ]
    # Once each: the next link has nothing new; an old link can still be followed.
    status, _, body = h.get(next_link)
    assert body["value"] == []
    writer.update_user(created["id"], jobTitle="Boss")
    items, _, _ = _delta_round(h, next_link)
    assert items == [{"id": created["id"], "displayName": "Delta Added", "department": None}]
    assert h.stats()["requests"]["delta"] >= 8


def test_changes_round_pages_and_filter(live: RunningSim, make_http: Any) -> None:
    h = make_http(live)
    with TenantWriter(
        graph_url=live.graph_url,
        identity_url=live.identity_url,
        identity_header=live.identity_header,
    ) as writer:
        _, link, _ = _delta_round(h, "/users/delta?$select=id")
        users = _ids(writer.users())
        for uid in users[:450]:
            writer.update_user(uid, jobTitle="Bulk")
        items, _, pages = _delta_round(h, link)
        assert pages == 3 and _ids(items) == users[:450]
        assert items[0] == {"id": users[0]}  # $select carried by the deltaLink
        # $filter=id eq: the one user.
        one = q(f"id eq '{users[3]}'")
        items, link_one, pages = _delta_round(h, f"/users/delta?$filter={one}")
        assert pages == 1 and _ids(items) == [users[3]]
        assert "displayName" in items[0]  # Graph's default set without $select
        writer.update_user(users[4], jobTitle="Other")
        writer.update_user(users[3], jobTitle="Mine")
        items, _, _ = _delta_round(h, link_one)
        assert _ids(items) == [users[3]]


def test_deltatoken_latest(h: Any, writer: TenantWriter) -> None:
    writer.update_user(writer.users()[0]["id"], jobTitle="Before")
    status, _, body = h.get("/users/delta?$deltatoken=latest&$select=displayName")
    assert status == 200 and body["value"] == []
    assert body["@odata.context"].endswith("#users(displayName)")
    link = body["@odata.deltaLink"]
    uid = writer.users()[1]["id"]
    writer.update_user(uid, displayName="After Latest")
    items, _, _ = _delta_round(h, link)
    assert items == [{"id": uid, "displayName": "After Latest"}]


def test_refused_options(h: Any) -> None:
    for query in (
        "$top=5",
        "$expand=manager",
        "$orderby=displayName",
        "$count=true",
        "$search=%22displayName:a%22",
        "$filter=" + q("department eq 'Sales'"),
    ):
        status, _, body = h.get(f"/users/delta?{query}")
        assert status == 400, query
        assert body["error"]["code"] == "Request_UnsupportedQuery", query
    for bad in ("$deltatoken=garbage", "$skiptoken=bm9wZQ"):
        status, _, body = h.get(f"/users/delta?{bad}")
        assert status == 400 and body["error"]["code"] == "Request_BadRequest"


def test_expired_tokens(live: RunningSim, make_http: Any) -> None:
    h = make_http(live)
    _, _, first = h.get("/users/delta?$select=id")
    skip = first["@odata.nextLink"]
    _, link, _ = _delta_round(h, "/users/delta?$select=id")
    status, faults = h.faults({"expireDeltaTokens": True})
    assert status == 200 and faults["deltaTokenTtl"] == 604800.0
    for url in (link, skip):
        status, _, body = h.get(url)
        assert status == 400
        assert body["error"]["code"] == "syncStateNotFound"
        assert body["error"]["message"] == (
            "The sync state generation is not found. The delta token is expired and data must "
            "be synchronized again."
        )
    # A new round is fine; a TTL from /_sim/faults expires it too.
    _, link, _ = _delta_round(h, "/users/delta?$select=id")
    assert h.get(link)[0] == 200
    assert h.faults({"deltaTokenTtl": 0.05})[0] == 200
    time.sleep(0.2)
    assert h.get(link)[2]["error"]["code"] == "syncStateNotFound"
    assert h.stats()["faults"]["expiredDeltaToken"] == 3
    assert h.request("POST", live.base_url + "/_sim/faults/reset", auth=False)[0] == 204
    assert h.faults()[1]["deltaTokenTtl"] == 604800.0
    assert h.get(link)[0] == 200


def test_delta_token_ttl_option(make_http: Any) -> None:
    config = SimConfig(users=30, seed=3, identity_header="s", delta_token_ttl=0.2)
    with run_in_thread(config) as s:
        h = make_http(s)
        _, link, _ = _delta_round(h, "/users/delta")
        assert h.get(link)[0] == 200
        time.sleep(0.4)
        status, _, body = h.get(link)
        assert status == 400 and body["error"]["code"] == "syncStateNotFound"


def test_million_users_with_changes_still_pages(make_http: Any) -> None:
    config = SimConfig(users=1_000_000, seed=5, identity_header="big")
    with run_in_thread(config) as s:
        h = make_http(s)
        tenant = s.state.tenant
        with TenantWriter(
            graph_url=s.graph_url, identity_url=s.identity_url, identity_header=s.identity_header
        ) as writer:
            _, _, page = h.get("/users?$select=id&$top=5")
            first = _ids(page["value"])
            writer.delete_user(first[1])
            writer.update_user(first[2], jobTitle="Changed")
            new = writer.create_user(displayName="Big New", userPrincipalName=f"bn@{DOMAIN}")
            started = time.monotonic()
            _, _, page = h.get("/users?$select=id,jobTitle&$top=999")
            assert _ids(page["value"])[:3] == [first[0], first[2], first[3]]
            assert page["value"][1]["jobTitle"] == "Changed"
            _, _, page = h.get(page["@odata.nextLink"])
            assert len(page["value"]) == 999
            assert time.monotonic() - started < 10
            assert _count(h) == 1_000_000
            assert writer.user(new["id"])["displayName"] == "Big New"
        # Only the changes are held: three users, no materialised listing.
        assert len(tenant.users_changed) == 3 and len(tenant._tail) == 1


# ------------------------------------------------------------------ TenantWriter
def test_tenant_writer_round_trip(writer: TenantWriter) -> None:
    created = writer.create_user(
        displayName="Writer Test", userPrincipalName=f"writer.test@{DOMAIN}", city="Oslo"
    )
    uid = created["id"]
    assert writer.user(uid, select="city") == {"city": "Oslo", "id": uid}
    writer.update_user(uid, city=None, surname="Test")
    assert writer.user(uid, select="city,surname") == {"city": None, "surname": "Test", "id": uid}
    assert writer.users(select="id", top=50)[-1] == {"id": uid}
    writer.delete_user(uid)
    with pytest.raises(TenantWriteError) as err:
        writer.user(uid)
    assert err.value.status == 404 and err.value.code == "Request_ResourceNotFound"
    assert writer.restore_user(uid)["displayName"] == "Writer Test"
    writer.delete_user(uid)
    writer.purge_user(uid)
    with pytest.raises(TenantWriteError):
        writer.update_user(uid, city="Bergen")
    with pytest.raises(TenantWriteError) as err:
        writer.create_user(displayName="No UPN")
    assert err.value.status == 400
