"""``run_eval``: every example of a task through every method, concurrently, into a JSONL file."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from rlm_async._exceptions import ConfigurationError
from rlm_async._options import check_int
from rlm_async.evals._results import append_row, ends_cleanly, read_rows, row_key, write_rows
from rlm_async.evals._runners import DirectRunner, ModelSpec, Outcome, RLMRunner, Runner
from rlm_async.evals._task import Example, Task
from rlm_async.providers._settings import Settings

__all__ = ["EvalProgress", "EvalResults", "run_eval"]

METHODS = ("rlm", "direct")


@dataclass
class EvalProgress:
    """How far an evaluation is, passed to ``on_progress`` after each row.

    Attributes:
        total: Rows the evaluation makes (examples times methods).
        done: Rows finished, those a previous run wrote included.
        skipped: Rows a previous run wrote (not run again).
        errors: Finished rows that failed.
        score_sum: Sum of the finished rows' scores.
        cost: Cost of the finished rows in USD (``None`` while none was priced).
        last: The row just written (``None`` for the first report).
    """

    total: int
    done: int = 0
    skipped: int = 0
    errors: int = 0
    score_sum: float = 0.0
    cost: float | None = None
    last: dict[str, Any] | None = None

    @property
    def score(self) -> float:
        """Mean score of the finished rows (``nan`` before the first)."""
        return self.score_sum / self.done if self.done else math.nan

    def add(self, row: dict[str, Any]) -> None:
        self.done += 1
        self.errors += 1 if row.get("error") else 0
        self.score_sum += float(row.get("score") or 0.0)
        if row.get("cost") is not None:
            self.cost = (self.cost or 0.0) + float(row["cost"])
        self.last = row


@dataclass
class EvalResults:
    """What :func:`run_eval` did.

    Attributes:
        path: The JSONL file.
        rows: The rows of this evaluation (sizes, seeds and methods asked for), in file
            order, those of a previous run included.
        written: Rows this run wrote.
        skipped: Rows a previous run had written.
    """

    path: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    written: int = 0
    skipped: int = 0


def _runners(
    methods: Sequence[str | Runner],
    model: ModelSpec,
    sub_model: ModelSpec | None,
    rlm_options: Mapping[str, Any] | None,
    settings: Settings | None,
    context_windows: Mapping[str, int] | None,
    model_label: str | None,
) -> list[Runner]:
    runners: list[Runner] = []
    for method in methods:
        if isinstance(method, Runner):
            runners.append(method)
        elif method == "rlm":
            options = dict(rlm_options or {})
            if settings is not None:
                options.setdefault("settings", settings)
            if context_windows is not None:
                options.setdefault("context_windows", context_windows)
            runners.append(RLMRunner(model, sub_model, options=options, label=model_label))
        elif method == "direct":
            runners.append(
                DirectRunner(
                    model, settings=settings, context_windows=context_windows, label=model_label
                )
            )
        else:
            raise ConfigurationError(
                f"unknown method {method!r}: use {' or '.join(map(repr, METHODS))}, or a Runner"
            )
    names = [runner.name for runner in runners]
    if not runners or len(set(names)) != len(names):
        raise ConfigurationError(f"methods must be one or more distinct methods, got {names}")
    return runners


def _row(example: Example, runner: Runner, outcome: Outcome, score: float) -> dict[str, Any]:
    context = example.context
    chars = len(context) if isinstance(context, str) else sum(len(doc) for doc in context)
    return {
        "id": example.id,
        "task": example.task,
        "size": example.size,
        "seed": example.seed,
        "method": runner.name,
        "model": runner.model,
        "answer": outcome.answer,
        "gold": example.gold,
        "score": score,
        "input_tokens": outcome.input_tokens,
        "output_tokens": outcome.output_tokens,
        "cached_tokens": outcome.cached_tokens,
        "cost": outcome.cost,
        "latency_s": round(outcome.latency_s, 3),
        "turns": outcome.turns,
        "subcalls": outcome.subcalls,
        "context_chars": chars,
        "truncated": None if outcome.truncated is None else round(outcome.truncated, 4),
        "trajectory": outcome.trajectory,
        "error": outcome.error,
    }


def _score(task: Task, outcome: Outcome, example: Example) -> float:
    if outcome.error:
        return 0.0
    try:
        return float(task.score(outcome.answer, example))
    except Exception as exc:  # a scorer that chokes on an odd answer fails this row only
        outcome.error = f"scoring failed: {type(exc).__name__}: {exc}"
        return 0.0


async def run_eval(
    task: Task,
    sizes: Sequence[int],
    n: int,
    methods: Sequence[str | Runner] = ("rlm",),
    *,
    model: ModelSpec = "gpt-5",
    sub_model: ModelSpec | None = None,
    rlm_options: Mapping[str, Any] | None = None,
    settings: Settings | None = None,
    context_windows: Mapping[str, int] | None = None,
    model_label: str | None = None,
    concurrency: int = 4,
    out_path: str | os.PathLike[str],
    retry_errors: bool = False,
    on_progress: Callable[[EvalProgress], None] | None = None,
) -> EvalResults:
    """Run ``n`` examples of ``task`` at each size through each method; append rows to a file.

    Examples come from seeds ``0..n-1`` at each size, so two runs (two models, two
    versions of a prompt) answer the same questions. Each example and method makes one
    row, appended to ``out_path`` as it finishes. A row already in the file is not run
    again: re-running the same command resumes a stopped evaluation, and paying for a row
    twice never happens. A failed row (a provider error, a spent budget, a scorer error)
    is written with score 0 and the error; the other rows go on.

    Args:
        task: The task (see :data:`rlm_async.evals.TASKS`).
        sizes: Context sizes in tokens.
        n: Examples per size.
        methods: ``"rlm"``, ``"direct"``, or your own :class:`Runner` instances.
        model: The model both built-in methods use: a name, a ``Provider``, or a function
            of the example giving one (scripted models).
        sub_model: The RLM's sub-call model (default: ``model``).
        rlm_options: Any other ``RLM`` keyword arguments (``max_iterations``, ``budget``,
            ``trajectory_dir``, ``cache``...).
        settings: Keys and endpoints for both methods (default: from the environment).
        context_windows: Windows of models the built-in table does not know, for both.
        model_label: The model's name in the rows (needed when ``model`` is a function).
        concurrency: Runs in flight at once, all methods together.
        out_path: The JSONL file (made with its folder when missing).
        retry_errors: Run again the rows that failed in an earlier run (their old rows are
            removed first).
        on_progress: Called after each row (and once before the first) with the progress.

    Returns:
        The rows of this evaluation, and how many were written and skipped.

    Raises:
        ConfigurationError: a bad argument, an unknown model or a missing key (stops the
            evaluation: it would fail every row), or ``out_path`` holding rows of another
            model for the same method.
        AuthenticationError: the provider refused the key (stops the evaluation too).
    """
    check_int("n", n, 1)
    check_int("concurrency", concurrency, 1)
    if not sizes:
        raise ConfigurationError("sizes must name at least one size, e.g. [8_000]")
    for size in sizes:
        check_int("size", size, 1)
    runners = _runners(
        methods, model, sub_model, rlm_options, settings, context_windows, model_label
    )
    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = read_rows(path)
    _check_models(existing, runners, path)
    if retry_errors and any(row.get("error") for row in existing):
        existing = [row for row in existing if not row.get("error")]
        write_rows(path, existing)
    elif not ends_cleanly(path):  # a row cut short: drop it, or the next would join it
        write_rows(path, existing)
    done = {row_key(row): row for row in existing}

    plan: list[tuple[int, int, list[Runner]]] = []
    progress = EvalProgress(total=len(sizes) * n * len(runners))
    for size in dict.fromkeys(sizes):
        for seed in range(n):
            pending = []
            for runner in runners:
                row = done.get((task.name, size, seed, runner.name))
                if row is None:
                    pending.append(runner)
                else:
                    progress.add(row)
                    progress.skipped += 1
            if pending:
                plan.append((size, seed, pending))
    progress.last = None
    if on_progress is not None:
        on_progress(progress)

    results = EvalResults(path=path, skipped=progress.skipped)
    limiter = anyio.CapacityLimiter(concurrency)
    # At most `concurrency` examples are held at once: a 1M-token context is 4 MB of text.
    examples_held = anyio.Semaphore(concurrency)

    def finished(row: dict[str, Any]) -> None:
        append_row(handle, row)
        results.written += 1
        progress.add(row)
        if on_progress is not None:
            on_progress(progress)

    async def run_one(example: Example, runner: Runner) -> None:
        async with limiter:
            outcome = await runner.run(example)
        finished(_row(example, runner, outcome, _score(task, outcome, example)))

    async def run_example(size: int, seed: int, pending: list[Runner]) -> None:
        async with examples_held:
            example = await anyio.to_thread.run_sync(task.generate, seed, size)
            async with anyio.create_task_group() as group:
                for runner in pending:
                    group.start_soon(run_one, example, runner)

    async with AsyncExitStack() as stack:
        for runner in runners:
            await stack.enter_async_context(runner)
        # A row is a line of a local file: written in the loop, in the order rows finish.
        with path.open("a", encoding="utf-8") as handle:  # noqa: ASYNC230
            try:
                async with anyio.create_task_group() as group:
                    for size, seed, pending in plan:
                        group.start_soon(run_example, size, seed, pending)
            except BaseExceptionGroup as failed:
                # Only a setup error (or a task's own bug) gets here, and it stopped every
                # row: raise it as itself, not wrapped in groups of the task groups.
                leaves = _leaves(failed)
                if all(isinstance(leaf, Exception) for leaf in leaves):
                    raise leaves[0] from None
                raise

    wanted = {
        (task.name, size, seed, r.name) for size in sizes for seed in range(n) for r in runners
    }
    results.rows = [row for row in read_rows(path) if row_key(row) in wanted]
    return results


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found


def _check_models(rows: list[dict[str, Any]], runners: list[Runner], path: Path) -> None:
    models = {runner.name: runner.model for runner in runners}
    for row in rows:
        expected = models.get(str(row.get("method")))
        if expected is not None and row.get("model") != expected:
            raise ConfigurationError(
                f"{path} holds {row['method']} rows of model {row.get('model')!r}, and this run "
                f"uses {expected!r}: give this run another output path (the rows would mix)"
            )
