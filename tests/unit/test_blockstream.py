"""blobsink.BlockStream: the one way partitions and the changes run stage their blocks."""

from __future__ import annotations

import base64

from userexport.blobsink import BlockStream, Stream


class RecordingBlob:
    """Records staged blocks in order, as Blob Storage keeps them (uncommitted) by id."""

    def __init__(self) -> None:
        self.staged: list[tuple[str, bytes]] = []

    async def stage_block(self, block_id: str, data: bytes, *, length: int) -> None:
        assert length == len(data)
        self.staged.append((block_id, data))


def _decoded(block: str) -> str:
    return base64.b64decode(block).decode()


async def test_blocks_fill_to_the_size_then_the_rest_on_flush():
    blob = RecordingBlob()
    blocks = BlockStream(blob, Stream.CHANGES_RUN, epoch=3, block_bytes=4)  # type: ignore[arg-type]
    for data in (b"ab", b"cd", b"e", b""):
        await blocks.add(data)
    await blocks.flush()
    await blocks.flush()  # nothing buffered: no empty block
    assert [data for _, data in blob.staged] == [b"abcd", b"e"]
    assert blocks.ids == [block for block, _ in blob.staged]
    assert [_decoded(b) for b in blocks.ids] == ["C0000000003000000", "C0000000003000001"]
    assert blocks.staged == 2


async def test_a_resumed_stream_numbers_on_from_its_checkpoint():
    blob = RecordingBlob()
    blocks = BlockStream(
        blob,  # type: ignore[arg-type]
        Stream.CSV_ROWS,
        partition=7,
        epoch=2,
        staged=5,
        block_bytes=1024,
    )
    await blocks.add(b"rows")
    await blocks.flush()
    assert [_decoded(b) for b in blocks.ids] == ["U0007000002000005"]
    assert blocks.staged == 6
