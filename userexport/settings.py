"""Typed settings, read once from app settings (environment variables)."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

# Fixed resource names: infra/ creates exactly these, so they are not settings.
EXPORTS_CONTAINER = "exports"
JOBS_TABLE = "exportjobs"
JOBS_QUEUE = "export-jobs"
POISON_QUEUE = f"{JOBS_QUEUE}-poison"

PUBLIC_GRAPH_SCOPE = "https://graph.microsoft.com/.default"
HOST_JSON = Path(__file__).resolve().parent.parent / "host.json"
# What an invocation may run past its budget (a last request, a checkpoint) before the host's
# functionTimeout: the budget must leave this much room.
TIMEOUT_MARGIN_SECONDS = 60.0

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
    "USEREXPORT_PARTITIONS": "32",
    "USEREXPORT_SMALL_TENANT_USERS": "1000",
    "USEREXPORT_PARTITION_SECONDS": "10",
    "USEREXPORT_STATUS_RETRY_AFTER_SECONDS": "10",
    "USEREXPORT_LEASE_GRACE_SECONDS": "120",
    "USEREXPORT_FAILURE_CAP_MINUTES": "30",
    "USEREXPORT_STALL_MINUTES": "15",
    "USEREXPORT_HTTP_AUTH_LEVEL": "function",
    "USEREXPORT_NIGHTLY_MODE": "delta",
    "USEREXPORT_SERIES_KEEP": "14",
    "USEREXPORT_DELTA_FULL_DAYS": "7",
    "USEREXPORT_STORM_SECONDS": "120",
    "USEREXPORT_MAX_RUNNING_EXPORTS": "3",
    "USEREXPORT_MAX_QUEUED_EXPORTS": "100",
    "USEREXPORT_ADMISSION_SECONDS": "30",
    # The object ids App Service authentication lets in (its allowedPrincipals), which the app
    # checks again on every request at the anonymous level (functions/caller.py).
    "USEREXPORT_ALLOWED_CALLERS": None,
    # The exports' own storage account (blob endpoint); unset: the host's storage.
    "USEREXPORT_EXPORTS_BLOB_URI": None,
}
# Set by App Service itself (never by a deployment) when App Service authentication is on.
PLATFORM_AUTH_ENABLED = "WEBSITE_AUTH_ENABLED"
HTTP_AUTH_LEVELS = ("function", "anonymous")

# Settings that only a local run uses; a deployment sets every other one.
LOCAL_ONLY_SETTINGS = frozenset({"AzureWebJobsStorage"})

_NCRONTAB_FIELD = re.compile(r"^[0-9*/,\-A-Za-z]+$")
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class SettingsError(ValueError):
    """An app setting is missing or malformed; the message names it and says what to set."""


@dataclass(frozen=True)
class StorageSettings:
    """How to reach the storage account: identity-based service URIs, or a connection string."""

    connection_string: str | None
    blob_uri: str | None
    queue_uri: str | None
    table_uri: str | None
    # The exports' account (USEREXPORT_EXPORTS_BLOB_URI), reached with the identity; None with
    # a connection string and no such setting: the exports live in the host's account.
    exports_uri: str | None = None

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
    partitions: int  # at most this many: the plan picks the count from its estimate
    status_retry_after_seconds: int
    lease_seconds: timedelta  # a partition's lease: the budget and a grace
    failure_cap: timedelta  # how long Graph may fail without a success before a job fails
    stall: timedelta  # how long a job may show no progress before the sweep moves it
    small_tenant_users: int = 1000  # listings of at most this many users are not split
    partition_seconds: float = 10.0  # the estimated work a partition is planned for; 0: most
    http_auth_level: str = "function"  # the HTTP routes' auth level: "function" or "anonymous"
    nightly_mode: str = "delta"  # the nightly series' mode: "delta" or "full"
    series_keep: int = 14  # the newest runs of each series kept by the nightly retention
    delta_full_days: float = 7.0  # a delta series runs a full export when its last is older
    # How long a failure that Graph's storms could explain (a lookup failing while others are
    # served, a "no premium licence" 403 in a premium tenant) is retried before it is believed.
    storm_seconds: float = 120.0
    # Admission (admission.py): exports running at once beyond the small ones and the timer's;
    # queued exports past which POST answers 429; how often a queued export asks again.
    max_running_exports: int = 3
    max_queued_exports: int = 100
    admission_seconds: float = 30.0
    # The identities let in at the anonymous level (App Service authentication in front).
    allowed_callers: frozenset[str] = frozenset()
    # App Service authentication is on (WEBSITE_AUTH_ENABLED): its principal headers are its.
    platform_auth: bool = False

    @property
    def graph_scope(self) -> str:
        """The token scope of the Graph endpoint in use: national clouds have their own
        (https://graph.microsoft.us/.default...); a loopback simulator plays the public one."""
        parts = urlsplit(self.graph_base_url)
        if parts.hostname in ("127.0.0.1", "localhost"):
            return PUBLIC_GRAPH_SCOPE
        return f"https://{parts.netloc}/.default"

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, host_json: Path = HOST_JSON
    ) -> Settings:
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
            if not math.isfinite(value) or value <= 0:
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
        budget = float(positive("USEREXPORT_TIME_BUDGET_SECONDS", kind=float))
        _check_budget(budget, host_json)
        allowed = _object_ids(get("USEREXPORT_ALLOWED_CALLERS") or "")
        return cls(
            storage=_storage_settings(get),
            credential=credential,
            client_id=get("AZURE_CLIENT_ID"),
            graph_base_url=graph_base_url,
            sas_lifetime=_sas_lifetime(positive("USEREXPORT_SAS_LIFETIME_MINUTES")),
            nightly_schedule=schedule,
            time_budget_seconds=budget,
            partitions=_partitions(positive("USEREXPORT_PARTITIONS")),
            status_retry_after_seconds=int(positive("USEREXPORT_STATUS_RETRY_AFTER_SECONDS")),
            lease_seconds=timedelta(
                seconds=budget + positive("USEREXPORT_LEASE_GRACE_SECONDS", kind=float)
            ),
            failure_cap=timedelta(minutes=positive("USEREXPORT_FAILURE_CAP_MINUTES", kind=float)),
            stall=timedelta(minutes=positive("USEREXPORT_STALL_MINUTES", kind=float)),
            small_tenant_users=int(_not_negative("USEREXPORT_SMALL_TENANT_USERS", get)),
            partition_seconds=_not_negative("USEREXPORT_PARTITION_SECONDS", get),
            http_auth_level=_http_auth_level(get("USEREXPORT_HTTP_AUTH_LEVEL") or "", allowed),
            nightly_mode=_nightly_mode(get("USEREXPORT_NIGHTLY_MODE") or ""),
            series_keep=int(positive("USEREXPORT_SERIES_KEEP")),
            delta_full_days=float(positive("USEREXPORT_DELTA_FULL_DAYS", kind=float)),
            storm_seconds=float(positive("USEREXPORT_STORM_SECONDS", kind=float)),
            max_running_exports=int(positive("USEREXPORT_MAX_RUNNING_EXPORTS")),
            max_queued_exports=int(positive("USEREXPORT_MAX_QUEUED_EXPORTS")),
            admission_seconds=float(positive("USEREXPORT_ADMISSION_SECONDS", kind=float)),
            allowed_callers=allowed,
            platform_auth=env.get(PLATFORM_AUTH_ENABLED, "").strip().lower() == "true",
        )


def _nightly_mode(value: str) -> str:
    if value not in ("delta", "full"):
        raise SettingsError(f"USEREXPORT_NIGHTLY_MODE must be 'delta' or 'full', not {value!r}.")
    return value


def _storage_settings(get: Callable[[str], str | None]) -> StorageSettings:
    uris = {
        kind: get(f"AzureWebJobsStorage__{kind}ServiceUri") for kind in ("blob", "queue", "table")
    }
    exports = get("USEREXPORT_EXPORTS_BLOB_URI")
    if exports is not None and not exports.startswith(("https://", "http://127.0.0.1")):
        raise SettingsError(
            "USEREXPORT_EXPORTS_BLOB_URI must be the exports storage account's blob endpoint, "
            "such as https://<account>.blob.core.windows.net/."
        )
    if all(uris.values()):
        return StorageSettings(
            None, uris["blob"], uris["queue"], uris["table"], exports or uris["blob"]
        )
    connection_string = get("AzureWebJobsStorage")
    if connection_string:
        return StorageSettings(connection_string, None, None, None, exports)
    raise SettingsError(
        "Storage is not configured: set AzureWebJobsStorage__blobServiceUri, "
        "AzureWebJobsStorage__queueServiceUri and AzureWebJobsStorage__tableServiceUri "
        "(identity-based, production) or AzureWebJobsStorage (a connection string, local only)."
    )


def function_timeout(host_json: Path) -> float | None:
    """host.json's functionTimeout in seconds; None when unbounded (-1) or not set."""
    try:
        value = json.loads(host_json.read_text()).get("functionTimeout")
    except FileNotFoundError:
        return None
    if not value or str(value).strip() == "-1":
        return None
    days, _, clock = str(value).rpartition(".")
    hours, minutes, seconds = (float(x) for x in clock.split(":"))
    return (float(days or 0) * 24 + hours) * 3600 + minutes * 60 + seconds


def _check_budget(budget: float, host_json: Path) -> None:
    timeout = function_timeout(host_json)
    if timeout is not None and budget > timeout - TIMEOUT_MARGIN_SECONDS:
        raise SettingsError(
            f"USEREXPORT_TIME_BUDGET_SECONDS ({budget:g}) must leave {TIMEOUT_MARGIN_SECONDS:g} s "
            f"before host.json's functionTimeout ({timeout:g} s): set it to at most "
            f"{timeout - TIMEOUT_MARGIN_SECONDS:g}."
        )


def _sas_lifetime(minutes: float) -> timedelta:
    # A user delegation key, and so every SAS minted from it, lives at most 7 days.
    if minutes > 7 * 24 * 60:
        raise SettingsError("USEREXPORT_SAS_LIFETIME_MINUTES must be at most 10080 (7 days).")
    return timedelta(minutes=minutes)


MAX_PARTITIONS = 64


def _partitions(count: float) -> int:
    # Past 44 (the UPN first characters), partitions split busy first characters by their
    # second; 64 queue messages at once is already past one instance's concurrency.
    if count > MAX_PARTITIONS:
        raise SettingsError(
            f"USEREXPORT_PARTITIONS must be from 1 (sequential) to {MAX_PARTITIONS}."
        )
    return int(count)


def _not_negative(name: str, get: Callable[[str], str | None]) -> float:
    raw = get(name)
    try:
        value = float(raw or "")
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value < 0:
        raise SettingsError(f"{name} must be a number, 0 or more, not {raw!r}.")
    return value


def _http_auth_level(level: str, allowed: frozenset[str]) -> str:
    level = level.lower()
    if level not in HTTP_AUTH_LEVELS:
        raise SettingsError(
            f"USEREXPORT_HTTP_AUTH_LEVEL must be 'function' (a function key on every call) or "
            f"'anonymous' (behind App Service authentication), not {level!r}."
        )
    # Anonymous routes are let in per request, only for an identity of the allow-list that
    # App Service authentication named (functions/caller.py): without a list, nobody. Not
    # WEBSITE_AUTH_ENABLED: it reads True when unauthenticated requests are allowed too, and
    # Flex Consumption may not set it.
    if level == "anonymous" and not allowed:
        raise SettingsError(
            "USEREXPORT_HTTP_AUTH_LEVEL is 'anonymous' but USEREXPORT_ALLOWED_CALLERS is empty: "
            "set it to the object ids of the identities App Service authentication lets in "
            "(infra parameter allowedCallerIdentities), or set USEREXPORT_HTTP_AUTH_LEVEL to "
            "'function'."
        )
    return level


def _object_ids(text: str) -> frozenset[str]:
    """USEREXPORT_ALLOWED_CALLERS: object ids (GUIDs), comma-separated, in lower case."""
    ids = [part.strip().lower() for part in text.split(",") if part.strip()]
    for object_id in ids:
        if not _GUID.fullmatch(object_id):
            raise SettingsError(
                "USEREXPORT_ALLOWED_CALLERS must list object ids (GUIDs) separated by commas, "
                f"not {object_id!r}."
            )
    return frozenset(ids)


def validate_ncrontab(expression: str, *, setting: str) -> None:
    """Checks the shape of a 6-field NCRONTAB expression (seconds first), as Functions wants."""
    fields = expression.split()
    if len(fields) != 6 or not all(_NCRONTAB_FIELD.match(f) for f in fields):
        raise SettingsError(
            f"{setting} must be a 6-field NCRONTAB expression in UTC, "
            f"e.g. '0 0 2 * * *' (02:00 every day), not {expression!r}."
        )
