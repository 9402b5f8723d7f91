"""`make demo` as a user runs it: the export lands on disk, and with DEMO_KEEP=1 the results page
and the command-line client work against its stack, with the key it prints."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys

import httpx

from devtools.stack import ROOT


def test_the_demo_leaves_the_files_and_its_stack_serves_the_page_and_the_cli(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "DEMO_USERS": "300", "DEMO_OUT": str(out), "DEMO_KEEP": "1"}
    demo = subprocess.Popen(
        [sys.executable, "-m", "devtools.demo"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert demo.stdout is not None
        lines: list[str] = []
        for line in demo.stdout:
            lines.append(line.rstrip("\n"))
            if line.strip().startswith(".venv/bin/userexport"):
                break
        text = "\n".join(lines)
        assert "succeeded: 300 users" in text, text
        csv_path = next(line for line in lines if line.startswith("/") and line.endswith(".csv"))
        assert os.path.isfile(csv_path) and csv_path.startswith(str(out))
        assert any(name.endswith("-errors.csv") for name in os.listdir(out))
        # The series' second run: the changes the demo made, in a changes file on disk.
        assert "2 added, 2 updated, 1 removed" in text, text
        changes = next(line for line in lines if line.startswith("Changes file: "))
        with open(changes.removeprefix("Changes file: "), encoding="utf-8-sig", newline="") as f:
            changed = list(csv.reader(f))
        assert changed[0][:2] == ["changeType", "changeReason"] and len(changed) == 6
        kinds = sorted(row[0] for row in changed[1:])
        assert kinds == ["added", "added", "removed", "updated", "updated"]

        page = re.search(r"Results page: (\S+)", text)
        cli = re.search(r"export (USEREXPORT_URL=\S+ USEREXPORT_KEY=\S+ SSL_CERT_FILE=\S+)", text)
        assert page and cli, text
        answer = httpx.get(page.group(1), timeout=30)
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
        # The page holds no data; what it shows needs the key (the page sends it as a header).
        api = page.group(1).split("?")[0].removesuffix("/ui") + "/exports"
        assert httpx.get(api, timeout=30).status_code == 401

        cli_env = dict(os.environ)
        cli_env.update(pair.split("=", 1) for pair in cli.group(1).split())
        listed = subprocess.run(
            [sys.executable, "-m", "userexport_cli", "list", "--json"],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert listed.returncode == 0, listed.stderr
        changes_run, first = json.loads(listed.stdout)["value"]
        assert first["status"] == "succeeded" and first["userCount"] == 300
        assert changes_run["delta"]["kind"] == "changes" and changes_run["userCount"] == 301
    finally:
        os.killpg(demo.pid, signal.SIGTERM)
        code = demo.wait(timeout=60)
    assert code == 0, "the demo stops cleanly on SIGTERM"
