"""App settings: defaults, and errors that name the setting to fix."""

import pytest

from userexport.settings import Settings, SettingsError

IDENTITY_STORAGE = {
    "AzureWebJobsStorage__blobServiceUri": "https://acct.blob.core.windows.net",
    "AzureWebJobsStorage__queueServiceUri": "https://acct.queue.core.windows.net",
    "AzureWebJobsStorage__tableServiceUri": "https://acct.table.core.windows.net",
}


def test_defaults():
    settings = Settings.from_env(IDENTITY_STORAGE)
    assert settings.storage.uses_token
    assert settings.credential == "managedidentity"
    assert settings.graph_base_url == "https://graph.microsoft.com/v1.0"
    assert settings.sas_lifetime.total_seconds() == 3600
    assert settings.nightly_schedule == "0 0 2 * * *"


def test_connection_string_for_local_use():
    settings = Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    assert not settings.storage.uses_token


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "AzureWebJobsStorage"),
        ({**IDENTITY_STORAGE, "USEREXPORT_CREDENTIAL": "password"}, "USEREXPORT_CREDENTIAL"),
        ({**IDENTITY_STORAGE, "USEREXPORT_NIGHTLY_SCHEDULE": "0 2 * * *"}, "NIGHTLY_SCHEDULE"),
        ({**IDENTITY_STORAGE, "USEREXPORT_SAS_LIFETIME_MINUTES": "-1"}, "SAS_LIFETIME"),
        ({**IDENTITY_STORAGE, "USEREXPORT_SAS_LIFETIME_MINUTES": "20000"}, "SAS_LIFETIME"),
        ({**IDENTITY_STORAGE, "USEREXPORT_TIME_BUDGET_SECONDS": "soon"}, "TIME_BUDGET"),
        ({**IDENTITY_STORAGE, "USEREXPORT_GRAPH_BASE_URL": "http://evil"}, "GRAPH_BASE_URL"),
        ({**IDENTITY_STORAGE, "USEREXPORT_TIME_BUDGET_SECONDS": "nan"}, "TIME_BUDGET"),
        ({**IDENTITY_STORAGE, "USEREXPORT_TIME_BUDGET_SECONDS": "inf"}, "TIME_BUDGET"),
        ({**IDENTITY_STORAGE, "USEREXPORT_TIME_BUDGET_SECONDS": "-inf"}, "TIME_BUDGET"),
        ({**IDENTITY_STORAGE, "USEREXPORT_FAILURE_CAP_MINUTES": "NaN"}, "FAILURE_CAP"),
        ({**IDENTITY_STORAGE, "USEREXPORT_LEASE_GRACE_SECONDS": "0"}, "LEASE_GRACE"),
        ({**IDENTITY_STORAGE, "USEREXPORT_STALL_MINUTES": "1e999"}, "STALL"),
        # host.json's functionTimeout is 10 minutes: a budget must end a minute before it.
        ({**IDENTITY_STORAGE, "USEREXPORT_TIME_BUDGET_SECONDS": "541"}, "functionTimeout"),
    ],
)
def test_bad_settings_are_named(env, named):
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)


def test_the_budget_is_checked_against_the_hosts_function_timeout(tmp_path):
    host = tmp_path / "host.json"
    host.write_text('{"functionTimeout": "00:30:00"}')
    env = {**IDENTITY_STORAGE, "USEREXPORT_TIME_BUDGET_SECONDS": "1740"}
    assert Settings.from_env(env, host_json=host).time_budget_seconds == 1740
    with pytest.raises(SettingsError, match="at most 1740"):
        Settings.from_env({**env, "USEREXPORT_TIME_BUDGET_SECONDS": "1741"}, host_json=host)
    host.write_text('{"functionTimeout": "-1"}')  # unbounded (Flex Consumption allows it)
    env = {**IDENTITY_STORAGE, "USEREXPORT_TIME_BUDGET_SECONDS": "7200"}
    assert Settings.from_env(env, host_json=host).time_budget_seconds == 7200


def test_the_lease_outlives_the_budget_by_the_grace():
    settings = Settings.from_env({**IDENTITY_STORAGE, "USEREXPORT_LEASE_GRACE_SECONDS": "30"})
    assert settings.lease_seconds.total_seconds() == 240 + 30


@pytest.mark.parametrize(
    ("base_url", "scope"),
    [
        ("https://graph.microsoft.com/v1.0", "https://graph.microsoft.com/.default"),
        ("https://graph.microsoft.us/v1.0", "https://graph.microsoft.us/.default"),
        ("https://dod-graph.microsoft.us/v1.0", "https://dod-graph.microsoft.us/.default"),
        (
            "https://microsoftgraph.chinacloudapi.cn/v1.0",
            "https://microsoftgraph.chinacloudapi.cn/.default",
        ),
        ("http://127.0.0.1:8123/v1.0", "https://graph.microsoft.com/.default"),
    ],
)
def test_the_token_scope_follows_the_graph_endpoint(base_url, scope):
    settings = Settings.from_env({**IDENTITY_STORAGE, "USEREXPORT_GRAPH_BASE_URL": base_url})
    assert settings.graph_scope == scope


@pytest.mark.parametrize("platform", [None, "", "False", "false"])
def test_anonymous_routes_need_app_service_authentication(platform):
    env = {**IDENTITY_STORAGE, "USEREXPORT_HTTP_AUTH_LEVEL": "anonymous"}
    if platform is not None:
        env["WEBSITE_AUTH_ENABLED"] = platform
    with pytest.raises(SettingsError, match=r"USEREXPORT_HTTP_AUTH_LEVEL.*WEBSITE_AUTH_ENABLED"):
        Settings.from_env(env)


def test_the_auth_level_is_a_function_key_unless_app_service_authentication_is_on():
    assert Settings.from_env(IDENTITY_STORAGE).http_auth_level == "function"
    env = {
        **IDENTITY_STORAGE,
        "USEREXPORT_HTTP_AUTH_LEVEL": "Anonymous",
        "WEBSITE_AUTH_ENABLED": "True",
    }
    assert Settings.from_env(env).http_auth_level == "anonymous"
    with pytest.raises(SettingsError, match="USEREXPORT_HTTP_AUTH_LEVEL"):
        Settings.from_env({**IDENTITY_STORAGE, "USEREXPORT_HTTP_AUTH_LEVEL": "admin"})
