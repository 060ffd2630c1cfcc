"""The viewer and the tree for typed answers: an answer that did not match the completion's
``output_type`` (``answer_rejected``) shows on its turn, with its errors and the retries
left, as data and in a real headless Chromium (see ``tests/test_viewer.py``)."""

from __future__ import annotations

from pathlib import Path

from rlm_async import RLM
from rlm_async.testing import ScriptedModel
from rlm_async.trajectory import read_trajectory
from rlm_async.trajectory._viewer import write_html
from tests.helpers import repl
from tests.test_viewer import dump_dom
from tests.test_viewer_sessions import rendered_app

SCHEMA = {
    "title": "CityCount",
    "type": "object",
    "properties": {"city": {"type": "string"}, "count": {"type": "integer"}},
    "required": ["city", "count"],
}


async def typed_run(tmp_path: Path) -> Path:
    """Turn 1 answers without ``count`` (sent back), turn 2 with it."""
    root = ScriptedModel(
        [repl("FINAL({'city': 'Oslo'})"), repl("FINAL({'city': 'Oslo', 'count': 2})")]
    )
    async with RLM(model=root, trajectory_dir=tmp_path) as rlm:
        result = await rlm.completion("Oslo Bergen Oslo", "which, how often?", output_type=SCHEMA)
    assert result.output == {"city": "Oslo", "count": 2}
    (path,) = tmp_path.glob("*.jsonl")
    return path


async def test_the_tree_puts_the_rejection_on_its_turn(tmp_path: Path) -> None:
    (run,) = read_trajectory(await typed_run(tmp_path)).tree()
    first, second = run.turns
    assert second.rejected is None
    rejected = first.rejected
    assert rejected is not None
    assert rejected["retries_left"] == 2
    assert '"city": "Oslo"' in rejected["answer"]  # from code: crossed as JSON
    assert [e["msg"] for e in rejected["errors"]] == ["'count' is a required property"]


async def test_the_page_marks_the_rejected_answer_with_its_errors(tmp_path: Path) -> None:
    dom = rendered_app(await dump_dom(write_html(await typed_run(tmp_path))))
    assert dom.count('data-rejected="turn"') == 1  # the pill on turn 1 only
    assert "Answer rejected · 2 more answers allowed" in dom
    assert "(the answer): 'count' is a required property" in dom
