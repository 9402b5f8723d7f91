"""Makes newer Bicep readable by pycep-parser 0.5.1 (which checkov 3.3.30 pins), for offline checks.

pycep's grammar predates two things infra/ uses, and rejects the whole file over either:
- the `extension` statement (Microsoft Graph Bicep extension): the line is blanked, the rest of
  such a file is plain Bicep;
- the `fail('message')` function (Bicep 0.33.93 on): it becomes `string('message')`, a function
  pycep knows that takes one argument too, so the expression keeps its shape. Nothing here
  evaluates expressions; tests that care about fail() read the Bicep text itself.

Used by pycep_dump.py (run with .venv-infra's Python) and by the checkov run in
test_infra_bicep.py; plain standard library, so both interpreters can import it.
"""

import re

EXTENSION_LINE = re.compile(r"^\s*extension\s+\w+.*$", re.MULTILINE)
FAIL_CALL = re.compile(r"\bfail\(")


def for_pycep(text: str) -> str:
    """The Bicep text with the constructs pycep-parser 0.5.1 cannot parse rewritten."""
    return FAIL_CALL.sub("string(", EXTENSION_LINE.sub("", text))
