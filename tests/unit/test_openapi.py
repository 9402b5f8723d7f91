"""docs/openapi.yaml is a valid OpenAPI description and says what the code does."""

from pathlib import Path

import yaml
from openapi_spec_validator import validate

from userexport.exportrequest import FIELDS
from userexport.filters import KEYS
from userexport.jobs import Status

SPEC = yaml.safe_load(Path(__file__).parents[2].joinpath("docs", "openapi.yaml").read_text())
SCHEMAS = SPEC["components"]["schemas"]


def test_the_description_is_valid_openapi():
    validate(SPEC)


def test_request_fields_match_the_code():
    assert set(SCHEMAS["ExportRequest"]["properties"]) == set(FIELDS)
    assert set(SCHEMAS["Filter"]["properties"]) == set(KEYS)


def test_statuses_match_the_code():
    assert SCHEMAS["Export"]["properties"]["status"]["enum"] == [s.value for s in Status]
