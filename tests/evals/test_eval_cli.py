"""``rlm-async eval``: offline end to end (the known table), resuming, a real provider over
HTTP (a loopback mock server), and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from rlm_async.cli import main
from rlm_async.cli._eval import EvalStatus
from rlm_async.evals._harness import EvalProgress
from rlm_async.providers._base import CompletionRequest
from rlm_async.testing import MockLLMServer, MockReply

# What `rlm-async eval --offline --task sniah --size 8k,64k --n 3 --compare direct` prints,
# less the latency columns (the only ones a machine changes): the scripted RLM finds every
# needle; the scripted direct reader, a perfect reader of a 32k window, finds them at 8k and
# loses them at 64k, where two thirds of the haystack were cut.
KNOWN = [
    ["rlm", "8k", "100.0", "—", "3", "0"],
    ["rlm", "64k", "100.0", "—", "3", "0"],
    ["direct", "8k", "100.0", "—", "3", "0"],
    ["direct", "64k", "0.0", "—", "3", "0"],
]
HEADER = "| method | size | score (%) | mean cost | p50 latency | p95 latency | n | errors |"


def table(stdout: str) -> list[list[str]]:
    """The table's rows without the two latency columns."""
    lines = stdout.splitlines()
    assert HEADER in lines
    rows = [line.strip("| ").split(" | ") for line in lines[lines.index(HEADER) + 2 :] if line]
    return [row[:4] + row[6:] for row in rows]


def offline(out: Path, *extra: str) -> list[str]:
    argv = ["eval", "--offline", "--task", "sniah", "--size", "8k", "--n", "3"]
    return [*argv, "-o", str(out), *extra]


def test_offline_reproduces_the_known_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sniah"
    assert main(offline(out, "--size", "64k", "--compare", "direct")) == 0
    printed = capsys.readouterr()
    assert table(printed.out) == KNOWN
    assert "12 rows written, 0 from an earlier run" in printed.err
    assert (out / "report.md").read_text() == printed.out
    assert "<svg" in (out / "report.html").read_text()
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and {r["model"] for r in rows} == {
        "offline (scripted solver)",
        "offline (scripted reader, 32k window)",
    }
    for row in rows:
        if row["method"] == "rlm":  # each RLM run wrote its trajectory, and the row says where
            assert Path(row["trajectory"]).parent == out / "trajectories"
            assert Path(row["trajectory"]).exists() and row["turns"] == 2
        else:
            assert row["trajectory"] is None
            assert row["truncated"] == 0.0 if row["size"] == 8_000 else row["truncated"] > 0.5

    # Again: the same table, and nothing run.
    assert main(offline(out, "--size", "64k", "--compare", "direct")) == 0
    again = capsys.readouterr()
    assert table(again.out) == KNOWN
    assert "0 rows written, 12 from an earlier run" in again.err


def test_the_command_of_the_readme_runs_with_no_key(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rlm_async.cli", *offline(tmp_path / "out")[:-2]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    assert table(done.stdout) == KNOWN[:1]
    assert (tmp_path / "rlm-eval-sniah" / "results.jsonl").exists()  # the default --out


def test_progress_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(offline(tmp_path, "--progress", "--n", "2", "--no-trajectories")) == 0
    err = capsys.readouterr().err
    assert "\r\033[Keval sniah: 0/2" in err and "eval sniah: 2/2 · score 100.0%" in err
    assert not (tmp_path / "trajectories").exists()

    status = EvalStatus(sys.stderr, "oolong")
    progress = EvalProgress(total=40, done=12, skipped=4, errors=2, score_sum=6.0, cost=0.125)
    assert status.line(progress).startswith(
        "eval oolong: 12/40 · 4 from an earlier run · score 50.0% · $0.1250 · 2 errors · "
    )


def _answers(request: CompletionRequest) -> str:
    if request.system is None:  # the direct call: the context in a user prompt
        return "The answer is 1234567."
    return "```repl\nFINAL('not the needle')\n```"


@pytest.mark.parametrize("window", [None, "32000"])
async def test_a_real_provider_over_http(
    window: str | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with MockLLMServer(_answers) as server:
        monkeypatch.setenv("OPENAI_COMPATIBLE_BASE_URL", server.base_url)
        argv = [
            "eval", "--task", "sniah", "--size", "8k", "--n", "2", "--compare", "direct",
            "--model", "openai-compatible:m", "--no-dotenv", "-o", str(tmp_path),
        ]  # fmt: skip
        if window is not None:
            argv += ["--context-window", window]
        code = await anyio.to_thread.run_sync(main, argv)
        assert code == 0
        assert len(server.requests) == 4  # two RLM root turns, two direct calls
    rows: list[dict[str, Any]] = [
        json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()
    ]
    assert {(r["method"], r["model"]) for r in rows} == {
        ("rlm", "openai-compatible:m"),
        ("direct", "openai-compatible:m"),
    }
    assert all(r["score"] == 0.0 and r["error"] is None for r in rows)
    assert {r["answer"] for r in rows} == {"not the needle", "The answer is 1234567."}
    printed = capsys.readouterr()
    assert table(printed.out) == [
        ["rlm", "8k", "0.0", "—", "2", "0"],
        ["direct", "8k", "0.0", "—", "2", "0"],
    ]
    direct = [r for r in rows if r["method"] == "direct"]
    if window is None:  # 8,192 tokens assumed: the 32,000-character context was cut, and said
        assert "the context window of openai-compatible:m is not known" in printed.err
        assert all(0.3 < r["truncated"] < 0.6 for r in direct)
    else:
        assert "not known" not in printed.err
        assert all(r["truncated"] == 0.0 for r in direct)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--task", "nope"], "no evaluation task is called 'nope': choose one of sniah"),
        (["--task", "sniah", "--size", "8q"], "cannot read the size '8q'"),
        (["--task", "sniah", "--model", "openai:gpt-5"], "OPENAI_API_KEY"),
    ],
)
def test_errors(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", *argv, "--no-dotenv", "-o", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "results.jsonl").exists() or not (tmp_path / "results.jsonl").read_text()


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--task", "sniah", "--compare", "base"]) == 2
    assert "invalid choice: 'base'" in capsys.readouterr().err
    assert main(["eval", "--task", "sniah", "--n", "0"]) == 2


def _refuses(request: CompletionRequest) -> MockReply:
    del request
    return MockReply(
        status=400,
        body={"error": {"message": "Unsupported value: 'temperature'", "type": "invalid_request"}},
    )


async def test_failed_rows_exit_1_naming_the_error_and_retry_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every row failing (an endpoint that refuses each request, or is unreachable) must not
    # look like a finished evaluation: exit 1, the first error, and how to run them again.
    argv = [
        "eval", "--task", "sniah", "--size", "8k", "--n", "2", "--compare", "direct",
        "--model", "openai-compatible:m", "--context-window", "32000", "--no-dotenv",
        "-o", str(tmp_path),
    ]  # fmt: skip
    async with MockLLMServer(_refuses) as server:
        monkeypatch.setenv("OPENAI_COMPATIBLE_BASE_URL", server.base_url)
        assert await anyio.to_thread.run_sync(main, argv) == 1
    err = capsys.readouterr().err
    assert "4 of 4 rows failed" in err and "Unsupported value: 'temperature'" in err
    assert "--retry-errors" in err

    # Run again as told, the endpoint fixed: every row answered, exit 0.
    async with MockLLMServer(_answers) as server:
        monkeypatch.setenv("OPENAI_COMPATIBLE_BASE_URL", server.base_url)
        assert await anyio.to_thread.run_sync(main, [*argv, "--retry-errors"]) == 0
    assert "rows failed" not in capsys.readouterr().err


# What the direct call (a perfect reader of a 32k window) scores at 64k in
# `rlm-async eval --offline --n 2`: the needles and the chains were cut, OOLONG's counts from
# a third of the records earn a little partial credit.
DIRECT_64K = {"multidoc": "0.0", "oolong": "3.8", "oolong-pairs": "0.0", "sniah": "0.0"}


def test_offline_alone_is_the_known_table_of_every_task(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "--offline", "--n", "2"]) == 0
    printed = capsys.readouterr().out
    sections = printed.split("### ")[1:]
    assert [s.splitlines()[0] for s in sections] == ["multidoc", "oolong", "oolong-pairs", "sniah"]
    for section in sections:
        name = section.splitlines()[0]
        rows = table(section)
        assert rows == [
            ["rlm", "8k", "100.0", "—", "2", "0"],
            ["rlm", "64k", "100.0", "—", "2", "0"],
            ["direct", "8k", "100.0", "—", "2", "0"],
            ["direct", "64k", DIRECT_64K[name], "—", "2", "0"],
        ], name
    assert (tmp_path / "rlm-eval-offline" / "results.jsonl").exists()


def test_without_a_task_or_offline_the_command_says_what_to_give(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", "--no-dotenv", "-o", str(tmp_path)]) == 2
    assert "--task" in capsys.readouterr().err
