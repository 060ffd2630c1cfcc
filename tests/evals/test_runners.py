"""run_eval with the rlm and direct runners on a task of the tests' own, with scripted models:
rows, the concurrency bound, resuming, failed rows."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from rlm_async import RLM, Budget
from rlm_async._exceptions import BadRequestError, ConfigurationError
from rlm_async._types import Completion
from rlm_async.evals._harness import EvalProgress, run_eval
from rlm_async.evals._results import ROW_FIELDS, read_rows
from rlm_async.evals._runners import (
    DirectRunner,
    RLMRunner,
    _RootRun,
    direct_prompt,
    truncate_context,
)
from rlm_async.evals._task import Example
from rlm_async.providers._base import CompletionRequest, TextDelta
from rlm_async.testing import MockReply, ScriptedModel
from tests.evals.fake_task import CODE, CountTask, InFlight, read_prompt, right_solver, wrong_solver

# The direct model reads 2,000 tokens: ~4,500 characters of prompt. A 1,000-token context
# fits whole; a 4,000-token one is cut to about a quarter.
WINDOWS = {"scripted": 2_000}


def runners(
    meter: InFlight | None = None, *, solver: Any = right_solver, **rlm_options: Any
) -> list[Any]:
    meter = meter or InFlight()
    return [
        RLMRunner(
            lambda ex: ScriptedModel(meter.wrap(solver(ex))), options=rlm_options, label="fake"
        ),
        DirectRunner(
            lambda ex: ScriptedModel(meter.wrap(read_prompt)),
            context_windows=WINDOWS,
            label="fake",
        ),
    ]


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_rows_of_both_methods(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    seen: list[EvalProgress] = []
    results = await run_eval(
        CountTask(),
        [1_000, 4_000],
        2,
        runners(),
        out_path=out,
        on_progress=lambda p: seen.append(EvalProgress(**vars(p))),
    )
    rows = lines(out)
    assert len(rows) == 8 and results.written == 8 and results.skipped == 0
    assert all(tuple(row) == ROW_FIELDS for row in rows)
    task = CountTask()
    for row in rows:
        assert row["gold"] == task.generate(row["seed"], row["size"]).gold
        assert row["id"] == f"count-{row['size']}-s{row['seed']}"
        assert row["model"] == "fake" and row["error"] is None
        assert row["input_tokens"] > 0 and row["output_tokens"] > 0 and row["turns"] == 1
        assert row["latency_s"] >= 0 and row["context_chars"] > row["size"] * 4 - 30
    rlm = [r for r in rows if r["method"] == "rlm"]
    direct = {(r["size"], r["seed"]): r for r in rows if r["method"] == "direct"}
    # The RLM counts every record in code, at every size.
    assert [r["score"] for r in rlm] == [1.0] * 4
    assert all(r["answer"] == str(r["gold"]) and r["truncated"] is None for r in rlm)
    # The direct call sees everything at 1k and a quarter of the records at 4k.
    for seed in (0, 1):
        assert direct[1_000, seed]["truncated"] == 0.0 and direct[1_000, seed]["score"] == 1.0
        cut = direct[4_000, seed]
        assert 0.6 < cut["truncated"] < 0.85 and cut["score"] == 0.0
        assert 0 < int(cut["answer"]) < cut["gold"]
    # Progress: once before the first row, then after each, ending at the totals.
    assert [p.done for p in seen] == list(range(9)) and seen[-1].total == 8
    assert seen[-1].score == pytest.approx(6 / 8) and seen[-1].errors == 0
    assert results.rows == read_rows(out)


async def test_the_concurrency_bound_holds_and_is_reached(tmp_path: Path) -> None:
    meter = InFlight(hold=3)  # the first calls wait until three are in flight together
    direct = DirectRunner(
        lambda ex: ScriptedModel(meter.wrap(read_prompt)), context_windows=WINDOWS, label="f"
    )
    await run_eval(CountTask(), [500], 12, [direct], concurrency=3, out_path=tmp_path / "a.jsonl")
    assert meter.calls == 12 and meter.most == 3

    both = InFlight()
    await run_eval(
        CountTask(), [500], 4, runners(both), concurrency=2, out_path=tmp_path / "b.jsonl"
    )
    assert both.calls == 8 and both.most <= 2


async def test_a_second_run_resumes(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    first = InFlight()
    await run_eval(CountTask(), [1_000], 2, runners(first), out_path=out)
    assert first.calls == 4
    before = out.read_text()

    again = InFlight()
    results = await run_eval(CountTask(), [1_000], 2, runners(again), out_path=out)
    assert again.calls == 0 and out.read_text() == before
    assert results.written == 0 and results.skipped == 4 and len(results.rows) == 4

    more = InFlight()
    results = await run_eval(CountTask(), [1_000], 3, runners(more), out_path=out)
    assert more.calls == 2 and results.written == 2 and results.skipped == 4
    rows = lines(out)
    assert len(rows) == 6 and {r["seed"] for r in rows[4:]} == {2}


async def test_a_cut_short_last_line_runs_again(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    await run_eval(CountTask(), [1_000], 1, runners(), out_path=out)
    text = out.read_text().splitlines()
    out.write_text(text[0] + "\n" + text[1][:25])  # killed while writing the second row
    meter = InFlight()
    await run_eval(CountTask(), [1_000], 1, runners(meter), out_path=out)
    assert meter.calls == 1 and len(read_rows(out)) == 2


async def test_failed_rows_are_written_and_the_others_go_on(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"

    def flaky(ex: Any) -> ScriptedModel:
        return ScriptedModel(lambda r: MockReply(status=500) if ex.seed == 1 else read_prompt(r))

    methods: list[Any] = [
        # Two turns: the first one's tokens leave no room for the second.
        RLMRunner(
            lambda ex: ScriptedModel(["```repl\nprint(len(context))\n```", CODE]),
            options={"budget": Budget(max_tokens=1_200)},
            label="fake",
        ),
        DirectRunner(flaky, context_windows=WINDOWS, label="fake"),
    ]
    results = await run_eval(CountTask(), [1_000], 3, methods, out_path=out)
    rows = {(r["method"], r["seed"]): r for r in lines(out)}
    assert len(rows) == 6 and results.written == 6
    for seed in range(3):
        spent = rows["rlm", seed]
        assert spent["error"].startswith("BudgetExceeded:") and spent["score"] == 0.0
        assert spent["input_tokens"] > 0  # what the run spent before the budget stopped it
    assert rows["direct", 1]["error"].startswith("ProviderResponseError:")
    assert rows["direct", 1]["score"] == 0.0
    assert rows["direct", 0]["score"] == rows["direct", 2]["score"] == 1.0
    assert rows["direct", 0]["error"] is None

    # retry_errors runs the failed rows again, and replaces them.
    meter = InFlight()
    results = await run_eval(
        CountTask(), [1_000], 3, runners(meter), out_path=out, retry_errors=True
    )
    assert meter.calls == 4 and results.written == 4
    rows = {(r["method"], r["seed"]): r for r in lines(out)}
    assert len(lines(out)) == 6 and all(r["error"] is None for r in rows.values())


async def test_a_wrong_solver_scores_zero(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    await run_eval(CountTask(), [1_000], 2, runners(solver=wrong_solver)[:1], out_path=out)
    assert [r["score"] for r in lines(out)] == [0.0, 0.0]
    assert [r["answer"] for r in lines(out)] == ["-1", "-1"]


async def test_rows_of_another_model_are_not_mixed_in(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    await run_eval(CountTask(), [1_000], 1, runners()[1:], out_path=out)
    other = DirectRunner(lambda ex: ScriptedModel(read_prompt), label="another")
    with pytest.raises(ConfigurationError, match="another output path"):
        await run_eval(CountTask(), [1_000], 1, [other], out_path=out)


async def test_a_missing_key_stops_the_evaluation(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        await run_eval(CountTask(), [1_000], 3, ["direct"], model="openai:gpt-5", out_path=out)
    assert read_rows(out) == []


async def test_bad_arguments(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    with pytest.raises(ConfigurationError, match="unknown method 'base'"):
        await run_eval(CountTask(), [1_000], 1, ["base"], out_path=out)
    with pytest.raises(ConfigurationError, match="distinct"):
        await run_eval(CountTask(), [1_000], 1, ["rlm", "rlm"], out_path=out)
    with pytest.raises(ConfigurationError, match="concurrency"):
        await run_eval(CountTask(), [1_000], 1, ["rlm"], concurrency=0, out_path=out)


def test_truncation_keeps_both_ends_and_says_so() -> None:
    text = "".join(f"{i:05d}" for i in range(2_000))  # 10,000 characters
    assert truncate_context(text, 10_000) == (text, 0.0)
    cut, fraction = truncate_context(text, 2_000)
    assert len(cut) <= 2_000
    assert cut.startswith(text[:500]) and cut.endswith(text[-500:])
    assert "left out here" in cut and f"{fraction:.0%} of the context" in cut
    kept = len(cut) - len(cut.split("\n\n")[1]) - 4
    assert fraction == pytest.approx(1 - kept / len(text))


def test_the_direct_prompt_fits_and_ends_with_the_question() -> None:
    example = CountTask().generate(0, 4_000)
    prompt, fraction = direct_prompt(example, 3_000)
    assert len(prompt) <= 3_000 and fraction > 0.8
    assert prompt.rstrip().endswith("Reply with the answer only.")
    assert example.query in prompt
    docs = CountTask().generate(0, 100)
    listed = type(docs)(**{**vars(docs), "context": ["first doc", "second doc"]})
    prompt, fraction = direct_prompt(listed, 3_000)
    assert "[document 1]\nfirst doc\n\n[document 2]\nsecond doc" in prompt and fraction == 0.0


class ShortInput:
    """A provider taking fewer input characters than its window says (as gpt-5 takes 272k
    tokens of its 400k as input): a longer prompt is refused as OpenAI refuses it."""

    name = "short"
    model = "short"

    def __init__(self, max_chars: int, message: str = "maximum context length is 1 tokens") -> None:
        self.max_chars = max_chars
        self.message = message
        self.prompts: list[int] = []

    async def complete(self, request: CompletionRequest) -> Completion:
        size = len(request.messages[-1].content)
        self.prompts.append(size)
        if size > self.max_chars:
            raise BadRequestError(self.message, provider=self.name, status_code=400)
        return Completion(text=read_prompt(request), model=self.model, provider=self.name)

    async def stream(self, request: CompletionRequest) -> AsyncIterator[TextDelta | Completion]:
        yield await self.complete(request)

    async def aclose(self) -> None:
        return None


async def test_a_prompt_refused_as_too_long_is_sent_again_shorter(tmp_path: Path) -> None:
    model = ShortInput(3_500)  # the window says ~4,500 characters
    direct = DirectRunner(model, context_windows={"short": 2_000})
    await run_eval(CountTask(), [4_000], 1, [direct], out_path=tmp_path / "r.jsonl")
    (row,) = read_rows(tmp_path / "r.jsonl")
    assert row["error"] is None and row["truncated"] > 0.8
    first, second = model.prompts
    assert first > 3_500 >= second and second == pytest.approx(first * 2 / 3, abs=30)

    other = ShortInput(10, message="unsupported parameter: temperature")
    direct = DirectRunner(other, context_windows={"short": 2_000}, label="other")
    await run_eval(CountTask(), [4_000], 1, [direct], out_path=tmp_path / "s.jsonl")
    (row,) = read_rows(tmp_path / "s.jsonl")
    assert row["error"] == "BadRequestError: [short HTTP 400] unsupported parameter: temperature"
    assert len(other.prompts) == 1 and row["score"] == 0.0


async def test_a_failed_rlm_row_names_its_trajectory(tmp_path: Path) -> None:
    # The rows that failed are the ones to look at: the run's trajectory file is named in
    # the row even when the run raised (here the model fails on its second turn).
    out = tmp_path / "results.jsonl"
    traj = tmp_path / "trajectories"
    runner = RLMRunner(
        lambda ex: ScriptedModel(["```repl\nprint(len(context))\n```"]),
        options={"trajectory_dir": traj},
        label="fake",
    )
    await run_eval(CountTask(), [1_000], 2, [runner], out_path=out)
    rows = lines(out)
    assert len(rows) == 2
    for row in rows:
        assert row["error"].startswith("ProviderResponseError:") and row["score"] == 0.0
        path = Path(row["trajectory"])
        assert path.parent == traj and path.exists()
        assert "turn_finished" in path.read_text() and row["turns"] == 1  # the turn it had
    assert len({row["trajectory"] for row in rows}) == 2


def spender(*, fail: bool) -> Any:
    """A model whose root run pays for a turn, two sub-calls and a sub-RLM, then answers (or
    fails: an HTTP 500 on its second turn)."""

    def respond(request: CompletionRequest) -> str | MockReply:
        if request.system is None:  # a sub-call
            return "leaf answer"
        first = request.messages[0].content
        if any(m.role == "assistant" for m in request.messages):  # a second turn
            return MockReply(status=500) if fail and "zebra" in first else "FINAL('done')"
        if "zebra" in first:  # the root's first turn
            return (
                "```repl\nparts = llm_query_batched(['a?', 'b?'])\n"
                "deep = rlm_query('count the yaks', 'x')\nprint(parts, deep)\n```"
            )
        return "FINAL('sub')"  # the sub-RLM's first turn

    return respond


@pytest.mark.parametrize("max_depth", [1, 2])  # rlm_query: a plain call; a sub-RLM
async def test_the_usage_of_a_run_adds_up_from_its_events(max_depth: int) -> None:
    # What a failed row spent is added up from the run's events: on a run that finishes,
    # the same sum is result.usage (root turns, sub-calls, the sub-RLM's turns, once each).
    nested: list[Any] = []

    def listen(event: Any) -> None:
        root(event)
        if getattr(event, "parent_subcall", None) is not None:
            nested.append(event)

    root = _RootRun()
    async with RLM(model=ScriptedModel(spender(fail=False)), max_depth=max_depth) as rlm:
        result = await rlm.completion("ctx", "zebra question", on_event=listen)
    assert result.usage.input_tokens > 0 and result.answer == "done"
    assert len(nested) == max_depth - 1  # the sub-RLM ran as one only below the limit
    assert (root.input_tokens, root.output_tokens, root.subcalls) == (
        result.usage.input_tokens,
        result.usage.output_tokens,
        result.metadata["subcalls"],
    )
    assert root.subcalls >= 3


class ZebraTask(CountTask):
    """The count task asking the question ``spender``'s root model answers."""

    def generate(self, seed: int, size: int) -> Example:
        return dataclasses.replace(super().generate(seed, size), query="zebra question")


async def test_a_failed_rlm_row_counts_what_it_spent(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    runner = RLMRunner(lambda ex: ScriptedModel(spender(fail=True)), label="fake")
    await run_eval(ZebraTask(), [1_000], 1, [runner], out_path=out)
    (row,) = lines(out)
    assert row["error"].startswith("ProviderResponseError:") and row["score"] == 0.0
    assert row["input_tokens"] > 0 and row["output_tokens"] > 0
    assert row["subcalls"] >= 3 and row["turns"] == 1
