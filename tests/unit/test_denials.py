"""A refused authentication lookup: said once for the tenant, or per partition."""

from userexport.exporter import DENIED_MESSAGE, _denials
from userexport.jobs import Checkpoint, Partition


def part(index: int, prefixes: list[str], *, succeeded: int, denied: str | None) -> Partition:
    checkpoint = Checkpoint(lookups_succeeded=succeeded, lookups_denied=denied)
    return Partition("job", index, prefixes, checkpoint=checkpoint)


def test_refused_everywhere_is_said_once():
    parts = [
        part(0, ["a"], succeeded=0, denied="Forbidden"),
        part(1, ["b"], succeeded=0, denied=None),
    ]
    everywhere, rows = _denials(parts)
    assert everywhere and len(rows) == 1 and rows[0][5] == DENIED_MESSAGE


def test_refused_in_one_partition_names_its_prefixes():
    parts = [
        part(0, ["a", "b"], succeeded=40, denied=None),
        part(1, ["m", "n"], succeeded=0, denied="Authorization_RequestDenied"),
    ]
    everywhere, rows = _denials(parts)
    assert not everywhere and len(rows) == 1
    assert rows[0][4] == "Authorization_RequestDenied"
    assert "'m', 'n'" in rows[0][5]


def test_nothing_refused_says_nothing():
    assert _denials([part(0, [""], succeeded=5, denied=None)]) == (False, [])
