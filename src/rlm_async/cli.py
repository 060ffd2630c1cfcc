"""The ``rlm-async`` command: ``demo``, ``run`` and ``doctor``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

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
        "--lines", type=int, default=1_000_000, help="lines of haystack (default 1,000,000)"
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
        "--concurrency", type=int, default=32, help="sub-calls in flight at once (default 32)"
    )
    demo.add_argument(
        "-v", "--verbose", action="store_true", help="print every turn, cell and sub-call batch"
    )

    run = commands.add_parser(
        "run", help="answer a query about a file (or stdin); the answer goes to stdout"
    )
    run.add_argument("query", help="the question")
    run.add_argument("--context", default="-", help="a text or JSON file, or - for stdin (default)")
    run.add_argument(
        "--json", action="store_true", help="parse the context file as JSON (list or dict)"
    )
    run.add_argument("--model", default="gpt-5", help="root model (default gpt-5)")
    run.add_argument("--sub-model", default=None, help="model for sub-calls (default: --model)")
    run.add_argument("--max-iterations", type=int, default=20)
    run.add_argument("--max-depth", type=int, default=1)
    run.add_argument("--max-concurrency", type=int, default=16)
    run.add_argument("--cell-timeout", type=float, default=120.0)
    run.add_argument("--no-dotenv", action="store_true", help="do not read a .env file")
    run.add_argument(
        "-v", "--verbose", action="store_true", help="show the run on stderr as it happens"
    )
    run.add_argument(
        "--result-json",
        action="store_true",
        help="print the whole result as JSON instead of the answer",
    )
    return parser


def _read_context(source: str, as_json: bool) -> object:
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    return json.loads(text) if as_json else text


async def _demo(args: argparse.Namespace) -> int:
    from rlm_async.demo import run_demo

    report = await run_demo(
        lines=args.lines,
        seed=args.seed,
        model=args.model,
        sub_model=args.sub_model,
        offline=True if args.offline else None,
        enable_logging=args.verbose,
        max_concurrency=args.concurrency,
    )
    print(report.render())
    return 0 if report.correct else 1


async def _run(args: argparse.Namespace) -> int:
    from rlm_async._engine import RLM

    context = _read_context(args.context, args.json)
    async with RLM(
        model=args.model,
        sub_model=args.sub_model,
        max_iterations=args.max_iterations,
        max_depth=args.max_depth,
        max_concurrency=args.max_concurrency,
        cell_timeout=args.cell_timeout,
        load_dotenv=not args.no_dotenv,
        enable_logging=args.verbose,
    ) as rlm:
        result = await rlm.completion(context, args.query)
    if args.result_json:
        print(result.model_dump_json(indent=2))
    else:
        print(result.answer)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rlm-async`` console script."""
    from rlm_async._exceptions import RLMError

    args = _parser().parse_args(argv)
    handlers = {"demo": _demo, "run": _run}
    try:
        return asyncio.run(handlers[args.command](args))
    except RLMError as exc:
        print(f"rlm-async: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rlm-async: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
