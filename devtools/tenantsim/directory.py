"""Groups, administrative units and the subscribed SKUs of a tenant.

Membership is kept as arrays of user indexes (4 bytes each, in listing order), never as
user objects. A generated tenant computes them, and the SKUs' consumed units, in one scan of
the users' digests on first use (about 3 s per 1,000,000 users, yielding to other requests
every 2,000 users), then keeps them; transitive member lists are merged from those arrays
on request and cached.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import re
from array import array
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .generator import (
    CYCLE_A_BELOW,
    CYCLE_B_BELOW,
    DEPARTMENTS,
    LOCATIONS,
    PROJECT_X_BELOW,
    SKU_IDS,
    directory_scan,
    user_id,
)
from .tenantfile import GROUP_TYPE, USER_TYPE, TenantDocument

GROUP = "group"
ADMINISTRATIVE_UNIT = "administrativeUnit"
_SLICE = 2000  # users scanned between yields to the event loop
_MERGE_SLICE = 50_000  # merged indexes between yields
_TRANSITIVE_CACHE = 8
GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

# The generated tenant's directory (README.md, "The synthetic tenant").
ALL_STAFF = "All Staff"
PROJECT_X = "Project X"
PROJECT_X_PARENTS = ("Engineering", "Research, Development")
EMPTY_GROUP = "Empty Group"
CYCLE_A = "Cycle A"
CYCLE_B = "Cycle B"
SEATTLE_AU = "Seattle Area"
SEATTLE_CITIES = ("Redmond", "Seattle")
EMEA_AU = "EMEA"
EMEA_USAGE_LOCATIONS = ("GB", "FR", "DE", "IL", "AE")
DEPARTMENT_GROUPS: tuple[str, ...] = tuple(d for d in DEPARTMENTS if d is not None)
_GROUP_CREATED = "2019-04-01T08:00:00Z"
# (skuId, skuPartNumber, prepaid units beyond those consumed; None: a free SKU's 10,000)
SKU_CATALOGUE: tuple[tuple[str, str, int | None], ...] = (
    ("06ebc4ee-1bb5-47dd-8120-11324bc54e06", "SPE_E5", 25),
    ("05e9a617-0261-4cee-bb44-138d3ef5d965", "SPE_E3", 40),
    ("f30db892-07e9-47e9-837c-80727f46fd3d", "FLOW_FREE", None),
)
# Held by users but not listed by /subscribedSkus: a retired subscription (SPB).
RETIRED_SKU_ID = "cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46"


@dataclass
class DirObject:
    """A group or an administrative unit: its properties and its direct members."""

    kind: str  # GROUP or ADMINISTRATIVE_UNIT
    props: dict[str, Any]  # id, displayName, ... (no members)
    member_groups: list[str]  # lower-case ids of the groups that are direct members
    users: array | None = None  # direct user members by listing index; None until scanned

    @property
    def id(self) -> str:
        return str(self.props["id"])


def object_id(seed: int, kind: str, name: str) -> str:
    """The stable id of a generated group or administrative unit."""
    b = hashlib.blake2b(f"tenantsim:{seed}:{kind}:{name}".encode(), digest_size=16).digest()
    h = b.hex()
    return f"{h[0:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[b[8] & 3]}{h[17:20]}-{h[20:32]}"


def _nickname(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", name)[:32] or "group"


class Directory:
    """The groups, administrative units and SKUs of one tenant."""

    def __init__(
        self,
        objects: list[DirObject],
        skus: list[dict[str, Any]] | None,
        scan: Any = None,
    ) -> None:
        self.objects = objects
        self._by_id = {o.id.lower(): o for o in objects}
        self._skus = skus
        self._scan = scan  # a callable returning a step iterator that fills users and skus
        self._built = scan is None
        self._building: asyncio.Future[None] | None = None
        self._transitive: OrderedDict[str, array] = OrderedDict()
        self._merging: dict[str, asyncio.Future[array]] = {}

    # ------------------------------------------------------------------ lookups
    def find(self, kind: str, key: str) -> DirObject | None:
        obj = self._by_id.get(key.lower())
        return obj if obj is not None and obj.kind == kind else None

    def of_kind(self, kind: str) -> list[DirObject]:
        return [o for o in self.objects if o.kind == kind]

    # ------------------------------------------------------------------ building
    @property
    def built(self) -> bool:
        """Whether the memberships (and SKU counts) are known yet."""
        return self._built

    def build(self) -> None:
        """Finish the scan here and now (Python API)."""
        if not self._built:
            for _ in self._scan():
                pass
            self._built = True

    async def build_async(self) -> None:
        """The scan, yielding to other requests between slices; runs once."""
        if self._built:
            return
        if self._building is None:
            self._building = asyncio.ensure_future(self._run_scan())
        await asyncio.shield(self._building)

    async def _run_scan(self) -> None:
        for _ in self._scan():
            await asyncio.sleep(0)
        self._built = True

    def skus(self) -> list[dict[str, Any]]:
        self.build()
        return list(self._skus or [])

    async def skus_async(self) -> list[dict[str, Any]]:
        await self.build_async()
        return list(self._skus or [])

    # ------------------------------------------------------------------ members
    def _reachable(self, obj: DirObject) -> list[DirObject]:
        """obj and every group below it, each once (cycles end where they close)."""
        seen = {obj.id.lower()}
        out = [obj]
        todo = list(obj.member_groups)
        while todo:
            gid = todo.pop()
            if gid in seen:
                continue
            seen.add(gid)
            group = self._by_id.get(gid)
            if group is not None and group.kind == GROUP:
                out.append(group)
                todo.extend(group.member_groups)
        return out

    def _merge_steps(self, obj: DirObject, out: array) -> Iterator[None]:
        arrays = [o.users for o in self._reachable(obj) if o.users]
        last = -1
        n = 0
        for i in heapq.merge(*arrays):
            if i != last:
                out.append(i)
                last = i
            n += 1
            if n % _MERGE_SLICE == 0:
                yield

    def _cache(self, key: str, value: array) -> array:
        self._transitive[key] = value
        while len(self._transitive) > _TRANSITIVE_CACHE:
            self._transitive.popitem(last=False)
        return value

    def users_of(self, obj: DirObject, transitive: bool) -> array:
        """Indexes of the user members in listing order, each once (Python API)."""
        self.build()
        if not transitive or obj.kind != GROUP or not obj.member_groups:
            return obj.users or array("I")
        key = obj.id.lower()
        if key in self._transitive:
            return self._transitive[key]
        out = array("I")
        for _ in self._merge_steps(obj, out):
            pass
        return self._cache(key, out)

    async def users_of_async(self, obj: DirObject, transitive: bool) -> array:
        await self.build_async()
        if not transitive or obj.kind != GROUP or not obj.member_groups:
            return obj.users or array("I")
        key = obj.id.lower()
        cached = self._transitive.get(key)
        if cached is not None:
            self._transitive.move_to_end(key)
            return cached
        task = self._merging.get(key)
        if task is None:
            task = asyncio.ensure_future(self._merge_async(obj, key))
            self._merging[key] = task
        return await asyncio.shield(task)

    async def _merge_async(self, obj: DirObject, key: str) -> array:
        out = array("I")
        try:
            for _ in self._merge_steps(obj, out):
                await asyncio.sleep(0)
            return self._cache(key, out)
        finally:
            self._merging.pop(key, None)

    # ------------------------------------------------------------------ as tenant-file lines
    def as_lines(self, kind: str, user_ids: Any) -> list[dict[str, Any]]:
        """Objects of `kind` as the Python API and tenant files show them: properties and
        "members" (group references first, then users in listing order)."""
        self.build()
        out = []
        for obj in self.of_kind(kind):
            members = [
                {"@odata.type": GROUP_TYPE, "id": self._by_id[g].id}
                for g in obj.member_groups
                if g in self._by_id
            ]
            members += [{"@odata.type": USER_TYPE, "id": user_ids(i)} for i in obj.users or ()]
            out.append(obj.props | {"members": members})
        return out


# ---------------------------------------------------------------------------- tenant files
def file_directory(doc: TenantDocument, user_index: dict[str, int]) -> Directory:
    """The directory of a tenant file; `user_index` maps lower-case user ids to indexes."""
    objects = []
    for kind, items in ((GROUP, doc.groups), (ADMINISTRATIVE_UNIT, doc.administrative_units)):
        for item in items:
            users = sorted(
                {
                    user_index[m["id"].lower()]
                    for m in item["members"]
                    if m["@odata.type"] == USER_TYPE and m["id"].lower() in user_index
                }
            )
            groups = [m["id"].lower() for m in item["members"] if m["@odata.type"] == GROUP_TYPE]
            props = {k: v for k, v in item.items() if k != "members"}
            objects.append(DirObject(kind, props, list(dict.fromkeys(groups)), array("I", users)))
    return Directory(objects, list(doc.skus))


# ---------------------------------------------------------------------------- generated
def generated_directory(seed: int, count: int, tenant_id: str) -> Directory:
    """The generated tenant's groups, administrative units and SKUs (memberships and
    consumed units filled by one lazy scan)."""

    def gid(name: str, kind: str = GROUP) -> str:
        return object_id(seed, kind, name)

    def group(name: str, description: str, groups: Iterable[str] = ()) -> DirObject:
        props = {
            "id": gid(name),
            "displayName": name,
            "description": description,
            "mailNickname": _nickname(name),
            "mailEnabled": False,
            "securityEnabled": True,
            "groupTypes": [],
            "createdDateTime": _GROUP_CREATED,
        }
        return DirObject(GROUP, props, [g.lower() for g in groups])

    def unit(name: str, description: str, groups: Iterable[str] = ()) -> DirObject:
        props = {"id": gid(name, ADMINISTRATIVE_UNIT), "displayName": name}
        props["description"] = description
        return DirObject(ADMINISTRATIVE_UNIT, props, [g.lower() for g in groups])

    departments = {
        name: group(
            name,
            "A department's users",
            [gid(PROJECT_X)] if name in PROJECT_X_PARENTS else (),
        )
        for name in DEPARTMENT_GROUPS
    }
    all_staff = group(
        ALL_STAFF,
        "Everyone with a department, through the department groups",
        map(gid, departments),
    )
    project = group(PROJECT_X, "Nested in two department groups")
    empty = group(EMPTY_GROUP, "No members")
    cycle_a = group(CYCLE_A, "Contains Cycle B, which contains it", [gid(CYCLE_B)])
    cycle_b = group(CYCLE_B, "Contains Cycle A, which contains it", [gid(CYCLE_A)])
    seattle = unit(SEATTLE_AU, "Users in Redmond and Seattle")
    emea = unit(EMEA_AU, "Users in EMEA, and the group Project X", [gid(PROJECT_X)])
    objects = [all_staff, *departments.values(), project, empty, cycle_a, cycle_b, seattle, emea]
    directory = Directory(objects, None)

    by_dept = [departments[d] if d is not None else None for d in DEPARTMENTS]
    seattle_locs = {i for i, loc in enumerate(LOCATIONS) if loc[0] in SEATTLE_CITIES}
    emea_locs = {i for i, loc in enumerate(LOCATIONS) if loc[4] in EMEA_USAGE_LOCATIONS}

    def scan() -> Iterator[None]:
        for obj in objects:
            obj.users = array("I")
        held = [0] * len(SKU_IDS)
        dept_arrays = [obj.users if obj is not None else None for obj in by_dept]
        p_users, a_users, b_users = project.users, cycle_a.users, cycle_b.users
        s_users, e_users = seattle.users, emea.users
        assert p_users is not None and a_users is not None and b_users is not None
        assert s_users is not None and e_users is not None
        for start in range(0, count, _SLICE):
            stop = min(count, start + _SLICE)
            for i, (dept, loc, pbyte, cbyte, lic) in enumerate(
                directory_scan(seed, start, stop), start
            ):
                if dept >= 0:
                    dept_arrays[dept].append(i)  # type: ignore[union-attr]
                if pbyte < PROJECT_X_BELOW:
                    p_users.append(i)
                if cbyte < CYCLE_A_BELOW:
                    a_users.append(i)
                elif cbyte < CYCLE_B_BELOW:
                    b_users.append(i)
                if loc in seattle_locs:
                    s_users.append(i)
                elif loc in emea_locs:
                    e_users.append(i)
                first, n = divmod(lic, 4)
                for k in range(n):
                    held[(first + k) % len(SKU_IDS)] += 1
            yield
        consumed = dict(zip(SKU_IDS, held, strict=True))
        directory._skus = [
            _sku(tenant_id, seed, sku_id, part, consumed.get(sku_id, 0), extra)
            for sku_id, part, extra in SKU_CATALOGUE
        ]

    directory._scan = scan
    directory._built = False
    return directory


def _sku(
    tenant_id: str, seed: int, sku_id: str, part: str, consumed: int, extra: int | None
) -> dict[str, Any]:
    enabled = 10000 if extra is None else consumed + extra
    return {
        "accountName": "Fabrikam",
        "accountId": tenant_id,
        "appliesTo": "User",
        "capabilityStatus": "Enabled",
        "consumedUnits": consumed,
        "id": f"{tenant_id}_{sku_id}",
        "skuId": sku_id,
        "skuPartNumber": part,
        "subscriptionIds": [object_id(seed, "subscription", sku_id)],
        "prepaidUnits": {"enabled": enabled, "suspended": 0, "warning": 0, "lockedOut": 0},
        "servicePlans": [],
    }


def generated_user_id(seed: int) -> Any:
    return lambda index: user_id(seed, index)
