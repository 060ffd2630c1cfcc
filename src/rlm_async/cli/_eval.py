"""``rlm-async eval``: a task's seeded examples through the RLM (and a direct call), a report.

Wired into ``rlm_async.cli`` with :func:`add_eval_arguments` (parser) and :func:`run_eval_command`
(``async``, returns the exit status). Results go to ``OUT/results.jsonl`` row by row; a second
run with the same ``--out`` resumes. ``--offline`` runs each task's scripted models (the
right code for the RLM, a perfect reader of its prompt for the direct call): no key, and the
same table every time; ``--offline`` with no ``--task`` runs every such task at 8k and 64k
against the direct call (the known table). Rows that failed make the command exit 1.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from rlm_async._exceptions import ConfigurationError
from rlm_async.cli._arg_types import positive_int
from rlm_async.cli._dotenv_flag import add_dotenv_argument, settings_from_env
from rlm_async.cli._engine_flags import DEFAULT_MODEL, add_engine_arguments, engine_options
from rlm_async.cli._progress import add_progress_argument, wants_progress

if TYPE_CHECKING:
    from rlm_async.evals._harness import EvalProgress
    from rlm_async.evals._runners import Runner
    from rlm_async.evals._task import Task

__all__ = ["OFFLINE_WINDOW", "add_eval_arguments", "run_eval_command"]

#: The window of the offline direct model, in tokens: contexts from 32k up are cut to it, so
#: the offline table shows what the paper's base rows show past the window.
OFFLINE_WINDOW = 32_000
_OFFLINE = "offline"
#: The sizes of ``--offline`` run alone: one the offline direct model's window holds, one
#: it does not.
_KNOWN_SIZES = ("8k", "64k")


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``eval`` command's options to ``parser``."""
    parser.add_argument(
        "--task",
        default=None,
        help="the task: sniah, oolong, oolong-pairs, multidoc... (an unknown name lists them "
        "all; see docs/evals.md). Required, but for --offline alone: every task at 8k and 64k "
        "against the direct call, the known table",
    )
    parser.add_argument(
        "--size",
        action="append",
        default=None,
        metavar="SIZE",
        help="context size in tokens: 8k, 128k, 1m... (repeat it or give a comma list; default 8k)",
    )
    parser.add_argument(
        "--n", type=positive_int, default=10, help="examples per size: seeds 0..n-1 (default 10)"
    )
    parser.add_argument(
        "--compare",
        action="append",
        choices=["direct"],
        default=[],
        help="also run this method on the same examples (direct: the model with the context "
        "in its prompt, cut to its window)",
    )
    parser.add_argument(
        "-o",
        "--out",
        metavar="DIR",
        default=None,
        help="where results.jsonl, report.md and report.html go (default: rlm-eval-TASK); "
        "run again with the same DIR to resume",
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=4,
        metavar="N",
        help="runs in flight at once (an example through one method), all methods "
        "together (default 4)",
    )
    add_engine_arguments(parser, model_help=DEFAULT_MODEL)
    parser.add_argument(
        "--context-window",
        type=positive_int,
        default=None,
        metavar="TOKENS",
        help="--model's context window, for a model the built-in table does not know (the "
        "direct call's prompt is cut to it)",
    )
    parser.add_argument(
        "--offline",
        action="store_true",
        help="run the task's scripted models instead of --model: no key, a known table",
    )
    parser.add_argument(
        "--retry-errors", action="store_true", help="run again the rows that failed last time"
    )
    parser.add_argument(
        "--trajectories",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write each RLM run's trajectory to DIR/trajectories (default: on)",
    )
    add_dotenv_argument(parser)
    add_progress_argument(parser)


def _sizes(values: list[str] | None) -> list[int]:
    from rlm_async.evals import parse_size

    texts = [part for value in values or ["8k"] for part in value.split(",") if part.strip()]
    return list(dict.fromkeys(parse_size(text) for text in texts))


class EvalStatus:
    """The status line of an evaluation, redrawn in place as rows finish:
    ``eval sniah: 7/12 · score 85.7% · $0.0312 · 1 error · 41.2 s``."""

    def __init__(self, stream: TextIO, task: str) -> None:
        self._stream = stream
        self._task = task
        self._started = time.monotonic()
        self._shown = False

    def line(self, progress: EvalProgress) -> str:
        parts = [f"eval {self._task}: {progress.done}/{progress.total}"]
        if progress.skipped:
            parts.append(f"{progress.skipped} from an earlier run")
        if not math.isnan(progress.score):
            parts.append(f"score {progress.score * 100:.1f}%")
        if progress.cost is not None:
            parts.append(f"${progress.cost:.4f}")
        if progress.errors:
            parts.append(f"{progress.errors} error{'s' if progress.errors > 1 else ''}")
        parts.append(f"{time.monotonic() - self._started:.1f} s")
        return " · ".join(parts)

    def __call__(self, progress: EvalProgress) -> None:
        self._stream.write(f"\r\033[K{self.line(progress)}")
        self._stream.flush()
        self._shown = True

    def finish(self) -> None:
        if self._shown:
            self._stream.write("\n")
            self._stream.flush()


def _offline_runners(task: Task, methods: list[str], options: Any) -> list[Runner]:
    from rlm_async.evals import get_solvers
    from rlm_async.evals._runners import DirectRunner, RLMRunner
    from rlm_async.testing import ScriptedModel

    solvers = get_solvers(task.name)
    windows = {_OFFLINE: OFFLINE_WINDOW}
    runners: list[Runner] = [
        RLMRunner(
            lambda ex: ScriptedModel(solvers.solver(ex), name=_OFFLINE),
            lambda ex: ScriptedModel(solvers.sub_solver(ex), name=_OFFLINE),
            options={"options": options, "context_windows": windows},
            label="offline (scripted solver)",
        )
    ]
    if "direct" in methods:
        runners.append(
            DirectRunner(
                lambda ex: ScriptedModel(solvers.direct_solver(ex), name=_OFFLINE),
                context_windows=windows,
                label=f"offline (scripted reader, {OFFLINE_WINDOW // 1000}k window)",
            )
        )
    return runners


def _window_known(model: str) -> bool:
    from rlm_async.providers._settings import parse_model_name
    from rlm_async.providers._windows import ContextWindows

    name = parse_model_name(model)
    return ContextWindows().window(name.provider, name.model) is not None


def _tasks(args: argparse.Namespace) -> list[Task]:
    """The tasks to run: ``--task``'s, or with ``--offline`` alone every task that has
    scripted models (the known table; its sizes and the direct call implied)."""
    from rlm_async.evals import SOLVERS, get_task

    if args.task is not None:
        return [get_task(args.task)]
    if not args.offline:
        raise ConfigurationError(
            "give the task with --task (sniah, oolong, oolong-pairs, multidoc, ...), or run "
            "--offline alone for the known table of every task"
        )
    if args.size is None:
        args.size = list(_KNOWN_SIZES)
    if not args.compare:
        args.compare = ["direct"]
    return [get_task(name) for name in SOLVERS]


async def run_eval_command(args: argparse.Namespace) -> int:
    """Run the evaluation ``args`` describe, write the report, print its table.

    Returns 0 when every row was answered, 1 when rows failed (their first error said).
    """
    from rlm_async.evals._harness import EvalResults, run_eval
    from rlm_async.evals._report import markdown_report, write_report
    from rlm_async.evals._results import read_rows
    from rlm_async.evals._runners import RLMRunner
    from rlm_async.providers._windows import UNKNOWN_WINDOW

    tasks = _tasks(args)
    sizes = _sizes(args.size)
    out = Path(args.out or f"rlm-eval-{tasks[0].name if args.task else _OFFLINE}")
    methods = ["rlm", *dict.fromkeys(args.compare)]
    fields: dict[str, Any] = {}
    if args.trajectories:
        fields["trajectory_dir"] = str(out / "trajectories")
    options = engine_options(args, **fields)
    settings = None
    windows: dict[str, int] | None = None
    runners: list[Runner | str] = []
    model = args.model or DEFAULT_MODEL
    if not args.offline:
        settings = settings_from_env(args)
        rlm_options: dict[str, Any] = {"options": options, "settings": settings}
        if args.cache:
            rlm_options["cache"] = args.cache
        if args.context_window is not None:
            windows = {model: args.context_window}
            rlm_options["context_windows"] = windows
        elif "direct" in methods and not _window_known(model):
            print(
                f"rlm-async: the context window of {model} is not known: the direct call is "
                f"cut to {UNKNOWN_WINDOW:,} tokens; give the real one with --context-window",
                file=sys.stderr,
            )
        runners = [RLMRunner(model, args.sub_model, options=rlm_options), *methods[1:]]
    live = wants_progress(args)
    done: list[EvalResults] = []
    for task in tasks:
        status = EvalStatus(sys.stderr, task.name)
        try:
            done.append(
                await run_eval(
                    task,
                    sizes,
                    args.n,
                    list(_offline_runners(task, methods, options)) if args.offline else runners,
                    model=model,
                    settings=settings,
                    context_windows=windows,
                    concurrency=args.concurrency,
                    out_path=out / "results.jsonl",
                    retry_errors=args.retry_errors,
                    on_progress=status if live else None,
                )
            )
        finally:
            status.finish()
    path = done[0].path
    # The report covers the whole file: sizes an earlier run added are points of its charts.
    markdown, page = write_report(path)
    print(markdown_report(read_rows(path)), end="")
    print(
        f"rlm-async: {sum(r.written for r in done)} rows written, "
        f"{sum(r.skipped for r in done)} from an earlier run; results in {path}, report in "
        f"{markdown} and {page}",
        file=sys.stderr,
    )
    rows = [row for results in done for row in results.rows]
    failed = [row for row in rows if row.get("error")]
    if failed:
        # A run whose rows failed (an unreachable endpoint fails every one) must not look
        # finished: a second run skips failed rows unless told to run them again.
        print(
            f"rlm-async: {len(failed)} of {len(rows)} rows failed (the first: "
            f"{failed[0]['error']}); fix the cause and run the same command with "
            "--retry-errors to run them again",
            file=sys.stderr,
        )
        return 1
    return 0
