"""``batch``: many requests through the engine at once, their results streamed to a JSONL file."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from rlm_async._exceptions import ConfigurationError
from rlm_async._options import check_int
from rlm_async.batching._backend import Backend
from rlm_async.batching._local import DEFAULT_ROWS_PER_WORKER, LocalBackend, slots_per_worker
from rlm_async.batching._rows import Job, done_ids, id_key, read_jobs
from rlm_async.batching._worker import WorkerSpec, error_row
from rlm_async.engine._options import RLMOptions
from rlm_async.providers._settings import Settings

__all__ = ["BatchStatus", "BatchSummary", "batch"]


@dataclass
class BatchStatus:
    """How far a batch is, handed to ``on_progress`` as each row finishes.

    Attributes:
        total: Requests in the input.
        skipped: Already answered in the output file by an earlier run.
        done: Answered in this run.
        failed: Finished with an error in this run.
        in_flight: Rows running now.
        cost_usd: What this run's rows cost so far.
        started: ``time.monotonic()`` when the rows started.
    """

    total: int
    skipped: int = 0
    done: int = 0
    failed: int = 0
    in_flight: int = 0
    cost_usd: float = 0.0
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def rows_per_second(self) -> float:
        """Rows finished (answered or failed) per second of this run."""
        elapsed = self.elapsed
        return (self.done + self.failed) / elapsed if elapsed > 0 else 0.0


@dataclass(frozen=True)
class BatchSummary:
    """What a batch did.

    Attributes:
        out: The output file.
        total: Requests in the input.
        done: Answered in this run.
        failed: Finished with an error in this run (a re-run runs them again).
        skipped: Already answered in the output by an earlier run.
        not_started: Left out because the run stopped early (``stopped``): a re-run, with
            a larger budget, runs them.
        cost_usd: What this run's rows cost (rows with an unknown cost count 0).
        elapsed: Seconds from the first row dispatched to the last one finished.
        stopped: Why rows were left out (the budget was reached), or ``None``.
        workers: What ran the rows (``"2 local processes x 8 rows"``).
    """

    out: Path
    total: int
    done: int
    failed: int
    skipped: int
    not_started: int
    cost_usd: float
    elapsed: float
    stopped: str | None
    workers: str

    @property
    def rows_per_second(self) -> float:
        return (self.done + self.failed) / self.elapsed if self.elapsed > 0 else 0.0

    def render(self) -> str:
        """One line for people: ``100 rows: 98 done, 2 failed, ... (8.1 rows/s)``."""
        parts = [f"{self.done} done", f"{self.failed} failed"]
        if self.skipped:
            parts.append(f"{self.skipped} skipped (already in {self.out})")
        if self.not_started:
            parts.append(f"{self.not_started} not started")
        line = (
            f"{self.total} rows: {', '.join(parts)} in {self.elapsed:.1f} s "
            f"({self.rows_per_second:.2f} rows/s, ${self.cost_usd:.4f}; {self.workers})"
        )
        return f"{line}; stopped: {self.stopped}" if self.stopped else line


async def batch(
    requests: str | os.PathLike[str] | Iterable[Mapping[str, Any]],
    *,
    out: str | os.PathLike[str],
    model: str = "gpt-5",
    sub_model: str | None = None,
    options: RLMOptions | Mapping[str, Any] | None = None,
    settings: Settings | None = None,
    load_dotenv: bool = False,
    cache: str | os.PathLike[str] | None = None,
    processes: int | None = None,
    concurrency: int | None = None,
    budget: float | None = None,
    ray: bool | str = False,
    retries: int = 1,
    on_progress: Callable[[BatchStatus], None] | None = None,
) -> BatchSummary:
    """Answer many requests, each a completion, on every core (or on a Ray cluster).

    Each request is ``{"id": ..., "query": ..., "context": ...}``, or ``"context_path"``
    naming a file instead of ``"context"`` (with ``"json": true`` to parse it as JSON), and
    optionally ``"options"``: fields of ``RLMOptions`` for that row only. Each answer is
    one line of ``out`` as soon as it is ready (order of completion), with its ``id``,
    ``answer``, ``usage``, ``cost_usd``, ``elapsed`` and ``error`` (``null`` when it
    worked). Run it again with the same ``out`` and the ids answered there are skipped;
    rows that failed run again (their new row is added after the old one: the last row
    of an id is its result).

    Args:
        requests: A JSONL file of requests, or the requests as dicts.
        out: The JSONL file results are appended to.
        model: The root model of every row.
        sub_model: The sub-calls' model (``None``: ``model``).
        options: The ``RLMOptions`` of every row (without ``on_event``: they travel to
            other processes), or a dict of their fields.
        settings: Keys and endpoints (default: from the environment).
        load_dotenv: Read a ``.env`` file too when ``settings`` is not given.
        cache: A SQLite file of sub-call answers shared by every worker (see
            ``RLM(cache=...)``): a re-run pays nothing for sub-calls it made before.
        processes: Worker processes (default: one per core), or Ray actors with ``ray``
            (default: one per CPU of the cluster). Each runs its rows on one event loop.
        concurrency: Rows in flight at once in all (default 8 per worker).
        budget: USD for this run's rows (failed rows count what they spent): once their
            cost reaches it, no new row starts; rows in flight finish. A row whose cost is
            unknown (no price for its model) stops it too, as the budget can no longer be
            kept.
        ray: Run on Ray (``pip install 'rlm-async[ray]'``): ``True`` uses the Ray this
            process initialized, else ``ray.init()`` (``RAY_ADDRESS``, or a local Ray);
            a string is the cluster's address.
        retries: Times a row is dispatched again when its worker died under it.
        on_progress: Called with the status after each row (in this event loop).

    Returns:
        What was done, with the rows per second and the cost.

    Raises:
        ConfigurationError: a malformed request or output line (named), a bad model name
            or option, a missing key, Ray not installed, or workers that cannot start.
    """
    check_int("retries", retries, 0)
    if processes is not None:
        check_int("processes", processes, 1)
    if concurrency is not None:
        check_int("concurrency", concurrency, 1)
    if budget is not None and not budget > 0:
        raise ConfigurationError(f"budget must be a positive number of USD, got {budget!r}")
    jobs = read_jobs(requests)
    out_path = Path(out)
    if isinstance(requests, str | os.PathLike) and _same_file(Path(requests), out_path):
        # Its requests would read as answered rows (no error), and results be appended to it.
        raise ConfigurationError(
            f"the output {out_path} is the requests file; give the results a file of their own"
        )
    done_before = done_ids(out_path)
    todo = deque(job for job in jobs if id_key(job.id) not in done_before)
    spec = _spec(model, sub_model, options, settings, load_dotenv)
    if cache is not None:
        spec = dataclasses.replace(spec, cache=os.fspath(cache))
    # Without a cap of the caller's, the workers' own slots bound the rows in flight.
    total_concurrency = concurrency or sys.maxsize
    planned = len(todo)
    status = BatchStatus(total=len(jobs), skipped=len(jobs) - planned)
    if not todo:
        return _summary(out_path, status, 0, 0.0, None, "nothing to run")
    backend: Backend
    if ray:
        from rlm_async.batching._ray import RayBackend

        address = ray if isinstance(ray, str) else None
        backend = RayBackend(spec, processes, address, concurrency)
    else:
        workers = min(processes or _cores(), planned)
        slots = slots_per_worker(concurrency or DEFAULT_ROWS_PER_WORKER * workers, workers)
        backend = LocalBackend(dataclasses.replace(spec, slots=slots), workers)
    with _output(out_path) as sink:
        try:
            await backend.start()
            status.started = time.monotonic()
            if on_progress is not None:
                on_progress(status)
            stopped = await _dispatch(
                backend, todo, sink, status, total_concurrency, budget, retries, on_progress
            )
            elapsed = status.elapsed  # the rows' time, without the workers' shutdown
        finally:
            await backend.aclose()
    return _summary(out_path, status, planned, elapsed, stopped, backend.description)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:  # the output does not exist yet
        return False


def _cores() -> int:
    """The cores this process may run on (its CPU affinity: a container's share)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _spec(
    model: str,
    sub_model: str | None,
    options: RLMOptions | Mapping[str, Any] | None,
    settings: Settings | None,
    load_dotenv: bool,
) -> WorkerSpec:
    chosen = options if isinstance(options, RLMOptions) else RLMOptions(**(options or {}))
    if chosen.on_event is not None:
        raise ConfigurationError(
            "a batch's options cannot have on_event: its rows run in other processes; "
            "use on_progress for the batch's progress"
        )
    if chosen.tracer_provider is not None and chosen.tracer_provider is not False:
        raise ConfigurationError(
            "a batch's options cannot have a tracer_provider object: its rows run in other "
            "processes, which trace with the global provider their own start-up sets (e.g. "
            "under opentelemetry-instrument); leave it None, or False for no tracing"
        )
    spec = WorkerSpec(
        model=model,
        sub_model=sub_model,
        options=chosen,
        settings=settings or Settings.from_env(load_dotenv=load_dotenv),
        slots=DEFAULT_ROWS_PER_WORKER,  # each backend sets it once it knows its workers
    )
    try:
        pickle.dumps(spec)
    except Exception as exc:  # e.g. an option holding a lock or an open file
        raise ConfigurationError(
            "a batch's options and settings go to other processes and these cannot be "
            f"pickled ({type(exc).__name__}: {exc}); give them as plain values"
        ) from None
    spec.make_rlm()  # a bad model name or a missing key is the caller's error, named, now
    return spec


async def _dispatch(
    backend: Backend,
    todo: deque[Job],
    sink: IO[str],
    status: BatchStatus,
    concurrency: int,
    budget: float | None,
    retries: int,
    on_progress: Callable[[BatchStatus], None] | None,
) -> str | None:
    """Keep ``concurrency`` rows in flight until none is left; why it stopped early."""
    stopped: str | None = None
    while True:
        while todo and stopped is None and status.in_flight < concurrency and backend.has_room():
            status.in_flight += 1
            await backend.submit(todo.popleft())
        if status.in_flight == 0:
            if todo and stopped is None and backend.alive():
                await backend.wait_for_room()  # a worker in place of a dead one is starting
                if backend.has_room():
                    continue
            if todo and stopped is None:  # every worker is gone
                for job in todo:
                    _write(sink, error_row(job, "no batch worker is left to run it"))
                    status.failed += 1
                todo.clear()
            return stopped
        outcome = await backend.next_outcome()
        status.in_flight -= 1
        row = outcome.row
        if row is None:
            job = outcome.job
            if job.attempt < retries and backend.alive():
                todo.appendleft(Job(**{**job.__dict__, "attempt": job.attempt + 1}))
                continue
            row = error_row(job, f"{outcome.lost} ({job.attempt + 1} attempts)")
        _write(sink, row)
        if row["error"] is None:
            status.done += 1
        else:
            status.failed += 1
        cost = row.get("cost_usd")
        status.cost_usd += cost or 0.0
        if budget is not None and stopped is None:
            if status.cost_usd >= budget:
                stopped = f"the budget of ${budget:g} was reached"
            elif cost is None and row["usage"] is not None:  # paid for, at an unknown price
                stopped = (
                    "a row's cost is unknown (no price for its model), so the budget cannot "
                    "be kept; give the model's price (Settings(prices=...))"
                )
        if on_progress is not None:
            on_progress(status)


class _output:
    """The output file opened for appending, after a last line an earlier run cut short."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._file: IO[str] | None = None

    def __enter__(self) -> IO[str]:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        cut = self._path.exists() and not self._path.read_bytes().endswith(b"\n")
        self._file = self._path.open("a", encoding="utf-8")
        if cut and self._path.stat().st_size:
            self._file.write("\n")  # the broken line stays a line of its own
        return self._file

    def __exit__(self, *exc_info: object) -> None:
        assert self._file is not None
        self._file.close()


def _write(sink: IO[str], row: dict[str, Any]) -> None:
    sink.write(json.dumps(row, ensure_ascii=False) + "\n")
    sink.flush()  # a row written is a row a re-run skips, even if this process dies next


def _summary(
    out: Path,
    status: BatchStatus,
    todo: int,
    elapsed: float,
    stopped: str | None,
    workers: str,
) -> BatchSummary:
    return BatchSummary(
        out=out,
        total=status.total,
        done=status.done,
        failed=status.failed,
        skipped=status.skipped,
        not_started=todo - status.done - status.failed,
        cost_usd=status.cost_usd,
        elapsed=elapsed,
        stopped=stopped,
        workers=workers,
    )
