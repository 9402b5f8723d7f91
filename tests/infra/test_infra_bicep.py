"""Checks infra/ (Bicep + azd) against the code, offline.

The Bicep CLI cannot run here, so every .bicep file is parsed with pycep-parser and the tree is
scanned with checkov, both from the separate virtualenv .venv-infra (checkov pins many
packages). Create it with:

    python3 -m venv .venv-infra && .venv-infra/bin/pip install checkov==3.3.30

(checkov 3.3.30 pins pycep-parser==0.5.1, which it installs.)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
VENV_INFRA = ROOT / ".venv-infra"
INFRA_PYTHON = VENV_INFRA / "bin" / "python"
CHECKOV = VENV_INFRA / "bin" / "checkov"
CHECKOV_CONFIG = INFRA / ".checkov.yaml"
PYCEP_DUMP = Path(__file__).with_name("pycep_dump.py")
LOCAL_SETTINGS_SAMPLE = ROOT / "local.settings.sample.json"
PIP_COMMAND = "python3 -m venv .venv-infra && .venv-infra/bin/pip install checkov==3.3.30"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from userexport import settings  # noqa: E402 - after the path set-up above

# --- the documented least-privilege role set -------------------------------------------------
# Every role definition id infra/ assigns, per principal. A change here is a security review.
APP_IDENTITY_ROLES = {
    # Storage Blob Data Owner: what Microsoft documents for an identity-based AzureWebJobsStorage
    # (the host creates its containers, takes timer/singleton blob leases, keeps its keys in
    # blobs; Flex Consumption reads the deployment package). Our code creates the exports
    # container and writes the CSV blocks. Its generateUserDelegationKey action covers the user
    # delegation key behind the SAS links, so Storage Blob Delegator would add nothing.
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    # Storage Queue Data Contributor: the queue trigger receives, deletes and updates messages
    # and moves them to export-jobs-poison; our code creates the queues and enqueues jobs.
    # (Message Processor + Sender lack update and create.)
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    # Storage Table Data Contributor: the exportjobs table (create, ETag-guarded upserts) and the
    # host's diagnostic events table.
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    # Monitoring Metrics Publisher on Application Insights: telemetry with an Entra token,
    # since the component has local (instrumentation key) authentication disabled.
    "3913510d-42f4-4e42-8a64-420c390055eb",
}
DEPLOYER_ROLES = {
    # Storage Blob Data Contributor: read the exports, run the app locally against Azure
    # storage (includes generateUserDelegationKey for the SAS links); no ownership/ACL rights.
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    # Storage Queue Data Contributor: enqueue/inspect jobs and the poison queue.
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    # Storage Table Data Contributor: read and write job rows.
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
}
# Microsoft Graph application permissions (app role ids), assigned to the managed identity.
GRAPH_APP_ROLES = {
    "df021288-bdef-4463-88db-98f22de89214",  # User.Read.All: the user profile columns
    "38d9df27-64da-44fd-b7c5-a6fbac20248f",  # UserAuthenticationMethod.Read.All: auth columns
}
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"

# App settings the platform/host reads, which the code does not (so not in APP_SETTINGS).
HOST_APP_SETTINGS = {
    "APPLICATIONINSIGHTS_CONNECTION_STRING",  # where the host and worker send telemetry
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",  # Entra auth for it (local auth is off)
}
# Keys a local.settings.json may hold besides APP_SETTINGS: Core Tools' own.
LOCAL_HOST_KEYS = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsFeatureFlags"}
# Flex Consumption rejects these app settings (runtime is set in functionAppConfig).
FLEX_FORBIDDEN_SETTINGS = {
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTSHARE",
}
# main.bicep parameter that feeds each tunable setting; its default must be the code's.
SETTING_PARAMETERS = {
    "USEREXPORT_NIGHTLY_SCHEDULE": "nightlySchedule",
    "USEREXPORT_SAS_LIFETIME_MINUTES": "sasLifetimeMinutes",
    "USEREXPORT_TIME_BUDGET_SECONDS": "timeBudgetSeconds",
    "USEREXPORT_PARTITIONS": "partitions",
    "USEREXPORT_STATUS_RETRY_AFTER_SECONDS": "statusRetryAfterSeconds",
    "USEREXPORT_GRAPH_BASE_URL": "graphBaseUrl",
}

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


def _bicep_app_settings(trees: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every app setting infra/ sets: siteConfig.appSettings and sites/config 'appsettings'."""
    result: dict[str, Any] = {}
    sites = _resources(trees, "Microsoft.Web/sites")
    assert len(sites) == 1, f"expected one Microsoft.Web/sites, found {[s[:2] for s in sites]}"
    for _, _, site in sites:
        site_config = _body(site).get("properties", {}).get("siteConfig", {})
        for entry in site_config.get("appSettings", []) or []:
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
    for path in copy.rglob("*.bicep"):  # checkov's pycep does not know `extension` either
        text = path.read_text()
        path.write_text(re.sub(r"^\s*extension\s+\w+.*$", "", text, flags=re.MULTILINE))
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
    result = _checkov(tmp_path, with_config=False)
    failing = {c["check_id"] for c in result["results"]["failed_checks"]}
    stale = sorted(set(skips) - failing)
    assert not stale, f"infra/.checkov.yaml skips checks that no longer fail: {stale}"


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
        assert api_params[param] == param, f"main.bicep does not pass {param} to app/api.bicep"
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


# --- roles ---------------------------------------------------------------------------------


def _role_assignments(trees: dict[str, dict]) -> dict[str, set[str]]:
    """principalId expression -> role definition ids assigned to it, across infra/."""
    by_principal: dict[str, set[str]] = {}
    for path, _name, resource in _resources(trees, "Microsoft.Authorization/roleAssignments"):
        variables = trees[path].get("variables") or {}
        props = _body(resource)["properties"]
        role = props["roleDefinitionId"]["function"]
        assert role["type"] == "subscription_resource_id", role
        ref = role["parameters"]["resource_name_1"]
        role_id = variables[ref]["value"] if ref in variables else ref
        assert ROLE_GUID.fullmatch(role_id), f"{path}: role id {role_id!r} is not a literal GUID"
        by_principal.setdefault(props["principalId"], set()).add(role_id)
    return by_principal


def test_role_assignments_are_the_documented_least_privilege_set(trees: dict[str, dict]) -> None:
    assigned = _role_assignments(trees)
    assert set(assigned) == {"identityPrincipalId", "principalId"}, assigned
    assert assigned["identityPrincipalId"] == APP_IDENTITY_ROLES
    assert assigned["principalId"] == DEPLOYER_ROLES
    # Every role id written anywhere in infra/ is one of those (no stray assignment).
    for path in BICEP_FILES:
        for match in re.finditer(r"roleDefinitions'\s*,\s*'([^']+)'", path.read_text()):
            assert match.group(1) in APP_IDENTITY_ROLES | DEPLOYER_ROLES, (path, match.group(1))


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
    sps = [
        r for r in graph["resources"].values() if r["type"] == "Microsoft.Graph/servicePrincipals"
    ]
    assert len(sps) == 1 and sps[0]["existing"], sps
    assert graph["variables"]["graphAppId"]["value"] == GRAPH_APP_ID
    assigned = _resources(trees, "Microsoft.Graph/appRoleAssignedTo")
    assert {p for p, _, _ in assigned} == {"app/graph-permissions.bicep"}
    roles = {v: k for k, v in graph["variables"]["graphAppRoles"]["value"].items()}
    assert set(roles) == GRAPH_APP_ROLES
    assert len(assigned) == len(GRAPH_APP_ROLES)
    for _, name, resource in assigned:
        body = _body(resource)
        assert body["principalId"] == "identityPrincipalId", name
        assert "graphAppRoles" in json.dumps(body["appRoleId"]), name
    main = _tree(trees, "main.bicep")
    module = main["modules"]["graphPermissions"]
    assert module["config"]["condition"] == "grantGraphPermissions"
    assert main["parameters"]["grantGraphPermissions"]["type"] == "bool"


# --- resources -----------------------------------------------------------------------------


def test_storage_account_is_locked_down_and_holds_the_codes_resources(trees: dict) -> None:
    storage = _tree(trees, "app/storage.bicep")
    account = _body(storage["resources"]["storage"])["properties"]
    assert account["allowSharedKeyAccess"] is False
    assert account["allowBlobPublicAccess"] is False
    assert account["minimumTlsVersion"] == "TLS1_2"
    assert account["supportsHttpsTrafficOnly"] is True
    variables = {k: v["value"] for k, v in storage["variables"].items()}
    assert variables["exportsContainerName"] == settings.EXPORTS_CONTAINER
    assert variables["jobsTableName"] == settings.JOBS_TABLE
    assert variables["queueNames"] == [settings.JOBS_QUEUE, settings.POISON_QUEUE]
    containers = {
        _body(r)["name"]: _body(r)
        for r in storage["resources"].values()
        if r["type"] == "Microsoft.Storage/storageAccounts/blobServices/containers"
    }
    assert set(containers) == {"exportsContainerName", "deploymentContainerName"}
    assert all(c["properties"]["publicAccess"] == "None" for c in containers.values())
    rule = _body(storage["resources"]["lifecycle"])["properties"]["policy"]["rules"][0]
    assert rule["definition"]["filters"]["prefixMatch"] == ["${exportsContainerName}/"]
    delete = rule["definition"]["actions"]["baseBlob"]["delete"]
    assert delete == {"daysAfterCreationGreaterThan": "exportRetentionDays"}
    main = _tree(trees, "main.bicep")
    assert main["parameters"]["exportRetentionDays"]["default"] == 30


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
    ):
        assert needle in doc, f"docs/deploy.md does not mention {needle!r}"
