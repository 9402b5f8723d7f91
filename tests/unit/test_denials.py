"""Refused authentication lookups: said once when Graph allowed none in the whole job."""

from userexport.errorsfile import denied_everywhere
from userexport.jobs import Checkpoint, Partition


def part(index: int, *, succeeded: int, refused: int, code: str | None = None) -> Partition:
    checkpoint = Checkpoint(lookups_succeeded=succeeded, lookups_refused=refused, refused_code=code)
    return Partition("job", index, [str(index)], checkpoint=checkpoint)


def test_refused_everywhere_is_said_once_with_graphs_code():
    parts = [
        part(0, succeeded=0, refused=200, code="Authorization_RequestDenied"),
        part(1, succeeded=0, refused=0),
    ]
    assert denied_everywhere(parts) == "Authorization_RequestDenied"


def test_one_partition_allowed_means_not_denied_everywhere():
    parts = [part(0, succeeded=1, refused=0), part(1, succeeded=0, refused=500, code="x")]
    assert denied_everywhere(parts) is None


def test_nothing_refused_says_nothing():
    assert denied_everywhere([part(0, succeeded=5, refused=0)]) is None
    assert denied_everywhere([part(0, succeeded=0, refused=0)]) is None
