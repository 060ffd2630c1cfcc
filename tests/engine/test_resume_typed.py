"""Resuming a typed run (``output_type``): ``RLM.resume(path, context=..., output_type=...)``
replays it as it ran, a recorded answer that was rejected rejected again, and the answer
after it validated into ``result.output``. Through the real child REPL, scripted models."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from rlm_async import RLM, ProviderResponseError, ResumeError
from rlm_async import events as ev
from rlm_async.testing import ScriptedModel
from tests.helpers import repl

CONTEXT = "Oslo Bergen Oslo"
QUERY = "Which city comes first, and how often is it named?"


class CityCount(BaseModel):
    city: str
    count: int


async def stopped_typed_run(folder: Path) -> Path:
    """A typed run: a cell asks the sub-model, the next turn's answer lacks ``count`` (sent
    back), then the root model fails; its trajectory is left in ``folder``."""
    root = ScriptedModel(
        [
            repl("city = llm_query('first city?')\nprint('city is', city)"),
            "FINAL({'city': 'Oslo'})",
        ]
    )
    sub = ScriptedModel(["Oslo"])
    async with RLM(model=root, sub_model=sub, trajectory_dir=folder) as rlm:
        with pytest.raises(ProviderResponseError, match="ran out of replies"):
            await rlm.completion(CONTEXT, QUERY, output_type=CityCount)
    (path,) = folder.glob("*.jsonl")
    return path


async def test_a_typed_run_resumes_typed(tmp_path: Path) -> None:
    path = await stopped_typed_run(tmp_path / "first")
    root = ScriptedModel([repl("FINAL({'city': city, 'count': context.count(city)})")])
    sub = ScriptedModel([])  # nothing is asked again
    async with RLM(model=root, sub_model=sub) as rlm:
        result = await rlm.resume(path, context=CONTEXT, output_type=CityCount)
    assert result.output == CityCount(city="Oslo", count=2)
    assert len(root.requests) == 1 and sub.requests == []
    # The new turn was asked for the type, and saw why the recorded answer was sent back.
    request = root.requests[0]
    assert "CityCount" in (request.system or "") and '"count"' in (request.system or "")
    assert "did not match" in request.messages[-1].content
    rejected = [e for e in result.trajectory if isinstance(e, ev.AnswerRejected)]
    assert [(e.turn, e.retries_left) for e in rejected] == [(2, 2)]
    final = next(e for e in result.trajectory if isinstance(e, ev.FinalAnswer))
    assert final.output == {"city": "Oslo", "count": 2}


async def test_a_typed_run_resumed_without_its_type_is_refused(tmp_path: Path) -> None:
    # Untyped, the recorded answer {'city': 'Oslo'} would end the run at turn 2.
    path = await stopped_typed_run(tmp_path)
    root = ScriptedModel([])
    async with RLM(model=root, sub_model=ScriptedModel([])) as rlm:
        with pytest.raises(ResumeError, match="output_type") as raised:
            await rlm.resume(path, context=CONTEXT)
    assert str(path) in str(raised.value)
    assert root.requests == []


async def test_a_bad_output_type_is_refused_before_the_replay(tmp_path: Path) -> None:
    from rlm_async import ConfigurationError

    path = await stopped_typed_run(tmp_path)
    async with RLM(model=ScriptedModel([]), sub_model=ScriptedModel([])) as rlm:
        with pytest.raises(ConfigurationError, match="output_type"):
            await rlm.resume(path, context=CONTEXT, output_type=object())
