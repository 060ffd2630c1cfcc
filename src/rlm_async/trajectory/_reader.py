"""Trajectory files read back: :func:`read_trajectory`, :func:`read_header` (see
:mod:`rlm_async.trajectory` and ``docs/trajectory.md``)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rlm_async import events as ev
from rlm_async.trajectory._files import TrajectoryError, TrajectoryHeader
from rlm_async.trajectory._nodes import RunNode
from rlm_async.trajectory._tree import build_tree

# The package's public names are listed in ``rlm_async.trajectory``; these are this file's.
__all__ = ["Trajectory", "read_header", "read_trajectory"]


@dataclass
class Trajectory:
    """A trajectory read back: its header, its typed events, and the run tree.

    Attributes:
        header: The first line.
        events: Every event, in file order.
        path: The file it was read from, if any.
        truncated: The last line was cut short (the writer was killed mid-line) and was
            left out.
        full_texts: The side record: ``(event type, call id)`` to the full text of what
            that event keeps as a preview (empty for files without one).
    """

    header: TrajectoryHeader
    events: list[ev.Event]
    path: Path | None = None
    truncated: bool = False
    full_texts: dict[tuple[str, str], str] = field(default_factory=dict)

    def tree(self) -> list[RunNode]:
        """The root runs (normally one), each with its turns, cells and sub-calls."""
        return build_tree(self.events)


def read_trajectory(path: str | os.PathLike[str]) -> Trajectory:
    """Read and validate a trajectory file.

    Raises:
        TrajectoryError: not a trajectory, another schema version, or a malformed line
            (the message names the line number).
        OSError: the file cannot be read.
    """
    source = Path(path)
    with source.open(encoding="utf-8") as handle:
        return _parse(handle, source)


def read_header(path: str | os.PathLike[str]) -> TrajectoryHeader:
    """Read only a trajectory file's first line (e.g. to find a session's files).

    Raises:
        TrajectoryError: not a trajectory, or another schema version.
        OSError: the file cannot be read.
    """
    source = Path(path)
    with source.open(encoding="utf-8") as handle:
        line = handle.readline()
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _line_error(source, 1, f"not JSON ({exc.msg})") from exc
    return _parse_header(data, source, 1)


def _parse(lines: Iterable[str], source: Path) -> Trajectory:
    header: TrajectoryHeader | None = None
    events: list[ev.Event] = []
    full_texts: dict[tuple[str, str], str] = {}
    truncated = False
    pending: tuple[int, str] | None = None
    for number, line in enumerate(lines, start=1):
        if pending is not None:  # a bad line that was not the last one
            raise _line_error(source, *pending)
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            if not line.endswith("\n") and header is not None:
                truncated = True  # the writer died mid-line: keep everything before it
                continue
            pending = (number, f"not JSON ({exc.msg})")
            continue
        if header is None:
            header = _parse_header(data, source, number)
            continue
        if isinstance(data, dict) and data.get("type") == "full_text":
            key, text = _full_text(data, source, number)
            full_texts[key] = text
            continue
        try:
            events.append(ev.event_adapter.validate_python(data))
        except ValidationError as exc:
            raise _line_error(source, number, _explain(exc, data)) from exc
    if pending is not None:
        raise _line_error(source, *pending)
    if header is None:
        raise TrajectoryError(f"{source}: empty file, not a trajectory (no header line)")
    return Trajectory(
        header=header, events=events, path=source, truncated=truncated, full_texts=full_texts
    )


def _full_text(data: dict[str, Any], source: Path, number: int) -> tuple[tuple[str, str], str]:
    event, ident, text = data.get("event"), data.get("id"), data.get("text")
    if not (isinstance(event, str) and isinstance(ident, str) and isinstance(text, str)):
        raise _line_error(source, number, "invalid full_text line: event, id and text are strs")
    return (event, ident), text


def _parse_header(data: Any, source: Path, number: int) -> TrajectoryHeader:
    if not isinstance(data, dict) or data.get("type") != "trajectory":
        raise _line_error(
            source, number, 'not a trajectory: the first line must be {"type": "trajectory", ...}'
        )
    version = data.get("schema_version")
    if version != ev.TRAJECTORY_SCHEMA_VERSION:
        newer = isinstance(version, int) and version > ev.TRAJECTORY_SCHEMA_VERSION
        hint = "upgrade rlm-async to read it" if newer else "it was written by another version"
        raise _line_error(
            source,
            number,
            f"trajectory schema version {version!r}; this rlm-async reads version "
            f"{ev.TRAJECTORY_SCHEMA_VERSION} ({hint})",
        )
    try:
        return TrajectoryHeader.model_validate(data)
    except ValidationError as exc:
        raise _line_error(source, number, _explain(exc, data)) from exc


def _explain(exc: ValidationError, data: Any) -> str:
    kind = data.get("type") if isinstance(data, dict) else None
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"invalid {kind or 'event'!s} event: {where}: {first['msg']}"


def _line_error(source: Path, number: int, message: str) -> TrajectoryError:
    return TrajectoryError(f"{source}, line {number}: {message}")
