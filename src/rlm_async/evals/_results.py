"""The results file of an evaluation: one JSON object a line, one line per example and method.

Rows are appended as they finish, so a run that stops (a crash, Ctrl-C, a spent budget)
keeps what it did, and a second run with the same file skips the rows already there.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final, TextIO

from rlm_async._exceptions import ConfigurationError

__all__ = [
    "ROW_FIELDS",
    "append_row",
    "ends_cleanly",
    "percentile",
    "read_rows",
    "row_key",
    "write_rows",
]

#: The columns of a row, in the order they are written.
ROW_FIELDS: Final = (
    "id",
    "task",
    "size",
    "seed",
    "method",
    "model",
    "answer",
    "gold",
    "score",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cost",
    "latency_s",
    "turns",
    "subcalls",
    "context_chars",
    "truncated",
    "trajectory",
    "error",
)


def row_key(row: dict[str, Any]) -> tuple[str, int, int, str]:
    """What identifies a row: its example (task, size, seed) and its method."""
    return str(row["task"]), int(row["size"]), int(row["seed"]), str(row["method"])


def read_rows(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The rows of a results file, in file order (``[]`` when it does not exist).

    A last line cut short (the run was killed while writing it) is left out: its row runs
    again next time. When a key appears twice, the later row wins.

    Raises:
        ConfigurationError: a line other than the last is not a JSON object (not a results
            file, or one edited by hand).
    """
    file = Path(path)
    if not file.exists():
        return []
    lines = file.read_text(encoding="utf-8").splitlines()
    rows: dict[tuple[str, int, int, str], dict[str, Any]] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            key = row_key(row)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            if number == len(lines):
                continue
            raise ConfigurationError(
                f"{file}:{number} is not a results row (a JSON object with task, size, seed "
                "and method); give the evaluation another output path"
            ) from None
        rows.pop(key, None)
        rows[key] = row
    return list(rows.values())


def ends_cleanly(path: str | os.PathLike[str]) -> bool:
    """Whether the file is missing, empty, or ends with a whole line (a row can be appended)."""
    file = Path(path)
    if not file.exists() or file.stat().st_size == 0:
        return True
    with file.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def append_row(handle: TextIO, row: dict[str, Any]) -> None:
    """Write ``row`` as one line and flush it, so it survives the process."""
    handle.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    handle.flush()


def write_rows(path: str | os.PathLike[str], rows: Iterable[dict[str, Any]]) -> None:
    """Replace the file with ``rows`` (through a temporary file, so it is never half written)."""
    file = Path(path)
    partial = file.with_name(file.name + ".partial")
    with partial.open("w", encoding="utf-8") as handle:
        for row in rows:
            append_row(handle, row)
    partial.replace(file)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0 to 1) of ``values``, interpolated between the nearest two.

    ``nan`` for no values.
    """
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
