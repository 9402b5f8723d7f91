"""The CLI's credentials against devhost enforcing them as Azure does: function keys (the
default auth level), and App Service authentication with an Entra token from azure-identity
(`--entra`: DefaultAzureCredential, here a user-assigned managed identity of the simulated
tenant through its identity endpoint)."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.stack import EasyAuth, LocalStack

from .conftest import Cli

USERS = 40
FUNCTION_KEY = "fk-" + secrets.token_urlsafe(24)
AUDIENCE = "api://userexport-cli-tests"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory) -> Iterator[LocalStack]:
    with LocalStack(
        workdir=tmp_path_factory.mktemp("cli-keyed"), users=USERS, function_key=FUNCTION_KEY
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def entra(tmp_path_factory) -> Iterator[LocalStack]:
    with LocalStack(
        workdir=tmp_path_factory.mktemp("cli-entra"),
        users=USERS,
        identities=("intruder",),
        easy_auth=EasyAuth(audience=AUDIENCE, allowed_identities=("scripts",)),
        app_env={"USEREXPORT_HTTP_AUTH_LEVEL": "anonymous"},
    ) as stack:
        yield stack


def test_a_function_key_from_the_environment_is_sent_to_the_app_only(keyed, tmp_path):
    cli = Cli(keyed, keyed.api_url)
    run = cli("start", "--columns", "objectId", "--out", str(tmp_path), USEREXPORT_KEY=FUNCTION_KEY)
    # The files came from Azurite's SAS URLs: a key sent there too would not have hurt the
    # download, so the proof that it is not sent is in test_cli_units; here: it works.
    assert run.returncode == 0, run.stderr
    assert Path(run.last_line).read_bytes().count(b"\n") == USERS + 1
    assert FUNCTION_KEY not in run.stdout + run.stderr


def test_a_missing_or_wrong_key_is_exit_4_naming_the_key(keyed):
    cli = Cli(keyed, keyed.api_url)
    for run in (cli("list"), cli("list", "--key", "wrong-" + FUNCTION_KEY)):
        assert run.returncode == 4, run.stderr
        assert "--key" in run.stderr and "401" in run.stderr
        assert FUNCTION_KEY not in run.stderr
    assert cli("list", "--key", FUNCTION_KEY).returncode == 0


def identity_env(stack: LocalStack, name: str) -> dict[str, str]:
    """What makes DefaultAzureCredential a managed identity's: the identity endpoint (already in
    the stack's settings) and the user-assigned identity's client id."""
    return {
        "IDENTITY_ENDPOINT": stack.env["IDENTITY_ENDPOINT"],
        "IDENTITY_HEADER": stack.env["IDENTITY_HEADER"],
        "AZURE_CLIENT_ID": stack.identity(name)["clientId"],
    }


def test_entra_token_for_the_audience_gets_in(entra, tmp_path):
    cli = Cli(entra, entra.api_url)
    env = identity_env(entra, "scripts")
    run = cli(
        "--entra",
        "--audience",
        AUDIENCE,
        "start",
        "--columns",
        "objectId",
        "--out",
        str(tmp_path),
        **env,
    )
    assert run.returncode == 0, run.stderr
    assert Path(run.last_line).exists()
    listed = cli("list", "--entra", USEREXPORT_AUDIENCE=AUDIENCE, **env)
    assert listed.returncode == 0, listed.stderr


def test_entra_refusals_are_exit_4(entra):
    cli = Cli(entra, entra.api_url)
    no_token = cli("list")
    assert no_token.returncode == 4 and "401" in no_token.stderr, no_token.stderr
    intruder = cli("--entra", "--audience", AUDIENCE, "list", **identity_env(entra, "intruder"))
    assert intruder.returncode == 4 and "403" in intruder.stderr, intruder.stderr
    # No identity to be had: azure-identity's own message, exit 4.
    nobody = cli(
        "--entra",
        "--audience",
        AUDIENCE,
        "list",
        IDENTITY_ENDPOINT="http://127.0.0.1:9/msi/token",
        IDENTITY_HEADER="x",
        AZURE_CLIENT_ID="00000000-0000-0000-0000-000000000000",
    )
    assert nobody.returncode == 4 and "--entra" in nobody.stderr, nobody.stderr


def test_status_says_who_started_an_export(keyed, entra, tmp_path):
    """`status` (and `latest`, which shows the same) names the caller as the job recorded it:
    the function key by its fingerprint, never its value; an identity by its name and id."""
    by_key = Cli(keyed, keyed.api_url)
    run = by_key(
        "start",
        "--columns",
        "objectId",
        "--series",
        "cli-who",
        "--wait",
        USEREXPORT_KEY=FUNCTION_KEY,
    )
    assert run.returncode == 0, run.stderr
    shown = by_key("latest", "--series", "cli-who", USEREXPORT_KEY=FUNCTION_KEY)
    assert shown.returncode == 0, shown.stderr
    fingerprint = "key:" + hashlib.sha256(FUNCTION_KEY.encode()).hexdigest()[:12]
    assert re.search(rf"^started by: +function key {fingerprint}$", shown.stdout, re.M), (
        shown.stdout
    )
    assert FUNCTION_KEY not in shown.stdout + shown.stderr

    by_identity = Cli(entra, entra.api_url)
    env = {**identity_env(entra, "scripts"), "USEREXPORT_AUDIENCE": AUDIENCE}
    run = by_identity(
        "--entra", "start", "--columns", "objectId", "--series", "cli-who", "--wait", **env
    )
    assert run.returncode == 0, run.stderr
    shown = by_identity("--entra", "latest", "--series", "cli-who", **env)
    assert shown.returncode == 0, shown.stderr
    scripts = entra.identity("scripts")
    principal = re.escape(f"principal {scripts['clientId']} ({scripts['objectId']})")
    assert re.search(rf"^started by: +{principal}$", shown.stdout, re.M), shown.stdout
