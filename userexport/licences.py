"""Licence product names as the admin center shows them ("Microsoft 365 E3"), by SKU id.

From Microsoft's published "Product names and service plan identifiers for licensing" table,
kept as a dated data file (data/licence_names.json: its `asOf` date and source) that `python
-m devtools.licences` refreshes. A SKU newer than the file has no name here: the column then
falls back to the tenant's SKU part number (subscribedSkus), else the SKU id.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data" / "licence_names.json"


@cache
def _table() -> dict[str, Any]:
    return json.loads(DATA.read_text(encoding="utf-8"))


def product_name(sku_id: str) -> str | None:
    """The product name Microsoft publishes for this SKU id; None for one the table lacks."""
    product = _table()["products"].get(sku_id.lower())
    return product["name"] if product else None


def as_of() -> str:
    """The date of the table the names come from (YYYY-MM-DD)."""
    return str(_table()["asOf"])
