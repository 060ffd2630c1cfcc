"""Resume of a run whose sub-call answers and tool results were longer than their events'
previews: the trajectory's side record (``full_text`` lines) holds them whole, the events
(what listeners get) stay previews. Through the real child, scripted models counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlm_async import RLM, ProviderResponseError, ResumeError
from rlm_async import events as ev
from rlm_async.testing import ScriptedModel
from rlm_async.trajectory import read_trajectory

CONTEXT = "long answers"
QUERY = "How long are they?"
PREVIEW = 100
LONG = "".join(f"{i:05d}" for i in range(1_000))  # 5,000 characters, each part different


def cell(code: str) -> str:
    return f"```repl\n{code}\n```"


class Pages:
    """A tool returning a long result, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def page(self, n: int) -> dict[str, str]:
        """Page n."""
        self.calls += 1
        return {"n": str(n), "text": LONG[::-1]}


async def crashed_run(directory: Path, preview: int = PREVIEW) -> Path:
    root = ScriptedModel(
        [
            cell("x = llm_query('the long one')\nprint(len(x), x[-10:])"),
            cell("p = page(3)\nprint(len(p['text']), p['text'][-10:])"),
        ]
    )
    sub = ScriptedModel([LONG])
    pages = Pages()

    def page(n: int) -> dict[str, str]:
        """Page n."""
        return pages.page(n)

    async with RLM(
        model=root,
        sub_model=sub,
        tools=[page],
        trajectory_dir=directory,
        trajectory_preview_chars=preview,
    ) as rlm:
        with pytest.raises(ProviderResponseError, match="ran out of replies"):
            await rlm.completion(CONTEXT, QUERY)
    (path,) = directory.glob("*.jsonl")
    return path


async def resume(
    path: Path, directory: Path | None = None, preview: int = PREVIEW
) -> tuple[object, ScriptedModel, Pages]:
    root = ScriptedModel([cell("FINAL(str(len(x) + len(p['text'])))")])
    sub = ScriptedModel([])  # any call of it fails: nothing is asked again
    pages = Pages()

    def page(n: int) -> dict[str, str]:
        """Page n."""
        return pages.page(n)

    async with RLM(
        model=root,
        sub_model=sub,
        tools=[page],
        trajectory_dir=directory,
        trajectory_preview_chars=preview,
    ) as rlm:
        result = await rlm.resume(path, context=CONTEXT)
    assert len(sub.requests) == 0 and pages.calls == 0
    return result, root, pages


async def test_long_answers_and_results_are_kept_whole_beside_their_previews(
    tmp_path: Path,
) -> None:
    path = await crashed_run(tmp_path / "first")
    trajectory = read_trajectory(path)
    assert trajectory.header.full_texts
    # The events stay previews; the side record holds the whole texts, once each.
    (answer,) = [e for e in trajectory.events if isinstance(e, ev.SubCallFinished)]
    (result,) = [e for e in trajectory.events if isinstance(e, ev.ToolCallFinished)]
    assert answer.answer == LONG[:PREVIEW] and len(result.result) == PREVIEW
    assert trajectory.full_texts == {
        ("subcall_finished", answer.subcall): LONG,
        ("tool_call_finished", result.call): json.dumps({"n": "3", "text": LONG[::-1]}),
    }
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    kinds = [line["type"] for line in lines]
    # Each full text comes just before the event it completes.
    assert kinds[kinds.index("subcall_finished") - 1] == "full_text"
    assert kinds[kinds.index("tool_call_finished") - 1] == "full_text"

    again = tmp_path / "again"
    result_, root, _ = await resume(path, again)
    assert result_.answer == "10000"  # type: ignore[attr-defined]
    assert len(root.requests) == 1  # only the new turn
    # The resumed run's own file records them whole again: it can be resumed in its turn.
    (written,) = again.glob("*.jsonl")
    assert sorted(read_trajectory(written).full_texts.values(), key=len) == sorted(
        trajectory.full_texts.values(), key=len
    )


async def test_short_answers_write_no_side_record(tmp_path: Path) -> None:
    path = await crashed_run(tmp_path, preview=20_000)
    trajectory = read_trajectory(path)
    assert trajectory.header.full_texts and trajectory.full_texts == {}
    assert '"full_text"' not in path.read_text(encoding="utf-8").replace('"full_texts"', "")


def as_old_file(path: Path) -> None:
    """What the writer made before the side record: schema 1, no full_text lines."""
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        data = json.loads(line)
        if data["type"] == "full_text":
            continue
        if data["type"] == "trajectory":
            data["schema_version"] = 1
            del data["full_texts"], data["session"], data["session_turn"]
        kept.append(json.dumps(data))
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")


async def test_an_old_file_with_cut_previews_is_refused(tmp_path: Path) -> None:
    path = await crashed_run(tmp_path)
    as_old_file(path)
    assert not read_trajectory(path).header.full_texts
    async with RLM(model=ScriptedModel([]), sub_model=ScriptedModel([])) as rlm:
        with pytest.raises(ResumeError, match="holds only the first 100 characters of sub-call"):
            await rlm.resume(path, context=CONTEXT, options={"trajectory_preview_chars": 100})


async def test_an_old_file_with_whole_previews_still_resumes(tmp_path: Path) -> None:
    path = await crashed_run(tmp_path, preview=20_000)
    as_old_file(path)
    result, _, _ = await resume(path, preview=20_000)
    assert result.answer == "10000"  # type: ignore[attr-defined]
