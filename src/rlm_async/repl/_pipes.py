"""The two protocol pipes between the parent and a REPL child: framed messages each way.

Both ends are bounded: a write must make progress before a deadline (a child that stops
reading its input is hung, not waited for), and a read never holds more than one line of
``max_message_bytes`` nor hands out thousands of messages without yielding to the event
loop. ``_process.py`` owns the file descriptors and the child; these only read and write.
"""

from __future__ import annotations

import os

import anyio
import anyio.lowlevel

from rlm_async._exceptions import ReplProtocolError
from rlm_async.repl._protocol import ChildMessage, decode_child_message

__all__ = [
    "DEFAULT_WRITE_TIMEOUT",
    "READ_CHUNK",
    "ChildStoppedReading",
    "MessageReader",
    "MessageWriter",
]

READ_CHUNK = 1 << 20
"""Bytes asked for by one ``os.read`` of a child's pipe."""
# Messages handed out from the read buffer between two yields to the event loop: a 1 MiB
# read of short forged lines is thousands of messages, which must not run as one stall.
_LINES_PER_YIELD = 64
DEFAULT_WRITE_TIMEOUT = 10.0
"""Seconds a message to the child may take to be written (``ReplOptions.write_timeout``)."""


class ChildStoppedReading(OSError):
    """A message could not be written to the child in time: it stopped reading its input.

    An ``OSError`` like a broken pipe, so every caller that treats "the child is gone" as
    a failed write (shutdown, context loading) treats a hung child the same way. The
    session turns it into a kill and a restart; it never leaves the package.
    """


class MessageWriter:
    """Writes framed messages to the child's input pipe (a non-blocking fd it does not own)."""

    def __init__(self, to_child: int) -> None:
        self._to_child = to_child
        # One writer at a time: the event loop allows one waiter per fd (a second raises
        # BusyResourceError), and two interleaved messages would corrupt the stream.
        self._write_lock = anyio.Lock()
        self._torn = False  # a write was cut mid-message (cancelled): the line is garbage
        self._stalled: str | None = None  # why the child was found not reading, once it was

    async def send(self, data: bytes, *, within: float = DEFAULT_WRITE_TIMEOUT) -> None:
        """Write one framed message; the child must take some of it every ``within`` seconds.

        The child reads its input in a thread of its own, whatever its cell does, so a
        pipe that accepts no byte for that long means model code stopped that thread. The
        deadline is on progress, not on the whole message nor on the wait for the writers
        ahead of this one: 64 megabyte answers queued behind each other to a child that
        reads steadily are not a hung child. Once one write failed for lack of progress,
        every later one fails at once: the child is hung, and no queue waits on it again.

        Raises:
            ChildStoppedReading: no byte of the message was taken for ``within`` seconds
                (or an earlier message found the child hung).
            BrokenPipeError: the child is gone.
        """
        async with self._write_lock:
            if self._stalled is not None:
                raise ChildStoppedReading(self._stalled)
            if self._torn:
                # End the cut line first: the child drops it as unparsable, and this
                # message arrives whole instead of glued to its remains.
                data = b"\n" + data
                self._torn = False
            await self._write_all(data, within)

    async def _write_all(self, data: bytes, within: float) -> None:
        view = memoryview(data)
        try:
            while view:
                try:
                    written = os.write(self._to_child, view)
                except BlockingIOError:
                    with anyio.move_on_after(within) as waited:
                        await anyio.wait_writable(self._to_child)
                    if waited.cancelled_caught:
                        self._stalled = (
                            f"the REPL stopped reading its input: it took no byte of a "
                            f"{len(data):,}-byte message for {within:g} s"
                        )
                        raise ChildStoppedReading(self._stalled) from None
                    continue
                view = view[written:]
        finally:
            if view and len(view) < len(data):
                self._torn = True


class MessageReader:
    """Reads framed messages from the child's output pipe (a non-blocking fd it does not own).

    A line is handed to the parser as one ``bytes``, made with one copy at most: a line
    that fills a read by itself is passed as read, and one spread over many reads (a batch
    of prompts can be 40 MB) is joined from them once, where a growing buffer would copy
    every byte twice (appended, then cut out).
    """

    def __init__(self, from_child: int, *, max_message_bytes: int) -> None:
        self._from_child = from_child
        self._max_message_bytes = max_message_bytes
        self._chunk = b""  # the last read, from ``_start`` on not handed out yet
        self._start = 0
        self._pieces: list[bytes | memoryview] = []  # the line so far, from earlier reads
        self._pending = 0  # bytes in ``_pieces``
        self._lines_since_yield = 0

    async def receive(self) -> ChildMessage | None:
        """The next validated message, or ``None`` at end of file (the child is gone).

        Raises:
            ReplProtocolError: an oversized line or one that is not our protocol.
        """
        while True:
            chunk, start = self._chunk, self._start
            newline = chunk.find(b"\n", start)
            if newline >= 0:
                self._lines_since_yield += 1
                if self._lines_since_yield >= _LINES_PER_YIELD:
                    # Before the line leaves the buffer: a cancellation here loses nothing.
                    self._lines_since_yield = 0
                    await anyio.lowlevel.checkpoint()
                self._start = newline + 1
                return decode_child_message(self._line(chunk, start, newline))
            if start < len(chunk):
                self._pieces.append(memoryview(chunk)[start:] if start else chunk)
                self._pending += len(chunk) - start
            self._chunk, self._start = b"", 0
            if self._pending > self._max_message_bytes:
                raise ReplProtocolError(
                    f"the REPL sent a line longer than {self._max_message_bytes:,} bytes "
                    "(ReplOptions.max_message_bytes): send sub-calls in smaller batches, "
                    "or raise that limit for batches or sub-contexts this large"
                )
            try:
                chunk = os.read(self._from_child, READ_CHUNK)
            except BlockingIOError:
                self._lines_since_yield = 0
                await anyio.wait_readable(self._from_child)
                continue
            if not chunk:
                return None
            self._chunk = chunk

    def _line(self, chunk: bytes, start: int, newline: int) -> bytes:
        """The line ending at ``chunk[newline]``, with what came before it in earlier reads."""
        if self._pieces:
            self._pieces.append(memoryview(chunk)[start:newline])
            line = b"".join(self._pieces)
            self._pieces.clear()
            self._pending = 0
            return line
        if start == 0 and newline == len(chunk) - 1:
            return chunk  # the whole read; the parser takes the newline as whitespace
        return chunk[start:newline]
