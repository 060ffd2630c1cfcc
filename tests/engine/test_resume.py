"""Resume after a crash: ``RLM.resume(path, context=...)`` replays a stopped run's cells in a
fresh REPL (the real child), answers their sub-calls and tool calls from the trajectory, and
continues the loop with new model calls (scripted models, whose calls are counted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlm_async import RLM, ProviderResponseError, ResumeError
from rlm_async import events as ev
from rlm_async.testing import ScriptedModel
from rlm_async.trajectory import read_trajectory

CONTEXT = "the numbers: 21 and 5"
QUERY = "What is twice the sub-model's number plus the tool's?"


def cell(code: str) -> str:
    return f"```repl\n{code}\n```"


class Counter:
    """A tool that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def bonus(self, n: int) -> int:
        """A bonus for n."""
        self.calls += 1
        return n + 1


async def crashed_run(tmp_path: Path) -> tuple[Path, ScriptedModel, Counter]:
    """A run that stops at its third root turn (the model fails), after two turns of cells
    with a sub-call and a tool call; its trajectory is left in ``tmp_path``."""
    root = ScriptedModel(
        [
            cell("x = llm_query('double 21, digits only')\nprint('sub said', x)"),
            cell("b = bonus(4)\ny = int(x) * 2 + b\nprint('y is', y)"),
        ]
    )
    sub = ScriptedModel(["42"])
    tool = Counter()

    def bonus(n: int) -> int:
        """A bonus for n."""
        return tool.bonus(n)

    async with RLM(model=root, sub_model=sub, tools=[bonus], trajectory_dir=tmp_path) as rlm:
        with pytest.raises(ProviderResponseError, match="ran out of replies"):
            await rlm.completion(CONTEXT, QUERY)
    assert len(sub.requests) == 1 and tool.calls == 1
    (path,) = tmp_path.glob("*.jsonl")
    return path, root, tool


async def test_a_stopped_run_resumes_without_paying_twice(tmp_path: Path) -> None:
    path, _, _ = await crashed_run(tmp_path / "first")
    root = ScriptedModel([cell("print('resumed with', y)\nFINAL(str(y))")])
    sub = ScriptedModel([])  # any call of it fails the test: nothing is asked again
    tool = Counter()

    def bonus(n: int) -> int:
        """A bonus for n."""
        return tool.bonus(n)

    again = tmp_path / "again"
    async with RLM(model=root, sub_model=sub, tools=[bonus], trajectory_dir=again) as rlm:
        result = await rlm.resume(path, context=CONTEXT)

    assert result.answer == "89"  # 42 * 2 + 5: the recorded answers, in a REPL rebuilt by replay
    assert len(sub.requests) == 0 and tool.calls == 0
    assert len(root.requests) == 1  # only the new turn: turns 1 and 2 were recorded
    # The conversation was rebuilt: the new turn sees both recorded replies and their outputs.
    seen = "\n".join(m.content for m in root.requests[0].messages)
    assert "llm_query('double 21" in seen and "sub said 42" in seen and "y is 89" in seen
    resumed = result.metadata["resumed"]
    assert resumed["replayed_turns"] == 2 and resumed["replayed_calls"] == 2
    assert resumed["replayed_cells"] == 2
    assert resumed["replayed_usage"]["input_tokens"] > 0  # what the record had cost
    # Usage is this call's own: one root turn, no sub-call.
    assert sum(m.calls for m in result.usage.models.values()) == 1
    turns = [e for e in result.trajectory if isinstance(e, ev.TurnFinished)]
    assert [(t.turn, t.replayed) for t in turns] == [(1, True), (2, True), (3, False)]
    subcalls = [e for e in result.trajectory if isinstance(e, ev.SubCallFinished)]
    assert [(s.answer, s.replayed, s.input_tokens) for s in subcalls] == [("42", True, 0)]
    tools = [e for e in result.trajectory if isinstance(e, ev.ToolCallFinished)]
    assert [(t.result, t.replayed) for t in tools] == [("5", True)]
    # The new run wrote a trajectory of its own, whole, that can be read back.
    (written,) = again.glob("*.jsonl")
    assert any(isinstance(e, ev.RunFinished) for e in read_trajectory(written).events)


async def test_a_cell_printing_otherwise_stops_the_resume(tmp_path: Path) -> None:
    path, _, _ = await crashed_run(tmp_path)
    lines = path.read_text(encoding="utf-8").splitlines()
    tampered = []
    for line in lines:
        data = json.loads(line)
        if data.get("type") == "cell_finished" and data["turn"] == 2:
            data["output"] = data["output"].replace("y is 89", "y is 90")
        tampered.append(json.dumps(data))
    path.write_text("\n".join(tampered) + "\n", encoding="utf-8")
    root = ScriptedModel([])
    sub = ScriptedModel([])
    async with RLM(model=root, sub_model=sub, tools=[Counter().bonus]) as rlm:
        with pytest.raises(ResumeError, match=r"turn 2, cell 1 printed something other") as info:
            await rlm.resume(path, context=CONTEXT)
    assert "y is 90" in str(info.value) and "y is 89" in str(info.value)
    assert len(root.requests) == 0 and len(sub.requests) == 0


async def test_a_request_not_recorded_stops_the_resume(tmp_path: Path) -> None:
    path, _, _ = await crashed_run(tmp_path)
    lines = path.read_text(encoding="utf-8").splitlines()
    tampered = []
    for line in lines:
        data = json.loads(line)
        if data.get("type") == "turn_finished" and data["turn"] == 1:
            data["text"] = data["text"].replace("double 21", "triple 21")
        tampered.append(json.dumps(data))
    path.write_text("\n".join(tampered) + "\n", encoding="utf-8")
    sub = ScriptedModel([])
    async with RLM(model=ScriptedModel([]), sub_model=sub, tools=[Counter().bonus]) as rlm:
        with pytest.raises(ResumeError, match=r"turn 1, cell 1 made a request that is not in"):
            await rlm.resume(path, context=CONTEXT)
    assert len(sub.requests) == 0


async def test_the_context_must_be_given_again_and_be_the_same(tmp_path: Path) -> None:
    path, _, _ = await crashed_run(tmp_path)
    async with RLM(model=ScriptedModel([]), tools=[Counter().bonus]) as rlm:
        with pytest.raises(ResumeError, match="give it again"):
            await rlm.resume(path)
        with pytest.raises(ResumeError, match="not the one recorded"):
            await rlm.resume(path, context=CONTEXT + " and more")
