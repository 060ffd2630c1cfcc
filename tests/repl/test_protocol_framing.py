"""The parent's reader of the child's pipe: lines as they arrive, whatever the reads cut.

A real pipe, written from a thread the way the child writes (blocking ``os.write``), read by
``MessageReader`` in the event loop.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from rlm_async import ReplProtocolError
from rlm_async.repl._pipes import READ_CHUNK, MessageReader
from rlm_async.repl._protocol import LLMRequest, ResultMessage


def line(message: dict[str, object]) -> bytes:
    return (json.dumps(message) + "\n").encode("ascii")


def request(prompts: list[str], id: int = 1) -> bytes:
    return line({"type": "llm_request", "id": id, "cell": 1, "prompts": prompts})


@contextmanager
def pipe_written_with(*pieces: bytes) -> Iterator[int]:
    """The read end of a pipe that a thread writes ``pieces`` to, one write each, then closes."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)

    def write() -> None:
        try:
            for piece in pieces:
                os.write(write_fd, piece)  # blocking: waits for the reader as the child does
        finally:
            os.close(write_fd)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        yield read_fd
    finally:
        os.close(read_fd)
        writer.join()


async def read_all(fd: int, limit: int = 1 << 30) -> list[object]:
    reader = MessageReader(fd, max_message_bytes=limit)
    messages: list[object] = []
    while (message := await reader.receive()) is not None:
        messages.append(message)
    return messages


async def test_a_line_longer_than_many_reads_is_read_whole() -> None:
    prompts = [f"{i} " + "x" * 40_000 + "\n" for i in range(100)]  # 4 MB: several reads
    data = request(prompts)
    assert len(data) > 3 * READ_CHUNK
    with pipe_written_with(*(data[i : i + 70_000] for i in range(0, len(data), 70_000))) as fd:
        messages = await read_all(fd)
    assert len(messages) == 1 and isinstance(messages[0], LLMRequest)
    assert messages[0].prompts == prompts


@pytest.mark.parametrize("cut", [0, 1, 5, 30, 31, 32, 33, 60])
async def test_lines_cut_anywhere_by_the_writes_come_out_the_same(cut: int) -> None:
    data = (
        line({"type": "result", "cell": 1, "stdout": "one"})
        + request(["two"], id=2)
        + line({"type": "result", "cell": 3, "stdout": "three"})
    )
    with pipe_written_with(data[:cut], data[cut:]) as fd:
        messages = await read_all(fd)
    assert [type(m) for m in messages] == [ResultMessage, LLMRequest, ResultMessage]
    first, second, third = messages
    assert isinstance(first, ResultMessage) and first.stdout == "one"
    assert isinstance(second, LLMRequest) and second.prompts == ["two"]
    assert isinstance(third, ResultMessage) and third.stdout == "three"


async def test_many_short_lines_in_one_write_are_each_a_message() -> None:
    data = b"".join(line({"type": "result", "cell": i, "stdout": str(i)}) for i in range(500))
    with pipe_written_with(data) as fd:
        messages = await read_all(fd)
    assert [m.cell for m in messages if isinstance(m, ResultMessage)] == list(range(500))


async def test_a_line_past_the_limit_is_refused_once_its_bytes_pass_it() -> None:
    data = request(["y" * (3 * READ_CHUNK)])
    with (
        pipe_written_with(data) as fd,
        pytest.raises(ReplProtocolError, match="longer than 1,048,576 bytes"),
    ):
        await read_all(fd, limit=READ_CHUNK)


async def test_a_line_the_child_did_not_finish_is_dropped_at_the_end_of_the_pipe() -> None:
    data = line({"type": "result", "cell": 1}) + b'{"type": "result", "ce'
    with pipe_written_with(data) as fd:
        messages = await read_all(fd)
    assert [type(m) for m in messages] == [ResultMessage]
