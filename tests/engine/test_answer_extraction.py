"""How a run reads the answer from real models' replies, through the real REPL child.

The corpus (``replies/corpus.json``) holds replies real models wrote that the engine once
read wrongly (issue 12); each is replayed with a ``ScriptedModel``.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path
from typing import Any, Literal

import pytest

from rlm_async import RLM, ReplOptions, SandboxOptions
from rlm_async import events as ev
from rlm_async._text import cap_middle
from rlm_async.testing import ScriptedModel
from rlm_async.trajectory import TrajectoryWriter, read_trajectory
from rlm_async.trajectory._writer_thread import BackgroundTrajectory
from tests.loop_meter import loop_meter

CONTEXT = "hello world"  # 11 characters
CORPUS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "replies" / "corpus.json").read_text(encoding="utf-8")
)


@pytest.mark.parametrize("case", CORPUS, ids=[c["name"] for c in CORPUS])
async def test_the_corpus_of_real_replies_gives_the_answer_the_model_meant(
    case: dict[str, Any],
) -> None:
    sub = ScriptedModel(lambda request: case.get("sub_reply", "sub answer"))
    async with RLM(
        model=ScriptedModel(case["replies"]),
        sub_model=sub,
        max_iterations=case["max_iterations"],
    ) as rlm:
        result = await rlm.completion(CONTEXT, "What is it?")
    expected = case["expected"]
    assert result.answer == expected["answer"]
    assert result.metadata["answer_source"] == expected["answer_source"]
    assert result.finished is expected["finished"]
    assert result.iterations == expected["iterations"]
    if "subcalls" in expected:
        assert result.metadata["subcalls"] == expected["subcalls"]


def last_user_message(model: ScriptedModel, request: int) -> str:
    return model.requests[request].messages[-1].content


async def test_code_on_the_fence_line_runs_and_the_model_is_not_told_it_wrote_none() -> None:
    root = ScriptedModel(["```repl x = 6 * 7\nprint(x)\n```", "FINAL(42)"])
    async with RLM(model=root) as rlm:
        result = await rlm.completion(CONTEXT, "q")
    feedback = last_user_message(root, 1)
    assert "42" in feedback and "no ```repl code block" not in feedback
    assert result.answer == "42"


async def test_a_literal_final_written_with_code_is_confirmed_against_the_output() -> None:
    root = ScriptedModel(["```repl\nprint(len(context))\n```\nOutput: 5\nFINAL(5)", "FINAL(11)"])
    async with RLM(model=root) as rlm:
        result = await rlm.completion(CONTEXT, "How long?")
    feedback = last_user_message(root, 1)
    # The model sees the real output, and why its FINAL(5) was not taken yet.
    assert "11" in feedback and "FINAL(5)" in feedback
    assert result.answer == "11" and result.iterations == 2


async def test_a_literal_final_with_code_on_the_last_regular_turn_is_not_told_to_go_on() -> None:
    root = ScriptedModel(["```repl\nprint(len(context))\n```\nOutput: 5\n\nFINAL(5)", "FINAL(11)"])
    async with RLM(model=root, max_iterations=1) as rlm:
        result = await rlm.completion(CONTEXT, "How long?")
    prompt = last_user_message(root, 1)
    assert "11" in prompt and "FINAL(5)" in prompt and "No more code will run" in prompt
    # "if not, go on" asks for more code, which the last turn no longer runs.
    assert "go on" not in prompt
    assert (result.answer, result.iterations) == ("11", 2)


async def test_a_final_called_in_code_with_other_code_is_taken_at_once() -> None:
    root = ScriptedModel(["```repl\nn = len(context)\nFINAL(n)\n```"])
    async with RLM(model=root) as rlm:
        result = await rlm.completion(CONTEXT, "q")
    assert (result.answer, result.metadata["answer_source"], result.iterations) == ("11", "code", 1)


async def test_the_case_variants_of_final_and_final_var_are_repl_functions() -> None:
    code = "x = 'v'\nfor f in (FINAL, Final, final, FINAL_VAR, Final_Var, final_var):\n    f('x')\n"
    async with RLM(model=ScriptedModel([f"```repl\n{code}```"])) as rlm:
        result = await rlm.completion(CONTEXT, "q")
    assert result.answer == "v"  # the last call, final_var('x'), read the variable


async def test_the_last_turn_reads_a_fenced_final_of_a_variable_as_that_variable() -> None:
    replies = ["```repl\ncity = 'Ostrava'\n```", "```repl\nFINAL(city)\n```"]
    async with RLM(model=ScriptedModel(replies), max_iterations=1) as rlm:
        result = await rlm.completion(CONTEXT, "q")
    assert (result.answer, result.metadata["answer_source"]) == ("Ostrava", "variable")


async def test_the_extra_last_turn_says_that_no_code_runs() -> None:
    replies = ["```repl\nprint(1)\n```", "```repl\nllm_query('more')\n```", "FINAL(1)"]
    root = ScriptedModel(replies)
    async with RLM(model=root, max_iterations=1) as rlm:
        await rlm.completion(CONTEXT, "q")
    assert "no code runs" in last_user_message(root, 2).lower()


# ---- one honest truncation marker (issue 12 item 12) ------------------------------------


async def test_output_over_the_limit_reaches_the_model_with_one_honest_marker() -> None:
    root = ScriptedModel(["```repl\nprint('x' * 125_700)\n```", "FINAL(done)"])
    async with RLM(
        model=root, max_output_chars=20_000, repl=ReplOptions(output_limit=20_000)
    ) as rlm:
        await rlm.completion(CONTEXT, "q")
    feedback = last_user_message(root, 1)
    markers = re.findall(r"\[\.\.\. (\d+) characters truncated \.\.\.\]", feedback)
    assert len(markers) == 1
    # What the model sees plus what the marker says was dropped is what was printed.
    shown = sum(len(run) for run in re.findall(r"x{100,}", feedback))
    assert shown + int(markers[0]) == 125_700


# ---- the final answer is capped (issue 11 item 6) ---------------------------------------


@pytest.mark.parametrize("bwrap", ["auto", "never"])
async def test_a_huge_final_answer_is_capped_in_the_child_and_said_in_the_result(
    tmp_path: Path, bwrap: Literal["auto", "never"]
) -> None:
    root = ScriptedModel(["```repl\nFINAL('A' * (300 << 20))\n```"])
    options = ReplOptions(sandbox=SandboxOptions(bwrap=bwrap))
    async with RLM(model=root, trajectory_dir=tmp_path, repl=options) as rlm, loop_meter() as meter:
        result = await rlm.completion(CONTEXT, "q")
    assert result.metadata["answer_truncated"] == {
        "original_chars": 300 << 20,
        "max_answer_chars": 1_000_000,
    }
    assert 1_000_000 <= len(result.answer) < 1_000_100
    assert "characters truncated" in result.answer
    path = Path(result.metadata["trajectory_path"])
    assert path.stat().st_size < 10_000_000  # was 944 MB
    assert meter.longest_stall < 1.0  # the loop stalled 20 s


async def test_the_answer_cap_is_configurable_and_applies_to_answers_from_text() -> None:
    options = ReplOptions(max_answer_chars=1_000)
    for reply, source in (
        ("```repl\nFINAL('B' * 5000)\n```", "code"),
        ("FINAL(" + "C" * 5000 + ")", "text"),
    ):
        async with RLM(model=ScriptedModel([reply]), repl=options) as rlm:
            result = await rlm.completion(CONTEXT, "q")
        assert result.metadata["answer_source"] == source
        assert result.metadata["answer_truncated"] == {
            "original_chars": 5000,
            "max_answer_chars": 1_000,
        }
        assert len(result.answer) < 1_100
        assert [e.answer for e in result.trajectory if isinstance(e, ev.FinalAnswer)] == [
            result.answer
        ]


async def test_an_answer_under_the_cap_says_nothing_of_truncation() -> None:
    async with RLM(model=ScriptedModel(["FINAL(short)"])) as rlm:
        result = await rlm.completion(CONTEXT, "q")
    assert "answer_truncated" not in result.metadata


# ---- trajectory writes off the loop (issue 11 item 6) -----------------------------------


def test_the_engines_trajectory_does_its_file_work_off_the_callers_thread(tmp_path: Path) -> None:
    # A FIFO with no reader: opening it for writing blocks until one comes. A writer that
    # wrote on the caller's thread (the event loop) would block the caller right there.
    path = tmp_path / "trajectory.jsonl"
    os.mkfifo(path)
    writer = BackgroundTrajectory(TrajectoryWriter(path))
    returned = threading.Event()

    def emit() -> None:
        writer(ev.TurnStarted(run_id="r", turn=1))
        returned.set()

    threading.Thread(target=emit, daemon=True).start()
    if not returned.wait(timeout=10):
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))  # let the blocked writer go
        pytest.fail("the writer blocked its caller opening the file")
    with path.open(encoding="utf-8") as reader:  # lets the writer's open() through
        assert writer.close() is None
        lines = reader.read().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["type"] == "turn_started"


async def test_a_run_written_from_a_worker_thread_is_a_complete_trajectory(tmp_path: Path) -> None:
    replies = ["```repl\nprint(len(context))\n```", "FINAL(11)"]
    async with RLM(model=ScriptedModel(replies), trajectory_dir=tmp_path) as rlm:
        result = await rlm.completion(CONTEXT, "q")
    written = read_trajectory(result.metadata["trajectory_path"])
    assert [e.type for e in written.events] == [e.type for e in result.trajectory]


def test_capping_capped_text_again_keeps_one_marker_with_the_true_count() -> None:
    text = "".join(chr(97 + i % 26) for i in range(125_700)) + "\n[stderr]\nboom"
    twice = cap_middle(cap_middle(text, 20_000), 20_000)
    markers = list(re.finditer(r"\n\[\.\.\. (\d+) characters truncated \.\.\.\]\n", twice))
    assert len(markers) == 1
    shown = len(twice) - len(markers[0].group(0))
    assert shown + int(markers[0].group(1)) == len(text)
    assert twice.endswith("boom")
