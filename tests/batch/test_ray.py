"""``rlm-async batch --ray`` end to end on a local Ray on this machine (the ``ray`` extra).

Ray runs in a child process: after ``ray.shutdown()`` Ray keeps log files and a socket open
in the process that started it, which the suite's check for leaked descriptors would
(rightly) count against whichever test ran last.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from rlm_async.providers._base import CompletionRequest
from rlm_async.testing import MockLLMServer, MockReply
from tests.batch.support import MODEL, answer_with_the_length, mentions, read_rows, write_requests
from tests.helpers import processes_with

pytest.importorskip("ray", reason="the ray extra is not installed (pip install '.[ray]')")

pytestmark = pytest.mark.slow


async def test_a_batch_on_ray_answers_every_row_and_records_the_failed_ones(
    tmp_path: Path,
) -> None:
    shared = tmp_path / "shared.txt"
    shared.write_text("s" * 40, encoding="utf-8")
    rows = [{"id": n, "query": "how long?", "context": "r" * n} for n in range(5)]
    # Three rows read one file: it goes into Ray's object store once.
    rows += [
        {"id": f"shared-{n}", "query": "how long?", "context_path": "shared.txt"} for n in range(3)
    ]
    rows += [{"id": "refused", "query": "FAIL: how long?", "context": "x"}]
    rows += [{"id": "missing", "query": "how long?", "context_path": "nope.txt"}]
    # Its first request kills every actor (as an OOM killer would): the rows in flight on
    # them are dispatched again on the actors Ray restarts, and none is lost.
    rows += [{"id": "killer", "query": "KILL: how long?", "context": "k" * 7}]
    requests = write_requests(tmp_path / "requests.jsonl", rows)
    out = tmp_path / "results.jsonl"
    killed: list[int] = []
    batch_pid: list[int] = []

    def responder(request: CompletionRequest) -> str | MockReply:
        if not killed and mentions(request, "KILL"):
            # This batch's actors only (its local Ray runs under it), not another Ray's.
            ours = [p for p in processes_with("ray::BatchActor") if _under(p, batch_pid[0])]
            killed.extend(ours)
            for pid in ours:
                os.kill(pid, signal.SIGKILL)
        return answer_with_the_length(request)

    async with MockLLMServer(responder) as server:
        env = {**os.environ, "OPENAI_COMPATIBLE_BASE_URL": server.base_url, "RAY_ADDRESS": ""}
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rlm_async.cli", "batch", str(requests), "-o", str(out),
            "--model", MODEL, "--no-dotenv", "--ray", "--processes", "2",
            env=env, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        batch_pid.append(child.pid)
        _, err = await asyncio.wait_for(child.communicate(), timeout=120)
    stderr = err.decode()
    assert child.returncode == 1, stderr  # two rows have no answer
    assert len(killed) == 2
    assert "11 rows: 9 done, 2 failed" in stderr and "2 Ray actors x 8 rows" in stderr
    answers = {row["id"]: row for row in read_rows(out)}
    assert len(answers) == len(rows)
    assert {n: answers[n]["answer"] for n in range(5)} == {n: str(n) for n in range(5)}
    assert {answers[f"shared-{n}"]["answer"] for n in range(3)} == {"40"}
    assert answers["refused"]["error"]["type"] == "BadRequestError"
    assert answers["missing"]["error"]["type"] == "FileNotFoundError"
    assert answers["killer"]["answer"] == "7"
    assert sum(mentions(r, "KILL") and r.system is not None for _, r in server.requests) >= 2
    assert all(row["elapsed"] > 0 for row in answers.values() if row["error"] is None)


def _under(pid: int, ancestor: int) -> bool:
    """Whether ``ancestor`` is one of ``pid``'s ancestors (Linux /proc)."""
    while pid > 1:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                pid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return False
        if pid == ancestor:
            return True
    return False


async def test_more_actors_than_the_cluster_has_cpus_is_an_error(tmp_path: Path) -> None:
    # Each actor holds a CPU: asking for more would wait forever for the ones past them.
    requests = write_requests(tmp_path / "r.jsonl", [{"id": 1, "query": "q", "context": "c"}])
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rlm_async.cli", "batch", str(requests),
        "-o", str(tmp_path / "out.jsonl"), "--model", MODEL, "--no-dotenv", "--ray",
        "--processes", "10000",
        env={**os.environ, "OPENAI_COMPATIBLE_BASE_URL": "http://127.0.0.1:9/v1",
             "RAY_ADDRESS": ""},
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(child.communicate(), timeout=120)
    assert child.returncode == 2
    assert "10000 batch actors need 10000 CPUs and the Ray cluster has " in err.decode()


# The Python API on a Ray the caller started: the batch uses it and leaves it running. Ray's
# put is counted to show a file shared by rows goes into the object store once.
_ON_THE_CALLERS_RAY = """
import asyncio, json, sys
import ray
import rlm_async
from rlm_async.providers._settings import Settings

puts = []
real_put = ray.put
ray.put = lambda value, **kw: (puts.append(value), real_put(value, **kw))[1]
ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
rows = [{"id": n, "query": "how long?", "context_path": "shared.txt"} for n in range(3)]
rows += [{"id": "own", "query": "how long?", "context": "abc"}]
summary = asyncio.run(rlm_async.batch(
    rows, out="results.jsonl", model=sys.argv[2], ray=True,
    settings=Settings(openai_compatible_base_url=sys.argv[1]),
))
print(json.dumps({"done": summary.done, "workers": summary.workers, "puts": puts,
                  "still_up": ray.is_initialized()}))
ray.shutdown()
"""


async def test_the_python_api_on_the_callers_ray_puts_a_shared_context_once(
    tmp_path: Path,
) -> None:
    (tmp_path / "shared.txt").write_text("s" * 40, encoding="utf-8")
    async with MockLLMServer(answer_with_the_length) as server:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _ON_THE_CALLERS_RAY, server.base_url, MODEL,
            cwd=tmp_path, env={**os.environ, "RAY_ADDRESS": ""},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(child.communicate(), timeout=120)
    assert child.returncode == 0, err.decode()
    report = json.loads(out.decode().splitlines()[-1])
    assert report["done"] == 4 and report["workers"] == "2 Ray actors x 8 rows"
    assert sorted(report["puts"]) == ["abc", "s" * 40]  # the file once, for its three rows
    assert report["still_up"]
    answers = {row["id"]: row["answer"] for row in read_rows(tmp_path / "results.jsonl")}
    assert answers == {0: "40", 1: "40", 2: "40", "own": "3"}
