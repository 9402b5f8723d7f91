"""`make demo`: a real export through the HTTP API on the local stack, as a script would run it.

The export is the first run of a delta series ("demo"); then a few users are added, changed and
deleted through Graph's own APIs (on the simulated tenant), and the series' next run lists just
those changes, with the full CSV rebuilt from them.

DEMO_USERS (default 10000) sizes the generated tenant, DEMO_TENANT=file.jsonl exports a tenant
file instead, DEMO_OUT (default ./out) is where the CSVs and the errors files go. As in Azure,
the app wants a function key (one made up for this run). DEMO_KEEP=1 keeps the stack running
after the exports, for the results page and the command-line client, until Ctrl-C.
"""

from __future__ import annotations

import csv
import io
import os
import secrets
import signal
import ssl
import sys
import time
from pathlib import Path

import httpx

from devtools.stack import LocalStack, StackError


def _sigterm(*_: object) -> None:
    raise KeyboardInterrupt


SERIES = {"series": "demo", "mode": "delta", "snapshot": True}


def export(api_url: str, key: str, ca_bundle: str, out: Path) -> tuple[dict, dict[str, Path]]:
    """POST, poll the Location honouring Retry-After, then download the files by SAS URL: the
    CSV, the errors file and, for a run of changes, the changes file."""
    with httpx.Client(timeout=60, headers={"x-functions-key": key}) as api:
        started = api.post(f"{api_url}/api/exports", json=SERIES)
        started.raise_for_status()
        location = started.headers["Location"]
        print(f"queued export {started.json()['id']}; polling {location}")
        while True:
            status = api.get(location)
            body = status.json()
            if status.status_code != 202:
                break
            print(f"  {body['status']}: {body['usersWritten']} users written")
            time.sleep(float(status.headers.get("Retry-After", "5")))
    if body["status"] == "failed":
        raise SystemExit(f"The export failed: {body.get('reason')}")
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    with httpx.Client(timeout=300, verify=ssl.create_default_context(cafile=ca_bundle)) as storage:
        names = {
            "downloadUrl": body["fileName"],
            "errorsUrl": f"{body['id']}-errors.csv",
            "changesUrl": f"{body['id']}-changes.csv",
        }
        for key, name in names.items():
            if key in body:
                response = storage.get(body[key])
                response.raise_for_status()
                (out / name).write_bytes(response.content)
                paths[key] = out / name
    return body, paths


def change_some_users(stack: LocalStack) -> None:
    """Two users added, two changed and one deleted, as an admin would in the tenant."""
    with stack.tenant_writer() as tenant:
        users = tenant.users(select="id")[:3]
        for n in (1, 2):
            tenant.create_user(
                displayName=f"Demo Newcomer {n}",
                userPrincipalName=f"demo.newcomer{n}@contoso.example",
                mailNickname=f"demonewcomer{n}",
                accountEnabled=True,
            )
        tenant.update_user(users[0]["id"], jobTitle="Promoted in the demo")
        tenant.update_user(users[1]["id"], department="Moved in the demo")
        tenant.delete_user(users[2]["id"])


def main() -> int:
    signal.signal(signal.SIGTERM, _sigterm)
    users = int(os.environ.get("DEMO_USERS", "10000"))
    tenant = os.environ.get("DEMO_TENANT") or None
    out = Path(os.environ.get("DEMO_OUT", "out")).resolve()
    keep = os.environ.get("DEMO_KEEP", "") not in ("", "0")
    what = f"the tenant file {tenant}" if tenant else f"a generated tenant of {users} users"
    print(f"Starting Azurite, the simulated tenant ({what}) and devhost...")
    began = time.monotonic()
    key = secrets.token_urlsafe(24)
    try:
        with LocalStack(
            users=users,
            tenant_file=Path(tenant).resolve() if tenant else None,
            log_dir=out / "logs",
            function_key=key,
        ) as stack:
            print(f"API at {stack.api_url}")
            ca_bundle = stack.env["SSL_CERT_FILE"]
            body, paths = export(stack.api_url, key, ca_bundle, out)
            csv_path = paths["downloadUrl"]
            report(body, csv_path, paths["errorsUrl"], time.monotonic() - began)
            print("Adding 2 users, changing 2 and deleting 1, then exporting the changes...")
            change_some_users(stack)
            began = time.monotonic()
            body, paths = export(stack.api_url, key, ca_bundle, out)
            delta = body["delta"]
            print(
                f"Export {body['id']} {body['status']} in {time.monotonic() - began:.1f} s: "
                f"{delta['added']} added, {delta['updated']} updated, {delta['removed']} removed."
            )
            print(f"Changes file: {paths['changesUrl']}")
            print("Full CSV, rebuilt from the first one and the changes:")
            print(paths["downloadUrl"], flush=True)
            if keep:
                serve_until_interrupted(stack.api_url, key, ca_bundle)
    except StackError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if keep:
            print("demo: stopped; everything it started is stopped.", file=sys.stderr)
            return 0
        print("demo: interrupted; everything it started is stopped.", file=sys.stderr)
        return 130
    return 0


def report(body: dict, csv_path: Path, errors_path: Path, seconds: float) -> None:
    text = csv_path.read_bytes().decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    print(
        f"Export {body['id']} {body['status']}: {body['userCount']} users, "
        f"{body['errorCount']} errors, {len(rows[0])} columns, in {seconds:.1f} s."
    )
    print(f"Errors file: {errors_path}")
    print(csv_path, flush=True)


def serve_until_interrupted(api_url: str, key: str, ca_bundle: str) -> None:
    """Keeps the stack up and says how to reach it: the key is this run's, made up locally."""
    print(
        "\nThe stack stays up until Ctrl-C.\n"
        f"  Results page: {api_url}/api/ui?code={key}\n"
        f"  Command line: export USEREXPORT_URL={api_url} USEREXPORT_KEY={key} "
        f"SSL_CERT_FILE={ca_bundle}\n"
        "                .venv/bin/userexport list",
        flush=True,
    )
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
