"""Noticing turns that go nowhere: the same cell again, or the same output again.

A small model wrote the same cell (``llm_query(query)``, no context in the prompt) for all
six turns of twelve runs, and was told only "Turn N of 6" each time. :class:`RepeatWatch`
remembers each turn's code and output and, when a turn repeats an earlier one, says so in
the next feedback with what to try: when the turn's sub-call prompts were too short to
hold any of the context, that the sub-model reads only its prompt.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from rlm_async.engine._prompts import PROSE_IN_CODE_NOTE, repeat_note
from rlm_async.repl._context import ContextInfo

__all__ = ["RepeatWatch", "prose_note"]

# A sentence: four or more words of letters, digits and light punctuation, no brackets,
# operators or colons (which a line of Python would have).
_SENTENCE = re.compile(r"[^\W\d_][\w'’,-]*(?:[ \t]+[\w'’,%$-]+){3,}[ \t]*[.!?]?")

# A sub-call prompt this much longer than the query could hold some context; a shorter
# one is the query (or a rewording of it) alone.
_ROOM_FOR_CONTEXT = 200
# Outputs that say nothing about the code that made them: never a "same output".
_SILENT = ("", "[no output]")


def _normalise_code(code: str) -> str:
    return "\n".join(line.rstrip() for line in code.strip().splitlines() if line.strip())


@dataclass
class RepeatWatch:
    """The code and output of each turn of one run, to notice a turn that repeats one.

    Args:
        query: The run's query (a sub-call prompt no longer than it, and a little, holds
            no context).
        info: The context's shape, for the example in the note.
        chunk_chars: Characters of context one sub-call prompt can hold.
    """

    query: str
    info: ContextInfo
    chunk_chars: int
    _codes: list[tuple[int, str]] = field(default_factory=list)
    _outputs: list[tuple[int, str]] = field(default_factory=list)

    def note(
        self,
        turn: int,
        codes: Sequence[str],
        outputs: Sequence[str],
        prompt_chars: Sequence[int],
    ) -> str:
        """Record turn ``turn`` and say what to tell the model about it ("" for nothing).

        Args:
            turn: The turn's number.
            codes: The code of each block that ran.
            outputs: Each block's output as the model reads it.
            prompt_chars: The length of every sub-call prompt the turn sent.
        """
        code = "\n\n".join(_normalise_code(c) for c in codes)
        output = "\n\n".join(o.strip() for o in outputs)
        same_code = [n for n, seen in self._codes if code and seen == code]
        same_output = [n for n, seen in self._outputs if output not in _SILENT and seen == output]
        self._codes.append((turn, code))
        self._outputs.append((turn, output))
        if not same_code and not same_output:
            return ""
        longest = max(prompt_chars) if prompt_chars else None
        return repeat_note(
            same_code=same_code,
            same_output=same_output,
            longest_prompt=longest,
            short_prompt=longest is not None and longest <= len(self.query) + _ROOM_FOR_CONTEXT,
            info=self.info,
            chunk_chars=self.chunk_chars,
        )


def prose_note(codes: Sequence[str], outputs: Sequence[str]) -> str:
    """A note for a turn whose code block holds a sentence instead of Python ("" if none).

    A 1.5B model answered inside a repl fence for six turns
    (```` ```repl\nThe largest city by population is Tokyo.\n``` ````) and read only the
    ``SyntaxError`` back each time (another wrote ``492`` and then a paragraph: the output
    it expected). A block that failed to compile and has a line that reads as a sentence
    (four or more words, no brackets or operators, not starting with a Python keyword) gets
    a note on where an answer goes.
    """
    for code, output in zip(codes, outputs, strict=False):
        if "SyntaxError" in output and any(_is_sentence(line) for line in code.splitlines()):
            return PROSE_IN_CODE_NOTE
    return ""


def _is_sentence(line: str) -> bool:
    line = line.strip()
    return bool(_SENTENCE.fullmatch(line)) and not keyword.iskeyword(line.split()[0])
