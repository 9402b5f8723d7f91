"""Licence product names: Microsoft's published table read by devtools/licences.py (as its CSV
comes: BOM, a row per service plan, header spellings that varied, trailing spaces), the dated
data file, and the column's fallbacks for a SKU the table lacks."""

from __future__ import annotations

import json

from devtools import licences as refresh
from userexport import licences
from userexport.columns import CATALOGUE, ColumnContext

CSV = (
    "\ufeffProduct_Display_Name,String_ Id,GUID,Service_Plan_Name,Service_Plan_Id,"
    "Service_Plans_Included_Friendly_Names\r\n"
    "Office 365 E3,ENTERPRISEPACK,6FD2C87F-B296-42F0-B197-1E91E994B900,EXCHANGE_S_ENTERPRISE,"
    "efb87545-963c-4e0d-99df-69c6916d9eb0,Exchange Online (Plan 2)\r\n"
    "Office 365 E3,ENTERPRISEPACK,6fd2c87f-b296-42f0-b197-1e91e994b900,SHAREPOINTENTERPRISE,"
    "5dbe027f-2339-4123-9542-606e4d348a72,SharePoint (Plan 2)\r\n"
    "Microsoft 365 E5 ,SPE_E5 ,06ebc4ee-1bb5-47dd-8120-11324bc54e06 ,X,y,z\r\n"
)


def test_the_published_csv_gives_one_name_per_sku(tmp_path):
    found = refresh.products(CSV)
    assert found == {
        "06ebc4ee-1bb5-47dd-8120-11324bc54e06": {"stringId": "SPE_E5", "name": "Microsoft 365 E5"},
        "6fd2c87f-b296-42f0-b197-1e91e994b900": {
            "stringId": "ENTERPRISEPACK",
            "name": "Office 365 E3",
        },
    }
    source, out = tmp_path / "licensing.csv", tmp_path / "names.json"
    source.write_text(CSV, encoding="utf-8")
    argv = ["--source", str(source), "--out", str(out), "--copy-dated", "2025-12-30"]
    assert refresh.main(argv) == 0
    data = json.loads(out.read_text())
    assert data["asOf"] == "2025-12-30" and data["source"] == refresh.SOURCE
    assert data["products"] == found


def test_a_file_that_is_not_the_table_is_refused(tmp_path, capsys):
    source = tmp_path / "other.csv"
    source.write_text("a,b\r\n1,2\r\n")
    assert refresh.main(["--source", str(source), "--out", str(tmp_path / "x.json")]) == 1
    assert "licensing CSV" in capsys.readouterr().err


def test_the_kept_table_is_dated_and_names_the_common_skus():
    assert licences.as_of() >= "2025-01-01"
    assert licences.product_name("6FD2C87F-B296-42F0-B197-1E91E994B900") == "Office 365 E3"
    assert licences.product_name("00000000-0000-0000-0000-000000000000") is None


def test_a_sku_the_table_lacks_keeps_its_part_number_else_its_id():
    newer, unknown = "11111111-2222-3333-4444-555555555555", "99999999-0000-0000-0000-000000000000"
    value = CATALOGUE["assignedLicenseNames"].bind(ColumnContext(skus={newer: "NEW_SKU"}))  # type: ignore[misc]
    user = {
        "assignedLicenses": [
            {"skuId": "6fd2c87f-b296-42f0-b197-1e91e994b900"},
            {"skuId": newer},
            {"skuId": unknown},
        ]
    }
    assert value(user, {}) == f"Office 365 E3;NEW_SKU;{unknown}"
