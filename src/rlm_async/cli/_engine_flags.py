"""The engine flags both command lines share (``rlm-async run`` and ``rlm-async serve``).

One definition, with defaults read from :class:`RLMOptions` and :class:`ReplOptions`, so a
changed default changes the library and both CLIs at once.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from rlm_async._exceptions import ConfigurationError
from rlm_async.cli._arg_types import non_negative_int, positive_int
from rlm_async.engine._options import RLMOptions
from rlm_async.repl import ReplOptions

__all__ = ["DEFAULT_MODEL", "add_engine_arguments", "engine_options"]

DEFAULT_MODEL = "gpt-5"


def _default(model: type[RLMOptions] | type[ReplOptions], field: str) -> Any:
    return model.model_fields[field].default


def add_engine_arguments(parser: argparse.ArgumentParser, *, model_help: str) -> None:
    """Add ``--model``, ``--sub-model``, ``--max-iterations``, ``--max-depth``,
    ``--max-concurrency``, ``--cell-timeout``, ``--compact-at``, ``--output-retries`` and
    ``--cache`` to ``parser``.

    ``--model`` defaults to ``None``: each command says what it falls back to
    (``model_help``).
    """
    parser.add_argument("--model", default=None, help=f"root model (default: {model_help})")
    parser.add_argument("--sub-model", default=None, help="model for sub-calls (default: --model)")
    for flag, help_text in (
        ("--max-iterations", "root turns before the answer is asked for"),
        ("--max-depth", "recursion depth (1: rlm_query is a plain call)"),
        ("--max-concurrency", "sub-calls in flight per run"),
    ):
        _add_option_flag(parser, flag, RLMOptions, positive_int, help_text)
    _add_option_flag(
        parser, "--cell-timeout", ReplOptions, float, "seconds a REPL cell may run", metavar="S"
    )
    _add_option_flag(
        parser,
        "--compact-at",
        RLMOptions,
        _compact_at,
        "fold a root conversation's earlier turns into a summary past X: a fraction of what "
        "the root model's window holds (e.g. 0.6), a number of tokens (e.g. 50000), or off",
        metavar="X",
    )
    _add_option_flag(
        parser,
        "--output-retries",
        RLMOptions,
        non_negative_int,
        "answers that did not match the requested schema sent back to the model before the "
        "run fails",
        metavar="N",
    )
    parser.add_argument(
        "--cache",
        metavar="PATH",
        default=None,
        help="keep sub-call answers in this SQLite file: a re-run pays nothing for them "
        "(several processes may share it)",
    )


def _add_option_flag(
    parser: argparse.ArgumentParser,
    flag: str,
    model: type[RLMOptions] | type[ReplOptions],
    arg_type: Callable[[str], Any],
    help_text: str,
    *,
    metavar: str | None = None,
) -> None:
    """Add ``flag`` for the field of ``model`` it names (``--max-depth``: ``max_depth``), with
    that field's default, said in the help."""
    default = _default(model, flag.removeprefix("--").replace("-", "_"))
    parser.add_argument(
        flag,
        type=arg_type,
        default=default,
        metavar=metavar,
        help=f"{help_text} (default {default:g})",
    )


def _compact_at(text: str) -> float | int | None:
    """``--compact-at``: ``off``, tokens (an int) or a fraction (a float), checked by the
    rule of ``RLMOptions.compact_at``."""
    value: float | int | None
    if text.strip().lower() in ("off", "none"):
        value = None
    else:
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise argparse.ArgumentTypeError(
                    "expected a fraction of the window (e.g. 0.75), a number of tokens "
                    f"(e.g. 50000) or off, got {text!r}"
                ) from None
    try:
        return RLMOptions(compact_at=value).compact_at
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc).rpartition("Value error, ")[2]) from None


def engine_options(args: argparse.Namespace, **fields: Any) -> RLMOptions:
    """The :class:`RLMOptions` the flags of :func:`add_engine_arguments` say, plus ``fields``.

    Raises:
        ConfigurationError: a value the options refuse (named).
    """
    return RLMOptions(
        max_iterations=args.max_iterations,
        max_depth=args.max_depth,
        max_concurrency=args.max_concurrency,
        compact_at=args.compact_at,
        output_retries=args.output_retries,
        repl=ReplOptions(cell_timeout=args.cell_timeout),
        **fields,
    )
