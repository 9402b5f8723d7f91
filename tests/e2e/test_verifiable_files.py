"""Files a consumer can verify: the job's `files` and each blob's metadata give the rows, bytes
and SHA-256 of exactly the bytes committed, for a partitioned export and a delta series' runs;
`userexport download` refuses a file that is not those bytes (exit 5), writing nothing."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import subprocess
import sys
from typing import Any

import httpx

from devtools.stack import ROOT, LocalStack

from .conftest import Storage, export

URL_OF = {"csv": "downloadUrl", "changes": "changesUrl", "errors": "errorsUrl"}


def check_files(job: dict[str, Any], storage_http: httpx.Client, kinds: set[str]) -> None:
    """Each file handed out: its facts on the job and on the blob are its downloaded bytes'."""
    assert set(job["files"]) == kinds == {k for k, url in URL_OF.items() if url in job}, job
    for kind, facts in job["files"].items():
        url = job[URL_OF[kind]]
        data = storage_http.get(url).content
        records = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
        assert facts == {
            "rows": len(records) - 1,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }, kind
        # A consumer holding only the SAS URL reads the same facts from the blob.
        head = storage_http.head(url)
        assert head.status_code == 200, head.text
        on_blob = {name: head.headers.get(f"x-ms-meta-{name}") for name in facts}
        assert on_blob == {name: str(value) for name, value in facts.items()}, kind


def test_a_partitioned_exports_files_carry_their_rows_bytes_and_sha256(stack, storage_http):
    job = export(stack, {"columns": ["objectId", "displayName", "userPrincipalName"]})
    assert job["status"] == "succeeded" and job["partitions"] > 1, job
    check_files(job, storage_http, {"csv", "errors"})
    assert job["files"]["csv"]["rows"] == job["userCount"]


def test_a_delta_series_runs_files_carry_theirs(stack, storage_http):
    body = {
        "series": "verifiable",
        "mode": "delta",
        "snapshot": True,
        "columns": ["objectId", "displayName"],
    }
    full = export(stack, body)
    assert full["status"] == "succeeded" and full["delta"]["kind"] == "full", full
    check_files(full, storage_http, {"csv", "errors"})
    changes = export(stack, body)
    assert changes["status"] == "succeeded" and changes["delta"]["kind"] == "changes", changes
    check_files(changes, storage_http, {"csv", "changes", "errors"})
    assert changes["files"]["csv"]["sha256"] == full["files"]["csv"]["sha256"], (
        "nothing changed in between: the rebuilt snapshot is the same bytes"
    )


async def test_the_cli_refuses_a_file_that_is_not_what_the_export_committed(
    stack: LocalStack, storage: Storage, tmp_path
):
    job = export(stack, {"columns": ["objectId", "displayName"], "fileName": "staff.csv"})
    cli = [sys.executable, "-m", "userexport_cli", "download", job["id"]]
    env = {k: v for k, v in os.environ.items() if not k.startswith("USEREXPORT_")}
    env.update(USEREXPORT_URL=stack.api_url, SSL_CERT_FILE=stack.env["SSL_CERT_FILE"])

    def download(out: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*cli, "--out", str(tmp_path / out)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    whole = download("whole")
    assert whole.returncode == 0, whole.stderr
    assert (tmp_path / "whole" / "staff.csv").stat().st_size == job["files"]["csv"]["bytes"]
    # Someone with write access changes one character of the committed CSV: same size, same
    # rows, other bytes.
    blob = storage.exports.get_blob_client(f"{job['id']}/users.csv")
    data = await (await blob.download_blob()).readall()
    at = data.rindex(b"\r\n", 0, len(data) - 2) + 2  # the last row's first character
    tampered = data[:at] + (b"0" if data[at : at + 1] != b"0" else b"1") + data[at + 1 :]
    await blob.upload_blob(tampered, overwrite=True)
    refused = download("tampered")
    assert refused.returncode == 5, (refused.returncode, refused.stderr)
    assert "staff.csv is not the file the export committed" in refused.stderr
    assert "sha256" in refused.stderr and "rows" not in refused.stderr.split("(")[1]
    assert not (tmp_path / "tampered" / "staff.csv").exists(), "nothing written"
