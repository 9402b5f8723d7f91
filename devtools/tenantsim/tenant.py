"""The tenant being served: generated from a seed, or loaded from a tenant file."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .config import SimConfig
from .generator import candidate_indexes, generate_user, tenant_id_for_seed
from .tenantfile import load_tenant_file


class Tenant:
    """Users by listing index and by key (id or userPrincipalName, case-insensitive)."""

    tenant_id: str

    def __len__(self) -> int:
        raise NotImplementedError

    def user(self, index: int) -> dict[str, Any]:
        raise NotImplementedError

    def find(self, key: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield self.user(i)


class GeneratedTenant(Tenant):
    """N users computed on demand from (seed, index); nothing is kept in memory."""

    def __init__(self, seed: int, count: int) -> None:
        self.seed = seed
        self.count = count
        self.tenant_id = tenant_id_for_seed(seed)

    def __len__(self) -> int:
        return self.count

    def user(self, index: int) -> dict[str, Any]:
        return generate_user(self.seed, index)

    def find(self, key: str) -> dict[str, Any] | None:
        low = key.lower()
        for index in candidate_indexes(self.seed, low):
            if 0 <= index < self.count:
                user = generate_user(self.seed, index)
                if user["id"] == low or (user.get("userPrincipalName") or "").lower() == low:
                    return user
        return None


class FileTenant(Tenant):
    """The users of a tenant file, held in memory with id and UPN maps."""

    def __init__(self, users: list[dict[str, Any]], tenant_id: str) -> None:
        self.users = users
        self.tenant_id = tenant_id
        self._by_key: dict[str, int] = {}
        for i, u in enumerate(users):
            self._by_key[u["id"].lower()] = i
            upn = u.get("userPrincipalName")
            if isinstance(upn, str):
                self._by_key.setdefault(upn.lower(), i)

    def __len__(self) -> int:
        return len(self.users)

    def user(self, index: int) -> dict[str, Any]:
        return self.users[index]

    def find(self, key: str) -> dict[str, Any] | None:
        i = self._by_key.get(key.lower())
        return None if i is None else self.users[i]


def load_tenant(config: SimConfig) -> Tenant:
    """The tenant a config describes (may raise TenantFileError)."""
    tenant_id = config.tenant_id or tenant_id_for_seed(config.seed)
    if config.tenant is not None:
        return FileTenant(load_tenant_file(config.tenant), tenant_id)
    tenant = GeneratedTenant(config.seed, config.users)
    tenant.tenant_id = tenant_id
    return tenant


def iter_users(config: SimConfig) -> Iterator[dict[str, Any]]:
    """The tenant's full users in listing order (what GET /users pages through)."""
    if config.tenant is not None:
        yield from load_tenant_file(config.tenant)
    else:
        for i in range(config.users):
            yield generate_user(config.seed, i)
