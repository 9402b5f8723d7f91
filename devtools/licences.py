"""python -m devtools.licences [--source URL|FILE] [--out userexport/data/licence_names.json]

Refreshes the product names the admin center shows for licences ("Office 365 E3") from
Microsoft's published "Product names and service plan identifiers for licensing" table
(entra-docs, docs/identity/users/licensing-service-plan-reference.md; its CSV below). The CSV
has a row per SKU and service plan; this keeps one name per SKU id (GUID), with its String ID
(the skuPartNumber). Header spellings have varied (`String_ Id`), and some cells carry trailing
spaces: both are tolerated. The data file records where and when it was read.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

SOURCE = (
    "https://download.microsoft.com/download/e/3/e/e3e9faf2-f28b-490a-9ada-c6089a1fc5b0/"
    "Product%20names%20and%20service%20plan%20identifiers%20for%20licensing.csv"
)
OUT = Path(__file__).resolve().parent.parent / "userexport" / "data" / "licence_names.json"


def _key(header: str) -> str:
    return "".join(header.split()).lower()  # "String_ Id" -> "string_id"


def products(text: str) -> dict[str, dict[str, str]]:
    """{sku id (lower case): {"stringId", "name"}} from the published CSV's text."""
    rows = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    found: dict[str, dict[str, str]] = {}
    for row in rows:
        cells = {_key(k): (v or "").strip() for k, v in row.items() if k}
        sku, name = cells.get("guid", "").lower(), cells.get("product_display_name", "")
        if sku and name and sku not in found:
            found[sku] = {"stringId": cells.get("string_id", ""), "name": name}
    if not found:
        raise ValueError("no product rows: is this the licensing CSV?")
    return dict(sorted(found.items()))


def read(source: str) -> str:
    if source.startswith("https://"):
        with urllib.request.urlopen(source, timeout=60) as answer:
            return answer.read().decode("utf-8-sig")
    return Path(source).read_text(encoding="utf-8-sig")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.licences", description=__doc__)
    parser.add_argument("--source", default=SOURCE, help="the CSV's URL, or a copy of it")
    parser.add_argument("--out", type=Path, default=OUT, help="the data file to write")
    parser.add_argument(
        "--copy-dated",
        help="with a local copy: the date (YYYY-MM-DD) it was taken from Microsoft's table",
    )
    args = parser.parse_args(argv)
    try:
        found = products(read(args.source))
    except (OSError, ValueError) as error:
        print(f"licences: {error}", file=sys.stderr)
        return 1
    data = {
        "source": SOURCE,
        "read": datetime.now(UTC).strftime("%Y-%m-%d"),
        "asOf": args.copy_dated or datetime.now(UTC).strftime("%Y-%m-%d"),
        "products": found,
    }
    args.out.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{len(found)} products written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
