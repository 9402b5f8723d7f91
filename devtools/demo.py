"""`make demo`: a real export through the HTTP API on the local stack, as a script would run it.

DEMO_USERS (default 10000) sizes the generated tenant, DEMO_TENANT=file.jsonl exports a tenant
file instead, DEMO_OUT (default ./out) is where the CSV and the errors file go. As in Azure, the
app wants a function key (one made up for this run). DEMO_KEEP=1 keeps the stack running after
the export, for the results page and the command-line client, until Ctrl-C.
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


def export(api_url: str, key: str, ca_bundle: str, out: Path) -> tuple[dict, Path, Path]:
    """POST, poll the Location honouring Retry-After, then download both files by SAS URL."""
    with httpx.Client(timeout=60, headers={"x-functions-key": key}) as api:
        started = api.post(f"{api_url}/api/exports")
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
    paths = []
    with httpx.Client(timeout=300, verify=ssl.create_default_context(cafile=ca_bundle)) as storage:
        for key, name in (("downloadUrl", body["fileName"]), ("errorsUrl", "errors.csv")):
            response = storage.get(body[key])
            response.raise_for_status()
            path = out / (name if key == "downloadUrl" else f"{body['id']}-errors.csv")
            path.write_bytes(response.content)
            paths.append(path)
    return body, paths[0], paths[1]


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
            body, csv_path, errors_path = export(stack.api_url, key, ca_bundle, out)
            report(body, csv_path, errors_path, time.monotonic() - began)
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
