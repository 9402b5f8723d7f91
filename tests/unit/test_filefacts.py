"""A file's facts (rows, bytes, sha256) are the same however its bytes arrive in chunks."""

from __future__ import annotations

import hashlib
import itertools

from hypothesis import given
from hypothesis import strategies as st

from userexport.csvfile import encode_rows
from userexport.filefacts import Tally
from userexport_cli.verify import FileCheck

cells = st.text(alphabet=st.sampled_from(["a", ",", '"', "\r", "\n", "é", " "]), max_size=6)


@given(
    rows=st.lists(st.lists(cells, min_size=2, max_size=2), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6),
)
def test_facts_are_the_files_own_whatever_the_chunks(rows, cuts):
    data = encode_rows(["a", "b"], rows, with_header=True)
    tally, check = Tally(), FileCheck()
    edges = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    for start, end in itertools.pairwise(edges):
        tally.add(data[start:end])
        check.add(data[start:end])
    facts = tally.facts()
    assert facts.rows == len(rows), "records after the header, a quoted CRLF inside one"
    assert facts.bytes == len(data)
    assert facts.sha256 == hashlib.sha256(data).hexdigest()
    # The CLI, installed without the app, keeps its own copy of the count: the two agree.
    assert check.facts() == facts.to_json() and check.mismatch(facts.to_json()) is None


def test_an_empty_file_and_a_header_alone_have_no_rows():
    assert Tally().facts().rows == 0
    header_only = Tally()
    header_only.add(b"\xef\xbb\xbfa,b\r")
    header_only.add(b"\n")
    assert header_only.facts().rows == 0 and header_only.facts().bytes == 8
