"""The rlm-async command against a loopback mock server: run, demo, view, and its errors.

``main()`` calls ``asyncio.run``, so tests call it from a worker thread while the mock
server keeps serving on the test's own event loop.
"""

from __future__ import annotations

import functools
import io
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from rlm_async import demo
from rlm_async import events as ev
from rlm_async.cli import main
from rlm_async.cli._progress import Progress
from rlm_async.demo import demo_responder, make_haystack
from rlm_async.testing import MockLLMServer, MockReply
from rlm_async.trajectory import read_trajectory

QUERY = "What is the magic number?"


@pytest.fixture
async def server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MockLLMServer]:
    async with MockLLMServer(demo_responder, latency=0.01) as server:
        monkeypatch.setenv("OPENAI_COMPATIBLE_BASE_URL", server.base_url)
        yield server


@pytest.fixture
def haystack(tmp_path: Path) -> tuple[Path, int]:
    text, number = make_haystack(5_000, seed=11)  # the demo model reads it in 5 chunks
    path = tmp_path / "haystack.txt"
    path.write_text(text, encoding="utf-8")
    return path, number


def run_args(context: Path, *extra: str) -> list[str]:
    return [
        "run",
        QUERY,
        "--context",
        str(context),
        "--model",
        "openai-compatible:x",
        "--sub-model",
        "openai-compatible:y",
        "--no-dotenv",
        *extra,
    ]


async def cli(*argv: str) -> int:
    return await anyio.to_thread.run_sync(main, list(argv))


async def test_run_prints_only_the_answer_on_stdout(
    server: MockLLMServer, haystack: tuple[Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    path, number = haystack
    assert await cli(*run_args(path)) == 0
    out, err = capsys.readouterr()
    assert out == f"{number}\n"
    assert err == ""  # not a terminal, no --progress: nothing on stderr
    assert len(server.requests) == 3 + 5  # three root turns, five chunks


async def test_run_shows_progress_and_writes_the_trajectory(
    server: MockLLMServer,
    haystack: tuple[Path, int],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, number = haystack
    trajectory = tmp_path / "out" / "run.jsonl"
    code = await cli(*run_args(path, "--progress", "--trajectory", str(trajectory)))
    out, err = capsys.readouterr()
    assert code == 0 and out == f"{number}\n"
    status = err.split("\r\033[K")
    assert status[-1].startswith("✓ ") and "sub-calls 5 done, 0 in flight" in status[-1]
    assert any("turn 2 · " in line for line in status[:-1])  # redrawn as the run went
    assert f"trajectory written to {trajectory}" in err
    read = read_trajectory(trajectory)
    assert read.header.model == "openai-compatible:x"
    assert read.header.metadata == {"command": "run"}
    assert sum(isinstance(e, ev.SubCallFinished) for e in read.events) == 5
    assert isinstance(read.events[-1], ev.RunFinished)


async def test_run_with_a_trajectory_dir_reports_the_path_in_the_result(
    server: MockLLMServer,
    haystack: tuple[Path, int],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, number = haystack
    folder = tmp_path / "trajectories"
    assert await cli(*run_args(path, "--trajectory-dir", str(folder), "--result-json")) == 0
    result = json.loads(capsys.readouterr().out)
    [written] = folder.iterdir()
    assert result["answer"] == str(number)
    assert result["metadata"]["trajectory_path"] == str(written)
    assert written.name.endswith(f"-{result['metadata']['run_id']}.jsonl")


async def test_run_reads_json_context_from_stdin(
    server: MockLLMServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text, number = make_haystack(2_000, seed=5)
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(text)))
    assert await cli(*run_args(Path("-"), "--json")) == 0
    assert capsys.readouterr().out == f"{number}\n"


async def test_a_provider_error_is_exit_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, haystack: tuple[Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    refuse = MockReply(status=401, body={"error": {"message": "bad key", "type": "auth"}})
    async with MockLLMServer(lambda request: refuse) as server:
        monkeypatch.setenv("OPENAI_COMPATIBLE_BASE_URL", server.base_url)
        code = await cli(*run_args(haystack[0], "--progress"))
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.splitlines()[-1].startswith("rlm-async: error: ")
    assert "bad key" in err and "✗" in err and "ExceptionGroup" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "q", "--context", "/nonexistent/ctx.txt"], "No such file or directory"),
        (["run", "q", "--context", "{ctx}", "--model", "nonsense-model-9"], "nonsense-model-9"),
        (["run", "q", "--context", "{ctx}", "--json"], "not valid JSON"),
        (["view", "/nonexistent/t.jsonl"], "No such file or directory"),
        (["view", "{ctx}"], "line 1: not JSON"),
        (["view", "{bin}"], "the trajectory file is not UTF-8 text"),
    ],
)
async def test_errors_exit_2_with_a_message(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    context = tmp_path / "ctx.txt"
    context.write_text("not json, not a trajectory", encoding="utf-8")
    binary = tmp_path / "bin.dat"
    binary.write_bytes(b"\xff\xfe")
    args = [a.replace("{ctx}", str(context)).replace("{bin}", str(binary)) for a in argv]
    code = await cli(*args, *(["--no-dotenv"] if args[0] == "run" else []))
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("rlm-async: error: ") and message in err


def test_usage_errors_exit_2_without_raising(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    assert main(["run"]) == 2
    assert main(["run", "q", "--trajectory", "a", "--trajectory-dir", "b"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err
    assert main(["demo", "--lines", "-5"]) == 2
    assert "must be 1 or more, got -5" in capsys.readouterr().err
    assert main(["serve", "--demo", "--port", "99999"]) == 2
    assert "a port is 0-65535" in capsys.readouterr().err
    assert main(["--help"]) == 0


async def test_view_writes_one_html_page(
    server: MockLLMServer,
    haystack: tuple[Path, int],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    trajectory = tmp_path / "run.jsonl"
    assert await cli(*run_args(haystack[0], "--trajectory", str(trajectory))) == 0
    capsys.readouterr()
    page = tmp_path / "pages" / "run.html"
    assert await cli("view", str(trajectory), "-o", str(page)) == 0
    assert capsys.readouterr().out == f"{page}\n"
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and 'id="rlm-data"' in html
    assert await cli("view", str(trajectory)) == 0  # default: next to the trajectory
    assert trajectory.with_suffix(".html").exists()


def test_view_runs_as_a_module(tmp_path: Path) -> None:
    trajectory = tmp_path / "t.jsonl"
    trajectory.write_text(
        json.dumps({"type": "trajectory", "schema_version": ev.TRAJECTORY_SCHEMA_VERSION}) + "\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "rlm_async.cli", "view", str(trajectory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == trajectory.with_suffix(".html")


async def test_demo_writes_a_trajectory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fast = functools.partial(demo.run_demo, root_latency=0, sub_latency=0, load_dotenv=False)
    monkeypatch.setattr(demo, "run_demo", fast)
    trajectory = tmp_path / "demo.jsonl"
    args = ["demo", "--lines", "5000", "--seed", "2", "--offline", "--trajectory", str(trajectory)]
    assert await cli(*args) == 0
    out, err = capsys.readouterr()
    assert "CORRECT" in out and f"trajectory written to {trajectory}" in err
    events = read_trajectory(trajectory).events
    assert sum(isinstance(e, ev.SubCallStarted) for e in events) == 5


def test_progress_line_counts_turns_cells_sub_calls_tokens_and_cost() -> None:
    stream = io.StringIO()
    progress = Progress(stream, interval=0)
    run = {"run_id": "r"}
    sub_started = {"subcall": "s", "turn": 1, "cell": 1, "model": "m", "prompt": "p"}
    events: list[ev.Event] = [
        ev.RunStarted(
            **run, model="m", sub_model="s", query="q", context="c", max_iterations=5, max_depth=1
        ),
        ev.TurnStarted(**run, turn=1),
        ev.TurnFinished(**run, turn=1, model="m", text="t", input_tokens=1000, output_tokens=500),
        ev.CellStarted(**run, turn=1, cell=1, code="x"),
        ev.SubCallStarted(**run, **sub_started),
        ev.SubCallStarted(**run, **{**sub_started, "subcall": "s2"}),
        ev.SubCallFinished(
            **run,
            **{k: v for k, v in sub_started.items() if k != "prompt"},
            ok=True,
            answer="a",
            input_tokens=100,
            output_tokens=10,
            cost_usd=0.0125,
        ),
    ]
    for event in events:
        progress(event)
    line = progress.line()
    assert re.search(
        r"turn 1 · running code · cells 0 · sub-calls 1 done, 1 in flight · 1.6k tokens · "
        r"\$0\.0125$",
        line,
    ), line
    progress.finish()
    assert stream.getvalue().endswith("\n") and "✗" in stream.getvalue()  # never finished


async def test_doctor_starts_a_sandboxed_repl_and_reports_every_layer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await cli("doctor", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    layers = report["child"]["layers"]
    assert {"rlimits", "landlock", "seccomp", "no_new_privs"} <= set(layers)
    assert layers["rlimits"]["active"] is True
    assert "bwrap" in report["machine"]
