"""``rlm_async.batch`` on local worker processes, against a scripted model over loopback."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import sys
import threading
from pathlib import Path

import pytest

import rlm_async
from rlm_async import ConfigurationError
from rlm_async.batching import BatchStatus
from rlm_async.engine._spend import Spend
from rlm_async.providers._base import CompletionRequest
from rlm_async.testing import MockLLMServer, MockReply, Responder, ScriptedModel
from tests.batch.support import (
    MODEL,
    answer_with_the_length,
    mentions,
    read_rows,
    settings_for,
    write_requests,
)

pytestmark = pytest.mark.slow


async def test_rows_stream_in_order_of_completion_with_their_ids(tmp_path: Path) -> None:
    fast = [f"fast-{n}" for n in range(4)]
    fast_done = asyncio.Event()

    async def responder(request: CompletionRequest) -> str | MockReply:
        # The slow row's model answers only once every fast row is in the output.
        if mentions(request, "SLOW"):
            await fast_done.wait()
        return answer_with_the_length(request)

    def progress(status: BatchStatus) -> None:
        if status.done == len(fast):
            fast_done.set()

    requests = [{"id": "slow", "query": "SLOW: how long?", "context": "x" * 50}]
    requests += [{"id": i, "query": "how long?", "context": "y" * n} for n, i in enumerate(fast)]
    out = tmp_path / "results.jsonl"
    async with MockLLMServer(responder) as server:
        summary = await rlm_async.batch(
            requests,
            out=out,
            model=MODEL,
            settings=settings_for(server),
            processes=1,
            concurrency=5,
            on_progress=progress,
        )
    rows = read_rows(out)
    # The first request came last: rows are written as they finish, not in input order.
    assert [row["id"] for row in rows][-1] == "slow"
    assert sorted(row["id"] for row in rows[:-1]) == fast
    assert {row["id"]: row["answer"] for row in rows} == {
        "slow": "50",
        **{i: str(n) for n, i in enumerate(fast)},
    }
    assert all(row["error"] is None and row["cost_usd"] > 0 for row in rows)
    assert rows[0]["usage"]["calls"] == 2 and rows[0]["elapsed"] > 0
    assert (summary.done, summary.failed, summary.skipped) == (5, 0, 0)
    assert summary.workers == "1 local process x 5 rows"


async def test_a_rerun_skips_done_ids_and_runs_the_failed_ones_again(tmp_path: Path) -> None:
    refusing = True

    def responder(request: CompletionRequest) -> str | MockReply:
        if refusing and mentions(request, "FLAKY"):
            return MockReply(status=400, body={"error": {"message": "no", "type": "bad"}})
        return answer_with_the_length(request)

    requests = write_requests(
        tmp_path / "requests.jsonl",
        [
            {"id": 1, "query": "how long?", "context": "a"},
            {"id": "1", "query": "how long?", "context": "bb"},  # another id than 1
            {"id": 2, "query": "FLAKY: how long?", "context": "ccc"},
            {"id": 3, "query": "how long?", "context": "dddd"},
        ],
    )
    out = tmp_path / "results.jsonl"
    async with MockLLMServer(responder) as server:
        settings = settings_for(server)
        first = await rlm_async.batch(
            requests, out=out, model=MODEL, settings=settings, processes=1
        )
        requests_before = len(server.requests)
        refusing = False
        second = await rlm_async.batch(
            requests, out=out, model=MODEL, settings=settings, processes=1
        )
        # Only the failed row ran again: its two root turns.
        assert len(server.requests) == requests_before + 2
        third = await rlm_async.batch(
            requests, out=out, model=MODEL, settings=settings, processes=1
        )
        assert len(server.requests) == requests_before + 2
    assert (first.done, first.failed, first.skipped) == (3, 1, 0)
    assert (second.done, second.failed, second.skipped) == (1, 0, 3)
    assert (third.done, third.failed, third.skipped, third.workers) == (0, 0, 4, "nothing to run")
    rows = read_rows(out)
    [failed] = [row for row in rows[:4] if row["error"] is not None]
    assert failed["id"] == 2 and failed["answer"] is None
    assert failed["error"]["type"] == "BadRequestError" and "no" in failed["error"]["message"]
    assert rows[4] == rows[4] | {"id": 2, "answer": "3", "error": None}
    assert len(rows) == 5


async def test_a_budget_stops_new_rows_and_a_rerun_finishes_them(tmp_path: Path) -> None:
    requests = [{"id": n, "query": "how long?", "context": "z" * n} for n in range(6)]
    out = tmp_path / "results.jsonl"
    async with MockLLMServer(answer_with_the_length) as server:
        settings = settings_for(server)
        probe = await rlm_async.batch(
            requests[:1],
            out=tmp_path / "probe.jsonl",
            model=MODEL,
            settings=settings,
            processes=1,
        )
        row_cost = probe.cost_usd
        # One row at a time: the third row reaches the budget, and nothing starts after it.
        stopped = await rlm_async.batch(
            requests,
            out=out,
            model=MODEL,
            settings=settings,
            processes=1,
            concurrency=1,
            budget=row_cost * 2.5,
        )
        rest = await rlm_async.batch(requests, out=out, model=MODEL, settings=settings, processes=1)
    assert (stopped.done, stopped.not_started) == (3, 3)
    assert stopped.stopped is not None and "budget" in stopped.stopped
    assert "not started" in stopped.render() and "stopped: the budget" in stopped.render()
    assert stopped.cost_usd == pytest.approx(row_cost * 3, rel=0.1)
    assert (rest.done, rest.skipped, rest.not_started) == (3, 3, 0)
    assert sorted(row["id"] for row in read_rows(out)) == list(range(6))


async def test_a_budget_stops_when_a_cost_is_unknown(tmp_path: Path) -> None:
    requests = [{"id": n, "query": "how long?", "context": "z"} for n in range(3)]
    async with MockLLMServer(answer_with_the_length) as server:
        unpriced = settings_for(server).model_copy(update={"prices": None})
        summary = await rlm_async.batch(
            requests,
            out=tmp_path / "out.jsonl",
            model=MODEL,
            settings=unpriced,
            processes=1,
            concurrency=1,
            budget=1.0,
        )
    assert (summary.done, summary.not_started) == (1, 2)
    assert summary.stopped is not None and "cost is unknown" in summary.stopped


async def test_context_files_per_row_options_and_a_bad_row_among_good_ones(
    tmp_path: Path,
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("12345", encoding="utf-8")
    (tmp_path / "data" / "items.json").write_text(json.dumps([1, 2, 3]), encoding="utf-8")
    requests = write_requests(
        tmp_path / "requests.jsonl",
        [
            # A relative context_path is read from the requests file's directory.
            {"id": "text", "query": "how long?", "context_path": "data/notes.txt"},
            {"id": "json", "query": "how long?", "context_path": "data/items.json", "json": True},
            {
                "id": "capped",
                "query": "how long? (capped)",
                "context": "ab",
                "options": {"max_tokens": 77},
            },
            {"id": "missing", "query": "how long?", "context_path": "data/nope.txt"},
            {
                "id": "bad-option",
                "query": "how long?",
                "context": "ab",
                "options": {"max_iterations": 0},
            },
        ],
    )
    out = tmp_path / "results.jsonl"
    async with MockLLMServer(answer_with_the_length) as server:
        summary = await rlm_async.batch(
            requests, out=out, model=MODEL, settings=settings_for(server), processes=1
        )
    rows = {row["id"]: row for row in read_rows(out)}
    assert rows["text"]["answer"] == "5" and rows["json"]["answer"] == "3"
    assert rows["capped"]["answer"] == "2"
    capped = {r.max_tokens for _, r in server.requests if mentions(r, "(capped)")}
    others = {r.max_tokens for _, r in server.requests if not mentions(r, "(capped)")}
    assert capped == {77} and 77 not in others
    assert rows["missing"]["error"]["type"] == "FileNotFoundError"
    assert rows["bad-option"]["error"]["type"] == "ConfigurationError"
    assert "max_iterations" in rows["bad-option"]["error"]["message"]
    assert (summary.done, summary.failed) == (3, 2)


async def test_two_processes_answer_every_row(tmp_path: Path) -> None:
    requests = [{"id": n, "query": "how long?", "context": "q" * n} for n in range(8)]
    out = tmp_path / "results.jsonl"
    async with MockLLMServer(answer_with_the_length) as server:
        summary = await rlm_async.batch(
            requests,
            out=out,
            model=MODEL,
            settings=settings_for(server),
            processes=2,
            concurrency=4,
        )
    assert summary.workers == "2 local processes x 2 rows"
    assert {row["id"]: row["answer"] for row in read_rows(out)} == {n: str(n) for n in range(8)}
    assert summary.rows_per_second > 0


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": 1, "query": "q"}', "either context (inline) or context_path"),
        ('{"query": "q", "context": "c"}', "give the request an id"),
        ('{"id": 1, "query": "q", "context": "c", "model": "x"}', "unknown keys ['model']"),
        ("[1, 2]", "a request is a JSON object"),
        ("{not json", "not valid JSON"),
        ('{"id": 1, "query": "q", "context_path": "f", "json": "false"}', "json must be true"),
    ],
)
async def test_a_malformed_request_is_named_by_its_line(
    tmp_path: Path, line: str, message: str
) -> None:
    requests = tmp_path / "requests.jsonl"
    requests.write_text('{"id": 0, "query": "q", "context": "c"}\n' + line + "\n")
    with pytest.raises(ConfigurationError, match="line 2") as raised:
        await rlm_async.batch(requests, out=tmp_path / "out.jsonl", model=MODEL)
    assert message in str(raised.value)


async def test_duplicate_ids_and_options_with_on_event_are_refused(tmp_path: Path) -> None:
    requests = write_requests(tmp_path / "r.jsonl", [{"id": 1, "query": "q", "context": "c"}])
    with pytest.raises(ConfigurationError, match="is the requests file"):
        await rlm_async.batch(requests, out=tmp_path / "." / "r.jsonl", model=MODEL)
    assert read_rows(requests) == [{"id": 1, "query": "q", "context": "c"}]
    with pytest.raises(ConfigurationError, match="also the id of request 1"):
        await rlm_async.batch(
            [{"id": 7, "query": "q", "context": "a"}, {"id": 7, "query": "q", "context": "b"}],
            out=tmp_path / "out.jsonl",
            model=MODEL,
        )
    with pytest.raises(ConfigurationError, match="on_event"):
        await rlm_async.batch(
            [{"id": 7, "query": "q", "context": "a"}],
            out=tmp_path / "out.jsonl",
            model=MODEL,
            options={"on_event": print},
        )


async def test_an_output_cut_short_is_resumed_after_its_broken_line(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    done = {"id": "a", "answer": "1", "error": None}
    out.write_text(json.dumps(done) + "\n" + '{"id": "b", "answ', encoding="utf-8")
    requests = [
        {"id": "a", "query": "how long?", "context": "x"},
        {"id": "b", "query": "how long?", "context": "xy"},
    ]
    async with MockLLMServer(answer_with_the_length) as server:
        summary = await rlm_async.batch(
            requests, out=out, model=MODEL, settings=settings_for(server), processes=1
        )
    assert (summary.done, summary.skipped) == (1, 1)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[1] == '{"id": "b", "answ'  # left as it was, on a line of its own
    assert json.loads(lines[2])["answer"] == "2"


def killing_the_worker_on(marker: str) -> Responder:
    """The scripted model, which also kills the batch's worker process (SIGKILL) the first
    time a request for the row with ``marker`` in its query arrives, as the OOM killer would."""
    killed: list[int] = []

    def responder(request: CompletionRequest) -> str | MockReply:
        if mentions(request, marker) and not killed:
            for child in multiprocessing.active_children():
                if child.name == "rlm-batch" and child.pid is not None:
                    os.kill(child.pid, signal.SIGKILL)
                    killed.append(child.pid)
        return answer_with_the_length(request)

    return responder


async def test_rows_of_a_worker_that_died_run_again_on_its_replacement(tmp_path: Path) -> None:
    requests = [{"id": n, "query": f"row {n}: how long?", "context": "k" * n} for n in range(4)]
    out = tmp_path / "results.jsonl"
    async with MockLLMServer(killing_the_worker_on("row 2:")) as server:
        summary = await rlm_async.batch(
            requests, out=out, model=MODEL, settings=settings_for(server), processes=1,
            concurrency=4,
        )  # fmt: skip
    # Every row was in flight on the one worker when it died: all ran again, on a new one.
    assert {row["id"]: row["answer"] for row in read_rows(out)} == {n: str(n) for n in range(4)}
    assert (summary.done, summary.failed) == (4, 0)
    assert sum(mentions(r, "row 2:") and r.system is not None for _, r in server.requests) >= 3


async def test_without_retries_only_the_dead_workers_row_fails(tmp_path: Path) -> None:
    requests = [{"id": n, "query": f"row {n}: how long?", "context": "k" * n} for n in range(4)]
    out = tmp_path / "results.jsonl"
    async with MockLLMServer(killing_the_worker_on("row 1:")) as server:
        summary = await rlm_async.batch(
            requests, out=out, model=MODEL, settings=settings_for(server), processes=1,
            concurrency=1, retries=0,
        )  # fmt: skip
    rows = {row["id"]: row for row in read_rows(out)}
    assert rows[1]["error"]["type"] == "BatchError"
    assert "its worker process died (exit code -9) (1 attempts)" in rows[1]["error"]["message"]
    assert {n: rows[n]["answer"] for n in (0, 2, 3)} == {0: "0", 2: "2", 3: "3"}
    assert (summary.done, summary.failed) == (3, 1)


_UNGUARDED_SCRIPT = """
import asyncio
import rlm_async
from rlm_async.providers._settings import Settings

rows = [{"id": 1, "query": "q", "context": "c"}]
asyncio.run(rlm_async.batch(
    rows, out="out.jsonl", model="openai-compatible:m", processes=1,
    settings=Settings(openai_compatible_base_url="http://127.0.0.1:9/v1"),
))
"""


async def test_a_script_without_the_main_guard_is_told_to_add_it(tmp_path: Path) -> None:
    # spawn imports the main module again in each worker, which dies at once: the error
    # says why, not only that the worker exited.
    (tmp_path / "unguarded.py").write_text(_UNGUARDED_SCRIPT, encoding="utf-8")
    child = await asyncio.create_subprocess_exec(
        sys.executable, "unguarded.py", cwd=tmp_path, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(child.communicate(), timeout=60)
    last = err.decode().strip().splitlines()[-1]
    assert child.returncode == 1
    assert last.startswith("rlm_async._exceptions.ConfigurationError: a batch worker process")
    assert "exit code 1" in last and 'if __name__ == "__main__":' in last
    assert not (tmp_path / "out.jsonl").exists() or not (tmp_path / "out.jsonl").read_text()


async def test_what_failed_rows_spent_counts_toward_the_budget(tmp_path: Path) -> None:
    # Each row pays for its first turn, then the model refuses the second: no row has an
    # answer, yet their turns cost money, and the budget must see it.
    def responder(request: CompletionRequest) -> str | MockReply:
        if any(message.role == "assistant" for message in request.messages):
            return MockReply(status=400, body={"error": {"message": "no", "type": "bad"}})
        return answer_with_the_length(request)

    requests = [{"id": n, "query": "how long?", "context": "z" * n} for n in range(6)]
    async with MockLLMServer(responder) as server:
        settings = settings_for(server)
        probe = await rlm_async.batch(
            requests[:1], out=tmp_path / "probe.jsonl", model=MODEL, settings=settings,
            processes=1,
        )  # fmt: skip
        turn_cost = probe.cost_usd
        summary = await rlm_async.batch(
            requests, out=tmp_path / "out.jsonl", model=MODEL, settings=settings, processes=1,
            concurrency=1, budget=turn_cost * 2.5,
        )  # fmt: skip
    first = read_rows(tmp_path / "probe.jsonl")[0]
    assert first["error"]["type"] == "BadRequestError"
    assert first["usage"]["calls"] == 1 and first["cost_usd"] == pytest.approx(turn_cost)
    assert turn_cost > 0
    assert (summary.failed, summary.not_started) == (3, 3)
    assert summary.stopped is not None and "budget" in summary.stopped
    assert summary.cost_usd == pytest.approx(turn_cost * 3, rel=0.1)


class _TracerProvider:
    """Stands for an SDK TracerProvider: it makes tracers and holds a lock (no pickling)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def get_tracer(self, *args: object, **kwargs: object) -> object:
        raise AssertionError("never asked: the batch refuses it first")


async def test_what_cannot_reach_the_workers_is_refused_with_what_to_do(tmp_path: Path) -> None:
    rows = [{"id": 1, "query": "q", "context": "c"}]
    with pytest.raises(ConfigurationError, match="cannot have a tracer_provider object"):
        await rlm_async.batch(
            rows, out=tmp_path / "out.jsonl", model=MODEL,
            options={"tracer_provider": _TracerProvider()},
        )  # fmt: skip
    # A model object whose replies come from a function of this process cannot travel.
    scripted = ScriptedModel(lambda request: "FINAL(1)")
    with pytest.raises(ConfigurationError, match="cannot be pickled"):
        await rlm_async.batch(rows, out=tmp_path / "out.jsonl", model=scripted)  # type: ignore[arg-type]
    assert not (tmp_path / "out.jsonl").exists()


def _nesting_root(request: CompletionRequest) -> str:
    if not any(message.role == "assistant" for message in request.messages):
        return (
            "```repl\na = llm_query('say hi')\n"
            "c = rlm_query('inner task', 'inner context')\nprint(a, c)\n```"
        )
    return "FINAL(done)"


def _nesting_sub(request: CompletionRequest) -> str:
    if request.system:  # a sub-RLM's root turn: one cell with a sub-call, then its answer
        if not any(message.role == "assistant" for message in request.messages):
            return "```repl\nx = llm_query('leaf')\n```"
        return "FINAL(inner)"
    return "leaf answer"


async def test_a_rows_spend_from_its_events_is_its_usage_sub_rlms_included() -> None:
    # What an error row reports is added up from events: on a run that answers it must be
    # exactly result.usage (a sub-RLM's calls once, not again as its rlm_query's).
    spent = Spend()
    async with rlm_async.RLM(
        model=ScriptedModel(_nesting_root),
        sub_model=ScriptedModel(_nesting_sub, name="sub"),
        max_depth=2,
    ) as rlm:
        result = await rlm.completion("ctx", "q", on_event=spent)
    usage = result.usage
    assert usage.calls == 6  # two root turns, a sub-call, a sub-RLM's two turns and its sub-call
    assert (spent.calls, spent.input_tokens, spent.output_tokens) == (
        usage.calls,
        usage.input_tokens,
        usage.output_tokens,
    )
