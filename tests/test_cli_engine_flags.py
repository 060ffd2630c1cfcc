"""Both command lines take the engine flags from one definition, defaults from RLMOptions."""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import pytest

from rlm_async.cli import main
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


def test_compact_at_reads_fractions_tokens_and_off_in_both_clis() -> None:
    for value, read in (("0.5", 0.5), ("50000", 50_000), ("off", None), ("0", None)):
        run = engine_options(_parser().parse_args(["run", "q", "--compact-at", value]))
        serve = engine_options(_serve_args("--compact-at", value))
        assert run.compact_at == serve.compact_at == read


def test_output_retries_reaches_the_options() -> None:
    assert engine_options(_parser().parse_args(["run", "q", "--output-retries", "0"])) == (
        RLMOptions(output_retries=0)
    )
    assert engine_options(_serve_args("--output-retries", "5")).output_retries == 5


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--compact-at", "half"], "a fraction of the window"),
        (["--compact-at", "1.5"], "compact_at"),
        (["--compact-at", "50"], "compact_at"),
        (["--output-retries", "-1"], "0 or more"),
    ],
)
def test_bad_values_are_usage_errors_naming_the_flag(
    flags: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "q", "--no-dotenv", *flags]) == 2
    err = capsys.readouterr().err
    assert said in err and flags[0] in err
    assert "Traceback" not in err


def test_serve_takes_the_cache_file_and_its_workers_open_it(tmp_path: Path) -> None:
    from rlm_async.cli._serve import _replica
    from rlm_async.providers._settings import Settings

    store = tmp_path / "subcalls.sqlite3"
    args = _serve_args("--cache", str(store))
    replica = _replica(args, Settings(), "openai-compatible:x", None, None)
    # What --workers N hands each worker: a pickled copy.
    copy = pickle.loads(pickle.dumps(replica))
    assert copy.cache == str(store)
    assert _serve_args().cache is None
