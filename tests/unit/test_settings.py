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
    ],
)
def test_bad_settings_are_named(env, named):
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)
