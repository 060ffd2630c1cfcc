"""``main``: the parser of every sub-command, and ``demo``, ``run`` and ``view`` (``serve`` is in
:mod:`rlm_async.cli._serve`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from rlm_async.cli._arg_types import positive_int
from rlm_async.cli._dotenv_flag import add_dotenv_argument
from rlm_async.cli._engine_flags import DEFAULT_MODEL, add_engine_arguments, engine_options
from rlm_async.cli._progress import Progress, add_progress_argument, wants_progress, with_ticker
from rlm_async.engine._listeners import fan_out

if TYPE_CHECKING:
    from rlm_async.trajectory import TrajectoryWriter

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlm-async",
        description=(
            "Recursive Language Models, async: answer queries over contexts far too long "
            "for a prompt."
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo",
        help="find a number hidden in ~1,000,000 lines (offline demo model when no key is set)",
    )
    demo.add_argument(
        "--lines",
        type=positive_int,
        default=1_000_000,
        help="lines of haystack (default 1,000,000)",
    )
    demo.add_argument(
        "--seed", type=int, default=None, help="random seed for a reproducible haystack"
    )
    demo.add_argument(
        "--model", default=None, help="root model (default: from your key, else offline)"
    )
    demo.add_argument("--sub-model", default=None, help="model for sub-calls")
    demo.add_argument(
        "--offline", action="store_true", help="use the offline demo model even if a key is set"
    )
    demo.add_argument(
        "--concurrency",
        type=positive_int,
        default=32,
        help="sub-calls in flight at once (default 32)",
    )
    demo.add_argument(
        "-v", "--verbose", action="store_true", help="print every turn, cell and sub-call batch"
    )
    _trajectory_options(demo)

    run = commands.add_parser(
        "run", help="answer a query about a file (or stdin); the answer goes to stdout"
    )
    run.add_argument("query", help="the question")
    run.add_argument("--context", default="-", help="a text or JSON file, or - for stdin (default)")
    run.add_argument(
        "--json", action="store_true", help="parse the context file as JSON (list or dict)"
    )
    add_engine_arguments(run, model_help=DEFAULT_MODEL)
    add_dotenv_argument(run)
    run.add_argument(
        "-v", "--verbose", action="store_true", help="show the run on stderr as it happens"
    )
    add_progress_argument(run)
    run.add_argument(
        "--result-json",
        action="store_true",
        help="print the whole result as JSON instead of the answer",
    )
    run.add_argument(
        "--output-schema",
        metavar="FILE",
        default=None,
        help="a JSON schema file the answer must match (sent back to the model until it "
        "does, see --output-retries); the validated answer is printed as JSON",
    )
    _trajectory_options(run)

    view = commands.add_parser(
        "view", help="write a self-contained HTML page showing a trajectory (.jsonl)"
    )
    view.add_argument("trajectory", help="a trajectory file written with --trajectory")
    view.add_argument(
        "-o", "--output", default=None, help="the HTML file (default: TRAJECTORY with .html)"
    )
    view.add_argument("--open", action="store_true", help="open the page in a web browser")

    from rlm_async.cli._serve import add_serve_arguments

    serve = commands.add_parser(
        "serve", help="serve an RLM over HTTP (OpenAI-compatible, SSE events)"
    )
    add_serve_arguments(serve)

    from rlm_async.cli._eval import add_eval_arguments

    evaluate = commands.add_parser(
        "eval", help="score the RLM (and a direct call) on a seeded long-context task; a report"
    )
    add_eval_arguments(evaluate)

    from rlm_async.cli._batch import add_batch_arguments

    add_batch_arguments(
        commands.add_parser(
            "batch",
            help="answer many requests from a JSONL file on every core (or on Ray), "
            "results to a JSONL file as they finish; a re-run skips ids answered there",
        )
    )

    doctor = commands.add_parser(
        "doctor", help="start a sandboxed REPL and report which sandbox layers are active here"
    )
    doctor.add_argument("--json", action="store_true", help="print the full report as JSON")
    doctor.add_argument(
        "--strict", action="store_true", help="exit 1 unless every default layer is active"
    )
    return parser


def _trajectory_options(command: argparse.ArgumentParser) -> None:
    group = command.add_mutually_exclusive_group()
    group.add_argument(
        "--trajectory", metavar="PATH", default=None, help="write the run's trajectory here"
    )
    group.add_argument(
        "--trajectory-dir",
        metavar="DIR",
        default=None,
        help="write the trajectory to DIR/<UTC time>-<run id>.jsonl",
    )


def _read_context(source: str, as_json: bool) -> object:
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    return json.loads(text) if as_json else text


def _writer(args: argparse.Namespace) -> TrajectoryWriter | None:
    from rlm_async.trajectory import TrajectoryWriter

    metadata = {"command": args.command}
    if args.trajectory:
        return TrajectoryWriter(args.trajectory, metadata=metadata)
    if args.trajectory_dir:
        return TrajectoryWriter.in_directory(args.trajectory_dir, metadata=metadata)
    return None


def _finish_trajectory(writer: TrajectoryWriter | None) -> None:
    if writer is None:
        return
    writer.close()
    if writer.path is None:  # a --trajectory-dir run that never started: no file
        return
    print(
        f"rlm-async: trajectory written to {writer.path} "
        f"(see it with: rlm-async view {writer.path})",
        file=sys.stderr,
    )


async def _demo(args: argparse.Namespace) -> int:
    from rlm_async.demo import run_demo

    writer = _writer(args)
    try:
        report = await run_demo(
            lines=args.lines,
            seed=args.seed,
            model=args.model,
            sub_model=args.sub_model,
            offline=True if args.offline else None,
            enable_logging=args.verbose,
            max_concurrency=args.concurrency,
            on_event=writer,
        )
    finally:
        _finish_trajectory(writer)
    print(report.render())
    return 0 if report.correct else 1


async def _run(args: argparse.Namespace) -> int:
    from rlm_async.engine._rlm import RLM

    context = _read_context(args.context, args.json)
    schema = _read_schema(args.output_schema) if args.output_schema else None
    # --verbose logs go to stderr too: no status line between them unless asked for.
    progress = Progress(sys.stderr) if wants_progress(args, stderr_busy=args.verbose) else None
    writer = _writer(args)
    try:
        # The flags are one options value, checked as a whole before anything starts.
        options = engine_options(
            args, enable_logging=args.verbose, on_event=fan_out(writer, progress)
        )
        async with RLM(
            model=args.model or DEFAULT_MODEL,
            sub_model=args.sub_model,
            options=options,
            load_dotenv=not args.no_dotenv,
            cache=args.cache,
        ) as rlm:
            work = rlm.completion(context, args.query, output_type=schema)
            result = await (work if progress is None else with_ticker(progress, work))
    finally:
        if progress is not None:
            progress.finish()
        _finish_trajectory(writer)
    if writer is not None:
        result.metadata["trajectory_path"] = str(writer.path)
    if args.result_json:
        print(result.model_dump_json(indent=2))
    elif schema is not None:
        print(json.dumps(result.output, ensure_ascii=False))
    else:
        print(result.answer)
    return 0


def _read_schema(path: str) -> dict[str, Any]:
    """``--output-schema``: a JSON schema from a file (checked by the run, as any
    ``output_type``).

    Raises:
        ConfigurationError: the file is not JSON, or not a JSON object.
    """
    from rlm_async._exceptions import ConfigurationError

    try:
        schema = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"--output-schema {path}: not valid JSON: {exc}") from None
    if not isinstance(schema, dict):
        raise ConfigurationError(
            f"--output-schema {path}: a JSON schema is an object, e.g. "
            '{"type": "object", "properties": {...}}; got ' + type(schema).__name__
        )
    return schema


async def _view(args: argparse.Namespace) -> int:
    from rlm_async.trajectory._viewer import write_html

    # Reading and rendering a file is quick; a worker thread keeps the event loop honest.
    out = await anyio.to_thread.run_sync(write_html, args.trajectory, args.output)
    print(out)
    if args.open:
        import webbrowser

        webbrowser.open(out.resolve().as_uri())
    return 0


def _error(message: object) -> int:
    print(f"rlm-async: error: {message}", file=sys.stderr)
    return 2


async def _serve(args: argparse.Namespace) -> int:
    from rlm_async.cli._serve import serve

    return await serve(args)


async def _eval(args: argparse.Namespace) -> int:
    from rlm_async.cli._eval import run_eval_command

    return await run_eval_command(args)


async def _batch(args: argparse.Namespace) -> int:
    from rlm_async.cli._batch import batch_command

    return await batch_command(args)


async def _doctor(args: argparse.Namespace) -> int:
    import time

    from rlm_async.repl import ReplSession
    from rlm_async.repl._launcher import probe_sandbox

    started = time.perf_counter()
    async with ReplSession("") as repl:
        seconds = time.perf_counter() - started
        report = dict(repl.sandbox_report)
    machine = probe_sandbox()
    if args.json:
        print(json.dumps({"child": report, "machine": machine, "start_seconds": seconds}, indent=2))
    else:
        print(f"REPL child started in {seconds * 1000:.1f} ms with the default sandbox:")
        for name, layer in report.get("layers", {}).items():
            mark = "on " if layer.get("active") else "OFF"
            print(f"  [{mark}] {name:<14} {layer.get('detail', '')}")
        bwrap = machine.get("bwrap", {})
        print(f"  bubblewrap: {'usable' if bwrap.get('usable') else bwrap.get('problem')}")
        for warning in report.get("warnings", []):
            print(f"  warning: {warning}")
    inactive = [n for n, layer in report.get("layers", {}).items() if not layer.get("active")]
    return 1 if args.strict and inactive else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rlm-async`` console script.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 done, 1 the demo's answer was wrong, 2 an error, 130 interrupted.
    """
    from rlm_async._exceptions import RLMError

    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse already printed
        return exc.code if isinstance(exc.code, int) else 2
    handlers: dict[str, Callable[[argparse.Namespace], Any]] = {
        "demo": _demo,
        "run": _run,
        "view": _view,
        "doctor": _doctor,
        "serve": _serve,
        "batch": _batch,
        "eval": _eval,
    }
    try:
        code: int = asyncio.run(handlers[args.command](args))
        return code
    except RLMError as exc:
        return _error(exc)
    except json.JSONDecodeError as exc:
        return _error(f"the context is not valid JSON: {exc}")
    except OSError as exc:
        return _error(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else exc)
    except UnicodeDecodeError as exc:
        what = "the trajectory file" if args.command == "view" else "the context"
        return _error(f"{what} is not UTF-8 text: {exc}")
    except KeyboardInterrupt:
        print("\nrlm-async: interrupted", file=sys.stderr)
        return 130
