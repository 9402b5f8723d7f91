"""The tenant being served: generated from a seed, or loaded from a tenant file."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

from .config import SimConfig
from .directory import (
    ADMINISTRATIVE_UNIT,
    GROUP,
    Directory,
    file_directory,
    generated_directory,
)
from .generator import (
    candidate_indexes,
    generate_user,
    generate_user_lite,
    tenant_id_for_seed,
    user_id,
)
from .tenantfile import TenantDocument, load_tenant_document


class Tenant:
    """Users by listing index and by key (id or userPrincipalName, case-insensitive), plus
    the directory (groups, administrative units, SKUs)."""

    tenant_id: str
    directory: Directory

    def __len__(self) -> int:
        raise NotImplementedError

    def user(self, index: int) -> dict[str, Any]:
        """The full user (signInActivity and the authentication "methods" list included)."""
        raise NotImplementedError

    def lite(self, index: int) -> dict[str, Any]:
        """The user without signInActivity and "methods" where that is cheaper: what
        listings that do not select signInActivity, filters and scans read."""
        return self.user(index)

    def find(self, key: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def find_index(self, key: str) -> int | None:
        """The index of the user whose id or userPrincipalName is `key` (any case)."""
        raise NotImplementedError

    def user_id(self, index: int) -> str:
        return str(self.lite(index)["id"])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield self.user(i)


class GeneratedTenant(Tenant):
    """N users computed on demand from (seed, index); nothing is kept in memory."""

    def __init__(self, seed: int, count: int, tenant_id: str | None = None) -> None:
        self.seed = seed
        self.count = count
        self.tenant_id = tenant_id or tenant_id_for_seed(seed)
        self.directory = generated_directory(seed, count, self.tenant_id)

    def __len__(self) -> int:
        return self.count

    def user(self, index: int) -> dict[str, Any]:
        return generate_user(self.seed, index)

    def lite(self, index: int) -> dict[str, Any]:
        return generate_user_lite(self.seed, index)

    def user_id(self, index: int) -> str:
        return user_id(self.seed, index)

    def find(self, key: str) -> dict[str, Any] | None:
        index = self.find_index(key)
        return None if index is None else generate_user(self.seed, index)

    def find_index(self, key: str) -> int | None:
        low = key.lower()
        for index in candidate_indexes(self.seed, low):
            if 0 <= index < self.count:
                user = generate_user_lite(self.seed, index)
                if user["id"] == low or (user.get("userPrincipalName") or "").lower() == low:
                    return index
        return None


class FileTenant(Tenant):
    """The objects of a tenant file, held in memory with id and UPN maps."""

    def __init__(self, doc: TenantDocument, tenant_id: str) -> None:
        self.document = doc
        self.users = doc.users
        self.tenant_id = tenant_id
        self._by_key: dict[str, int] = {}
        ids: dict[str, int] = {}
        for i, u in enumerate(self.users):
            ids[u["id"].lower()] = i
            self._by_key[u["id"].lower()] = i
        for i, u in enumerate(self.users):
            upn = u.get("userPrincipalName")
            if isinstance(upn, str):
                self._by_key.setdefault(upn.lower(), i)
        self.directory = file_directory(doc, ids)

    def __len__(self) -> int:
        return len(self.users)

    def user(self, index: int) -> dict[str, Any]:
        return self.users[index]

    def find(self, key: str) -> dict[str, Any] | None:
        i = self._by_key.get(key.lower())
        return None if i is None else self.users[i]

    def find_index(self, key: str) -> int | None:
        return self._by_key.get(key.lower())


def load_tenant(config: SimConfig) -> Tenant:
    """The tenant a config describes (may raise TenantFileError)."""
    tenant_id = config.tenant_id or tenant_id_for_seed(config.seed)
    if config.tenant is not None:
        return FileTenant(load_tenant_document(config.tenant), tenant_id)
    return GeneratedTenant(config.seed, config.users, tenant_id)


def iter_users(config: SimConfig) -> Iterator[dict[str, Any]]:
    """The tenant's full users in listing order (what GET /users pages through)."""
    if config.tenant is not None:
        yield from load_tenant_document(config.tenant).users
    else:
        for i in range(config.users):
            yield generate_user(config.seed, i)


@functools.lru_cache(maxsize=4)
def _generated(seed: int, count: int, tenant_id: str) -> GeneratedTenant:
    # The Python API's generated tenants keep their scanned directory between calls.
    return GeneratedTenant(seed, count, tenant_id)


def _tenant(config: SimConfig) -> Tenant:
    if config.tenant is not None:
        return load_tenant(config)
    return _generated(
        config.seed, config.users, config.tenant_id or tenant_id_for_seed(config.seed)
    )


def subscribed_skus(config: SimConfig) -> list[dict[str, Any]]:
    """What GET /subscribedSkus serves for `config`."""
    return _tenant(config).directory.skus()


def _lines(config: SimConfig, kind: str) -> list[dict[str, Any]]:
    tenant = _tenant(config)
    if isinstance(tenant, FileTenant):
        items = tenant.document.groups if kind == GROUP else tenant.document.administrative_units
        return [dict(item) for item in items]
    return tenant.directory.as_lines(kind, tenant.user_id)


def tenant_groups(config: SimConfig) -> list[dict[str, Any]]:
    """The tenant's groups: {"id", "displayName", ..., "members": [{"@odata.type":
    "#microsoft.graph.user" | "#microsoft.graph.group", "id"}]}, as in a tenant file."""
    return _lines(config, GROUP)


def tenant_administrative_units(config: SimConfig) -> list[dict[str, Any]]:
    """The tenant's administrative units, shaped like tenant_groups' items."""
    return _lines(config, ADMINISTRATIVE_UNIT)


def members_of(
    config: SimConfig, object_id: str, *, transitive: bool = True
) -> list[dict[str, Any]]:
    """The full users a member list of group or administrative unit `object_id` serves, in
    its order: /groups/{id}/transitiveMembers/microsoft.graph.user (or /members/... with
    transitive=False), /directory/administrativeUnits/{id}/members/microsoft.graph.user (an
    administrative unit's list is always its direct user members). KeyError if no such
    object."""
    tenant = _tenant(config)
    directory = tenant.directory
    obj = directory.find(GROUP, object_id) or directory.find(ADMINISTRATIVE_UNIT, object_id)
    if obj is None:
        raise KeyError(object_id)
    return [tenant.user(i) for i in directory.users_of(obj, transitive)]
