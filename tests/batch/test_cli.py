"""``rlm-async batch``: the command over the batch, its progress line and exit codes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from rlm_async.cli import main
from rlm_async.providers._base import CompletionRequest
from rlm_async.testing import MockLLMServer, MockReply
from tests.batch.support import MODEL, answer_with_the_length, read_rows, write_requests

pytestmark = pytest.mark.slow


async def cli(*argv: str) -> int:
    return await anyio.to_thread.run_sync(main, list(argv))


async def test_the_command_streams_results_shows_progress_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [{"id": n, "query": "how long?", "context": "c" * n} for n in range(4)]
    rows.append({"id": "no", "query": "FAIL", "context": "x"})
    requests = write_requests(tmp_path / "requests.jsonl", rows)
    out = tmp_path / "out" / "results.jsonl"
    argv = [
        "batch", str(requests), "-o", str(out), "--model", MODEL, "--no-dotenv",
        "--processes", "1", "--max-iterations", "3",
    ]  # fmt: skip
    async with MockLLMServer(answer_with_the_length) as server:
        monkeypatch.setenv("OPENAI_COMPATIBLE_BASE_URL", server.base_url)
        first = await cli(*argv, "--progress")
        _, err = capsys.readouterr()
        second = await cli(*argv)
        _, err_again = capsys.readouterr()
    assert first == 1 and second == 1  # the refused row has no answer either time
    status = err.split("\r\033[K")
    assert status[-1].startswith("✓ ") and "5/5 rows · 1 failed · 0 in flight" in status[-1]
    assert "rows/s" in status[-1]
    assert "rlm-async batch: 5 rows: 4 done, 1 failed in " in err
    assert "rlm-async batch: 5 rows: 0 done, 1 failed, 4 skipped" in err_again
    assert "\r" not in err_again  # not a terminal, no --progress: no status line
    assert [row["id"] for row in read_rows(out)].count("no") == 2
    assert sorted(r["answer"] for r in read_rows(out) if r["error"] is None) == list("0123")


async def test_a_missing_requests_file_and_a_bad_budget_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "out.jsonl")
    assert await cli("batch", str(tmp_path / "nope.jsonl"), "-o", out, "--no-dotenv") == 2
    assert "No such file or directory" in capsys.readouterr().err
    requests = write_requests(tmp_path / "r.jsonl", [{"id": 1, "query": "q", "context": "c"}])
    assert await cli("batch", str(requests), "-o", out, "--budget", "0", "--no-dotenv") == 2
    assert "budget must be a positive number" in capsys.readouterr().err


async def test_workers_leave_when_the_batch_is_killed_with_rows_in_flight(tmp_path: Path) -> None:
    # The model never answers the second turn: without their parent to record them, the
    # workers must not go on with these rows (paying for answers nobody writes) or linger.
    rows = [{"id": n, "query": "how long?", "context": "c" * n} for n in range(4)]
    requests = write_requests(tmp_path / "requests.jsonl", rows)
    hung = 0
    all_hung = asyncio.Event()

    async def responder(request: CompletionRequest) -> str | MockReply:
        nonlocal hung
        if any(message.role == "assistant" for message in request.messages):
            hung += 1
            if hung == len(rows):
                all_hung.set()
            await asyncio.Event().wait()  # until the server closes
        return answer_with_the_length(request)

    async with MockLLMServer(responder) as server:
        parent = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rlm_async.cli", "batch", str(requests),
            "-o", str(tmp_path / "out.jsonl"), "--model", MODEL, "--no-dotenv",
            "--processes", "2",
            env={**os.environ, "OPENAI_COMPATIBLE_BASE_URL": server.base_url},
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            await asyncio.wait_for(all_hung.wait(), timeout=60)
            workers = [
                pid
                for pid in _children(parent.pid)
                if b"multiprocessing.spawn" in Path(f"/proc/{pid}/cmdline").read_bytes()
            ]
            assert len(workers) == 2
            exits = [os.pidfd_open(pid) for pid in workers]
        finally:
            parent.kill()
            await parent.wait()
        try:
            # A pidfd turns readable when its process ends (reaped or not).
            await asyncio.wait_for(asyncio.gather(*(_ended(fd) for fd in exits)), timeout=30)
        finally:
            for fd in exits:
                os.close(fd)
            for pid in workers:  # they are not ours to wait for; do not leave them running
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(child) for child in path.read_text().split()]
    return found


async def _ended(pidfd: int) -> None:
    loop = asyncio.get_running_loop()
    ended = loop.create_future()
    loop.add_reader(pidfd, lambda: ended.done() or ended.set_result(None))
    try:
        await ended
    finally:
        loop.remove_reader(pidfd)


def test_importing_the_package_and_the_batch_imports_no_optional_engine() -> None:
    # Ray takes half a second to import, and ray, OpenTelemetry and the Prometheus client are
    # extras: only a batch on Ray, a configured tracer or a served /metrics bring them in.
    code = (
        "import sys, rlm_async, rlm_async.cli; rlm_async.batch; rlm_async.RLM\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'ray', 'opentelemetry', 'prometheus_client'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
