"""Seeded long-context tasks with exact scorers: does an RLM beat a direct call on your model?

Four tasks after the RLM paper's benchmarks, each generated from a seed and a size (the
context's length in tokens, 4 characters a token) and scored with no model involved:

- ``sniah``: one needle in a haystack (S-NIAH), exact match.
- ``oolong``: aggregation over every record (OOLONG trec-coarse), exact labels and
  ``0.75 ** |error|`` for counts.
- ``oolong-pairs``: pairs of users meeting a joint condition (OOLONG-Pairs), F1 over pairs.
- ``multidoc``: a two-hop question over many documents (BrowseComp-Plus-like), exact match.

Each task also has scripted models (:data:`SOLVERS`) so everything runs offline. A fifth,
``oolong-synth``, gives the published OOLONG-synth rows (with the ``datasets`` package).

:func:`run_eval` runs a task's examples through the RLM and the direct call (``rlm-async
eval`` on the command line), appending a row per example and method to a JSONL file it
resumes from; :func:`write_report` turns that file into ``report.md`` and ``report.html``.

Example:
    from rlm_async.evals import get_task, parse_size

    task = get_task("oolong")
    example = task.generate(seed=0, size=parse_size("128k"))
    score = task.score("Answer: 42", example)
"""

from __future__ import annotations

from rlm_async._exceptions import ConfigurationError
from rlm_async.evals._harness import EvalProgress, EvalResults, run_eval
from rlm_async.evals._multidoc import MULTIDOC_SOLVERS, MultiDocTask
from rlm_async.evals._oolong import OOLONG_SOLVERS, OolongTask
from rlm_async.evals._oolong_synth import OolongSynthTask
from rlm_async.evals._pairs import PAIRS_SOLVERS, OolongPairsTask
from rlm_async.evals._report import Summary, html_report, markdown_report, summarize, write_report
from rlm_async.evals._results import ROW_FIELDS, read_rows
from rlm_async.evals._runners import DirectRunner, Outcome, RLMRunner, Runner
from rlm_async.evals._sizes import format_size, parse_size
from rlm_async.evals._sniah import SNIAH_SOLVERS, SNiahTask
from rlm_async.evals._task import Example, Solver, Solvers, Task

__all__ = [
    "ROW_FIELDS",
    "SOLVERS",
    "TASKS",
    "DirectRunner",
    "EvalProgress",
    "EvalResults",
    "Example",
    "MultiDocTask",
    "OolongPairsTask",
    "OolongSynthTask",
    "OolongTask",
    "Outcome",
    "RLMRunner",
    "Runner",
    "SNiahTask",
    "Solver",
    "Solvers",
    "Summary",
    "Task",
    "format_size",
    "get_solvers",
    "get_task",
    "html_report",
    "markdown_report",
    "parse_size",
    "read_rows",
    "run_eval",
    "summarize",
    "write_report",
]

#: Every task by the name ``rlm-async eval --task`` takes.
TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        SNiahTask(),
        OolongTask(),
        OolongPairsTask(),
        MultiDocTask(),
        OolongSynthTask(),
    )
}

#: Each generated task's scripted models, by task name: what ``rlm-async eval --offline``
#: runs (``oolong-synth``, published data, has none).
SOLVERS: dict[str, Solvers] = {
    "sniah": SNIAH_SOLVERS,
    "oolong": OOLONG_SOLVERS,
    "oolong-pairs": PAIRS_SOLVERS,
    "multidoc": MULTIDOC_SOLVERS,
}


def get_task(name: str) -> Task:
    """The task called ``name``.

    Raises:
        ConfigurationError: No task has that name (the message lists them).
    """
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigurationError(
            f"no evaluation task is called {name!r}: choose one of {', '.join(TASKS)}"
        ) from None


def get_solvers(name: str) -> Solvers:
    """The scripted models of the task called ``name``.

    Raises:
        ConfigurationError: No task has that name, or the task has no scripted models (the
            message lists those that have).
    """
    get_task(name)
    try:
        return SOLVERS[name]
    except KeyError:
        raise ConfigurationError(
            f"the task {name!r} has no scripted models, so it cannot run offline: the tasks "
            f"that can are {', '.join(SOLVERS)}"
        ) from None
