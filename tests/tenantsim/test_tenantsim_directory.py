"""Groups and administrative units: generated and from tenant files, member lists, counts."""

from __future__ import annotations

import json
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from devtools.tenantsim import (
    SimConfig,
    TenantFileError,
    dump_tenant,
    iter_users,
    load_tenant_document,
    load_tenant_file,
    members_of,
    run_in_thread,
    subscribed_skus,
    tenant_administrative_units,
    tenant_groups,
)
from devtools.tenantsim.directory import DEPARTMENT_GROUPS
from devtools.tenantsim.properties import DEFAULT_SELECT

pytestmark = pytest.mark.timeout(60)
EVENTUAL = {"ConsistencyLevel": "eventual"}
USER = "#microsoft.graph.user"
GROUP = "#microsoft.graph.group"
UNKNOWN = "0b0f5a8e-1111-4222-8333-444455556666"


def q(text: str) -> str:
    return urllib.parse.quote(text, safe="")


@pytest.fixture(scope="module")
def config(sim: Any) -> SimConfig:
    return sim.state.config


@pytest.fixture(scope="module")
def users(config: SimConfig) -> list[dict[str, Any]]:
    return list(iter_users(config))


@pytest.fixture(scope="module")
def groups(config: SimConfig) -> dict[str, dict[str, Any]]:
    return {g["displayName"]: g for g in tenant_groups(config)}


@pytest.fixture(scope="module")
def units(config: SimConfig) -> dict[str, dict[str, Any]]:
    return {a["displayName"]: a for a in tenant_administrative_units(config)}


def _ids(items: list[dict[str, Any]]) -> list[str]:
    return [u["id"] for u in items]


def _user_refs(obj: dict[str, Any]) -> set[str]:
    return {m["id"] for m in obj["members"] if m["@odata.type"] == USER}


def _group_refs(obj: dict[str, Any]) -> list[str]:
    return [m["id"] for m in obj["members"] if m["@odata.type"] == GROUP]


# ------------------------------------------------------------------ the generated directory
def test_generated_groups_and_units(
    config: SimConfig, users: list[dict], groups: dict, units: dict
) -> None:
    names = set(groups)
    assert {"All Staff", "Project X", "Empty Group", "Cycle A", "Cycle B"} <= names
    assert set(DEPARTMENT_GROUPS) <= names
    assert set(units) == {"Seattle Area", "EMEA"}
    ids = {g["id"] for g in groups.values()} | {a["id"] for a in units.values()}
    assert len(ids) == len(groups) + len(units)
    # Stable per seed, different for another seed.
    assert (
        tenant_groups(SimConfig(users=10, seed=config.seed))[0]["id"] == groups["All Staff"]["id"]
    )
    assert tenant_groups(SimConfig(users=10, seed=config.seed + 1))[0]["id"] not in ids
    by_id = {g["id"]: name for name, g in groups.items()}
    # Department groups hold their department's users directly.
    for dept in DEPARTMENT_GROUPS:
        assert _user_refs(groups[dept]) == {u["id"] for u in users if u["department"] == dept}
    # All Staff nests every department group; Project X sits in two of them.
    assert {by_id[g] for g in _group_refs(groups["All Staff"])} == set(DEPARTMENT_GROUPS)
    parents = [n for n, g in groups.items() if groups["Project X"]["id"] in _group_refs(g)]
    assert sorted(parents) == ["Engineering", "Research, Development"]
    assert groups["Empty Group"]["members"] == []
    assert _group_refs(groups["Cycle A"]) == [groups["Cycle B"]["id"]]
    assert _group_refs(groups["Cycle B"]) == [groups["Cycle A"]["id"]]
    assert _user_refs(units["Seattle Area"]) == {
        u["id"] for u in users if u["city"] in ("Seattle", "Redmond")
    }
    assert _group_refs(units["EMEA"]) == [groups["Project X"]["id"]]
    assert _user_refs(units["EMEA"]) == {
        u["id"] for u in users if u["usageLocation"] in ("GB", "FR", "DE", "IL", "AE")
    }


def test_members_of_follows_nesting_once(
    config: SimConfig, users: list[dict], groups: dict, units: dict
) -> None:
    order = {u["id"]: i for i, u in enumerate(users)}
    project = _user_refs(groups["Project X"])
    staff = members_of(config, groups["All Staff"]["id"])
    expected = {u["id"] for u in users if u["department"]} | project
    assert _ids(staff) == sorted(expected, key=order.__getitem__)  # listing order, once each
    assert staff[0] == users[order[staff[0]["id"]]]  # full users, as generate_user gives them
    # Some Project X users reach All Staff by two (or three) paths, and are listed once.
    assert project and len(set(_ids(staff))) == len(staff)
    assert members_of(config, groups["All Staff"]["id"], transitive=False) == []
    eng = members_of(config, groups["Engineering"]["id"])
    assert set(_ids(eng)) == _user_refs(groups["Engineering"]) | project
    cycle = members_of(config, groups["Cycle A"]["id"])
    both = _user_refs(groups["Cycle A"]) | _user_refs(groups["Cycle B"])
    assert set(_ids(cycle)) == both and len(cycle) == len(both)
    assert members_of(config, groups["Empty Group"]["id"]) == []
    emea = members_of(config, units["EMEA"]["id"])
    assert set(_ids(emea)) == _user_refs(units["EMEA"])
    assert project - set(_ids(emea)), "Project X users outside EMEA are not EMEA members"
    with pytest.raises(KeyError):
        members_of(config, UNKNOWN)


# ------------------------------------------------------------------ member lists over HTTP
@pytest.mark.parametrize(
    ("name", "path", "transitive"),
    [
        ("All Staff", "groups/{}/transitiveMembers/microsoft.graph.user", True),
        ("All Staff", "groups/{}/members/microsoft.graph.user", False),
        ("Engineering", "groups/{}/transitiveMembers/microsoft.graph.user", True),
        ("Engineering", "groups/{}/members/microsoft.graph.user", False),
        ("Cycle B", "groups/{}/transitiveMembers/graph.user", True),
        ("Empty Group", "groups/{}/transitiveMembers/microsoft.graph.user", True),
        ("EMEA", "directory/administrativeUnits/{}/members/microsoft.graph.user", False),
        ("Seattle Area", "directory/administrativeUnits/{}/members/graph.user", False),
    ],
)
def test_member_lists_page_like_users(
    http: Any, config: SimConfig, groups: dict, units: dict, name: str, path: str, transitive: bool
) -> None:
    oid = (groups.get(name) or units[name])["id"]
    expected = members_of(config, oid, transitive=transitive)
    url = "/" + path.format(oid) + "?%24select=id%2CuserPrincipalName&%24top=100"
    got = http.list_all(url)
    assert got == [{"id": u["id"], "userPrincipalName": u["userPrincipalName"]} for u in expected]
    _, headers, first = http.get(url)
    assert first["@odata.context"] == (
        "https://graph.microsoft.com/v1.0/$metadata#users(id,userPrincipalName)"
    )
    assert headers["x-ms-resource-unit"] == "1"
    if len(expected) > 100:
        link = first["@odata.nextLink"]
        assert link.startswith(f"{http.sim.graph_url}/{path.format(oid)}?")
        assert "%24top=100" in link and "$skiptoken=" in link
    _, headers, plain = http.get("/" + path.format(oid) + "?$top=5")
    assert plain["@odata.context"] == "https://graph.microsoft.com/v1.0/$metadata#users"
    assert headers["x-ms-resource-unit"] == "2"
    assert all(set(u) == set(DEFAULT_SELECT) for u in plain["value"])
    assert [u["id"] for u in plain["value"]] == _ids(expected[:5])


def test_member_list_filter_count_and_expand(
    http: Any, config: SimConfig, groups: dict, users: list[dict]
) -> None:
    gid = groups["All Staff"]["id"]
    base = f"/groups/{gid}/transitiveMembers/microsoft.graph.user"
    staff = members_of(config, gid)
    text = "userType eq 'Guest'"
    # Any $filter on a member list is an advanced query.
    status, _, body = http.get(f"{base}?$filter={q(text)}")
    assert status == 400 and body["error"]["code"] == "Request_UnsupportedQuery"
    status, _, body = http.get(f"{base}?$filter={q(text)}&$count=true")
    assert status == 400  # $count=true without ConsistencyLevel
    url = f"{base}?$select=id&$top=50&$count=true&$filter={q(text)}"
    _, _, first = http.get(url, headers=EVENTUAL)
    guests = [u["id"] for u in staff if u["userType"] == "Guest"]
    assert first["@odata.count"] == len(guests)
    assert _ids(http.list_all(url, headers=EVENTUAL)) == guests
    assert http.get(f"{base}?$filter={q('nosuch eq 1')}", headers=EVENTUAL)[0] == 400
    # $count
    status, headers, body = http.get(f"{base}/$count", headers=EVENTUAL)
    assert status == 200 and body == str(len(staff))
    assert headers["Content-Type"].startswith("text/plain")
    assert http.get(f"{base}/%24count?$filter={q(text)}", headers=EVENTUAL)[2] == str(len(guests))
    status, _, body = http.get(f"{base}/$count")
    assert status == 400 and body["error"]["code"] == "Request_BadRequest"
    _, _, counted = http.get(f"{base}?$count=true&$top=3&$select=id", headers=EVENTUAL)
    assert counted["@odata.count"] == len(staff)
    # $expand=manager: fine without an advanced query, refused with one.
    by_id = {u["id"]: u for u in users}
    _, headers, body = http.get(f"{base}?$select=id&$expand=manager($select=id)&$top=40")
    assert headers["x-ms-resource-unit"] == "2"
    for item in body["value"]:
        ref = by_id[item["id"]].get("manager")
        assert item.get("manager") == (
            None if ref is None else {"@odata.type": "#microsoft.graph.user", "id": ref["id"]}
        )
    status, _, body = http.get(
        f"{base}?$select=id&$expand=manager&$count=true&$filter={q(text)}", headers=EVENTUAL
    )
    assert status == 400 and body["error"]["code"] == "Request_UnsupportedQuery"


def test_member_lists_with_sign_in_activity(
    http: Any, config: SimConfig, groups: dict, make_http: Any
) -> None:
    gid = groups["All Staff"]["id"]
    base = f"/groups/{gid}/transitiveMembers/microsoft.graph.user"
    _, _, body = http.get(f"{base}?$select=id,signInActivity&$top=999")
    assert len(body["value"]) == 120 and "@odata.nextLink" in body
    staff = members_of(config, gid)
    assert [u["signInActivity"] for u in body["value"]] == [
        u.get("signInActivity") for u in staff[:120]
    ]
    with run_in_thread(SimConfig(users=50, seed=config.seed, premium=False)) as s:
        status, _, body = make_http(s).get(f"{base}?$select=id,signInActivity")
    assert status == 403
    assert body["error"]["code"] == "Authentication_RequestFromNonPremiumTenantOrB2CTenant"


def test_get_group_and_unit(http: Any, groups: dict, units: dict) -> None:
    g = groups["Project X"]
    status, headers, body = http.get(f"/groups/{g['id']}")
    assert status == 200 and headers["x-ms-resource-unit"] == "1"
    assert body["@odata.context"] == "https://graph.microsoft.com/v1.0/$metadata#groups/$entity"
    assert body["id"] == g["id"] and body["displayName"] == "Project X"
    assert body["securityEnabled"] is True and body["groupTypes"] == []
    assert "members" not in body
    _, _, body = http.get(f"/groups/{g['id'].upper()}?$select=displayName")
    assert body == {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#groups(displayName)/$entity",
        "displayName": "Project X",
        "id": g["id"],
    }
    a = units["EMEA"]
    status, _, body = http.get(f"/directory/administrativeUnits/{a['id']}?$select=id,displayName")
    assert status == 200
    assert body["@odata.context"].endswith("#directory/administrativeUnits(id,displayName)/$entity")
    assert (body["id"], body["displayName"]) == (a["id"], "EMEA")
    assert http.get(f"/groups/{g['id']}?$select=nope")[0] == 400


@pytest.mark.parametrize(
    "path",
    [
        "/groups/{}",
        "/groups/{}/members/microsoft.graph.user",
        "/groups/{}/transitiveMembers/microsoft.graph.user",
        "/directory/administrativeUnits/{}",
        "/directory/administrativeUnits/{}/members/microsoft.graph.user",
    ],
)
def test_unknown_and_malformed_ids(http: Any, path: str, groups: dict, units: dict) -> None:
    status, _, body = http.get(path.format(UNKNOWN))
    assert status == 404 and body["error"]["code"] == "Request_ResourceNotFound"
    assert body["error"]["message"] == (
        f"Resource '{UNKNOWN}' does not exist or one of its queried reference-property objects "
        "are not present."
    )
    status, _, body = http.get(path.format("not-a-guid"))
    assert status == 400 and body["error"]["code"] == "Request_BadRequest"
    assert body["error"]["message"] == "Invalid object identifier 'not-a-guid'."
    # A group is no administrative unit, and the other way round.
    other = units["EMEA"]["id"] if path.startswith("/groups") else groups["All Staff"]["id"]
    assert http.get(path.format(other))[0] == 404
    status, _, _ = http.get(path.format(UNKNOWN) + "/$count", headers=EVENTUAL)
    assert status in (400, 404)


def test_unsimulated_group_paths(http: Any, groups: dict) -> None:
    gid = groups["Project X"]["id"]
    assert http.get("/groups")[0] == 400
    assert http.get(f"/groups/{gid}/members")[0] == 400
    assert http.get(f"/groups/{gid}/members/microsoft.graph.group")[0] == 400
    assert http.get("/directory/administrativeUnits")[0] == 400


@pytest.mark.parametrize(
    ("roles", "group_status", "au_status"),
    [
        (("User.Read.All",), 403, 403),
        (("GroupMember.Read.All",), 200, 403),
        (("Group.Read.All",), 200, 403),
        (("AdministrativeUnit.Read.All",), 403, 200),
        (("Directory.Read.All",), 200, 200),
    ],
)
def test_directory_permissions(
    make_http: Any, roles: tuple, group_status: int, au_status: int
) -> None:
    config = SimConfig(users=20, roles=roles)
    gid = next(g["id"] for g in tenant_groups(config) if g["displayName"] == "All Staff")
    aid = tenant_administrative_units(config)[0]["id"]
    with run_in_thread(config) as s:
        h = make_http(s)
        got = [
            h.get(f"/groups/{gid}/transitiveMembers/microsoft.graph.user")[0],
            h.get(f"/groups/{gid}/members/microsoft.graph.user/$count", headers=EVENTUAL)[0],
            h.get(f"/groups/{gid}")[0],
            h.get(f"/directory/administrativeUnits/{aid}/members/microsoft.graph.user")[0],
            h.get(f"/directory/administrativeUnits/{aid}")[0],
        ]
        _, _, body = h.get(f"/directory/administrativeUnits/{aid}/members/microsoft.graph.user")
    assert got == [group_status] * 3 + [au_status] * 2
    if au_status == 403:
        assert body["error"]["code"] == "Authorization_RequestDenied"


def test_stats_batch_and_costs(make_http: Any) -> None:
    config = SimConfig(users=300, seed=4)
    gid = next(g["id"] for g in tenant_groups(config) if g["displayName"] == "All Staff")
    aid = tenant_administrative_units(config)[1]["id"]
    uid = next(iter_users(config))["id"]
    with run_in_thread(config) as s:
        h = make_http(s)
        reqs = [
            {"id": "1", "method": "GET", "url": f"/groups/{gid}/transitiveMembers/graph.user"},
            {"id": "2", "method": "GET", "url": f"groups/{gid}/members/microsoft.graph.user"},
            {
                "id": "3",
                "method": "GET",
                "url": f"/directory/administrativeUnits/{aid}/members"
                "/microsoft.graph.user?$select=id",
            },
            {
                "id": "4",
                "method": "GET",
                "url": f"/groups/{gid}/transitiveMembers/microsoft.graph.user/$count",
                "headers": {"ConsistencyLevel": "eventual"},
            },
            {"id": "5", "method": "GET", "url": f"/groups/{gid}"},
            {"id": "6", "method": "GET", "url": f"/directory/administrativeUnits/{aid}"},
            {"id": "7", "method": "GET", "url": "/subscribedSkus"},
            {"id": "8", "method": "GET", "url": f"/users/{uid}/authentication/methods"},
        ]
        status, _, body = h.request("POST", "/$batch", body={"requests": reqs})
        stats = h.stats()
    assert status == 200
    answers = {r["id"]: r for r in body["responses"]}
    assert all(r["status"] == 200 for r in answers.values()), answers
    assert len(answers["1"]["body"]["value"]) == 100
    assert answers["4"]["body"] == str(len(members_of(config, gid)))
    costs = {k: r["headers"]["x-ms-resource-unit"] for k, r in answers.items()}
    assert costs == {"1": "2", "2": "2", "3": "1", "4": "1", "5": "1", "6": "1", "7": "1", "8": "1"}
    assert {
        k: stats["requests"][k]
        for k in (
            "groupMembers",
            "auMembers",
            "membersCount",
            "group",
            "administrativeUnit",
            "subscribedSkus",
            "methods",
        )
    } == {
        "groupMembers": 2,
        "auMembers": 1,
        "membersCount": 1,
        "group": 1,
        "administrativeUnit": 1,
        "subscribedSkus": 1,
        "methods": 1,
    }
    assert stats["resourceUnits"] == 10


# ------------------------------------------------------------------ tenant files
def _write(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_tenant_file_groups_and_units(tmp_path: Path, make_http: Any) -> None:
    users = [{"id": f"u{i}", "userPrincipalName": f"u{i}@x.test"} for i in range(5)]
    lines: list[dict[str, Any]] = [
        *users,
        {
            "@odata.type": GROUP,
            "id": "g-top",
            "displayName": "Top",
            "description": "nests g-sub, defined later",
            "members": [
                {"@odata.type": GROUP, "id": "g-sub"},
                {"@odata.type": USER, "id": "u3"},
                {"@odata.type": USER, "id": "u3"},
            ],
        },
        {
            "@odata.type": GROUP,
            "id": "g-sub",
            "displayName": "Sub",
            "members": [
                {"@odata.type": USER, "id": "u4"},
                {"@odata.type": USER, "id": "U1"},
                {"@odata.type": GROUP, "id": "g-top"},
            ],
        },
        {
            "@odata.type": "#microsoft.graph.administrativeUnit",
            "id": "au-1",
            "displayName": "Unit",
            "members": [{"@odata.type": USER, "id": "u2"}, {"@odata.type": GROUP, "id": "g-sub"}],
        },
    ]
    path = _write(tmp_path / "t.jsonl", lines)
    doc = load_tenant_document(path)
    assert [u["id"] for u in doc.users] == [u["id"] for u in users]
    assert load_tenant_file(path) == doc.users
    config = SimConfig(tenant=path)
    assert [g["id"] for g in tenant_groups(config)] == ["g-top", "g-sub"]
    assert tenant_groups(config)[0]["description"] == "nests g-sub, defined later"
    assert _ids(members_of(config, "g-top")) == ["u1", "u3", "u4"]
    assert _ids(members_of(config, "g-top", transitive=False)) == ["u3"]
    assert _ids(members_of(config, "g-sub")) == ["u1", "u3", "u4"]  # the cycle closes
    assert _ids(members_of(config, "au-1")) == ["u2"]
    with run_in_thread(config) as s:
        h = make_http(s)
        listed = h.list_all("/groups/g-top/transitiveMembers/microsoft.graph.user?$select=id")
        direct = h.list_all("/groups/g-top/members/microsoft.graph.user?$select=id")
        unit = h.list_all("/directory/administrativeUnits/au-1/members/microsoft.graph.user")
        _, _, group = h.get("/groups/g-top?$select=displayName,description")
    assert _ids(listed) == ["u1", "u3", "u4"] and _ids(direct) == ["u3"]
    assert _ids(unit) == ["u2"]
    assert group["description"] == "nests g-sub, defined later"


@pytest.mark.parametrize(
    ("bad", "line"),
    [
        ({"@odata.type": GROUP, "id": "g", "members": [{"@odata.type": USER, "id": "nope"}]}, 3),
        ({"@odata.type": GROUP, "id": "g", "members": [{"@odata.type": GROUP, "id": "x"}]}, 3),
        ({"@odata.type": GROUP, "id": "g", "members": [{"id": "u0"}]}, 3),
        ({"@odata.type": GROUP, "id": "u0", "members": []}, 3),
        ({"@odata.type": GROUP, "members": []}, 3),
        ({"@odata.type": "#microsoft.graph.device", "id": "d"}, 3),
        ({"@odata.type": "#microsoft.graph.subscribedSku", "skuPartNumber": "X"}, 3),
    ],
)
def test_bad_directory_lines(tmp_path: Path, bad: dict, line: int) -> None:
    path = _write(tmp_path / "bad.jsonl", [{"id": "u0"}, {"id": "u1"}, bad])
    with pytest.raises(TenantFileError) as err:
        load_tenant_document(path)
    assert err.value.line == line


def test_dump_round_trips_everything(tmp_path: Path, make_http: Any) -> None:
    config = SimConfig(users=700, seed=8)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert dump_tenant(config, a) == 700
    dump_tenant(SimConfig(users=700, seed=8), b)
    assert a.read_bytes() == b.read_bytes()
    from_file = SimConfig(tenant=a, seed=8)
    doc = load_tenant_document(a)
    assert doc.users == list(iter_users(config))
    assert doc.skus == subscribed_skus(config)
    assert tenant_groups(from_file) == tenant_groups(config)
    assert tenant_administrative_units(from_file) == tenant_administrative_units(config)
    for g in tenant_groups(config) + tenant_administrative_units(config):
        assert members_of(from_file, g["id"]) == members_of(config, g["id"])
    c = tmp_path / "c.jsonl"
    dump_tenant(from_file, c)
    assert c.read_bytes() == a.read_bytes()
    only = tmp_path / "only.jsonl"
    dump_tenant(config, only, users_only=True)
    assert only.read_bytes().count(b"\n") == 700
    gid = tenant_groups(config)[0]["id"]
    with run_in_thread(from_file) as s:
        served = make_http(s).list_all(f"/groups/{gid}/transitiveMembers/graph.user?$select=id")
    assert _ids(served) == _ids(members_of(config, gid))


# ------------------------------------------------------------------ a million users
@pytest.mark.timeout(180)
def test_a_million_users_are_scanned_once_and_lazily(make_http: Any) -> None:
    config = SimConfig(users=1_000_000, seed=2)
    with run_in_thread(config) as s:
        h = make_http(s)
        gid = next(
            g.id for g in s.state.tenant.directory.objects if g.props["displayName"] == "EMEA"
        )
        started = time.monotonic()
        assert h.get("/users?$top=1&$select=id")[0] == 200  # the listing needs no scan
        assert s.state.tenant.directory.built is False
        status, _, page = h.get(
            f"/directory/administrativeUnits/{gid}/members/microsoft.graph.user?$top=999&$select=id"
        )
        scanned = time.monotonic() - started
        all_staff = next(
            g.id for g in s.state.tenant.directory.objects if g.props["displayName"] == "All Staff"
        )
        count = h.get(
            f"/groups/{all_staff}/transitiveMembers/microsoft.graph.user/$count", headers=EVENTUAL
        )[2]
        started = time.monotonic()
        again = h.get(
            f"/groups/{all_staff}/transitiveMembers/microsoft.graph.user/$count", headers=EVENTUAL
        )[2]
        cached = time.monotonic() - started
    assert status == 200 and len(page["value"]) == 999
    assert 900_000 < int(count) == int(again) < 1_000_000
    assert scanned < 60 and cached < 1


def test_logs_name_no_users_or_objects(
    http: Any, users: list[dict], groups: dict, caplog: pytest.LogCaptureFixture
) -> None:
    user = users[5]
    gid = groups["Project X"]["id"]
    with caplog.at_level("INFO", logger="tenantsim"):
        http.get(f"/users/{q(user['userPrincipalName'])}/authentication/methods")
        http.get(f"/groups/{gid}/transitiveMembers/microsoft.graph.user?$top=1")
        http.get(f"/groups/{gid}")
    text = caplog.text
    assert "groups/{id}/transitiveMembers/microsoft.graph.user -> 200" in text
    assert "users/{id}/authentication/methods -> 200" in text
    for secret in (user["id"], user["userPrincipalName"], q(user["userPrincipalName"]), gid):
        assert secret not in text
