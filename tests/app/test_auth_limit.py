"""Which world of the authentication-methods limit a tenant is in, learnt by a dry run's probe:
Graph documents five requests per 10 s per app per tenant, each $batch item counting
(throttling-limits.md, identity and access reports); a tenant may serve far more. The simulated
tenant plays the documented world with `--auth-budget 5` and the generous one by default."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.stack import LocalStack
from tests.e2e.conftest import running_stack

from .test_app import export

USERS = 30


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A tenant held to the documented limit (this module's stack, not the shared one)."""
    with running_stack(
        tmp_path_factory.mktemp("documented"),
        users=USERS,
        seed=5,
        devhosts=0,
        sim_args=["--auth-budget", "5"],
        # Partitions sized to the work, as deployed (the suite's default splits every listing).
        app_env={"USEREXPORT_PARTITION_SECONDS": "10"},
    ) as stack:
        yield stack


async def test_a_dry_run_probes_the_documented_limit_and_plans_one_partition(app):
    job = await export(app, {"dryRun": True})  # the 25 columns: a methods lookup per user
    assert job["status"] == "estimated", job
    shown = job["estimate"]
    assert shown["authenticationRateSource"] == "probed"
    assert shown["authenticationRate"] == 5.0  # Graph served 5 of the probe's 20
    assert shown["bindingLimit"] == "authenticationBudget"
    assert shown["lookupRequests"] == USERS and job["partitions"] == 1
    # USERS lookups at 5 per 10 s: 2 s each, but for the 5 a full bucket serves at once.
    assert (USERS - 5) * 2 <= shown["durationSeconds"] <= USERS * 2 + 15, shown
    # The next plan goes by what the probe taught the instances: no second probe.
    again = await export(app, {"dryRun": True})
    assert again["estimate"]["authenticationRateSource"] == "learnt", again["estimate"]
