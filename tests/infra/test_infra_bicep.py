"""Checks infra/ (Bicep + azd) against the code, offline.

The Bicep CLI cannot run here, so every .bicep file is parsed with pycep-parser and the tree is
scanned with checkov, both from the separate virtualenv .venv-infra (checkov pins many
packages). Create it with:

    python3 -m venv .venv-infra && .venv-infra/bin/pip install checkov==3.3.30

(checkov 3.3.30 pins pycep-parser==0.5.1, which it installs.)

Besides the Bicep, it checks what `azd up` does around it: the azd version azure.yaml requires,
the postprovision hook (infra/hooks/), and what .funcignore lets azd upload.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
VENV_INFRA = ROOT / ".venv-infra"
INFRA_PYTHON = VENV_INFRA / "bin" / "python"
CHECKOV = VENV_INFRA / "bin" / "checkov"
CHECKOV_CONFIG = INFRA / ".checkov.yaml"
PYCEP_DUMP = Path(__file__).with_name("pycep_dump.py")
LOCAL_SETTINGS_SAMPLE = ROOT / "local.settings.sample.json"
PIP_COMMAND = "python3 -m venv .venv-infra && .venv-infra/bin/pip install checkov==3.3.30"

for _path in (ROOT, Path(__file__).parent):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bicep_compat import for_pycep  # noqa: E402 - after the path set-up above

from userexport import settings  # noqa: E402

# --- the documented least-privilege role set -------------------------------------------------
# Every role infra/ assigns, per principal, as (scope, role definition id): the scope is the
# `existing` resource of app/rbac.bicep the assignment is made on. A change here is a security
# review. Two storage accounts: the host's (`storage`: host keys and leases, the deployment
# package, the jobs table and queues) and the exports' (`exportsStorage`, its container
# `exportsContainer`): no right on an export is a right on the deployed code.
STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
STORAGE_BLOB_DELEGATOR = "db58b8e5-c6ad-4a2a-8342-4190687cbf4a"
STORAGE_QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
STORAGE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
APP_IDENTITY_ROLES = {
    # Storage Blob Data Owner on the host's account: what Microsoft documents for an
    # identity-based AzureWebJobsStorage (the host creates its containers, takes timer/singleton
    # blob leases, keeps its keys in blobs; Flex Consumption reads the deployment package).
    ("storage", STORAGE_BLOB_DATA_OWNER),
    # Storage Queue Data Contributor: the queue trigger receives, deletes and updates messages
    # and moves them to export-jobs-poison; our code creates the queues and enqueues jobs.
    # (Message Processor + Sender lack update and create.)
    ("storage", STORAGE_QUEUE_DATA_CONTRIBUTOR),
    # Storage Table Data Contributor: the exportjobs table (create, ETag-guarded upserts) and the
    # host's diagnostic events table.
    ("storage", STORAGE_TABLE_DATA_CONTRIBUTOR),
    # Monitoring Metrics Publisher on Application Insights: telemetry with an Entra token,
    # since the component has local (instrumentation key) authentication disabled.
    ("applicationInsights", MONITORING_METRICS_PUBLISHER),
    # Storage Blob Data Contributor on the exports container only: write the CSV blocks, read,
    # list and delete exports.
    ("exportsContainer", STORAGE_BLOB_DATA_CONTRIBUTOR),
    # Storage Blob Delegator on the exports account: Get User Delegation Key, which acts on the
    # account, for the SAS links; a SAS reaches no further than the data roles above.
    ("exportsStorage", STORAGE_BLOB_DELEGATOR),
}
DEPLOYER_ROLES = {
    # Storage Blob Data Contributor, Queue and Table Data Contributor on the host's account: run
    # the app and its host locally against Azure storage, inspect jobs and the poison queue.
    ("storage", STORAGE_BLOB_DATA_CONTRIBUTOR),
    ("storage", STORAGE_QUEUE_DATA_CONTRIBUTOR),
    ("storage", STORAGE_TABLE_DATA_CONTRIBUTOR),
    # Storage Blob Data Contributor on the exports account: read the exports, mint SAS links
    # (includes generateUserDelegationKey); no ownership/ACL rights.
    ("exportsStorage", STORAGE_BLOB_DATA_CONTRIBUTOR),
}
# Microsoft Graph application permissions, name -> app role id (type Application) on the public
# cloud's Graph service principal, assigned to the managed identity. A change here is a security
# review. Sources: microsoftgraph/microsoft-graph-docs-contrib concepts/includes/permissions-ids.md
# (the permissions reference's "All permissions and IDs"), and, for LicenseAssignment.Read.All
# (newer than that table), microsoftgraph/microsoft-graph-devx-content
# permissions/new/ProvisioningInfo.json, the list Graph Explorer and the reference come from.
GRAPH_APP_ROLES = {
    # GET /users: the user listing and every profile column. Without it an export fails.
    "User.Read.All": "df021288-bdef-4463-88db-98f22de89214",
    # /users/{id}/authentication/...: the authentication columns.
    "UserAuthenticationMethod.Read.All": "38d9df27-64da-44fd-b7c5-a6fbac20248f",
    # $select=signInActivity: the sign-in columns (the tenant also needs Entra ID P1/P2).
    "AuditLog.Read.All": "b0afded3-3588-46d8-8b3d-9842eff778da",
    # GET /subscribedSkus: licence names instead of SKU ids in assignedLicenses.
    "LicenseAssignment.Read.All": "e2f98668-2877-4f38-a2f4-8202e0717aa1",
    # GET /groups/{id}/transitiveMembers/microsoft.graph.user: filter.group.
    "GroupMember.Read.All": "98830695-27a2-44f7-8c18-0c3ebc9698f6",
    # GET /directory/administrativeUnits/{id}/members/microsoft.graph.user:
    # filter.administrativeUnit.
    "AdministrativeUnit.Read.All": "134fd756-38ce-4afd-ba33-e9623dbe66c2",
}
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
# The optional permissions follow the export features the deployer keeps: one main.bicep
# parameter each, fed by an azd environment variable, all on by default (every column and filter
# works once granted). User.Read.All has none: no export runs without it.
GRAPH_FEATURE_PARAMETERS = {
    "UserAuthenticationMethod.Read.All": (
        "graphAuthenticationColumns",
        "USEREXPORT_GRAPH_AUTHENTICATION_COLUMNS",
    ),
    "AuditLog.Read.All": ("graphSignInColumns", "USEREXPORT_GRAPH_SIGN_IN_COLUMNS"),
    "LicenseAssignment.Read.All": ("graphLicenceNames", "USEREXPORT_GRAPH_LICENCE_NAMES"),
    "GroupMember.Read.All": ("graphGroupScope", "USEREXPORT_GRAPH_GROUP_SCOPE"),
    "AdministrativeUnit.Read.All": (
        "graphAdministrativeUnitScope",
        "USEREXPORT_GRAPH_ADMINISTRATIVE_UNIT_SCOPE",
    ),
}

# --- the azd that `azd up` needs ----------------------------------------------------------------
# What needs which azd (Azure/azure-dev cli/azd/CHANGELOG.md). azd brings its own Bicep, so the
# Bicep floor is an azd floor. The minimum is the highest of these.
AZD_NEEDS = {
    # Bicep 0.36.1 (first in azd 1.17.0): the Graph extension microsoftgraph/v1.0:1.0.0.
    "Microsoft Graph Bicep extension v1.0:1.0.0": "1.17.0",
    # AZURE_PRINCIPAL_TYPE filled in from 1.17.1; 1.17.2 fixed it for `az` CLI sign-ins.
    "AZURE_PRINCIPAL_TYPE (infra/main.parameters.json)": "1.17.2",
    # .funcignore / .webappignore honoured by the zip packaging (Azure/azure-dev#5383).
    ".funcignore (what the package holds)": "1.18.0",
    # Windows without PowerShell 7: the pwsh hook falls back to Windows PowerShell 5.1 from
    # 1.18.2 on; 1.18.0 and 1.18.1 fail the hook (continueOnError then lets the deploy go on).
    "postprovision hook on Windows without PowerShell 7": "1.18.2",
}
AZD_MINIMUM = "1.18.2"
# Its local preflight check broke on ARM expressions in resource fields; fixed in 1.23.10
# (Azure/azure-dev#7157).
AZD_EXCLUDED = ("1.23.9",)
GRAPH_EXTENSION = "br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:1.0.0"

# --- what azd uploads ----------------------------------------------------------------------------
# All the function app needs in Azure: the remote build installs requirements.txt.
RUNTIME_FILES = {"function_app.py", "host.json", "requirements.txt"}
RUNTIME_PACKAGE = "userexport"
# Paths a developer's machine or CI has and git does not (caches, environments, local state,
# output): none may be uploaded, whether or not this machine has them now.
LOCAL_ONLY_PATHS = [
    ".azure/userexport-prod/.env",
    ".azurite/__azurite_db_blob__.json",
    "__azurite_db_queue__.json",
    "__blobstorage__/x",
    "__queuestorage__/x",
    ".coverage",
    ".coverage.host.1234",
    "coverage.xml",
    "htmlcov/index.html",
    ".DS_Store",
    "userexport/.DS_Store",
    ".env",
    ".env.local",
    ".hypothesis/examples/0a/1b",
    ".idea/workspace.xml",
    ".mypy_cache/3.11/x.json",
    ".pytest_cache/v/cache/nodeids",
    ".python_packages/lib/site-packages/x.py",
    ".ruff_cache/0.1/x",
    ".schemathesis/cassettes.yaml",
    ".tox/py311/x",
    ".venv/pyvenv.cfg",
    ".venv/lib/python3.11/site-packages/azure/functions/__init__.py",
    ".venv-infra/bin/checkov",
    ".vscode/settings.json",
    "venv/pyvenv.cfg",
    "env/pyvenv.cfg",
    # azd's own virtual environment: <name of the repository's folder>_env at the root.
    "main_env/pyvenv.cfg",
    "userexport_env/lib/python3.11/site-packages/azure/functions/__init__.py",
    "build/lib/userexport/api.py",
    "dist/userexport-0.1.0-py3-none-any.whl",
    "userexport.egg-info/PKG-INFO",
    "local.settings.json",
    "node_modules/azurite/package.json",
    "out/users.csv",
    "out/logs/host.log",
    "bench/results.json",
    "tests/__pycache__/x.cpython-311.pyc",
    "userexport/__pycache__/api.cpython-311.pyc",
    "userexport/functions/__pycache__/worker.cpython-312.pyc",
    "userexport/api.pyc",
]

# App settings the platform/host reads, which the code does not (so not in APP_SETTINGS).
HOST_APP_SETTINGS = {
    "APPLICATIONINSIGHTS_CONNECTION_STRING",  # where the host and worker send telemetry
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",  # Entra auth for it (local auth is off)
}
# Keys a local.settings.json may hold besides APP_SETTINGS: Core Tools' own.
LOCAL_HOST_KEYS = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsFeatureFlags"}
# App settings Flex Consumption deprecates (runtime, scale, deployment and networking moved to
# functionAppConfig and the plan). Source: Microsoft Learn, "App settings reference for Azure
# Functions", section "Flex Consumption plan deprecations" (functions-app-settings.md).
FLEX_FORBIDDEN_SETTINGS = {
    "ENABLE_ORYX_BUILD",
    "FUNCTIONS_EXTENSION_VERSION",
    "FUNCTIONS_MAX_HTTP_CONCURRENCY",
    "FUNCTIONS_WORKER_DYNAMIC_CONCURRENCY_ENABLED",
    "FUNCTIONS_WORKER_PROCESS_COUNT",
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_WORKER_RUNTIME_VERSION",
    "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTOVERVNET",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_DNS_SERVER",
    "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
    "WEBSITE_NODE_DEFAULT_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_SKIP_CONTENTSHARE_VALIDATION",
    "WEBSITE_VNET_ROUTE_ALL",
    # Not in that table, but ignored on Flex Consumption (schedules are UTC, docs/deploy.md).
    "WEBSITE_TIME_ZONE",
}
# Site and siteConfig properties Flex Consumption sites refuse: ARM answers 400, ExtendedCode
# 51021, "The following list of N site configuration properties (Site.SiteConfig.X, ...) for
# Flex Consumption sites is invalid. Please remove or rename them before retrying." Some regions
# enforce it and others do not yet, so a template that deployed once proves nothing. Sources:
# - ARM 51021 texts quoted in: microsoft/azure-pipelines-tasks#21032 (FtpsState,
#   Use32BitWorkerProcess, NetFrameworkVersion, FunctionsRuntimeScaleMonitoringEnabled);
#   Microsoft Q&A 2277522 as quoted in Azure/terraform-azurerm-avm-res-web-site#360 (the same
#   plus PreWarmedInstanceCount); Azure/terraform-azurerm-avm-res-web-site#283 (LinuxFxVersion);
#   Azure/azure-functions-host#10643 (FunctionAppScaleLimit).
# - Microsoft Learn, functions-app-settings.md, "Flex Consumption plan deprecations": alwaysOn,
#   containerSize, ftpsState, isReserved, IsXenon, javaVersion, LinuxFxVersion,
#   netFrameworkVersion, powerShellVersion, functionAppScaleLimit, preWarmedInstanceCount,
#   use32BitWorkerProcess, vnetBackupRestoreEnabled, vnetContentShareEnabled,
#   vnetImagePullEnabled, vnetRouteAllEnabled, windowsFxVersion.
# - Azure/terraform-azurerm-avm-res-web-site#345, which stops sending these for FC1 sites.
#   Microsoft's Flex samples (Azure-Samples/functions-quickstart-python-http-azd,
#   Azure-Samples/azure-functions-flex-consumption-samples IaC/bicep) send none of them.
# Left out for mixed evidence: minimumElasticInstanceCount (terraform-azurerm-avm-res-web-site#353).
# Matched case-insensitively, as ARM does.
FLEX_REJECTED_SITE_PROPERTIES = {
    "alwaysOn",
    "containerSize",
    "ftpsState",
    "functionAppScaleLimit",
    "functionsRuntimeScaleMonitoringEnabled",
    "isReserved",
    "isXenon",
    "javaVersion",
    "linuxFxVersion",
    "netFrameworkVersion",
    "powerShellVersion",
    "preWarmedInstanceCount",
    "use32BitWorkerProcess",
    "vnetBackupRestoreEnabled",
    "vnetContentShareEnabled",
    "vnetImagePullEnabled",
    "vnetRouteAllEnabled",
    "windowsFxVersion",
}
# main.bicep parameter that feeds each tunable setting; its default must be the code's.
SETTING_PARAMETERS = {
    "USEREXPORT_NIGHTLY_SCHEDULE": "nightlySchedule",
    "USEREXPORT_SAS_LIFETIME_MINUTES": "sasLifetimeMinutes",
    "USEREXPORT_TIME_BUDGET_SECONDS": "timeBudgetSeconds",
    "USEREXPORT_PARTITIONS": "partitions",
    "USEREXPORT_SMALL_TENANT_USERS": "smallTenantUsers",
    "USEREXPORT_PARTITION_SECONDS": "partitionSeconds",
    "USEREXPORT_STATUS_RETRY_AFTER_SECONDS": "statusRetryAfterSeconds",
    "USEREXPORT_LEASE_GRACE_SECONDS": "leaseGraceSeconds",
    "USEREXPORT_FAILURE_CAP_MINUTES": "failureCapMinutes",
    "USEREXPORT_STALL_MINUTES": "stallMinutes",
    "USEREXPORT_MAX_RUNNING_EXPORTS": "maxRunningExports",
    "USEREXPORT_MAX_QUEUED_EXPORTS": "maxQueuedExports",
    "USEREXPORT_ADMISSION_SECONDS": "admissionSeconds",
    "USEREXPORT_GRAPH_BASE_URL": "graphBaseUrl",
}

# main.bicep parameters it passes to app/api.bicep through a checking variable (fail() on a bad
# value) rather than as they are.
CHECKED_PARAMETERS = {"graphBaseUrl": "checkedGraphBaseUrl"}

BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
ROLE_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _require_venv_infra() -> None:
    if not INFRA_PYTHON.exists() or not CHECKOV.exists():
        pytest.fail(
            f"{VENV_INFRA} is missing (or has no checkov). The infra tests parse and scan the "
            f"Bicep with tools kept out of the app's virtualenv; create it from {ROOT} with:\n"
            f"    {PIP_COMMAND}",
            pytrace=False,
        )


def _run(cmd: list[str], cwd: Path, timeout: int = 180) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "BC_SKIP_MAPPING": "TRUE",  # no call to the vendor's API for check metadata
        "CKV_SKIP_PACKAGE_UPDATE_CHECK": "TRUE",  # no version look-up
    }
    return subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def trees() -> dict[str, dict[str, Any]]:
    """pycep trees of every .bicep file under infra/, keyed by path relative to infra/."""
    _require_venv_infra()
    assert BICEP_FILES, f"no .bicep files under {INFRA}"
    proc = _run([str(INFRA_PYTHON), str(PYCEP_DUMP), *map(str, BICEP_FILES)], cwd=ROOT)
    assert proc.returncode == 0, f"pycep_dump.py failed:\n{proc.stderr[-3000:]}"
    raw = json.loads(proc.stdout)
    return {Path(p).relative_to(INFRA).as_posix(): tree for p, tree in raw.items()}


def _tree(trees: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    tree = trees[name]
    assert "error" not in tree, f"{name} did not parse: {tree.get('error')}"
    return tree


def _body(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource's or module's body, without the `if (...)` / `for` wrapper pycep adds."""
    config = resource["config"]
    if "config" in config and ("condition" in config or "loop_type" in config):
        return config["config"]
    return config


def _resources(trees: dict[str, dict[str, Any]], rtype: str) -> list[tuple[str, str, dict]]:
    found = []
    for path, tree in trees.items():
        for name, resource in (tree.get("resources") or {}).items():
            if resource.get("type") == rtype:
                found.append((path, name, resource))
    return found


def _code_app_settings() -> set[str]:
    return set(settings.APP_SETTINGS) - set(settings.LOCAL_ONLY_SETTINGS)


def _declared_sites(trees: dict[str, dict[str, Any]]) -> list[tuple[str, str, dict]]:
    """The Microsoft.Web/sites infra/ deploys (not the `existing` references to it)."""
    return [s for s in _resources(trees, "Microsoft.Web/sites") if not s[2].get("existing")]


def _app_setting_entries(tree: dict[str, Any], expression: Any) -> list[tuple[dict, str | None]]:
    """The {name, value} entries of a siteConfig.appSettings expression, each with the
    condition it is set under (None: always). Understands a plain array, concat() of arrays and
    variables, and a variable `cond ? [entries] : []`."""
    if isinstance(expression, list):
        return [(entry, None) for entry in expression]
    if isinstance(expression, str) and expression in (tree.get("variables") or {}):
        return _app_setting_entries(tree, tree["variables"][expression]["value"])
    function = expression.get("function", {}) if isinstance(expression, dict) else {}
    if function.get("type") == "concat":
        return [
            entry
            for argument in function["parameters"].values()
            for entry in _app_setting_entries(tree, argument)
        ]
    operator = expression.get("operator", {}) if isinstance(expression, dict) else {}
    if operator.get("type") == "conditional":
        operands = operator["operands"]
        condition = operands["condition"]
        assert isinstance(condition, str), f"app settings under a complex condition: {condition}"
        assert operands["false_value"] == [], "a conditional app setting has no else branch"
        return [
            (entry, condition) for entry, _ in _app_setting_entries(tree, operands["true_value"])
        ]
    raise AssertionError(f"siteConfig.appSettings not understood: {json.dumps(expression)[:300]}")


def _conditional_app_settings(trees: dict[str, dict[str, Any]]) -> dict[str, tuple[str, Any]]:
    """App settings infra/ sets only under a condition: {name: (condition, value)}."""
    result = {}
    for path, _, site in _declared_sites(trees):
        site_config = _body(site).get("properties", {}).get("siteConfig", {})
        for entry, condition in _app_setting_entries(trees[path], site_config.get("appSettings")):
            if condition is not None:
                result[entry["name"]] = (condition, entry["value"])
    return result


def _bicep_app_settings(trees: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every app setting infra/ sets: siteConfig.appSettings (conditional ones included) and
    sites/config 'appsettings'."""
    result: dict[str, Any] = {}
    sites = _declared_sites(trees)
    assert len(sites) == 1, f"expected one Microsoft.Web/sites, found {[s[:2] for s in sites]}"
    for path, _, site in sites:
        site_config = _body(site).get("properties", {}).get("siteConfig", {})
        for entry, _ in _app_setting_entries(trees[path], site_config.get("appSettings", [])):
            assert entry["name"] not in result, f"app setting {entry['name']} set twice"
            result[entry["name"]] = entry["value"]
    for _, _, config in _resources(trees, "Microsoft.Web/sites/config"):
        body = _body(config)
        if body.get("name") == "appsettings":
            for key, value in (body.get("properties") or {}).items():
                assert key not in result, f"app setting {key} set twice"
                result[key] = value
    return result


# --- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [p.relative_to(INFRA).as_posix() for p in BICEP_FILES])
def test_every_bicep_file_parses(trees: dict[str, dict[str, Any]], path: str) -> None:
    assert "error" not in trees[path], f"infra/{path} does not parse: {trees[path]['error']}"


def test_graph_extension_is_declared_and_configured() -> None:
    text = (INFRA / "app" / "graph-permissions.bicep").read_text()
    assert re.search(r"^extension microsoftGraphV1\s*$", text, re.MULTILINE)
    config = json.loads((INFRA / "bicepconfig.json").read_text())
    assert config["extensions"]["microsoftGraphV1"].startswith(
        "br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:"
    )
    others = [
        p
        for p in BICEP_FILES
        if p.name != "graph-permissions.bicep"
        and re.search(r"^\s*extension\s", p.read_text(), re.M)
    ]
    assert not others, f"only graph-permissions.bicep should use an extension: {others}"


# --- checkov -------------------------------------------------------------------------------


def _checkov(tmp_path: Path, *, with_config: bool) -> dict[str, Any]:
    _require_venv_infra()
    copy = tmp_path / ("with-config" if with_config else "no-config") / "infra"
    shutil.copytree(INFRA, copy, ignore=shutil.ignore_patterns(".checkov.yaml"))
    for path in copy.rglob("*.bicep"):  # checkov's pycep knows neither `extension` nor fail()
        text = for_pycep(path.read_text())
        if not with_config:  # what the inline skips hide, too
            text = INLINE_SKIP.sub("//", text)
        path.write_text(text)
    cmd = [str(CHECKOV), "-d", str(copy), "--framework", "bicep", "--skip-download"]
    cmd += ["--quiet", "--compact", "-o", "json"]
    if with_config:
        cmd += ["--config-file", str(CHECKOV_CONFIG)]
    proc = _run(cmd, cwd=copy.parent)  # cwd holds no .checkov.yaml to pick up by itself
    assert proc.returncode in (0, 1), f"checkov crashed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    bicep = [r for r in reports if r.get("check_type") == "bicep"]
    assert bicep, f"checkov produced no bicep report: {proc.stdout[:2000]}"
    result = bicep[0]
    assert result["summary"]["parsing_errors"] == 0, f"checkov parsing errors: {result}"
    assert result["summary"]["resource_count"] > 0, "checkov scanned no resources"
    return result


# A skip on one resource: `// checkov:skip=CKV_ID: reason`, inside the resource's body.
INLINE_SKIP = re.compile(r"//\s*checkov:skip=(CKV\w+):?(.*)$", re.MULTILINE)


def _inline_skips() -> dict[str, str]:
    """CKV ids skipped inline in infra/'s .bicep files (path: id), each with its reason."""
    return {
        f"{path.relative_to(INFRA)}: {m.group(1)}": m.group(2).strip()
        for path in BICEP_FILES
        for m in INLINE_SKIP.finditer(path.read_text())
    }


def _skipped_in_config() -> dict[str, str]:
    """CKV ids in infra/.checkov.yaml's skip-check, each with the comment lines above it."""
    skips: dict[str, str] = {}
    comment: list[str] = []
    in_skip = False
    for line in CHECKOV_CONFIG.read_text().splitlines():
        stripped = line.strip()
        if re.match(r"^[\w-]+:", line):
            in_skip = line.startswith("skip-check:")
            comment = []
        elif in_skip and stripped.startswith("#"):
            comment.append(stripped.lstrip("# ").strip())
        elif in_skip and stripped.startswith("-"):
            check_id = stripped.lstrip("- ").split("#")[0].strip()
            inline = stripped.split("#", 1)[1].strip() if "#" in stripped else ""
            skips[check_id] = " ".join([*comment, inline]).strip()
            comment = []
    return skips


def test_checkov_passes_with_checked_in_config(tmp_path: Path) -> None:
    result = _checkov(tmp_path, with_config=True)
    failed = [
        f"{c['check_id']} {c['check_name']} ({c['file_path']} {c['resource']})"
        for c in result["results"]["failed_checks"]
    ]
    assert not failed, "checkov failed checks:\n" + "\n".join(failed)


def test_checkov_skips_are_justified_and_current(tmp_path: Path) -> None:
    skips = _skipped_in_config()
    assert skips, "infra/.checkov.yaml skips nothing: then drop skip-check altogether"
    unjustified = [cid for cid, why in skips.items() if len(why) < 20]
    assert not unjustified, f"skips without a reason comment in infra/.checkov.yaml: {unjustified}"
    inline = _inline_skips()
    unjustified = [skip for skip, why in inline.items() if len(why) < 20]
    assert not unjustified, f"inline checkov skips without a reason: {unjustified}"
    result = _checkov(tmp_path, with_config=False)
    failing = {c["check_id"] for c in result["results"]["failed_checks"]}
    stale = sorted(set(skips) - failing)
    assert not stale, f"infra/.checkov.yaml skips checks that no longer fail: {stale}"
    failing_at = {
        f"{c['file_path'].lstrip('/')}: {c['check_id']}" for c in result["results"]["failed_checks"]
    }
    stale = sorted(set(inline) - failing_at)
    assert not stale, f"inline checkov skips of checks that no longer fail there: {stale}"


# --- app settings --------------------------------------------------------------------------


def test_bicep_app_settings_are_exactly_what_the_code_reads(trees: dict[str, dict]) -> None:
    bicep = set(_bicep_app_settings(trees))
    code = _code_app_settings()
    missing = sorted(code - bicep)
    extra = sorted(bicep - code - HOST_APP_SETTINGS)
    assert not missing, f"app settings the code reads but infra/ does not set: {missing}"
    assert not extra, f"app settings infra/ sets but the code does not read: {extra}"
    assert HOST_APP_SETTINGS <= bicep, f"missing host settings: {HOST_APP_SETTINGS - bicep}"
    local_only = sorted(bicep & set(settings.LOCAL_ONLY_SETTINGS))
    assert not local_only, f"local-only settings (connection strings) in infra/: {local_only}"
    forbidden = sorted(bicep & FLEX_FORBIDDEN_SETTINGS)
    assert not forbidden, f"settings Flex Consumption rejects: {forbidden}"


def test_identity_based_app_setting_values(trees: dict[str, dict]) -> None:
    values = _bicep_app_settings(trees)
    assert values["AzureWebJobsStorage__credential"] == "managedidentity"
    assert values["USEREXPORT_CREDENTIAL"] == "managedidentity"
    # Both name the user-assigned identity's client id (api.bicep parameter).
    assert values["AZURE_CLIENT_ID"] == "identityClientId"
    assert values["AzureWebJobsStorage__clientId"] == "identityClientId"
    assert (
        values["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
        == "ClientId=${identityClientId};Authorization=AAD"
    )
    for kind in ("blob", "queue", "table"):
        value = json.dumps(values[f"AzureWebJobsStorage__{kind}ServiceUri"])
        assert "primaryEndpoints" in value and f'"{kind}"' in value, value
    text = (INFRA / "app" / "api.bicep").read_text()
    assert "listKeys" not in text and "AccountKey" not in text, "no storage keys in app settings"


def test_setting_parameters_default_to_the_codes_defaults(trees: dict[str, dict]) -> None:
    main = _tree(trees, "main.bicep")
    values = _bicep_app_settings(trees)
    api_params = _body(main["modules"]["api"])["params"]
    for setting, param in SETTING_PARAMETERS.items():
        assert setting in settings.APP_SETTINGS, f"{setting} is no longer in APP_SETTINGS"
        default = main["parameters"][param]["default"]
        assert str(default) == settings.APP_SETTINGS[setting], (
            f"main.bicep param {param} defaults to {default!r}, "
            f"userexport/settings.py to {settings.APP_SETTINGS[setting]!r}"
        )
        passed = CHECKED_PARAMETERS.get(param, param)
        assert api_params[param] == passed, f"main.bicep does not pass {passed} to app/api.bicep"
        if passed != param:
            assert param in json.dumps(main["variables"][passed]), f"{passed} ignores {param}"
        assert param in json.dumps(values[setting]), f"{setting} is not fed by {param}"


def test_local_settings_sample_matches_the_code() -> None:
    if not LOCAL_SETTINGS_SAMPLE.exists():
        pytest.fail(f"{LOCAL_SETTINGS_SAMPLE.name} is missing at the repo root", pytrace=False)
    sample = json.loads(LOCAL_SETTINGS_SAMPLE.read_text())
    keys = set(sample["Values"])
    expected = set(settings.APP_SETTINGS)
    missing = sorted(expected - keys)
    extra = sorted(keys - expected - LOCAL_HOST_KEYS)
    assert not missing, f"{LOCAL_SETTINGS_SAMPLE.name} lacks app settings: {missing}"
    assert not extra, f"{LOCAL_SETTINGS_SAMPLE.name} has settings the code does not read: {extra}"
    assert sample["Values"].get("FUNCTIONS_WORKER_RUNTIME") == "python"


# --- Flex Consumption: nothing it refuses --------------------------------------------------


def _flex_rejected_keys(text: str) -> list[str]:
    """FLEX_REJECTED_SITE_PROPERTIES set as object keys anywhere in a Bicep text (case-blind).

    Keys begin a line or follow `{` / `,` (one-line objects), quoted or not; comments and string
    values are not keys."""
    names = "|".join(sorted(FLEX_REJECTED_SITE_PROPERTIES))
    key = re.compile(rf"(?:^|[{{,])[ \t]*'?({names})'?[ \t]*:", re.IGNORECASE | re.MULTILINE)
    return sorted({m.group(1) for m in key.finditer(text)})


def test_no_site_property_flex_consumption_rejects(trees: dict[str, dict]) -> None:
    plans = [_body(r)["sku"] for _, _, r in _resources(trees, "Microsoft.Web/serverfarms")]
    assert plans == [{"name": "FC1", "tier": "FlexConsumption"}], "every site here is Flex"
    rejected = {name.lower() for name in FLEX_REJECTED_SITE_PROPERTIES}
    found: list[str] = []
    # Parsed: the site's properties, its siteConfig and any sites/config 'web' resource.
    for path, name, site in _resources(trees, "Microsoft.Web/sites"):
        props = _body(site).get("properties") or {}
        for scope, keys in (("properties", props), ("siteConfig", props.get("siteConfig") or {})):
            found += [f"{path} {name} {scope}.{k}" for k in keys if k.lower() in rejected]
    for path, name, config in _resources(trees, "Microsoft.Web/sites/config"):
        body = _body(config)
        if body.get("name") == "web":
            found += [f"{path} {name} web.{k}" for k in body.get("properties") or {}]
    # Textual, for objects the parse tree hides (variables, union(), one-line objects).
    for path in BICEP_FILES:
        found += [f"{path.relative_to(INFRA)}: {k}" for k in _flex_rejected_keys(path.read_text())]
    assert not found, (
        "Flex Consumption refuses these site properties (ARM error 51021; list and sources at "
        f"FLEX_REJECTED_SITE_PROPERTIES): {found}"
    )


@pytest.mark.parametrize("prop", sorted(FLEX_REJECTED_SITE_PROPERTIES))
def test_flex_rejected_property_scan_sees_every_spelling(prop: str) -> None:
    block = f"siteConfig: {{\n  minTlsVersion: '1.2'\n  {prop}: false\n}}\n"
    assert _flex_rejected_keys(block) == [prop]
    assert _flex_rejected_keys(f"x: union(a, {{ {prop.upper()}: 1 }})") == [prop.upper()]
    assert _flex_rejected_keys(f"o: {{ a: 1, '{prop}': 2 }}") == [prop]
    assert _flex_rejected_keys(f"// {prop}: no, a comment\nname: '{prop}: value'\n") == []


def test_basic_auth_publishing_is_off(trees: dict[str, dict]) -> None:
    """What keeps FTP off now that siteConfig.ftpsState cannot (.checkov.yaml, CKV_AZURE_78)."""
    policies = {
        _body(r)["name"]: _body(r)["properties"]
        for _, _, r in _resources(trees, "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    }
    assert policies == {"ftp": {"allow": False}, "scm": {"allow": False}}, policies


# --- roles ---------------------------------------------------------------------------------


def _role_assignments(trees: dict[str, dict]) -> dict[str, set[tuple[str, str]]]:
    """principalId expression -> (scope, role definition id) assigned to it, across infra/."""
    by_principal: dict[str, set[tuple[str, str]]] = {}
    for path, name, resource in _resources(trees, "Microsoft.Authorization/roleAssignments"):
        variables = trees[path].get("variables") or {}
        body = _body(resource)
        props = body["properties"]
        role = props["roleDefinitionId"]["function"]
        assert role["type"] == "subscription_resource_id", role
        ref = role["parameters"]["resource_name_1"]
        role_id = variables[ref]["value"] if ref in variables else ref
        assert ROLE_GUID.fullmatch(role_id), f"{path}: role id {role_id!r} is not a literal GUID"
        scope = body.get("scope")
        assert isinstance(scope, str), f"{path} {name}: no scope, or not a resource: {scope}"
        assert trees[path]["resources"][scope].get("existing"), f"{path} {name}: scope {scope}"
        by_principal.setdefault(props["principalId"], set()).add((scope, role_id))
    return by_principal


def test_role_assignments_are_the_documented_least_privilege_set(trees: dict[str, dict]) -> None:
    assigned = _role_assignments(trees)
    assert set(assigned) == {"identityPrincipalId", "principalId"}, assigned
    assert assigned["identityPrincipalId"] == APP_IDENTITY_ROLES
    assert assigned["principalId"] == DEPLOYER_ROLES
    # Every role id written anywhere in infra/ is one of those (no stray assignment).
    known = {role for _, role in APP_IDENTITY_ROLES | DEPLOYER_ROLES}
    for path in BICEP_FILES:
        for match in re.finditer(r"roleDefinitions'\s*,\s*'([^']+)'", path.read_text()):
            assert match.group(1) in known, (path, match.group(1))
    # The scopes are what their names say: the host's account, the exports' account and its
    # container, passed in by main.bicep from the two storage modules.
    rbac = _tree(trees, "app/rbac.bicep")
    resources = rbac["resources"]
    assert resources["storage"]["type"] == "Microsoft.Storage/storageAccounts"
    assert _body(resources["storage"])["name"] == "storageAccountName"
    assert resources["exportsStorage"]["type"] == "Microsoft.Storage/storageAccounts"
    assert _body(resources["exportsStorage"])["name"] == "exportsStorageAccountName"
    container = resources["exportsContainer"]
    assert container["type"] == "Microsoft.Storage/storageAccounts/blobServices/containers"
    assert _body(container)["name"] == "exportsContainerName"
    service = _body(resources[_body(container)["parent"]])
    assert service["parent"] == "exportsStorage" and service["name"] == "default"
    params = _body(_tree(trees, "main.bicep")["modules"]["rbac"])["params"]
    assert _module_output(params["storageAccountName"]) == ("storage", "name")
    assert _module_output(params["exportsStorageAccountName"]) == ("exportsStorage", "name")
    assert _module_output(params["exportsContainerName"]) == ("exportsStorage", "containerName")
    exports = _tree(trees, "app/exports-storage.bicep")
    assert exports["outputs"]["containerName"]["value"] == {
        "operator": {
            "type": "property_accessor",
            "operands": {"operand_1": "exportsContainer", "operand_2": "name"},
        }
    }


def _module_output(expression: Any) -> tuple[str, str] | None:
    """(module, output) of a `module.outputs.output` expression as pycep parses it."""
    try:
        operands = expression["operator"]["operands"]
        inner = operands["operand_2"]["operator"]["operands"]
    except (KeyError, TypeError):
        return None
    if inner["operand_1"] != "outputs" or not isinstance(inner["operand_2"], str):
        return None
    return operands["operand_1"], inner["operand_2"]


def test_deployer_roles_are_optional(trees: dict[str, dict]) -> None:
    rbac = _tree(trees, "app/rbac.bicep")
    for name, resource in rbac["resources"].items():
        if resource["type"] != "Microsoft.Authorization/roleAssignments":
            continue
        body = _body(resource)
        if body["properties"]["principalId"] == "principalId":
            assert resource["config"].get("condition") == "grantDeployer", name
    main = _tree(trees, "main.bicep")
    assert main["parameters"]["grantDeployerDataAccess"]["type"] == "bool"
    assert main["parameters"]["grantDeployerDataAccess"]["default"] is False


def test_graph_app_roles(trees: dict[str, dict]) -> None:
    graph = _tree(trees, "app/graph-permissions.bicep")
    sps = {
        name: r
        for name, r in graph["resources"].items()
        if r["type"] == "Microsoft.Graph/servicePrincipals"
    }
    assert len(sps) == 1 and all(r["existing"] for r in sps.values()), sps
    assert graph["variables"]["graphAppId"]["value"] == GRAPH_APP_ID
    # The permissions by name, each with Microsoft's id for it (GRAPH_APP_ROLES's sources);
    # pycep keeps the quotes of the object's keys.
    roles = graph["variables"]["graphAppRoles"]["value"]
    assert {key.strip("'"): value for key, value in roles.items()} == GRAPH_APP_ROLES
    for role_id in GRAPH_APP_ROLES.values():
        assert ROLE_GUID.fullmatch(role_id), role_id
    assigned = _resources(trees, "Microsoft.Graph/appRoleAssignedTo")
    assert {p for p, _, _ in assigned} == {"app/graph-permissions.bicep"}
    granted: dict[str, str] = {}
    for _, name, resource in assigned:
        body = _body(resource)
        assert body["principalId"] == "identityPrincipalId", name
        assert body["resourceId"] == {
            "operator": {
                "type": "property_accessor",
                "operands": {"operand_1": next(iter(sps)), "operand_2": "id"},
            }
        }, name
        role = body["appRoleId"]["operator"]
        assert role["type"] == "index_accessor", name
        assert role["operands"]["operand_1"] == "graphAppRoles", name
        permission = role["operands"]["operand_2"].strip("'")
        assert permission not in granted, f"{permission} granted twice ({granted[permission]})"
        granted[permission] = name
        # User.Read.All always (beyond the module's own condition); every other one only when
        # main.bicep asks for it by name.
        condition = resource["config"].get("condition")
        if permission == "User.Read.All":
            assert condition is None, f"{name}: User.Read.All is always granted"
        else:
            assert condition == {
                "function": {
                    "type": "contains",
                    "parameters": {
                        "container": "optionalPermissions",
                        "item_to_find": permission,
                    },
                }
            }, f"{name}: granted whatever the features: {condition}"
    assert set(granted) == set(GRAPH_APP_ROLES), "every permission granted, each once"
    # The module's output lists the grants by name (what azd shows after a deployment).
    output = graph["outputs"]["grantedPermissions"]["value"]["function"]
    assert output["type"] == "concat", output
    assert list(output["parameters"].values()) == [["User.Read.All"], "optionalPermissions"]
    main = _tree(trees, "main.bicep")
    module = main["modules"]["graphPermissions"]
    assert module["config"]["condition"] == "grantGraph"
    assert module["config"]["config"]["params"]["optionalPermissions"] == (
        "graphOptionalPermissions"
    )
    # Last in the deployment: time for the new service principal to replicate (#193 upstream).
    assert module["config"]["config"]["dependsOn"] == ["api"]
    assert main["outputs"]["USEREXPORT_GRAPH_PERMISSIONS_GRANTED"]["value"] == "grantGraph"


def _graph_optional_permissions(main: dict[str, Any], on: set[str]) -> list[str]:
    """graphOptionalPermissions (main.bicep) evaluated with the parameters in `on` true."""
    expression = main["variables"]["graphOptionalPermissions"]["value"]["function"]
    assert expression["type"] == "concat", expression
    result = []
    for argument in expression["parameters"].values():
        operands = argument["operator"]["operands"]
        assert argument["operator"]["type"] == "conditional" and operands["false_value"] == []
        if operands["condition"] in on:
            result += operands["true_value"]
    return result


def test_graph_permissions_follow_the_features(trees: dict[str, dict]) -> None:
    """One parameter per optional permission, on by default, each adding exactly its own
    permission to the grant and to what the postprovision hook prints."""
    assert set(GRAPH_FEATURE_PARAMETERS) == set(GRAPH_APP_ROLES) - {"User.Read.All"}
    main = _tree(trees, "main.bicep")
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    for permission, (param, env) in GRAPH_FEATURE_PARAMETERS.items():
        declared = main["parameters"][param]
        assert declared["type"] == "bool" and declared["default"] is True, (param, declared)
        assert parameters[param]["value"] == f"${{{env}=true}}", param
        # Alone, it asks for its permission and no other.
        assert _graph_optional_permissions(main, {param}) == [permission], param
    every = {param for param, _ in GRAPH_FEATURE_PARAMETERS.values()}
    assert _graph_optional_permissions(main, every) == list(GRAPH_APP_ROLES)[1:]
    assert _graph_optional_permissions(main, set()) == []
    names = main["variables"]["graphPermissionNames"]["value"]["function"]
    assert list(names["parameters"].values()) == [["User.Read.All"], "graphOptionalPermissions"]
    output = main["outputs"]["USEREXPORT_GRAPH_PERMISSIONS"]["value"]["function"]
    assert output["parameters"] == {"input_array": "graphPermissionNames", "delimiter": " "}


def test_postprovision_hook_prints_only_the_permissions_asked_for() -> None:
    asked = "User.Read.All AuditLog.Read.All"
    for granted in ("false", "true"):
        env = {**_hook_env("https://graph.microsoft.com/v1.0", granted)}
        out = _run_hook_sh({**env, "USEREXPORT_GRAPH_PERMISSIONS": asked})
        listed = re.findall(r"^  ([\w.]+) +\((.+)\)$", out, re.MULTILINE)
        assert [name for name, _ in listed] == asked.split(), out
        for permission in set(GRAPH_APP_ROLES) - set(asked.split()):
            assert permission not in out, f"{permission} printed though turned off:\n{out}"
        if granted == "false":
            az, ps = _permissions_in_commands(out)
            assert az == ps == asked.split(), (az, ps)


def test_graph_grant_is_off_unless_asked_for(trees: dict[str, dict]) -> None:
    main = _tree(trees, "main.bicep")
    param = main["parameters"]["grantGraphPermissions"]
    assert param["type"] == "bool" and param["default"] is False, param
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    grant = parameters["grantGraphPermissions"]["value"]
    assert grant == "${USEREXPORT_GRANT_GRAPH_PERMISSIONS=false}", grant


def _bicep_var(name: str) -> str:
    """The one-line expression of a main.bicep variable, as written."""
    text = (INFRA / "main.bicep").read_text()
    match = re.search(rf"^var {name} = (.+)$", text, re.MULTILINE)
    assert match, f"main.bicep has no one-line var {name}"
    return match.group(1)


def test_graph_grant_and_endpoint_follow_the_cloud() -> None:
    """The Graph Bicep extension exists in the public cloud only, and a national cloud's managed
    identity cannot get tokens for the public cloud's Graph: both refused with fail()."""
    assert _bicep_var("azureIsPublicCloud") == "environment().name == 'AzureCloud'"
    public = _bicep_var("graphIsPublicCloud")
    assert "toLower(graphBaseUrl) == 'https://graph.microsoft.com'" in public, public
    assert "startsWith(toLower(graphBaseUrl), 'https://graph.microsoft.com/')" in public, public
    grant = _bicep_var("grantGraph")
    assert grant.startswith(
        "grantGraphPermissions ? ((azureIsPublicCloud && graphIsPublicCloud) ? true : fail('"
    ), grant
    assert grant.endswith(") : false"), grant
    assert "USEREXPORT_GRANT_GRAPH_PERMISSIONS false" in grant, "the message says what to do"
    checked = _bicep_var("checkedGraphBaseUrl")
    assert checked.startswith("(graphIsPublicCloud && !azureIsPublicCloud) ? fail('"), checked
    assert checked.endswith(") : graphBaseUrl"), checked
    assert "USEREXPORT_GRAPH_BASE_URL" in checked, "the message names the setting"
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    default = settings.APP_SETTINGS["USEREXPORT_GRAPH_BASE_URL"]
    assert parameters["graphBaseUrl"]["value"] == f"${{USEREXPORT_GRAPH_BASE_URL={default}}}"


# --- resources -----------------------------------------------------------------------------


def _assert_locked_down(account: dict[str, Any]) -> None:
    assert account["allowSharedKeyAccess"] is False
    assert account["allowBlobPublicAccess"] is False
    assert account["minimumTlsVersion"] == "TLS1_2"
    assert account["supportsHttpsTrafficOnly"] is True


def _containers(tree: dict[str, Any]) -> dict[str, dict]:
    return {
        _body(r)["name"]: _body(r)
        for r in tree["resources"].values()
        if r["type"] == "Microsoft.Storage/storageAccounts/blobServices/containers"
    }


def test_host_storage_account_is_locked_down_and_holds_the_hosts_resources(trees: dict) -> None:
    """The host's account: host keys and leases, the deployment package, the jobs table and
    queues (AzureWebJobsStorage__*, the code's TableServiceClient and QueueClients); no exports."""
    storage = _tree(trees, "app/storage.bicep")
    _assert_locked_down(_body(storage["resources"]["storage"])["properties"])
    variables = {k: v["value"] for k, v in storage["variables"].items()}
    assert variables["jobsTableName"] == settings.JOBS_TABLE
    assert variables["queueNames"] == [settings.JOBS_QUEUE, settings.POISON_QUEUE]
    containers = _containers(storage)
    assert set(containers) == {"deploymentContainerName"}, "the exports are not on this account"
    assert all(c["properties"]["publicAccess"] == "None" for c in containers.values())
    text = (INFRA / "app" / "storage.bicep").read_text()
    assert f"'{settings.EXPORTS_CONTAINER}'" not in text, "no exports container here"
    kinds = {r["type"] for r in storage["resources"].values()}
    assert "Microsoft.Storage/storageAccounts/managementPolicies" not in kinds


def test_exports_storage_account_is_its_own_and_locked_down(trees: dict) -> None:
    exports = _tree(trees, "app/exports-storage.bicep")
    account = _body(exports["resources"]["exportsStorage"])
    _assert_locked_down(account["properties"])
    variables = {k: v["value"] for k, v in exports["variables"].items()}
    assert variables["exportsContainerName"] == settings.EXPORTS_CONTAINER
    containers = _containers(exports)
    assert set(containers) == {"exportsContainerName"}, containers
    assert containers["exportsContainerName"]["properties"]["publicAccess"] == "None"
    rule = _body(exports["resources"]["lifecycle"])["properties"]["policy"]["rules"][0]
    assert rule["definition"]["filters"]["prefixMatch"] == ["${exportsContainerName}/"]
    delete = rule["definition"]["actions"]["baseBlob"]["delete"]
    assert delete == {"daysAfterCreationGreaterThan": "exportRetentionDays"}
    main = _tree(trees, "main.bicep")
    assert main["parameters"]["exportRetentionDays"]["default"] == 30
    # Another account than the host's: its own module, its own name.
    module = _body(main["modules"]["exportsStorage"])
    assert main["modules"]["exportsStorage"]["detail"]["path"] == "app/exports-storage.bicep"
    host = _body(main["modules"]["storage"])
    assert module["params"]["name"] != host["params"]["name"], "two accounts, two names"
    assert module["params"]["exportRetentionDays"] == "exportRetentionDays"
    assert "exportRetentionDays" not in host["params"]
    # The app reaches its exports there, with its identity: USEREXPORT_EXPORTS_BLOB_URI is the
    # exports account's blob endpoint (userexport/clients.py's BlobServiceClient), while the
    # jobs table and queues stay on AzureWebJobsStorage__*.
    assert exports["outputs"]["blobEndpoint"]["value"] == {
        "operator": {
            "type": "property_accessor",
            "operands": {
                "operand_1": "exportsStorage",
                "operand_2": {
                    "operator": {
                        "type": "property_accessor",
                        "operands": {
                            "operand_1": "properties",
                            "operand_2": {
                                "operator": {
                                    "type": "property_accessor",
                                    "operands": {
                                        "operand_1": "primaryEndpoints",
                                        "operand_2": "blob",
                                    },
                                }
                            },
                        },
                    }
                },
            },
        }
    }
    api_params = _body(main["modules"]["api"])["params"]
    assert _module_output(api_params["exportsBlobEndpoint"]) == ("exportsStorage", "blobEndpoint")
    assert _bicep_app_settings(trees)["USEREXPORT_EXPORTS_BLOB_URI"] == "exportsBlobEndpoint"
    assert main["outputs"]["USEREXPORT_EXPORTS_BLOB_URI"]


def test_exports_blob_logs_go_to_the_workspace(trees: dict) -> None:
    """Every read of an export (a SAS download included) is traceable: StorageRead, Write and
    Delete of the exports account's blob service go to the Log Analytics workspace."""
    exports = _tree(trees, "app/exports-storage.bicep")
    diagnostics = [
        (name, r)
        for name, r in exports["resources"].items()
        if r["type"] == "Microsoft.Insights/diagnosticSettings"
    ]
    assert len(diagnostics) == 1, diagnostics
    _, resource = diagnostics[0]
    body = _body(resource)
    assert "condition" not in resource["config"], "always on"
    scope = exports["resources"][body["scope"]]
    assert scope["type"] == "Microsoft.Storage/storageAccounts/blobServices", "the blob service"
    assert _body(scope)["parent"] == "exportsStorage"
    assert body["properties"]["workspaceId"] == "logAnalyticsWorkspaceId"
    logs = {log["category"]: log["enabled"] for log in body["properties"]["logs"]}
    assert logs == {"StorageRead": True, "StorageWrite": True, "StorageDelete": True}, logs
    main = _tree(trees, "main.bicep")
    params = _body(main["modules"]["exportsStorage"])["params"]
    assert _module_output(params["logAnalyticsWorkspaceId"]) == ("monitoring", "logAnalyticsId")


def test_exports_network_restriction_is_optional_and_off_by_default(trees: dict) -> None:
    main = _tree(trees, "main.bicep")
    param = main["parameters"]["restrictExportsNetwork"]
    assert param["type"] == "bool" and param["default"] is False, param
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert parameters["restrictExportsNetwork"]["value"] == (
        "${USEREXPORT_EXPORTS_PRIVATE_NETWORK=false}"
    )
    assert parameters["exportsAllowedIpRanges"]["value"] == "${USEREXPORT_EXPORTS_ALLOWED_IPS}"
    network = main["modules"]["network"]
    assert network["detail"]["path"] == "app/network.bicep"
    assert network["config"]["condition"] == "restrictExportsNetwork"
    params = _body(main["modules"]["exportsStorage"])["params"]
    assert params["restrictNetwork"] == "restrictExportsNetwork"
    # Off: the account is open to the network like the host's (Entra token or SAS needed).
    exports = _tree(trees, "app/exports-storage.bicep")
    acls = exports["variables"]["networkAcls"]["value"]["operator"]["operands"]
    assert acls["condition"] == "restrictNetwork"
    assert acls["false_value"]["defaultAction"] == "Allow"
    assert acls["true_value"]["defaultAction"] == "Deny"
    account = _body(exports["resources"]["exportsStorage"])["properties"]
    assert account["networkAcls"] == "networkAcls"
    assert account["publicNetworkAccess"] == "publicNetworkAccess"
    access = exports["variables"]["publicNetworkAccess"]["value"]["operator"]["operands"]
    assert access["false_value"] == "Enabled" and access["true_value"] == "Disabled"
    assert "restrictNetwork" in json.dumps(access["condition"])
    # On: a private endpoint to the exports' blob service, the app integrated with its network.
    net = _tree(trees, "app/network.bicep")
    endpoints = [
        _body(r)
        for r in net["resources"].values()
        if r["type"] == "Microsoft.Network/privateEndpoints"
    ]
    assert len(endpoints) == 1
    (connection,) = endpoints[0]["properties"]["privateLinkServiceConnections"]
    assert connection["properties"]["privateLinkServiceId"] == "exportsStorageAccountId"
    assert connection["properties"]["groupIds"] == ["blob"]
    assert "Microsoft.App/environments" in json.dumps(_body(net["resources"]["vnet"])), (
        "Flex Consumption's virtual network integration needs a subnet delegated to it"
    )
    api = _body(main["modules"]["api"])["params"]
    assert "restrictExportsNetwork" in json.dumps(api["virtualNetworkSubnetId"])


def test_function_app_is_flex_consumption_python_311_with_user_identity(trees: dict) -> None:
    api = _tree(trees, "app/api.bicep")
    plan = _body(api["resources"]["plan"])
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    site = _body(api["resources"]["functionApp"])
    assert site["identity"]["type"] == "UserAssigned"
    props = site["properties"]
    assert props["httpsOnly"] is True
    assert props["functionAppConfig"]["runtime"] == {"name": "python", "version": "3.11"}
    deployment = props["functionAppConfig"]["deployment"]["storage"]
    assert deployment["authentication"]["type"] == "UserAssignedIdentity"
    assert site["tags"]["function"]["parameters"]["arg_2"] == {"'azd-service-name'": "api"}


def test_application_insights_has_local_auth_disabled(trees: dict) -> None:
    monitoring = _tree(trees, "app/monitoring.bicep")
    components = [
        _body(r)
        for r in monitoring["resources"].values()
        if r["type"] == "Microsoft.Insights/components"
    ]
    assert len(components) == 1
    assert components[0]["properties"]["DisableLocalAuth"] is True
    assert components[0]["properties"]["WorkspaceResourceId"]


def test_outputs_and_azd_wiring(trees: dict) -> None:
    main = _tree(trees, "main.bicep")
    assert main["globals"]["scope"]["value"] == "subscription"
    outputs = set(main["outputs"])
    for name in (
        "AZURE_LOCATION",
        "AZURE_TENANT_ID",
        "AZURE_RESOURCE_GROUP",
        "SERVICE_API_NAME",
        "AZURE_FUNCTION_APP_NAME",
        "AZURE_FUNCTION_APP_URL",
        "AZURE_STORAGE_ACCOUNT_NAME",
    ):
        assert name in outputs, f"main.bicep lacks output {name}"
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert parameters["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert parameters["location"]["value"] == "${AZURE_LOCATION}"
    assert parameters["principalId"]["value"] == "${AZURE_PRINCIPAL_ID}"
    unknown = sorted(set(parameters) - set(main["parameters"]))
    assert not unknown, f"main.parameters.json sets parameters main.bicep lacks: {unknown}"
    azure_yaml = (ROOT / "azure.yaml").read_text()
    service = re.search(r"^services:\n  api:\n((?:    .*\n)+)", azure_yaml, re.MULTILINE)
    assert service, "azure.yaml has no service 'api'"
    fields = dict(re.findall(r"^    (\w+): (\S+)$", service.group(1), re.MULTILINE))
    assert fields == {"project": ".", "language": "python", "host": "function"}, fields
    assert (ROOT / "function_app.py").exists(), "azd deploys function_app.py from the repo root"


def test_deploy_doc_covers_the_manual_steps() -> None:
    doc = (ROOT / "docs" / "deploy.md").read_text()
    for needle in (
        "azd up",
        "azd down --purge",
        "New-MgServicePrincipalAppRoleAssignment",
        "az rest",
        "x-functions-key",
        "Location",
        "Logic Apps",
        *GRAPH_APP_ROLES,
        *GRAPH_APP_ROLES.values(),
    ):
        assert needle in doc, f"docs/deploy.md does not mention {needle!r}"


def _doc_section(doc: str, heading: str) -> str:
    match = re.search(rf"^{re.escape(heading)}\n(.*?)(?=^## )", doc, re.MULTILINE | re.DOTALL)
    assert match, f"docs/deploy.md has no section {heading!r}"
    return match.group(1)


def _table_rows(text: str) -> dict[str, list[str]]:
    """A markdown table's rows whose first cell is a `code` name: {name: the other cells}."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`([\w.]+)`", cells[0]) if line.startswith("|") else None
        if match:
            assert match.group(1) not in rows, f"{match.group(1)} twice in one table"
            rows[match.group(1)] = cells[1:]
    return rows


# What the export does without each permission (the app's behaviour, issue 12): words the
# "without it" cell of docs/deploy.md's permission table must hold, wrapping aside.
WITHOUT_PERMISSION = {
    "User.Read.All": ("fails", "`User.Read.All`"),
    "UserAuthenticationMethod.Read.All": ("empty", "errors file"),
    "AuditLog.Read.All": (
        "completes",
        "`completedWithErrors`",
        "sign-in columns asked for empty",
        "one row in the errors file",
        "`reason`",
        "`Authentication_RequestFromNonPremiumTenantOrB2CTenant`",
    ),
    "LicenseAssignment.Read.All": (
        "`assignedLicenses` holds the SKU GUIDs instead of names",
        "one row in the errors file",
        "`reason`",
    ),
    "GroupMember.Read.All": ("`filter.group` fails", "naming `GroupMember.Read.All`"),
    "AdministrativeUnit.Read.All": (
        "`filter.administrativeUnit` fails",
        "naming `AdministrativeUnit.Read.All`",
    ),
}


def test_deploy_doc_says_what_each_graph_permission_is_for() -> None:
    assert set(WITHOUT_PERMISSION) == set(GRAPH_APP_ROLES)
    doc = (ROOT / "docs" / "deploy.md").read_text()
    section = _doc_section(doc, "## The six Graph permissions")
    tables = [_table_rows(t) for t in re.split(r"\n\s*\n", section) if t.lstrip().startswith("|")]
    assert len(tables) == 2, "a table of what each permission does, and one of their ids"
    purposes, ids = tables
    assert list(purposes) == list(GRAPH_APP_ROLES), list(purposes)
    for permission, needles in WITHOUT_PERMISSION.items():
        enables, without = purposes[permission]
        assert enables, f"{permission}: what it enables"
        for needle in needles:
            assert needle in without, f"{permission}: {needle!r} not in {without!r}"
    assert {name: cells[0].strip("`") for name, cells in ids.items()} == GRAPH_APP_ROLES


def _permissions_in_commands(text: str) -> tuple[list[str], list[str]]:
    """The permissions the az loop and the PowerShell foreach of a text grant, in order."""
    az = re.findall(r"for PERMISSION in (.*?); do", text.replace("\\\n", " "), re.DOTALL)
    ps = re.findall(r"foreach \(\$permission in (.*?)\) \{", text, re.DOTALL)
    assert len(az) == 1 and len(ps) == 1, (az, ps)
    return az[0].split(), re.findall(r'"([^"]+)"', ps[0])


def test_deploy_doc_commands_grant_the_six_permissions() -> None:
    doc = (ROOT / "docs" / "deploy.md").read_text()
    az, ps = _permissions_in_commands(doc)
    assert az == list(GRAPH_APP_ROLES), az
    assert ps == list(GRAPH_APP_ROLES), ps


def test_main_bicep_describes_the_graph_grant() -> None:
    text = (INFRA / "main.bicep").read_text()
    match = re.search(r"^@description\('(.*)'\)\nparam grantGraphPermissions ", text, re.MULTILINE)
    assert match, "grantGraphPermissions has no one-line @description"
    for permission in GRAPH_APP_ROLES:
        assert permission in match.group(1), f"its description does not name {permission}"


def test_deploy_doc_has_the_first_deploy_checklist_and_troubleshooting() -> None:
    doc = " ".join((ROOT / "docs" / "deploy.md").read_text().split())  # wrapping aside
    for needle in (
        "## First deploy checklist",
        "## Troubleshooting",
        "## National clouds",
        f"azd {AZD_MINIMUM}",
        "requiredVersions",
        "USEREXPORT_GRANT_GRAPH_PERMISSIONS",
        "USEREXPORT_GRAPH_BASE_URL",
        "/.default",
        # the errors a first deploy can meet, each with what to do
        "for Flex Consumption sites is invalid",
        "this project requires a version of azd within the range",
        "Not a valid reference update",
        "Insufficient privileges to complete the operation",
        "EntitlementGrant entry already exists",
        "azd provision",
    ):
        assert needle in doc, f"docs/deploy.md does not mention {needle!r}"
    assert "1.10 or later" not in doc, "docs/deploy.md still asks for an azd older than needed"


# --- App Service authentication (callers with a managed identity) ------------------------------

AUTH_LEVEL_SETTING = "USEREXPORT_HTTP_AUTH_LEVEL"
ALLOWED_CALLERS_SETTING = "USEREXPORT_ALLOWED_CALLERS"
# azd environment variable feeding each App Service authentication parameter of main.bicep.
AUTH_PARAMETERS = {
    "enableAppServiceAuth": "${USEREXPORT_APP_SERVICE_AUTH=false}",
    "authClientId": "${USEREXPORT_AUTH_CLIENT_ID}",
    "authAudience": "${USEREXPORT_AUTH_AUDIENCE}",
    "allowedCallerIdentities": "${USEREXPORT_ALLOWED_CALLERS}",
}


def test_app_service_auth_parameters_are_off_by_default(trees: dict) -> None:
    main = _tree(trees, "main.bicep")
    params = main["parameters"]
    assert params["enableAppServiceAuth"]["type"] == "bool"
    assert params["enableAppServiceAuth"]["default"] is False
    for name in ("authClientId", "authAudience", "allowedCallerIdentities"):
        assert params[name]["type"] == "string" and params[name]["default"] == "", name
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    for name, value in AUTH_PARAMETERS.items():
        assert parameters[name]["value"] == value, name
    # On without a client id or without an allow-list: refused with a message saying what to
    # set (any identity of the tenant could otherwise export every user).
    check = _bicep_var("appServiceAuth")
    assert check.startswith(
        "enableAppServiceAuth ? ((empty(authClientId) || empty(callerIdentities) || "
        "contains(callerIdentities, '')) ? fail('"
    ), check
    assert check.endswith(") : true) : false"), check
    for needle in ("USEREXPORT_AUTH_CLIENT_ID", "USEREXPORT_ALLOWED_CALLERS", "docs/deploy.md"):
        assert needle in check, f"the message does not name {needle}"
    assert _bicep_var("callerIdentities") == (
        "empty(allowedCallerIdentities) ? [] : "
        "split(replace(allowedCallerIdentities, ' ', ''), ',')"
    )
    assert main["outputs"]["USEREXPORT_APP_SERVICE_AUTH"]["value"] == "appServiceAuth"


def _effective_app_settings(trees: dict, *, app_service_auth: bool) -> dict[str, Any]:
    """The app settings deployed when main.bicep's appServiceAuth is `app_service_auth`."""
    main = _tree(trees, "main.bicep")
    api_params = _body(main["modules"]["api"])["params"]
    api = _tree(trees, "app/api.bicep")
    values = {"appServiceAuth": app_service_auth}
    conditions = {p: values[v] for p, v in api_params.items() if isinstance(v, str) and v in values}
    conditional = _conditional_app_settings(trees)
    return {
        name: value
        for name, value in _bicep_app_settings(trees).items()
        if name not in conditional
        or conditions.get(conditional[name][0], api["parameters"][conditional[name][0]]["default"])
    }


@pytest.mark.parametrize("app_service_auth", [False, True])
def test_app_service_auth_and_the_routes_auth_level(
    trees: dict, tmp_path: Path, app_service_auth: bool
) -> None:
    """Off: no authsettingsV2, no USEREXPORT_HTTP_AUTH_LEVEL (the code's default, a function key
    on every call) and no allow-list. On: authsettingsV2 deployed, and always together
    USEREXPORT_HTTP_AUTH_LEVEL=anonymous and the app's own copy of App Service authentication's
    allow-list (USEREXPORT_ALLOWED_CALLERS), which the app checks on every request; without it
    the app refuses the anonymous level. WEBSITE_AUTH_ENABLED plays no part (Flex Consumption
    may not set it)."""
    conditional = _conditional_app_settings(trees)
    assert set(conditional) == {AUTH_LEVEL_SETTING, ALLOWED_CALLERS_SETTING}, conditional
    assert conditional[AUTH_LEVEL_SETTING] == ("anonymousHttpRoutes", "anonymous")
    assert conditional[ALLOWED_CALLERS_SETTING] == ("anonymousHttpRoutes", "allowedCallers")
    api = _tree(trees, "app/api.bicep")
    assert api["parameters"]["anonymousHttpRoutes"] == {
        "decorators": api["parameters"]["anonymousHttpRoutes"]["decorators"],
        "type": "bool",
        "default": False,
    }
    main = _tree(trees, "main.bicep")
    api_params = _body(main["modules"]["api"])["params"]
    assert api_params["anonymousHttpRoutes"] == "appServiceAuth"
    # The same object ids App Service authentication gets (auth.bicep's allowedIdentities).
    assert api_params["allowedCallers"] == {
        "function": {
            "type": "join",
            "parameters": {"input_array": "callerIdentities", "delimiter": ","},
        }
    }
    assert _body(main["modules"]["auth"])["params"]["allowedIdentities"] == "callerIdentities"
    module = main["modules"]["auth"]
    assert module["detail"]["path"] == "app/auth.bicep"
    assert module["config"]["condition"] == "appServiceAuth", "authsettingsV2 only when on"

    deployed = _effective_app_settings(trees, app_service_auth=app_service_auth)
    expected = _code_app_settings() | HOST_APP_SETTINGS
    if not app_service_auth:
        expected -= {AUTH_LEVEL_SETTING, ALLOWED_CALLERS_SETTING}
    assert set(deployed) == expected
    assert settings.APP_SETTINGS[AUTH_LEVEL_SETTING] == "function", "absent means a key"
    # What the app makes of it (its other settings aside), with and without App Service auth.
    env = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}
    caller = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    if app_service_auth:
        env[AUTH_LEVEL_SETTING] = deployed[AUTH_LEVEL_SETTING]
        # The level without the list it comes with: refused, whatever App Service says.
        for platform in ({}, {"WEBSITE_AUTH_ENABLED": "True"}):
            with pytest.raises(settings.SettingsError, match=ALLOWED_CALLERS_SETTING):
                settings.Settings.from_env({**env, **platform})
        env[ALLOWED_CALLERS_SETTING] = caller  # what allowedCallers holds, from the azd env
    assert "WEBSITE_AUTH_ENABLED" not in deployed, "set by App Service itself, never by infra/"
    loaded = settings.Settings.from_env(env)  # no WEBSITE_AUTH_ENABLED: Flex may not set it
    assert loaded.http_auth_level == ("anonymous" if app_service_auth else "function")
    assert loaded.allowed_callers == (frozenset({caller}) if app_service_auth else frozenset())


def test_authsettings_v2_is_app_service_auth_for_an_api(trees: dict) -> None:
    configs = [
        (path, _body(r))
        for path, _, r in _resources(trees, "Microsoft.Web/sites/config")
        if _body(r).get("name") == "authsettingsV2"
    ]
    assert [path for path, _ in configs] == ["app/auth.bicep"], configs
    auth = _tree(trees, "app/auth.bicep")
    site = auth["resources"]["functionApp"]
    assert site["type"] == "Microsoft.Web/sites" and site["existing"], site
    props = configs[0][1]["properties"]
    assert configs[0][1]["parent"] == "functionApp"
    assert props["platform"]["enabled"] is True
    assert props["globalValidation"] == {
        "requireAuthentication": True,
        "unauthenticatedClientAction": "Return401",
    }
    assert props["httpSettings"]["requireHttps"] is True
    assert props["login"]["tokenStore"]["enabled"] is False
    (provider,) = props["identityProviders"].items()
    assert provider[0] == "azureActiveDirectory"
    aad = provider[1]
    assert aad["enabled"] is True
    assert aad["registration"]["clientId"] == "clientId"
    # One v2.0 authority of this tenant, the one the portal writes in the public cloud
    # (https://sts.windows.net/<tenant>/v2.0): App Service takes the tenant's v1.0 tokens
    # (iss https://sts.windows.net/<tenant>/, what Logic Apps' managed identities send) and
    # v2.0 tokens with it (sources in app/auth.bicep).
    assert aad["registration"]["openIdIssuer"] == "openIdIssuer"
    variables = {k: v["value"] for k, v in auth["variables"].items()}
    assert variables["openIdIssuer"] == "${authenticationEndpoint}${tenant().tenantId}/v2.0"
    text = (INFRA / "app" / "auth.bicep").read_text()
    endpoint = re.search(r"^var authenticationEndpoint = (.+)$", text, re.MULTILINE)
    assert endpoint and endpoint.group(1) == (
        "environment().name == 'AzureCloud' ? 'https://sts.windows.net/' : "
        "environment().authentication.loginEndpoint"
    ), endpoint
    # Audiences: v1.0 tokens asked for with the Application ID URI carry api://<client id>,
    # v2.0 tokens the client id; both listed, beside the deployer's own audience.
    assert aad["validation"]["allowedAudiences"] == "audiences"
    union = variables["audiences"]["function"]
    assert union["type"] == "union", union
    assert list(union["parameters"].values()) == [
        "allowedAudiences",
        ["api://${clientId}", "clientId"],
    ], union
    assert aad["validation"]["defaultAuthorizationPolicy"] == {
        "allowedPrincipals": {"identities": "allowedIdentities"}
    }
    main = _tree(trees, "main.bicep")
    params = _body(main["modules"]["auth"])["params"]
    assert params["clientId"] == "authClientId"
    assert params["allowedIdentities"] == "callerIdentities"
    assert "authAudience" in json.dumps(params["allowedAudiences"])
    assert "api" in json.dumps(params["functionAppName"]), "after the app, on the app"


def test_deploy_doc_shows_both_ways_from_logic_apps() -> None:
    doc = " ".join((ROOT / "docs" / "deploy.md").read_text().split())
    for needle in (
        "## Calling from Logic Apps",
        "?code=",
        "az functionapp keys list",
        "ManagedServiceIdentity",
        "Idempotency-Key",
        "@{workflow().run.name}",
        "downloadUrl",
        "Azure/logicapps#611",
        *(value[2:-1].split("=")[0] for value in AUTH_PARAMETERS.values()),
        AUTH_LEVEL_SETTING,
        "object id",
    ):
        assert needle in doc, f"docs/deploy.md does not mention {needle!r}"
    text = (ROOT / "docs" / "deploy.md").read_text()
    section = text[text.index("## Calling from Logic Apps") :]
    section = section[: section.index("\n## ", 1)]
    workflows = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", section, re.DOTALL)]
    assert len(workflows) == 2, "one complete workflow definition for each way"
    starts = [w["definition"]["actions"]["Start_export"] for w in workflows]
    for workflow, start in zip(workflows, starts, strict=True):
        actions = workflow["definition"]["actions"]
        assert start["type"] == "Http" and start["inputs"]["method"] == "POST"
        assert start["inputs"]["headers"]["Idempotency-Key"] == "@{workflow().run.name}"
        assert "x-functions-key" not in {h.lower() for h in start["inputs"]["headers"]}
        assert "DisableAsyncPattern" not in json.dumps(start), "the action follows the Location"
        assert "downloadUrl" in json.dumps(actions["Download_CSV"])
    # Run history keeps no copy of everyone's personal data and no live SAS URL: the download's
    # inputs (the SAS URL) and outputs (the file), and the start action's, whose outputs are the
    # finished job with its SAS URLs (and whose inputs hold the key in the first way), are
    # secure.
    for workflow in workflows:
        actions = workflow["definition"]["actions"]
        for name in ("Start_export", "Download_CSV"):
            secure = actions[name].get("runtimeConfiguration", {}).get("secureData", {})
            assert sorted(secure.get("properties", [])) == ["inputs", "outputs"], (name, secure)
    assert "run history" in section and "secureData" in section
    key, identity = starts
    assert "?code=@{encodeUriComponent(" in key["inputs"]["uri"]
    assert "authentication" not in key["inputs"]
    assert identity["inputs"]["authentication"]["type"] == "ManagedServiceIdentity"
    assert "code" not in identity["inputs"]["uri"]


def test_deploy_doc_says_who_did_what_and_who_downloaded() -> None:
    """The audit trail: the caller in each job, the app's `audit` log lines with KQL over
    `traces`, and the exports account's blob logs (StorageBlobLogs) for the SAS downloads."""
    doc = (ROOT / "docs" / "deploy.md").read_text()
    section = _doc_section(doc, "## Who did what")
    flat = " ".join(section.split())
    for needle in (
        "`caller`",
        "principal",
        "functionKey",
        "timer",
        "key:",
        "SHA-256",
        '"action"',
        "create",
        "cancel",
        "downloadLinks",
        "jobId",
        "traces",
        'message startswith "audit "',
        "parse_json(substring(message, 6))",
        "StorageBlobLogs",
        "StorageRead",
        "CallerIpAddress",
    ):
        assert needle in flat, f"docs/deploy.md's Who did what does not mention {needle!r}"
    queries = re.findall(r"```kusto\n(.*?)```", section, re.DOTALL)
    assert len(queries) >= 2, "a query over traces and one over StorageBlobLogs"
    assert any(q.lstrip().startswith("traces") for q in queries), queries
    assert any(q.lstrip().startswith("StorageBlobLogs") for q in queries), queries


def test_deploy_doc_documents_the_feature_permissions_and_the_network_option() -> None:
    doc = (ROOT / "docs" / "deploy.md").read_text()
    section = _doc_section(doc, "## Choosing the permissions")
    rows = _table_rows(section)
    assert list(rows) == list(GRAPH_FEATURE_PARAMETERS), list(rows)
    for permission, (param, env) in GRAPH_FEATURE_PARAMETERS.items():
        parameter, env_name, default, without = rows[permission]
        assert parameter == f"`{param}`", (permission, parameter)
        assert env_name == f"`{env}`", (permission, env_name)
        assert default == "`true`", (permission, default)
        assert len(without) > 20, f"{permission}: what breaks without it"
    flat = " ".join(doc.split())
    for needle in (
        "USEREXPORT_EXPORTS_PRIVATE_NETWORK",
        "USEREXPORT_EXPORTS_ALLOWED_IPS",
        "restrictExportsNetwork",
        "USEREXPORT_EXPORTS_BLOB_URI",
        "Storage Blob Delegator",
        ALLOWED_CALLERS_SETTING,
    ):
        assert needle in flat, f"docs/deploy.md does not mention {needle!r}"


def test_deploy_doc_prerequisites_name_python_and_powershell() -> None:
    """azd checks for Python on PATH before provisioning a Python service, and the Windows hook
    wants PowerShell 7 (shell: pwsh)."""
    doc = (ROOT / "docs" / "deploy.md").read_text()
    section = " ".join(_doc_section(doc, "## Prerequisites").split())
    for needle in ("Python 3", "PowerShell 7", "continueOnError"):
        assert needle in section, f"docs/deploy.md's Prerequisites do not mention {needle!r}"


# --- azd: version, hooks -------------------------------------------------------------------


def _azure_yaml() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "azure.yaml").read_text())


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def test_azd_minimum_version_is_enforced_and_documented() -> None:
    assert max(AZD_NEEDS.values(), key=_version) == AZD_MINIMUM
    excluded = " ".join(f"!= {v}" for v in AZD_EXCLUDED)
    required = _azure_yaml().get("requiredVersions") or {}
    assert required == {"azd": f">= {AZD_MINIMUM} {excluded}"}, required
    # The reasons above hold for this extension version; another one needs a new look.
    config = json.loads((INFRA / "bicepconfig.json").read_text())
    assert config["extensions"]["microsoftGraphV1"] == GRAPH_EXTENSION
    doc = " ".join((ROOT / "docs" / "deploy.md").read_text().split())
    for needle in (f"azd {AZD_MINIMUM}", *AZD_EXCLUDED, "0.36.1", required["azd"]):
        assert needle in doc, f"docs/deploy.md does not give the azd minimum: {needle!r}"


HOOK_SH = INFRA / "hooks" / "postprovision.sh"
HOOK_PS1 = INFRA / "hooks" / "postprovision.ps1"
PRINCIPAL = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
TENANT = "11111111-2222-3333-4444-555555555555"


def test_postprovision_hook_is_wired_for_both_shells() -> None:
    hook = _azure_yaml()["hooks"]["postprovision"]
    # continueOnError: the hooks only print, so nothing they meet (no PowerShell 7, Windows
    # PowerShell's execution policy) may stop `azd up` before it uploads the code.
    assert hook["posix"] == {
        "shell": "sh",
        "run": "./infra/hooks/postprovision.sh",
        "interactive": True,  # azd shows a non-interactive hook's output only while it runs
        "continueOnError": True,
    }
    assert hook["windows"] == {
        "shell": "pwsh",
        "run": "./infra/hooks/postprovision.ps1",
        "interactive": True,
        "continueOnError": True,
    }
    assert HOOK_SH.exists() and HOOK_PS1.exists()
    assert os.access(HOOK_SH, os.X_OK), f"{HOOK_SH} is not executable"
    proc = subprocess.run(["sh", "-n", str(HOOK_SH)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    # /bin/sh is dash here, so the runs below are POSIX runs; these catch what dash forgives.
    bashisms = r"\[\[|<<<|\$\{\w+//|^\s*(?:function|local|source|declare)\s"
    found = re.findall(bashisms, HOOK_SH.read_text(), re.MULTILINE)
    assert not found, f"{HOOK_SH.name} must stay POSIX sh: {found}"


def _run_hook_sh(env: dict[str, str], path_dirs: tuple[Path, ...] = ()) -> str:
    base = {"PATH": os.pathsep.join([*map(str, path_dirs), os.environ.get("PATH", "")])}
    proc = subprocess.run(
        ["sh", str(HOOK_SH)], env={**base, **env}, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, f"the hook must never fail the deployment: {proc.stderr}"
    return proc.stdout


def _hook_env(graph_base: str, granted: str) -> dict[str, str]:
    return {
        "USEREXPORT_IDENTITY_PRINCIPAL_ID": PRINCIPAL,
        "AZURE_TENANT_ID": TENANT,
        "USEREXPORT_GRAPH_BASE_URL": graph_base,
        "USEREXPORT_GRAPH_PERMISSIONS_GRANTED": granted,
    }


def test_postprovision_hook_says_nothing_is_left_when_the_deployment_granted() -> None:
    out = _run_hook_sh(_hook_env("https://graph.microsoft.com/v1.0", "True"))
    assert PRINCIPAL in out and "Nothing is left to do" in out, out
    assert "az rest" not in out and "ONE STEP LEFT" not in out, out
    for permission in GRAPH_APP_ROLES:
        assert permission in out, f"{permission} not among what the deployment granted:\n{out}"


@pytest.mark.parametrize(
    ("graph_base", "az_cloud", "mg_environment"),
    [
        ("https://graph.microsoft.com/v1.0", "AzureCloud", "Global"),
        ("https://graph.microsoft.us/v1.0/", "AzureUSGovernment", "USGov"),
        ("https://dod-graph.microsoft.us/v1.0", "AzureUSGovernment", "USGovDoD"),
        ("https://microsoftgraph.chinacloudapi.cn/v1.0", "AzureChinaCloud", "China"),
    ],
)
def test_postprovision_hook_prints_the_administrators_commands(
    graph_base: str, az_cloud: str, mg_environment: str
) -> None:
    out = _run_hook_sh(_hook_env(graph_base, "false"))
    base = graph_base.rstrip("/")
    for needle in (
        "ONE STEP LEFT",
        "Privileged Role Administrator or Global Administrator",
        f"az cloud set --name {az_cloud}",
        f"az login --tenant {TENANT}",
        f'--uri "{base}/servicePrincipals/{PRINCIPAL}/appRoleAssignments"',
        f"Connect-MgGraph -Environment {mg_environment} -TenantId {TENANT}",
        f"New-MgServicePrincipalAppRoleAssignment -ServicePrincipalId {PRINCIPAL}",
    ):
        assert needle in out, f"{needle!r} not in the hook's output:\n{out}"
    # Each permission with what it is for, on a line of its own, in GRAPH_APP_ROLES's order.
    listed = re.findall(r"^  ([\w.]+) +\((.+)\)$", out, re.MULTILINE)
    assert [name for name, _ in listed] == list(GRAPH_APP_ROLES), listed
    # Both blocks grant exactly the six.
    az, ps = _permissions_in_commands(out)
    assert az == list(GRAPH_APP_ROLES), az
    assert ps == list(GRAPH_APP_ROLES), ps
    # Only the public cloud has the Graph Bicep extension, so only there can azd grant them.
    offers_bicep_grant = "azd env set USEREXPORT_GRANT_GRAPH_PERMISSIONS true" in out
    assert offers_bicep_grant == (az_cloud == "AzureCloud"), out


def test_postprovision_hooks_az_commands_work(tmp_path: Path) -> None:
    """Runs the printed Azure CLI block in bash against a stand-in `az` that logs its calls."""
    out = _run_hook_sh(_hook_env("https://graph.microsoft.com/v1.0", "false"))
    block = re.search(r"^Azure CLI \(bash\):\n((?:  .*\n)+)", out, re.MULTILINE)
    assert block, out
    log = tmp_path / "az.jsonl"
    fake = tmp_path / "bin" / "az"
    fake.parent.mkdir()
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, re, sys\n"
        f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "args = sys.argv[1:]\n"
        "if args[:3] == ['ad', 'sp', 'show']:\n"
        "    query = args[args.index('--query') + 1]\n"
        "    role = re.search(r\"value=='([^']+)'\", query)\n"
        "    print('role-' + role.group(1) if role else 'graph-sp-id')\n"
    )
    fake.chmod(0o755)
    script = "set -e\n" + "\n".join(line[2:] for line in block.group(1).splitlines())
    env = {"PATH": f"{fake.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    posts = [c for c in calls if c[:1] == ["rest"]]
    assert len(posts) == len(GRAPH_APP_ROLES), calls
    granted = set()
    for call in posts:
        assert call[call.index("--method") + 1] == "POST"
        uri = call[call.index("--uri") + 1]
        assert (
            uri
            == f"https://graph.microsoft.com/v1.0/servicePrincipals/{PRINCIPAL}/appRoleAssignments"
        )
        body = json.loads(call[call.index("--body") + 1])
        assert body["principalId"] == PRINCIPAL and body["resourceId"] == "graph-sp-id", body
        granted.add(body["appRoleId"])
    assert granted == {f"role-{permission}" for permission in GRAPH_APP_ROLES}


def _printed_lines(text: str, shell: str) -> list[str]:
    """What a hook prints, variables replaced by their role, escapes undone."""
    if shell == "sh":
        blocks = re.findall(r"cat <<EOF\n(.*?)\nEOF\n", text, re.DOTALL)
        blocks += re.findall(r'^\s*echo "(.*)"$', text, re.MULTILINE)
        names = ["principal", "tenant", "graph_base", "graph_app_id", "permissions"]
        names += ["ps_permissions", "az_cloud", "mg_environment"]
        escape = "\\"
    else:
        blocks = re.findall(r'Write-Output @"\n(.*?)\n"@', text, re.DOTALL)
        blocks += re.findall(r'^\s*Write-Output "(.*)"$', text, re.MULTILINE)
        names = ["principal", "tenant", "graphBase", "graphAppId", "permissions"]
        names += ["psPermissions", "azCloud", "mgEnvironment"]
        escape = "`"
    roles = {name.lower().replace("_", ""): name for name in names}  # graph_base ~ graphBase
    lines = []
    for block in blocks:
        for line in block.split("\n"):
            for role, name in roles.items():
                line = re.sub(rf"(?<![\\`])\${name}\b", "{" + role + "}", line)
            line = line.replace(escape + "$", "$")
            if escape == "\\":
                line = line.replace("\\\\", "\\")
            lines.append(line)
    return lines


def test_postprovision_hooks_print_the_same_in_both_shells() -> None:
    """pwsh is not installed here, so the PowerShell twin is compared as text: same messages,
    same commands, same clouds."""
    sh_text, ps_text = HOOK_SH.read_text(), HOOK_PS1.read_text()
    sh_lines, ps_lines = _printed_lines(sh_text, "sh"), _printed_lines(ps_text, "ps1")
    assert sh_lines and sh_lines == ps_lines, (
        "\n".join(
            f"sh : {a!r}\nps1: {b!r}" for a, b in zip(sh_lines, ps_lines, strict=False) if a != b
        )
        or f"{len(sh_lines)} lines against {len(ps_lines)}"
    )
    sh_case = r'^\s*([\w.-]+)\) az_cloud="(\w+)"; mg_environment="(\w+)"'
    ps_case = r'^\s*"([\w.-]+)" \{ \$azCloud = "(\w+)"; \$mgEnvironment = "(\w+)" \}'
    sh_clouds = {h: (a, m) for h, a, m in re.findall(sh_case, sh_text, re.MULTILINE)}
    ps_clouds = {h: (a, m) for h, a, m in re.findall(ps_case, ps_text, re.MULTILINE)}
    assert len(sh_clouds) == 4 and sh_clouds == ps_clouds, (sh_clouds, ps_clouds)
    for text in (sh_text, ps_text):
        assert "USEREXPORT_GRAPH_PERMISSIONS_GRANTED" in text
        assert text.rstrip().endswith("exit 0"), "the hook must never fail the deployment"


@pytest.mark.skipif(shutil.which("pwsh") is None, reason="PowerShell (pwsh) is not installed")
def test_postprovision_hooks_print_the_same_when_run() -> None:
    for granted in ("false", "true"):
        env = {**_hook_env("https://graph.microsoft.us/v1.0", granted), "PATH": os.environ["PATH"]}
        sh_out = _run_hook_sh(env)
        proc = subprocess.run(
            ["pwsh", "-NoProfile", "-File", str(HOOK_PS1)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.replace("\r\n", "\n").strip() == sh_out.strip()


# --- .funcignore: what azd uploads ---------------------------------------------------------


def _funcignore_rules() -> list[tuple[re.Pattern[str], bool, bool]]:
    """.funcignore as (pattern, anchored, directories only), for the plain subset it may use."""
    rules = []
    for raw in (ROOT / ".funcignore").read_text(encoding="utf-8").splitlines():
        line = raw.rstrip()
        if not line or line.startswith("#"):
            continue
        assert line == line.strip(), f".funcignore: no leading blanks: {raw!r}"
        assert not line.startswith("!"), f".funcignore: azd < 1.23.13 mishandles {raw!r}"
        assert "**" not in line and not set("[]\\") & set(line), f".funcignore: keep {raw!r} plain"
        dir_only = line.endswith("/")
        line = line.rstrip("/")
        anchored = "/" in line
        glob = line.lstrip("/")
        regex = "".join("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c) for c in glob)
        rules.append((re.compile(regex + r"\Z"), anchored, dir_only))
    return rules


def _excluded(rel: PurePosixPath, is_dir: bool, rules: list) -> bool:
    """Whether azd (1.18.0 on, createDeployableZip) leaves this path out of the zip."""
    if is_dir and rel.name == ".azure":
        return True  # azd leaves out .azure always,
    if not is_dir and rel.name in {".funcignore", "local.settings.json"}:
        return True  # the ignore file itself and, for function apps, local.settings.json
    for pattern, anchored, dir_only in rules:
        if (is_dir or not dir_only) and pattern.match(str(rel) if anchored else rel.name):
            return True
    return False


def _packaged_from_disk(rules: list) -> list[str]:
    """The repository's files azd would zip: an excluded directory is not entered."""
    packaged = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        here = PurePosixPath(Path(dirpath).relative_to(ROOT).as_posix())
        kept = [d for d in dirnames if not _excluded(here / d, True, rules)]
        dirnames[:] = [d for d in kept if not Path(dirpath, d).is_symlink()]
        packaged += [f"{here / d}/ (symlink)" for d in kept if Path(dirpath, d).is_symlink()]
        packaged += [str(here / f) for f in filenames if not _excluded(here / f, False, rules)]
    return sorted(packaged)


def _packaged_from_list(paths: list[str], rules: list) -> list[str]:
    packaged = []
    for path in paths:
        rel = PurePosixPath(path)
        folders = list(reversed(rel.parents))[1:]  # from the top, without "."
        if any(_excluded(folder, True, rules) for folder in folders):
            continue
        if not _excluded(rel, False, rules):
            packaged.append(path)
    return packaged


def test_funcignore_uploads_only_what_runs_in_azure() -> None:
    rules = _funcignore_rules()
    packaged = _packaged_from_disk(rules)
    listing = "\n  ".join(packaged)
    allowed = RUNTIME_FILES | {RUNTIME_PACKAGE}
    stray = [p for p in packaged if PurePosixPath(p).parts[0] not in allowed]
    assert not stray, f"azd would upload more than the app; add to .funcignore: {stray}"
    caches = [p for p in packaged if "__pycache__" in p or p.endswith((".pyc", ".pyo"))]
    assert not caches, f"azd would upload caches: {caches}"
    missing = sorted(RUNTIME_FILES - set(packaged))
    assert not missing, f"azd would not upload {missing}; package:\n  {listing}"
    sources = [
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / RUNTIME_PACKAGE).rglob("*.py")
        if "__pycache__" not in p.parts
    ]
    left_out = sorted(set(sources) - set(packaged))
    assert sources and not left_out, f"azd would leave out app code: {left_out}"
    uploaded = _packaged_from_list(LOCAL_ONLY_PATHS, rules)
    assert not uploaded, f"azd would upload local files; add to .funcignore: {uploaded}"


def _event_keys() -> set[str]:
    """The keys of telemetry.py's events, read from an event it writes."""
    import logging

    from userexport import telemetry
    from userexport.jobs import Job, Status, utcnow
    from userexport.request import ExportRequest

    job = Job(
        id="0" * 32,
        status=Status.FAILED,
        trigger="timer",
        created_at=utcnow(),
        request=ExportRequest(columns=("objectId",), filter=None, file_name="x.csv"),
    )
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    keep, level = Keep(), telemetry.log.level
    telemetry.log.addHandler(keep)
    telemetry.log.setLevel(logging.INFO)
    try:
        telemetry.emit(telemetry.FINISHED, job)
        telemetry.revived(job)
    finally:
        telemetry.log.removeHandler(keep)
        telemetry.log.setLevel(level)
    return {key for line in lines for key in json.loads(line.removeprefix("event "))}


def test_alerts_are_deployed_only_with_an_address_and_read_the_apps_events(trees: dict) -> None:
    from userexport import telemetry

    main = _tree(trees, "main.bicep")
    param = main["parameters"]["alertEmail"]
    assert param["type"] == "string" and param["default"] == "", "no address, no alerts"
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert parameters["alertEmail"]["value"] == "${USEREXPORT_ALERT_EMAIL=}"
    assert parameters["nightlyStaleHours"]["value"] == "${USEREXPORT_NIGHTLY_STALE_HOURS=26}"
    module = main["modules"]["alerts"]
    assert module["detail"]["path"] == "app/alerts.bicep"
    assert module["config"]["condition"] == {
        "operator": {
            "type": "not",
            "operands": {
                "bool_value": {
                    "function": {"type": "empty", "parameters": {"item_to_test": "alertEmail"}}
                }
            },
        }
    }
    params = _body(module)["params"]
    assert params["alertEmail"] == "alertEmail"
    assert _module_output(params["applicationInsightsId"]) == (
        "monitoring",
        "applicationInsightsId",
    )
    alerts = _tree(trees, "app/alerts.bicep")
    (group,) = [r for r in alerts["resources"].values() if r["type"].endswith("/actionGroups")]
    receivers = _body(group)["properties"]["emailReceivers"]
    assert [r["emailAddress"] for r in receivers] == ["alertEmail"]
    rules = {
        name: _body(r)["properties"]
        for name, r in alerts["resources"].items()
        if r["type"] == "Microsoft.Insights/scheduledQueryRules"
    }
    assert set(rules) == {"exportFailed", "nightlyStale", "exportRevived"}
    events = alerts["variables"]["events"]["value"]
    assert events.startswith('traces | where message startswith "event "')
    keys = _event_keys()
    for name, rule in rules.items():
        assert rule["scopes"] == ["applicationInsightsId"], name
        assert rule["actions"]["actionGroups"] == [
            {
                "operator": {
                    "type": "property_accessor",
                    "operands": {"operand_1": "actionGroup", "operand_2": "id"},
                }
            }
        ], name
        (criterion,) = rule["criteria"]["allOf"]
        query = criterion["query"]
        assert query.startswith("${events} | "), name
        used = set(re.findall(r"\be\.(\w+)", query))
        assert used and used <= keys, (name, used - keys)
    failed = rules["exportFailed"]["criteria"]["allOf"][0]
    assert f'"{telemetry.FINISHED}"' in failed["query"] and '"failed"' in failed["query"]
    assert (failed["operator"], failed["threshold"]) == ("GreaterThan", 0)
    stale = rules["nightlyStale"]
    stale_query = stale["criteria"]["allOf"][0]
    assert (
        '"timer"' in stale_query["query"] and "ago(${nightlyStaleHours}h)" in stale_query["query"]
    )
    assert (stale_query["operator"], stale_query["threshold"]) == ("LessThan", 1)
    assert stale["windowSize"] == "P2D", "a log alert looks back at most two days"
    revived = rules["exportRevived"]["criteria"]["allOf"][0]
    assert f'"{telemetry.REVIVED}"' in revived["query"]
