"""Parses Bicep files with pycep-parser and prints {path: tree or {"error": ...}} as JSON.

Run with the infra virtualenv's Python (/work/main/.venv-infra), not the app's: checkov and
pycep-parser pin dependencies the app must not inherit. Usage: pycep_dump.py FILE...

pycep-parser does not know the `extension` statement (Microsoft Graph Bicep extension) nor the
fail() function: bicep_compat.for_pycep rewrites both before parsing.
"""

import json
import sys

from bicep_compat import for_pycep  # beside this script, so on sys.path when it runs
from pycep import BicepParser


def main(paths: list[str]) -> None:
    parser = BicepParser()
    out: dict[str, object] = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            text = for_pycep(f.read())
        try:
            out[path] = parser.parse(text=text)
        except Exception as exc:  # noqa: BLE001 - reported per file to the test
            out[path] = {"error": f"{type(exc).__name__}: {exc}"}
    json.dump(out, sys.stdout, default=str)


if __name__ == "__main__":
    main(sys.argv[1:])
