"""The CSV format: what a spreadsheet and Python's csv module read back."""

import csv
import io

import pytest

from userexport.columns import ADMIN_CENTER_COLUMNS, DEFAULT_COLUMN_NAMES, resolve
from userexport.csvfile import BOM, CsvEncoder, guard


def parse(data: bytes) -> list[list[str]]:
    assert data.startswith(BOM)
    return list(csv.reader(io.StringIO(data[len(BOM) :].decode("utf-8"), newline="")))


def test_header_is_the_admin_center_columns_in_order():
    encoder = CsvEncoder(ADMIN_CENTER_COLUMNS)
    header = encoder.header()
    assert header.endswith(b"\r\n")
    assert parse(header) == [list(DEFAULT_COLUMN_NAMES)]
    assert len(DEFAULT_COLUMN_NAMES) == 25


AWKWARD = [
    'Smith, "Jr."',
    "line one\nline two",
    "crlf\r\ninside",
    "tab\tinside",
    "中文名字",
    "مرحبا بالعالم",
    "emoji 👩‍💻",
    "combining e\u0301",
    "",
]


@pytest.mark.parametrize("value", AWKWARD)
def test_values_round_trip_exactly(value):
    columns = resolve(["objectId", "displayName"])
    encoder = CsvEncoder(columns, formula_guard=False)
    data = encoder.header() + encoder.rows([{"id": "1", "displayName": value}], {})
    assert parse(data)[1] == ["1", value]


def test_rows_end_with_crlf_and_nulls_are_empty():
    encoder = CsvEncoder(resolve(["objectId", "displayName", "accountEnabled"]))
    data = encoder.rows([{"id": "1", "displayName": None, "accountEnabled": False}], {})
    assert data == b"1,,False\r\n"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=SUM(A1)", "'=SUM(A1)"),
        ("@home", "'@home"),
        ("\tindent", "'\tindent"),
        ("\rcarriage", "'\rcarriage"),
        ("-Engineer", "'-Engineer"),
        ("+SUM(1)", "'+SUM(1)"),
        ("+1-1", "'+1-1"),
        ("+1 425 555 0100", "+1 425 555 0100"),
        ("+44 (20) 7946-0958", "+44 (20) 7946-0958"),
        ("plain", "plain"),
        ("a=b", "a=b"),
    ],
)
def test_formula_guard(value, expected):
    assert guard(value) == expected


def test_formula_guard_can_be_turned_off():
    columns = resolve(["objectId", "department"])
    on = CsvEncoder(columns).rows([{"id": "1", "department": "=cmd"}], {})
    off = CsvEncoder(columns, formula_guard=False).rows([{"id": "1", "department": "=cmd"}], {})
    assert on == b"1,'=cmd\r\n"
    assert off == b"1,=cmd\r\n"


def test_admin_center_mappings():
    user = {
        "id": "u1",
        "businessPhones": ["+1 425 555 0100", "+1 425 555 0199"],
        "mobilePhone": "+1 425 555 0101",
        "officeLocation": "18/2111",
        "otherMails": ["a@example.com", "b@example.com"],
    }
    auth = {
        "u1": {
            "phoneMethods": [
                {"phoneNumber": "+1 425 555 0111", "phoneType": "mobile"},
                {"phoneNumber": "+1 425 555 0112", "phoneType": "alternateMobile"},
            ],
            "emailMethods": [{"emailAddress": "auth@example.com"}],
        }
    }
    names = [
        "objectId",
        "telephoneNumber",
        "mobile",
        "physicalDeliveryOfficeName",
        "alternateEmailAddress",
        "authenticationAlternativePhoneNumber",
        "authenticationEmail",
    ]
    row = parse(BOM + CsvEncoder(resolve(names)).rows([user], auth))[0]
    assert row == [
        "u1",
        "+1 425 555 0100",
        "+1 425 555 0101",
        "18/2111",
        "a@example.com;b@example.com",
        "+1 425 555 0112",
        "auth@example.com",
    ]


def test_complex_values_are_compact_json():
    encoder = CsvEncoder(resolve(["objectId", "identities"]), formula_guard=False)
    identities = [{"signInType": "userPrincipalName", "issuer": "contoso.com"}]
    row = parse(BOM + encoder.rows([{"id": "1", "identities": identities}], {}))[0]
    assert row[1] == '[{"signInType":"userPrincipalName","issuer":"contoso.com"}]'


def test_every_column_is_documented():
    from pathlib import Path

    from userexport.columns import CATALOGUE

    documented = Path(__file__).parents[2].joinpath("docs", "columns.md").read_text()
    for name in CATALOGUE:
        assert f"| `{name}` |" in documented, name


def test_the_fast_path_writes_what_cell_writes():
    from userexport.columns import cell

    columns = resolve(["objectId", "accountEnabled", "department", "proxyAddresses", "mobile"])
    user = {
        "id": "1",
        "accountEnabled": True,
        "department": -5,
        "proxyAddresses": ["SMTP:a@example.com"],
        "mobile": None,
    }
    data = CsvEncoder(columns, formula_guard=False).rows([user], {})
    assert parse(BOM + data)[0] == [
        cell(user["id"]),
        "True",
        "-5",
        cell(user["proxyAddresses"]),
        "",
    ]
    assert parse(BOM + CsvEncoder(columns).rows([user], {}))[0][2] == "'-5"
