"""tenantsim: a simulated Entra tenant (Graph v1.0 subset + managed identity) on loopback.

Public API: SimConfig, Outage, run_in_thread, serve, RunningSim, generate_user, iter_users,
dump_tenant, load_tenant_file, load_tenant_document, TenantFileError, subscribed_skus,
tenant_groups, tenant_administrative_units, members_of. See README.md in this directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .config import SimConfig
from .faults import Outage
from .generator import generate_user, tenant_id_for_seed, user_id
from .server import RunningSim, run_in_thread, serve
from .tenant import (
    iter_users,
    load_tenant,
    members_of,
    subscribed_skus,
    tenant_administrative_units,
    tenant_groups,
)
from .tenantfile import (
    TenantDocument,
    TenantFileError,
    dump_users,
    load_tenant_document,
    load_tenant_file,
)


def dump_tenant(config: SimConfig, path: Path, *, users_only: bool = False) -> int:
    """Write the tenant `config` serves as a tenant file: its users, then (unless
    `users_only`) its subscribedSku, group and administrative-unit lines. Returns the number
    of users."""
    if users_only:
        return dump_users(iter_users(config), Path(path))

    def others() -> Iterator[dict[str, Any]]:  # runs once the users are written
        yield from TenantDocument(
            skus=subscribed_skus(config),
            groups=tenant_groups(config),
            administrative_units=tenant_administrative_units(config),
        ).others()

    return dump_users(iter_users(config), Path(path), others())


__all__ = [
    "Outage",
    "RunningSim",
    "SimConfig",
    "TenantDocument",
    "TenantFileError",
    "dump_tenant",
    "generate_user",
    "iter_users",
    "load_tenant",
    "load_tenant_document",
    "load_tenant_file",
    "members_of",
    "run_in_thread",
    "serve",
    "subscribed_skus",
    "tenant_administrative_units",
    "tenant_groups",
    "tenant_id_for_seed",
    "user_id",
]
