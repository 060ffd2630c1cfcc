"""A readable, coloured view of a run on stderr: what ``enable_logging=True`` turns on.

It is an event listener, not a logging configuration: the library never configures
logging for its host application.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from rlm_async import events as ev

__all__ = ["ConsoleRenderer"]

_COLOURS = {
    "dim": "\033[2m",
    "bold": "\033[1m",
    "blue": "\033[34m",
    "green": "\033[32m",
    "yellow": "\033[33m",
    "red": "\033[31m",
    "magenta": "\033[35m",
    "cyan": "\033[36m",
    "reset": "\033[0m",
}


class ConsoleRenderer:
    """Prints each event of a run as one or a few readable lines.

    Sub-calls are summarised (one line per batch finished, not one per call) so a fan-out
    of a thousand calls stays readable.
    """

    def __init__(
        self, stream: TextIO | None = None, *, colour: bool | None = None, width: int = 400
    ) -> None:
        self._stream = stream or sys.stderr
        if colour is None:
            colour = self._stream.isatty() and "NO_COLOR" not in os.environ
        self._colour = colour
        self._width = width
        self._pending: dict[tuple[str, int], list[int]] = {}

    def _c(self, name: str, text: str) -> str:
        return f"{_COLOURS[name]}{text}{_COLOURS['reset']}" if self._colour else text

    def _print(self, depth: int, text: str) -> None:
        indent = "    " * depth
        for line in text.splitlines() or [""]:
            self._stream.write(f"{indent}{line}\n")
        self._stream.flush()

    def _short(self, text: str) -> str:
        text = text.strip()
        return text if len(text) <= self._width else text[: self._width] + " …"

    def __call__(self, event: ev.Event) -> None:
        d = event.depth
        if isinstance(event, ev.RunStarted):
            self._print(
                d,
                self._c(
                    "bold", f"▶ RLM run {event.run_id} · root {event.model} · sub {event.sub_model}"
                ),
            )
            self._print(d, self._c("dim", f"  {event.context}"))
            self._print(d, f"  query: {self._short(event.query)}")
        elif isinstance(event, ev.TurnStarted):
            label = "final turn" if event.final_turn else f"turn {event.turn}"
            self._print(d, self._c("blue", f"── {label} ──"))
        elif isinstance(event, ev.TurnFinished):
            self._print(
                d,
                self._c(
                    "dim",
                    f"  model ({event.latency:.2f} s, "
                    f"{event.input_tokens} in / {event.output_tokens} out):",
                ),
            )
            self._print(d + 1, self._short(event.text))
        elif isinstance(event, ev.Compacted):
            self._compacted(event)
        elif isinstance(event, ev.AnswerRejected):
            self._rejected(event)
        elif isinstance(event, ev.CellStarted):
            self._print(d, self._c("cyan", f"  ▷ cell {event.cell}"))
            self._print(d + 1, self._c("dim", self._short(event.code)))
        elif isinstance(event, ev.CellFinished):
            colour = "red" if event.error else "green"
            self._print(d, self._c(colour, f"  ◁ output ({event.duration:.2f} s)"))
            self._print(d + 1, self._short(event.output))
            key = (event.run_id, event.cell)
            self._flush_subcalls(key, d)
        elif isinstance(event, ev.SubCallStarted):
            self._pending.setdefault((event.run_id, event.cell), [0, 0, 0, 0])[0] += 1
        elif isinstance(event, ev.SubCallFinished):
            counts = self._pending.setdefault((event.run_id, event.cell), [0, 0, 0, 0])
            counts[1] += 1
            counts[2] += 0 if event.ok else 1
            counts[3] += 1 if event.cached else 0
        elif isinstance(event, ev.ReplRestarted):
            self._print(d, self._c("yellow", f"  ⟳ REPL restarted: {event.reason}"))
        elif isinstance(event, ev.FinalAnswer):
            self._print(
                d,
                self._c("magenta", f"■ final answer ({event.source}): {self._short(event.answer)}"),
            )
        elif isinstance(event, ev.RunFinished):
            self._print(
                d, self._c("bold", f"✔ done in {event.elapsed:.2f} s, {event.iterations} turns")
            )
        elif isinstance(event, ev.RunFailed):
            self._print(
                d, self._c("red", f"✘ failed: {event.error_type}: {self._short(event.message)}")
            )

    def _compacted(self, event: ev.Compacted) -> None:
        kept = "last turn" if event.kept_turns == 1 else f"last {event.kept_turns} turns"
        how = "replayed" if event.replayed else f"{event.latency:.2f} s"
        self._print(
            event.depth,
            self._c(
                "yellow",
                f"  ⇣ compacted before turn {event.turn}: {event.messages_before} messages → "
                f"{event.messages_after}, ~{event.tokens_before:,} → ~{event.tokens_after:,} "
                f"tokens, {kept} kept ({how})",
            ),
        )
        self._print(event.depth + 1, self._c("dim", self._short(event.summary)))

    def _rejected(self, event: ev.AnswerRejected) -> None:
        left = event.retries_left
        more = "no retry left" if left == 0 else f"{left} more answer{'s' * (left > 1)} allowed"
        self._print(event.depth, self._c("red", f"  ✗ answer rejected ({more}):"))
        for error in event.errors[:5]:  # the model is told all of them; five say enough here
            where = ".".join(str(part) for part in error.get("loc", ())) or "(the answer)"
            self._print(event.depth + 1, self._short(f"{where}: {error.get('msg', '')}"))
        self._print(event.depth + 1, self._c("dim", self._short(event.answer)))

    def _flush_subcalls(self, key: tuple[str, int], depth: int) -> None:
        counts = self._pending.pop(key, None)
        if counts and counts[1]:
            # Cache hits are answered without a provider call (RLM(cache=...)): no cost.
            cached = f" ({counts[3]} from the cache)" if counts[3] else ""
            failed = f", {counts[2]} failed" if counts[2] else ""
            self._print(
                depth, self._c("yellow", f"    ↳ {counts[1]} sub-calls answered{cached}{failed}")
            )
