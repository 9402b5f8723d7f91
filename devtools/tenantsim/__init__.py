"""tenantsim: a simulated Entra tenant (Graph v1.0 subset + managed identity) on loopback.

Public API: SimConfig, Outage, run_in_thread, serve, RunningSim, generate_user, iter_users,
dump_tenant, load_tenant_file, TenantFileError. See README.md in this directory.
"""

from __future__ import annotations

from pathlib import Path

from .config import SimConfig
from .faults import Outage
from .generator import generate_user, tenant_id_for_seed, user_id
from .server import RunningSim, run_in_thread, serve
from .tenant import iter_users
from .tenantfile import TenantFileError, dump_users, load_tenant_file


def dump_tenant(config: SimConfig, path: Path) -> int:
    """Write the tenant `config` serves as a tenant file; returns the number of users."""
    return dump_users(iter_users(config), Path(path))


__all__ = [
    "Outage",
    "RunningSim",
    "SimConfig",
    "TenantFileError",
    "dump_tenant",
    "generate_user",
    "iter_users",
    "load_tenant_file",
    "run_in_thread",
    "serve",
    "tenant_id_for_seed",
    "user_id",
]
