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


CALLER = "6f1d2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b"


@pytest.mark.parametrize("allowed", [None, "", " , "])
def test_anonymous_routes_need_an_allow_list(allowed):
    """Each request at the anonymous level is let in only for an identity of the allow-list;
    WEBSITE_AUTH_ENABLED decides nothing (True when unauthenticated requests are allowed too,
    and Flex Consumption may not set it)."""
    env = {**IDENTITY_STORAGE, "USEREXPORT_HTTP_AUTH_LEVEL": "anonymous"}
    env["WEBSITE_AUTH_ENABLED"] = "True"
    if allowed is not None:
        env["USEREXPORT_ALLOWED_CALLERS"] = allowed
    with pytest.raises(SettingsError, match=r"USEREXPORT_HTTP_AUTH_LEVEL.*ALLOWED_CALLERS"):
        Settings.from_env(env)


def test_the_allow_list_is_object_ids():
    with pytest.raises(SettingsError, match="USEREXPORT_ALLOWED_CALLERS"):
        Settings.from_env({**IDENTITY_STORAGE, "USEREXPORT_ALLOWED_CALLERS": "logic-app"})
    env = {**IDENTITY_STORAGE, "USEREXPORT_ALLOWED_CALLERS": f" {CALLER.upper()} ,{CALLER}"}
    assert Settings.from_env(env).allowed_callers == {CALLER}


def test_the_auth_level_is_a_function_key_unless_anonymous_is_asked_for():
    assert Settings.from_env(IDENTITY_STORAGE).http_auth_level == "function"
    env = {
        **IDENTITY_STORAGE,
        "USEREXPORT_HTTP_AUTH_LEVEL": "Anonymous",
        "USEREXPORT_ALLOWED_CALLERS": CALLER,
    }
    settings = Settings.from_env(env)
    assert settings.http_auth_level == "anonymous" and not settings.platform_auth
    assert Settings.from_env({**env, "WEBSITE_AUTH_ENABLED": "True"}).platform_auth
    with pytest.raises(SettingsError, match="USEREXPORT_HTTP_AUTH_LEVEL"):
        Settings.from_env({**IDENTITY_STORAGE, "USEREXPORT_HTTP_AUTH_LEVEL": "admin"})


def test_the_exports_have_an_account_of_their_own_when_one_is_named():
    assert (
        Settings.from_env(IDENTITY_STORAGE).storage.exports_uri
        == (IDENTITY_STORAGE["AzureWebJobsStorage__blobServiceUri"])
    )
    own = "https://exports.blob.core.windows.net/"
    env = {**IDENTITY_STORAGE, "USEREXPORT_EXPORTS_BLOB_URI": own}
    assert Settings.from_env(env).storage.exports_uri == own
    with pytest.raises(SettingsError, match="USEREXPORT_EXPORTS_BLOB_URI"):
        Settings.from_env({**IDENTITY_STORAGE, "USEREXPORT_EXPORTS_BLOB_URI": "exports"})
