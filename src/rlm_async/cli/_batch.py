"""``rlm-async batch``: many requests from a JSONL file, results to another, resumable."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TextIO

import anyio

from rlm_async.batching import BatchStatus, batch
from rlm_async.cli._arg_types import positive_int
from rlm_async.cli._dotenv_flag import add_dotenv_argument, settings_from_env
from rlm_async.cli._engine_flags import DEFAULT_MODEL, add_engine_arguments, engine_options
from rlm_async.cli._progress import (
    StatusLine,
    add_progress_argument,
    wants_progress,
    with_ticker,
)

__all__ = ["BatchProgressLine", "add_batch_arguments", "batch_command"]


def add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``rlm-async batch``: the engine's (as ``run``'s) and the batch's own."""
    parser.add_argument(
        "requests",
        help='a JSONL file, one request a line: {"id": ..., "query": ..., "context": ...} '
        '(or "context_path": a file, relative to this one; optional "json": true and '
        '"options": {...})',
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        help="the JSONL file results are appended to as they finish; ids answered there "
        "are skipped, so running the command again resumes it",
    )
    add_engine_arguments(parser, model_help=DEFAULT_MODEL)
    add_dotenv_argument(parser)
    parser.add_argument(
        "--processes",
        type=positive_int,
        default=None,
        help="worker processes, each running many rows on one event loop (default: one per "
        "core); with --ray, actors (default: one per CPU of the cluster)",
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=None,
        help="rows in flight at once in all (default 8 per worker)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        metavar="USD",
        help="stop starting rows once this run's rows cost this much (rows in flight finish; "
        "the rest are left for a re-run)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=1,
        help="times a row is dispatched again when its worker died under it (default 1)",
    )
    parser.add_argument(
        "--ray",
        nargs="?",
        const=True,
        default=False,
        metavar="ADDRESS",
        help="run on a Ray cluster (pip install 'rlm-async[ray]'): at ADDRESS, else "
        "RAY_ADDRESS, else a local Ray on this machine",
    )
    add_progress_argument(parser)


async def batch_command(args: argparse.Namespace) -> int:
    """Run the batch; 0 when every request has an answer, 1 when some failed or were left
    for a re-run (the summary on stderr says which)."""
    progress = BatchProgressLine(sys.stderr) if wants_progress(args) else None
    work = batch(
        args.requests,
        out=args.output,
        model=args.model or DEFAULT_MODEL,
        sub_model=args.sub_model,
        options=engine_options(args),
        settings=settings_from_env(args),
        cache=args.cache,
        processes=args.processes,
        concurrency=args.concurrency,
        budget=args.budget,
        ray=args.ray,
        retries=args.retries,
        on_progress=progress,
    )
    try:
        summary = await (work if progress is None else with_ticker(progress, work))
    finally:
        if progress is not None:
            progress.finish()
    print(f"rlm-async batch: {summary.render()}", file=sys.stderr)
    return 0 if summary.done + summary.skipped == summary.total else 1


class BatchProgressLine(StatusLine):
    """A batch's live status on a terminal, redrawn as rows finish and a few times a second.

    ``⠹ 12.4 s · 40/100 rows · 2 failed · 16 in flight · 3.2 rows/s · $0.0123``
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._status: BatchStatus | None = None

    def __call__(self, status: BatchStatus) -> None:
        self._status = status
        self.draw()

    def line(self) -> str:
        """The status line, without terminal control characters."""
        status = self._status
        if status is None:
            return "starting the workers"
        finished = status.skipped + status.done + status.failed
        parts = [f"{status.elapsed:.1f} s", f"{finished}/{status.total} rows"]
        if status.failed:
            parts.append(f"{status.failed} failed")
        parts += [
            f"{status.in_flight} in flight",
            f"{status.rows_per_second:.2f} rows/s",
            f"${status.cost_usd:.4f}",
        ]
        return " · ".join(parts)

    def draw(self) -> None:
        self._redraw()

    async def tick(self) -> None:
        """Redraw a few times a second so the clock and the rate keep moving."""
        started = time.monotonic()
        while True:
            await anyio.sleep(0.25)
            if self._status is not None or time.monotonic() - started > 1:
                self.draw()

    def finish(self) -> None:
        """Leave the last status on its own line."""
        self._close("✓")
