"""Both command lines take the engine flags from one definition, defaults from RLMOptions."""

from __future__ import annotations

import argparse

from rlm_async.cli._engine_flags import engine_options
from rlm_async.cli._main import _parser
from rlm_async.cli._serve import add_serve_arguments
from rlm_async.engine._options import RLMOptions


def _serve_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return parser.parse_args(list(argv))


def test_default_flags_are_the_library_defaults_in_both_clis() -> None:
    run = _parser().parse_args(["run", "q"])
    serve = _serve_args()
    assert engine_options(run) == RLMOptions()
    assert engine_options(serve) == RLMOptions()


def test_both_clis_read_the_same_flags_into_the_same_options() -> None:
    flags = ["--max-iterations", "3", "--max-depth", "2", "--cell-timeout", "5"]
    run = engine_options(_parser().parse_args(["run", "q", *flags]))
    serve = engine_options(_serve_args(*flags))
    assert run == serve
    assert (run.max_iterations, run.max_depth, run.repl.cell_timeout) == (3, 2, 5.0)
