"""Context sizes: ``"128k"`` on the command line, 128_000 tokens in code, 4 characters a token."""

from __future__ import annotations

import random
import re

from rlm_async._exceptions import ConfigurationError

__all__ = ["CHARS_PER_TOKEN", "check_size", "format_size", "parse_size", "task_rng"]

#: How the tasks turn a size in tokens into characters: the engine's own estimate.
CHARS_PER_TOKEN = 4

_SIZE = re.compile(r"(\d+(?:\.\d+)?)([km]?)", re.IGNORECASE)
_UNITS = {"": 1, "k": 1_000, "m": 1_000_000}


def parse_size(text: str | int) -> int:
    """A size in tokens from ``"8k"``, ``"128K"``, ``"1m"``, ``"1.5m"`` or ``"131072"``.

    Raises:
        ConfigurationError: ``text`` is not such a size.
    """
    if isinstance(text, int):
        size = text
    else:
        match = _SIZE.fullmatch(text.strip().replace("_", ""))
        if match is None:
            raise ConfigurationError(
                f"cannot read the size {text!r}: write a number of tokens such as 8k, 128k, "
                "1m or 131072"
            )
        size = round(float(match.group(1)) * _UNITS[match.group(2).lower()])
    check_size(size, text)
    return size


def check_size(size: int, text: object = None) -> None:
    """Refuse a size the generated tasks cannot fill (below 1k tokens).

    Raises:
        ConfigurationError: ``size`` is not an int of at least 1_000.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1_000:
        shown = size if text is None else text
        raise ConfigurationError(
            f"the size {shown!r} is below 1k tokens: the tasks need at least 1k (e.g. 8k)"
        )


def format_size(size: int) -> str:
    """``"128k"`` for 128_000, ``"1m"`` for 1_000_000, ``"131072"`` for 131072."""
    if size % 1_000_000 == 0:
        return f"{size // 1_000_000}m"
    if size % 1_000 == 0:
        return f"{size // 1_000}k"
    return str(size)


def task_rng(task: str, seed: int, size: int) -> random.Random:
    """The random source of one example: the same for the same task, seed and size, on every
    machine (a string seed is hashed with SHA-512, not Python's per-process ``hash``)."""
    return random.Random(f"{task}:{seed}:{size}")
