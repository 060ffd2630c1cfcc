"""One-line live statuses for terminals: what ``rlm-async run`` (and ``batch``) show on
stderr."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Awaitable
from typing import Protocol, TextIO, TypeVar

import anyio

from rlm_async import events as ev

__all__ = [
    "Progress",
    "StatusLine",
    "add_progress_argument",
    "wants_progress",
    "with_ticker",
]

T = TypeVar("T")


def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--progress`` / ``--no-progress`` to ``parser``."""
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a live status line on stderr (default: when stderr is a terminal)",
    )


def wants_progress(args: argparse.Namespace, *, stderr_busy: bool = False) -> bool:
    """``--progress`` / ``--no-progress``, else whether stderr is a terminal (and not
    ``stderr_busy`` with other output, such as ``--verbose`` logs)."""
    if args.progress is None:
        return sys.stderr.isatty() and not stderr_busy
    return bool(args.progress)


class StatusLine:
    """A status line redrawn in place behind a spinner; subclasses say what :meth:`line` is."""

    _SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._frame = 0
        self._shown = False

    def line(self) -> str:
        """The status line, without any terminal control characters."""
        raise NotImplementedError

    def _redraw(self) -> None:
        self._frame = (self._frame + 1) % len(self._SPINNER)
        width = shutil.get_terminal_size((100, 20)).columns
        text = f"{self._SPINNER[self._frame]} {self.line()}"[: max(width - 1, 20)]
        self._stream.write(f"\r\033[K{text}")
        self._stream.flush()
        self._shown = True

    def _close(self, mark: str) -> None:
        """Leave the last status, after ``mark``, on its own line (if one was drawn)."""
        if self._shown:
            self._stream.write(f"\r\033[K{mark} {self.line()}\n")
            self._stream.flush()


class _Ticking(Protocol):
    async def tick(self) -> None: ...


async def with_ticker(status: _Ticking, work: Awaitable[T]) -> T:
    """Await ``work`` while ``status.tick`` keeps the status line's clock moving."""
    done: list[T] = []
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(status.tick)
            try:
                done.append(await work)
            finally:
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The ticker cannot fail, so the group holds the work's one error: raise it as is.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    return done[0]


class Progress(StatusLine):
    """A one-line live status of a run on a terminal, redrawn as events arrive.

    ``⠹ 12.4 s · turn 2 · cells 3 · sub-calls 64 done, 32 in flight · 151k tokens · $0.0123``
    """

    def __init__(self, stream: TextIO, *, interval: float = 0.1) -> None:
        super().__init__(stream)
        self._interval = interval
        self._started = time.monotonic()
        self._last_draw = 0.0
        self.turn = 0
        self.turns_done = 0
        self.cells_done = 0
        self.cells_running = 0
        self.subcalls_done = 0
        self.subcalls_failed = 0
        self.in_flight = 0
        self.runs_live = 0
        self.tokens = 0
        self.cost: float | None = None
        self.phase = "starting"
        self.finished = False

    def __call__(self, event: ev.Event) -> None:
        force = False
        if isinstance(event, ev.RunStarted):
            self.runs_live += 1
        elif isinstance(event, ev.RunFinished | ev.RunFailed):
            self.runs_live -= 1
            self.finished = self.finished or (
                event.depth == 0 and isinstance(event, ev.RunFinished)
            )
            force = True
        elif isinstance(event, ev.TurnStarted):
            if event.depth == 0:
                self.turn = event.turn
                self.phase = "final turn" if event.final_turn else "model thinking"
        elif isinstance(event, ev.TurnFinished):
            self.turns_done += 1
            self._usage(event.input_tokens, event.output_tokens, event.cost_usd)
            force = event.depth == 0
        elif isinstance(event, ev.CellStarted):
            self.cells_running += 1
            if event.depth == 0:
                self.phase = "running code"
        elif isinstance(event, ev.CellFinished):
            self.cells_running -= 1
            self.cells_done += 1
            if event.depth == 0:
                self.phase = "model thinking"  # the output goes back to the model
                force = True
        elif isinstance(event, ev.SubCallStarted):
            self.in_flight += 1
        elif isinstance(event, ev.SubCallFinished):
            self.in_flight -= 1
            self.subcalls_done += 1
            self.subcalls_failed += 0 if event.ok else 1
            if event.kind == "llm":  # a sub-RLM's usage arrives with its own turns
                self._usage(event.input_tokens, event.output_tokens, event.cost_usd)
        self.draw(force=force)

    def _usage(self, input_tokens: int, output_tokens: int, cost: float | None) -> None:
        self.tokens += input_tokens + output_tokens
        if cost is not None:
            self.cost = (self.cost or 0.0) + cost

    def line(self) -> str:
        """The status line, without any terminal control characters."""
        elapsed = time.monotonic() - self._started
        parts = [f"{elapsed:.1f} s", f"turn {self.turn}" if self.turn else self.phase]
        if self.turn:
            parts.append(self.phase)
        parts.append(f"cells {self.cells_done}")
        if self.subcalls_done or self.in_flight:
            failed = f", {self.subcalls_failed} failed" if self.subcalls_failed else ""
            parts.append(f"sub-calls {self.subcalls_done} done, {self.in_flight} in flight{failed}")
        if self.runs_live > 1:
            parts.append(f"{self.runs_live - 1} sub-RLMs live")
        parts.append(f"{_short_int(self.tokens)} tokens")
        if self.cost is not None:
            parts.append(f"${self.cost:.4f}")
        return " · ".join(parts)

    def draw(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_draw < self._interval:
            return
        self._last_draw = now
        self._redraw()

    async def tick(self) -> None:
        """Redraw a few times a second so the clock moves while a model is thinking."""
        while True:
            await anyio.sleep(0.25)
            self.draw(force=True)

    def finish(self) -> None:
        """Leave the last status on its own line (✓ when the root run finished)."""
        if self._shown:
            self.phase = "done" if self.finished else "stopped"
            self._close("✓" if self.finished else "✗")


def _short_int(n: int) -> str:
    if n < 1_000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1_000:.1f}k"
    return f"{n / 1_000_000:.2f}M"
