"""Typed settings, read once from app settings (environment variables)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta

# Fixed resource names: infra/ creates exactly these, so they are not settings.
EXPORTS_CONTAINER = "exports"
JOBS_TABLE = "exportjobs"
JOBS_QUEUE = "export-jobs"
POISON_QUEUE = f"{JOBS_QUEUE}-poison"

GRAPH_SCOPE = "https://graph.microsoft.com/.default"

# Every app setting the code reads, with its default (None: optional, no default).
# infra/ and local.settings.sample.json are checked against this list by the tests.
APP_SETTINGS: dict[str, str | None] = {
    "AzureWebJobsStorage": None,
    "AzureWebJobsStorage__blobServiceUri": None,
    "AzureWebJobsStorage__queueServiceUri": None,
    "AzureWebJobsStorage__tableServiceUri": None,
    "AzureWebJobsStorage__credential": None,
    "AzureWebJobsStorage__clientId": None,
    "AZURE_CLIENT_ID": None,
    "USEREXPORT_CREDENTIAL": "managedidentity",
    "USEREXPORT_GRAPH_BASE_URL": "https://graph.microsoft.com/v1.0",
    "USEREXPORT_SAS_LIFETIME_MINUTES": "60",
    "USEREXPORT_NIGHTLY_SCHEDULE": "0 0 2 * * *",
    "USEREXPORT_TIME_BUDGET_SECONDS": "240",
    "USEREXPORT_PARTITIONS": "8",
    "USEREXPORT_STATUS_RETRY_AFTER_SECONDS": "10",
}

# Settings that only a local run uses; a deployment sets every other one.
LOCAL_ONLY_SETTINGS = frozenset({"AzureWebJobsStorage"})

_NCRONTAB_FIELD = re.compile(r"^[0-9*/,\-A-Za-z]+$")


class SettingsError(ValueError):
    """An app setting is missing or malformed; the message names it and says what to set."""


@dataclass(frozen=True)
class StorageSettings:
    """How to reach the storage account: identity-based service URIs, or a connection string."""

    connection_string: str | None
    blob_uri: str | None
    queue_uri: str | None
    table_uri: str | None

    @property
    def uses_token(self) -> bool:
        return self.connection_string is None


@dataclass(frozen=True)
class Settings:
    storage: StorageSettings
    credential: str
    client_id: str | None
    graph_base_url: str
    sas_lifetime: timedelta
    nightly_schedule: str
    time_budget_seconds: float
    partitions: int
    status_retry_after_seconds: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(name, APP_SETTINGS[name])
            return value.strip() if value and value.strip() else APP_SETTINGS[name]

        def positive(name: str, *, kind: type = int) -> int | float:
            raw = get(name)
            try:
                value = kind(raw)
            except (TypeError, ValueError):
                raise SettingsError(f"{name} must be a positive number, not {raw!r}.") from None
            if value <= 0:
                raise SettingsError(f"{name} must be a positive number, not {raw!r}.")
            return value

        credential = (get("USEREXPORT_CREDENTIAL") or "").lower()
        if credential not in ("managedidentity", "default"):
            raise SettingsError(
                "USEREXPORT_CREDENTIAL must be 'managedidentity' (production) or 'default' "
                f"(DefaultAzureCredential, for local development), not {credential!r}."
            )
        schedule = get("USEREXPORT_NIGHTLY_SCHEDULE") or ""
        validate_ncrontab(schedule, setting="USEREXPORT_NIGHTLY_SCHEDULE")
        graph_base_url = (get("USEREXPORT_GRAPH_BASE_URL") or "").rstrip("/")
        if not graph_base_url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise SettingsError(
                "USEREXPORT_GRAPH_BASE_URL must be an https URL such as "
                "https://graph.microsoft.com/v1.0."
            )
        return cls(
            storage=_storage_settings(get),
            credential=credential,
            client_id=get("AZURE_CLIENT_ID"),
            graph_base_url=graph_base_url,
            sas_lifetime=_sas_lifetime(positive("USEREXPORT_SAS_LIFETIME_MINUTES")),
            nightly_schedule=schedule,
            time_budget_seconds=float(positive("USEREXPORT_TIME_BUDGET_SECONDS", kind=float)),
            partitions=_partitions(positive("USEREXPORT_PARTITIONS")),
            status_retry_after_seconds=int(positive("USEREXPORT_STATUS_RETRY_AFTER_SECONDS")),
        )


def _storage_settings(get: Callable[[str], str | None]) -> StorageSettings:
    uris = {
        kind: get(f"AzureWebJobsStorage__{kind}ServiceUri") for kind in ("blob", "queue", "table")
    }
    if all(uris.values()):
        return StorageSettings(None, uris["blob"], uris["queue"], uris["table"])
    connection_string = get("AzureWebJobsStorage")
    if connection_string:
        return StorageSettings(connection_string, None, None, None)
    raise SettingsError(
        "Storage is not configured: set AzureWebJobsStorage__blobServiceUri, "
        "AzureWebJobsStorage__queueServiceUri and AzureWebJobsStorage__tableServiceUri "
        "(identity-based, production) or AzureWebJobsStorage (a connection string, local only)."
    )


def _sas_lifetime(minutes: float) -> timedelta:
    # A user delegation key, and so every SAS minted from it, lives at most 7 days.
    if minutes > 7 * 24 * 60:
        raise SettingsError("USEREXPORT_SAS_LIFETIME_MINUTES must be at most 10080 (7 days).")
    return timedelta(minutes=minutes)


def _partitions(count: float) -> int:
    # More partitions than UPN first characters (44) would leave some with nothing to list.
    if count > 44:
        raise SettingsError("USEREXPORT_PARTITIONS must be from 1 (sequential) to 44.")
    return int(count)


def validate_ncrontab(expression: str, *, setting: str) -> None:
    """Checks the shape of a 6-field NCRONTAB expression (seconds first), as Functions wants."""
    fields = expression.split()
    if len(fields) != 6 or not all(_NCRONTAB_FIELD.match(f) for f in fields):
        raise SettingsError(
            f"{setting} must be a 6-field NCRONTAB expression in UTC, "
            f"e.g. '0 0 2 * * *' (02:00 every day), not {expression!r}."
        )
