"""Trajectories: a run's events saved as JSON Lines, read back, and arranged as a tree.

A trajectory file is UTF-8 JSON Lines. The first line is a header::

    {"type": "trajectory", "schema_version": 1, "rlm_async_version": "0.1.0",
     "created": "2025-01-01T12:00:00Z", "run_id": "…", "model": "…", "sub_model": "…",
     "query": "…", "metadata": {}}

and every further line is one event of the run, exactly ``event.model_dump(mode="json")``
(see :mod:`rlm_async.events`), in emission order. ``docs/trajectory.md`` documents every
field. The schema version is ``events.TRAJECTORY_SCHEMA_VERSION``; readers refuse a file of
another version rather than guess.

:class:`TrajectoryWriter` is an event listener (``RLM(on_event=writer)``): it writes and
flushes line by line, so a run that crashes still leaves a readable file. Before anything is
written, strings that look like API keys (and the values of ``*_API_KEY`` environment
variables) are replaced by ``[REDACTED]``: a trajectory can be shared without leaking keys.

:func:`read_trajectory` validates every line and says which line is wrong. :func:`build_tree`
arranges events as nested runs → turns → cells → sub-calls, with each sub-RLM run hung under
the ``rlm_query`` sub-call that started it; the HTML viewer (``rlm-async view``) draws it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rlm_async import events as ev
from rlm_async._exceptions import RLMError

__all__ = [
    "CellNode",
    "RunNode",
    "SubCallNode",
    "Totals",
    "Trajectory",
    "TrajectoryError",
    "TrajectoryHeader",
    "TrajectoryWriter",
    "TurnNode",
    "build_tree",
    "read_trajectory",
    "scrub_secrets",
    "write_trajectory",
]

REDACTED = "[REDACTED]"

# Key formats of the providers we speak to (and a few common others). Anchored on a
# non-word boundary so "task-…" or "disk-…" are not taken for "sk-…".
_KEY_PATTERNS = re.compile(
    r"(?<![A-Za-z0-9_-])(?:"
    r"sk-ant-[A-Za-z0-9_\-]{16,}"  # Anthropic
    r"|sk-[A-Za-z0-9_\-]{16,}"  # OpenAI (sk-…, sk-proj-…, sk-svcacct-…)
    r"|xai-[A-Za-z0-9_\-]{16,}"  # xAI
    r"|AIza[0-9A-Za-z_\-]{30,}"  # Google / Gemini
    r"|gsk_[A-Za-z0-9]{16,}"  # Groq
    r"|hf_[A-Za-z0-9]{16,}"  # Hugging Face
    r")"
    r"|(?<=Bearer )[A-Za-z0-9._~+/\-]{16,}=*"  # an Authorization header value
)
_SECRET_ENV = re.compile(r"(_API_KEY|_TOKEN|_SECRET)$")


def scrub_secrets(text: str, secrets: Iterable[str] = ()) -> str:
    """Replace anything that looks like an API key in ``text`` by ``[REDACTED]``.

    Args:
        text: Any string.
        secrets: Exact values to redact as well (e.g. keys read from the environment).

    Returns:
        The text with ``sk-…``, ``sk-ant-…``, ``xai-…``, ``AIza…``, ``gsk_…``, ``hf_…``
        keys, bearer tokens and each of ``secrets`` replaced.
    """
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    return _KEY_PATTERNS.sub(REDACTED, text)


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
    metadata: dict[str, Any] = Field(default_factory=dict)


def _version() -> str:
    from rlm_async import __version__

    return __version__


def _utc_now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def _make_header(first: ev.Event | None, metadata: dict[str, Any]) -> TrajectoryHeader:
    started = first if isinstance(first, ev.RunStarted) else None
    return TrajectoryHeader(
        schema_version=ev.TRAJECTORY_SCHEMA_VERSION,
        rlm_async_version=_version(),
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

    Writing is synchronous: one short line per event, cheap next to any model call.

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

    def _open(self, first: ev.Event | None) -> IO[str]:
        if self.path is None:
            assert self._directory is not None  # one of the two is always set
            run_id = first.run_id if first is not None else uuid.uuid4().hex[:12]
            stamp = _utc_now().strftime("%Y%m%dT%H%M%S.%fZ")
            self.path = self._directory / f"{stamp}-{run_id}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("w", encoding="utf-8", newline="\n")
        self._file = handle
        self._write_line(_make_header(first, self.metadata).model_dump(mode="json"))
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

    def close(self) -> None:
        """Finish the file (a header-only file if no event came); idempotent."""
        if self._closed:
            return
        try:
            if self._file is None:
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


@dataclass
class Trajectory:
    """A trajectory read back: its header, its typed events, and the run tree.

    Attributes:
        header: The first line.
        events: Every event, in file order.
        path: The file it was read from, if any.
        truncated: The last line was cut short (the writer was killed mid-line) and was
            left out.
    """

    header: TrajectoryHeader
    events: list[ev.Event]
    path: Path | None = None
    truncated: bool = False

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


def _parse(lines: Iterable[str], source: Path) -> Trajectory:
    header: TrajectoryHeader | None = None
    events: list[ev.Event] = []
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
        try:
            events.append(ev.event_adapter.validate_python(data))
        except ValidationError as exc:
            raise _line_error(source, number, _explain(exc, data)) from exc
    if pending is not None:
        raise _line_error(source, *pending)
    if header is None:
        raise TrajectoryError(f"{source}: empty file, not a trajectory (no header line)")
    return Trajectory(header=header, events=events, path=source, truncated=truncated)


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


# ---- the run tree ---------------------------------------------------------------------


@dataclass
class Totals:
    """Model calls, tokens and cost summed over a node and everything under it."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None

    def add(self, other: Totals) -> None:
        self.calls += other.calls
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        if other.cost_usd is not None:
            self.cost_usd = (self.cost_usd or 0.0) + other.cost_usd

    def add_call(self, input_tokens: int, output_tokens: int, cost_usd: float | None) -> None:
        self.add(Totals(1, input_tokens, output_tokens, cost_usd))


@dataclass
class SubCallNode:
    """One ``llm_query`` / ``rlm_query`` call, under the cell that made it.

    ``start``/``end`` are seconds since the completion started (``end`` is ``None`` if the
    call never finished). ``run`` is the sub-RLM run of an ``rlm`` call at depth > 1.
    """

    subcall: str
    kind: str
    model: str
    turn: int
    cell: int
    prompt: str
    prompt_chars: int
    start: float
    end: float | None = None
    ok: bool | None = None
    answer: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    latency: float | None = None
    run: RunNode | None = None

    def totals(self) -> Totals:
        if self.run is not None:
            return self.run.totals()
        totals = Totals()
        if self.end is not None and self.ok:
            totals.add_call(self.input_tokens, self.output_tokens, self.cost_usd)
        return totals


@dataclass
class CellNode:
    """One code cell of a turn, with the sub-calls its code made."""

    turn: int
    cell: int
    code: str
    start: float
    end: float | None = None
    output: str = ""
    error: bool = False
    final: str | None = None
    duration: float | None = None
    timed_out: bool = False
    restarted: bool = False
    subcalls: list[SubCallNode] = field(default_factory=list)

    def totals(self) -> Totals:
        totals = Totals()
        for sub in self.subcalls:
            totals.add(sub.totals())
        return totals


@dataclass
class TurnNode:
    """One root-model turn of a run: the reply, and the cells run from it."""

    turn: int
    start: float
    final_turn: bool = False
    end: float | None = None
    model: str = ""
    text: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    latency: float | None = None
    cells: list[CellNode] = field(default_factory=list)

    def totals(self) -> Totals:
        totals = Totals()
        if self.end is not None:
            totals.add_call(self.input_tokens, self.output_tokens, self.cost_usd)
        for cell in self.cells:
            totals.add(cell.totals())
        return totals


@dataclass
class RunNode:
    """One RLM run (the root, or a sub-RLM) with its turns, in order."""

    run_id: str
    depth: int
    start: float
    parent_run_id: str | None = None
    parent_subcall: str | None = None
    model: str = ""
    sub_model: str = ""
    query: str = ""
    context: str = ""
    max_iterations: int = 0
    max_depth: int = 0
    end: float | None = None
    status: Literal["running", "finished", "failed"] = "running"
    answer: str | None = None
    answer_source: str | None = None
    iterations: int | None = None
    elapsed: float | None = None
    error_type: str | None = None
    error: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    turns: list[TurnNode] = field(default_factory=list)
    restarts: list[tuple[float, str]] = field(default_factory=list)
    budget_warnings: list[dict[str, Any]] = field(default_factory=list)

    def totals(self) -> Totals:
        """Calls, tokens and cost of this run and every sub-run under it."""
        totals = Totals()
        for turn in self.turns:
            totals.add(turn.totals())
        return totals

    def walk(self) -> Iterator[RunNode]:
        """This run, then every sub-RLM run under it, depth first."""
        yield self
        for sub in self.subcalls():
            if sub.run is not None:
                yield from sub.run.walk()

    def subcalls(self) -> Iterator[SubCallNode]:
        """This run's own sub-calls (not those of its sub-runs), in start order."""
        for turn in self.turns:
            for cell in turn.cells:
                yield from cell.subcalls


def build_tree(events: Iterable[ev.Event]) -> list[RunNode]:
    """Arrange events as runs → turns → cells → sub-calls, sub-RLM runs under their call.

    Works on any prefix of a run (a crashed or still running one): what never finished has
    ``end=None``. A sub-RLM run is hung under its parent's ``rlm`` sub-call: by the event's
    ``parent_subcall`` when the writer recorded it, else by order (the engine emits a sub-RLM's
    ``RunStarted`` right after its ``SubCallStarted``, so the newest unclaimed ``rlm`` call of
    the parent run is the one).

    Returns:
        The root runs, in start order (normally one per completion).
    """
    runs: dict[str, RunNode] = {}
    roots: list[RunNode] = []
    turns: dict[tuple[str, int], TurnNode] = {}
    cells: dict[tuple[str, int, int], CellNode] = {}
    subcalls: dict[str, SubCallNode] = {}
    unclaimed: dict[str, list[SubCallNode]] = {}  # rlm sub-calls waiting for their run

    def turn_of(run_id: str, number: int, t: float) -> TurnNode:
        found = turns.get((run_id, number))
        if found is None:
            found = turns[(run_id, number)] = TurnNode(turn=number, start=t)
            run_of(run_id, t).turns.append(found)
        return found

    def run_of(run_id: str, t: float) -> RunNode:
        found = runs.get(run_id)
        if found is None:  # events of a run whose start is missing
            found = runs[run_id] = RunNode(run_id=run_id, depth=0, start=t)
            roots.append(found)
        return found

    def cell_of(run_id: str, turn: int, number: int, t: float) -> CellNode:
        found = cells.get((run_id, turn, number))
        if found is None:
            found = cells[(run_id, turn, number)] = CellNode(turn=turn, cell=number, code="", start=t)
            turn_of(run_id, turn, t).cells.append(found)
        return found

    for event in events:
        if isinstance(event, ev.RunStarted):
            run = RunNode(
                run_id=event.run_id,
                depth=event.depth,
                start=event.t,
                parent_run_id=event.parent_run_id,
                model=event.model,
                sub_model=event.sub_model,
                query=event.query,
                context=event.context,
                max_iterations=event.max_iterations,
                max_depth=event.max_depth,
            )
            runs[event.run_id] = run
            parent = _claim(event, unclaimed, subcalls)
            if parent is not None:
                parent.run = run
                run.parent_subcall = parent.subcall
            else:
                roots.append(run)
        elif isinstance(event, ev.TurnStarted):
            turn = turn_of(event.run_id, event.turn, event.t)
            turn.start, turn.final_turn = event.t, event.final_turn
        elif isinstance(event, ev.TurnFinished):
            turn = turn_of(event.run_id, event.turn, event.t)
            turn.end, turn.model, turn.text = event.t, event.model, event.text
            turn.input_tokens, turn.output_tokens = event.input_tokens, event.output_tokens
            turn.cost_usd, turn.latency = event.cost_usd, event.latency
        elif isinstance(event, ev.CellStarted):
            cell = cell_of(event.run_id, event.turn, event.cell, event.t)
            cell.start, cell.code = event.t, event.code
        elif isinstance(event, ev.CellFinished):
            cell = cell_of(event.run_id, event.turn, event.cell, event.t)
            cell.end, cell.output, cell.error = event.t, event.output, event.error
            cell.final, cell.duration = event.final, event.duration
            cell.timed_out, cell.restarted = event.timed_out, event.restarted
        elif isinstance(event, ev.SubCallStarted):
            sub = SubCallNode(
                subcall=event.subcall,
                kind=event.kind,
                model=event.model,
                turn=event.turn,
                cell=event.cell,
                prompt=event.prompt,
                prompt_chars=event.prompt_chars,
                start=event.t,
            )
            subcalls[event.subcall] = sub
            cell_of(event.run_id, event.turn, event.cell, event.t).subcalls.append(sub)
            if event.kind == "rlm":
                unclaimed.setdefault(event.run_id, []).append(sub)
        elif isinstance(event, ev.SubCallFinished):
            sub = subcalls.get(event.subcall) or _late_subcall(event, cell_of, subcalls)
            sub.end, sub.ok, sub.answer = event.t, event.ok, event.answer
            sub.input_tokens, sub.output_tokens = event.input_tokens, event.output_tokens
            sub.cost_usd, sub.latency = event.cost_usd, event.latency
            pending = unclaimed.get(event.run_id, [])
            if sub in pending:  # an rlm call that ended without a sub-run (depth 1, refusal)
                pending.remove(sub)
        elif isinstance(event, ev.FinalAnswer):
            run = run_of(event.run_id, event.t)
            run.answer, run.answer_source = event.answer, event.source
        elif isinstance(event, ev.RunFinished):
            run = run_of(event.run_id, event.t)
            run.end, run.status, run.answer = event.t, "finished", event.answer
            run.iterations, run.elapsed, run.usage = event.iterations, event.elapsed, event.usage
        elif isinstance(event, ev.RunFailed):
            run = run_of(event.run_id, event.t)
            run.end, run.status = event.t, "failed"
            run.error_type, run.error = event.error_type, event.message
        elif isinstance(event, ev.ReplRestarted):
            run_of(event.run_id, event.t).restarts.append((event.t, event.reason))
        elif isinstance(event, ev.BudgetWarning):
            run_of(event.run_id, event.t).budget_warnings.append(
                {"t": event.t, "budget": event.budget, "used": event.used, "limit": event.limit}
            )
    return roots


def _claim(
    event: ev.RunStarted,
    unclaimed: dict[str, list[SubCallNode]],
    subcalls: dict[str, SubCallNode],
) -> SubCallNode | None:
    if event.parent_run_id is None:
        return None
    pending = unclaimed.get(event.parent_run_id, [])
    named = getattr(event, "parent_subcall", None)
    if isinstance(named, str) and named in subcalls:
        found = subcalls[named]
        if found in pending:
            pending.remove(found)
        return found
    return pending.pop() if pending else None


def _late_subcall(
    event: ev.SubCallFinished,
    cell_of: Any,
    subcalls: dict[str, SubCallNode],
) -> SubCallNode:
    """A finished sub-call whose start is missing from the events (a partial trajectory)."""
    start = event.t - event.latency
    sub = SubCallNode(
        subcall=event.subcall,
        kind=event.kind,
        model=event.model,
        turn=event.turn,
        cell=event.cell,
        prompt="",
        prompt_chars=0,
        start=start,
    )
    subcalls[event.subcall] = sub
    cell_of(event.run_id, event.turn, event.cell, start).subcalls.append(sub)
    return sub
