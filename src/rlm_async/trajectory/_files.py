"""Trajectory files: the writer and the header (see :mod:`rlm_async.trajectory`; the reader is
``_reader``)."""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rlm_async import events as ev
from rlm_async._exceptions import RLMError
from rlm_async._redact import scrub_secrets
from rlm_async._version import __version__

# The package's public names are listed in ``rlm_async.trajectory``; these are this file's.
__all__ = [
    "FullText",
    "TrajectoryError",
    "TrajectoryHeader",
    "TrajectoryWriter",
    "write_trajectory",
]

_SECRET_ENV = re.compile(r"(_API_KEY|_TOKEN|_SECRET)$")


def _env_secrets() -> tuple[str, ...]:
    # Short values (e.g. "x" for a local server) would redact ordinary words.
    return tuple(
        sorted(
            {v for k, v in os.environ.items() if _SECRET_ENV.search(k) and len(v.strip()) >= 8},
            key=len,
            reverse=True,
        )
    )


def _scrub(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return scrub_secrets(value, secrets)
    if isinstance(value, dict):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, secrets) for v in value]
    return value


class TrajectoryError(RLMError, ValueError):
    """A trajectory file cannot be read: wrong schema version, or a malformed line.

    The message names the file and the line. It is not raised for I/O errors (those stay
    ``OSError``) nor while writing.
    """


class TrajectoryHeader(BaseModel):
    """The first line of a trajectory file.

    Attributes:
        schema_version: ``events.TRAJECTORY_SCHEMA_VERSION`` of the writer.
        rlm_async_version: The library version that wrote the file.
        created: When the file was started, ISO 8601 in UTC.
        run_id: The root run's id (from its ``RunStarted`` event).
        model: The root model, as ``"provider:model"``.
        sub_model: The model of plain sub-calls.
        query: The root query.
        session: The session's id, when the run is a completion of ``rlm.session``.
        session_turn: Which completion of the session it is (``query_N``'s N).
        full_texts: The file holds the side record (``full_text`` lines): every root
            sub-call answer and tool result longer than its event's preview, in full.
        context_kept: The run's context was kept beside the file, as ``<stem>.context``
            (``RLM(trajectory_context=True)``), written as ``"text"`` (a str) or ``"json"``
            (anything else); ``None``: not kept (and in files written before it existed).
        metadata: Anything the writer's owner added (e.g. CLI arguments).
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    type: Literal["trajectory"] = "trajectory"
    schema_version: int
    rlm_async_version: str = ""
    created: str = ""
    run_id: str | None = None
    model: str | None = None
    sub_model: str | None = None
    query: str | None = None
    session: str | None = None
    session_turn: int | None = None
    full_texts: bool = False
    context_kept: Literal["text", "json"] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class FullText:
    """A side-record line: the full text of what one event keeps as a preview.

    Written as ``{"type": "full_text", "event": ..., "id": ..., "text": ...}`` just before
    the event it completes (see ``docs/trajectory.md``); it is not an event: listeners
    never see it.

    Attributes:
        event: The event's type: ``subcall_finished`` (its ``answer``) or
            ``tool_call_finished`` (its ``result``).
        ident: The call's id (``subcall`` or ``call``).
        text: The text, whole.
    """

    event: str
    ident: str
    text: str


def _utc_now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def _make_header(
    first: ev.Event | None,
    metadata: dict[str, Any],
    *,
    full_texts: bool = False,
    context_kept: Literal["text", "json"] | None = None,
) -> TrajectoryHeader:
    started = first if isinstance(first, ev.RunStarted) else None
    return TrajectoryHeader(
        session=started.session if started else None,
        session_turn=started.session_turn if started else None,
        full_texts=full_texts,
        context_kept=context_kept,
        schema_version=ev.TRAJECTORY_SCHEMA_VERSION,
        rlm_async_version=__version__,
        created=_utc_now().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        run_id=started.run_id if started else None,
        model=started.model if started else None,
        sub_model=started.sub_model if started else None,
        query=started.query if started else None,
        metadata=metadata,
    )


class TrajectoryWriter:
    """An event listener that writes a run's trajectory as JSON Lines, one flush per line.

    Use it as ``RLM(on_event=writer)`` (or alongside your own listener) and close it when
    the run is over; it is also a context manager. The file is created at the first event,
    whose ``RunStarted`` fills the header. ``ModelDelta`` events (streamed text, repeated in
    full by ``TurnFinished``) are left out unless ``include_deltas=True``.

    Writing is synchronous: each line is written and flushed before the call returns, so
    a listener sees it on disk and a run that crashes leaves a readable file. (The engine's
    own trajectory, ``RLM(trajectory_dir=...)``, feeds a writer from a thread of its own so
    the event loop never waits on the disk; see ``docs/trajectory.md``.)

    Args:
        path: The file to write (parent directories are created).
        metadata: Extra facts for the header's ``metadata``.
        include_deltas: Also write ``ModelDelta`` events.
        scrub: Redact API keys (see :func:`scrub_secrets`), including the values of
            ``*_API_KEY`` / ``*_TOKEN`` / ``*_SECRET`` environment variables. Leave it on.

    Attributes:
        path: Where the trajectory goes (for :meth:`in_directory`, known once the first
            event arrived).
        events_written: Events written so far.

    Example:
        with TrajectoryWriter("run.jsonl") as writer:
            async with RLM(model="gpt-5", on_event=writer) as rlm:
                await rlm.completion(text, "Who wrote it?")
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        *,
        metadata: dict[str, Any] | None = None,
        include_deltas: bool = False,
        scrub: bool = True,
    ) -> None:
        self.path: Path | None = None if path is None else Path(path)
        self._directory: Path | None = None
        self.metadata = dict(metadata or {})
        self.include_deltas = include_deltas
        self._secrets = _env_secrets() if scrub else ()
        self._scrub = scrub
        self._file: IO[str] | None = None
        self._closed = False
        self.events_written = 0
        self.full_texts = False  # set by BackgroundTrajectory, which writes the side record
        # Set by the engine (RLM(trajectory_context=True)) before the first event.
        self.context_kept: Literal["text", "json"] | None = None

    @classmethod
    def in_directory(
        cls,
        directory: str | os.PathLike[str],
        *,
        metadata: dict[str, Any] | None = None,
        include_deltas: bool = False,
        scrub: bool = True,
    ) -> TrajectoryWriter:
        """A writer whose file is ``<directory>/<UTC timestamp>-<run_id>.jsonl``.

        The name is chosen at the first event (the root ``RunStarted`` gives the run id),
        e.g. ``trajectories/20250101T120000Z-3f2a9c1b7d4e.jsonl``; names sort by time.
        """
        writer = cls(None, metadata=metadata, include_deltas=include_deltas, scrub=scrub)
        writer._directory = Path(directory)
        return writer

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def _name(self, first: ev.Event | None) -> Path:
        """The file's path, chosen at the first event (no I/O: the engine calls it on
        its event loop so the path is known before the writer thread opens the file)."""
        if self.path is None:
            assert self._directory is not None  # one of the two is always set
            run_id = first.run_id if first is not None else uuid.uuid4().hex[:12]
            stamp = _utc_now().strftime("%Y%m%dT%H%M%S.%fZ")
            self.path = self._directory / f"{stamp}-{run_id}.jsonl"
        return self.path

    def _open(self, first: ev.Event | None) -> IO[str]:
        path = self._name(first)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("w", encoding="utf-8", newline="\n")
        self._file = handle
        header = _make_header(
            first, self.metadata, full_texts=self.full_texts, context_kept=self.context_kept
        )
        self._write_line(header.model_dump(mode="json"))
        return handle

    def _write_line(self, data: dict[str, Any]) -> None:
        assert self._file is not None
        if self._scrub:
            data = _scrub(data, self._secrets)
        # One write per line, then flush: a killed process leaves whole lines behind.
        self._file.write(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n")
        self._file.flush()

    def __call__(self, event: ev.Event) -> None:
        """Write one event (the listener interface)."""
        if self._closed:
            raise TrajectoryError(
                f"this TrajectoryWriter ({self.path}) is closed; create a new one per run"
            )
        if isinstance(event, ev.ModelDelta) and not self.include_deltas:
            return
        if self._file is None:
            self._open(event)
        data = event.model_dump(mode="json")
        self._write_line({"type": data.pop("type"), **data})  # "type" first reads better
        self.events_written += 1

    def write_full_text(self, record: FullText) -> None:
        """Write one side-record line (see :class:`FullText`)."""
        if self._closed:
            raise TrajectoryError(f"this TrajectoryWriter ({self.path}) is closed")
        if self._file is None:
            self._open(None)
        self._write_line(
            {"type": "full_text", "event": record.event, "id": record.ident, "text": record.text}
        )

    def close(self) -> None:
        """Finish the file; idempotent.

        With no event written, a writer given a path leaves a header-only file (the run
        never started), and one from :meth:`in_directory` leaves no file.
        """
        if self._closed:
            return
        try:
            if self._file is None and self.path is not None:
                self._open(None)
        finally:
            self._closed = True
            if self._file is not None:
                self._file.close()


def write_trajectory(
    path: str | os.PathLike[str],
    events: Iterable[ev.Event],
    *,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Save finished events (e.g. ``result.trajectory``) as a trajectory file.

    Returns:
        The path written.
    """
    with TrajectoryWriter(path, metadata=metadata) as writer:
        for event in events:
            writer(event)
    assert writer.path is not None
    return writer.path
