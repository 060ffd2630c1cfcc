"""``RLM(trajectory_context=True)``: the context is kept beside the trajectory, and
``rlm.resume(path)`` continues a stopped run without ``context=`` (the real child, scripted
models whose calls are counted)."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from rlm_async import RLM, ProviderResponseError, ResumeError
from rlm_async.engine._kept_context import _link_or_copy
from rlm_async.testing import ScriptedModel
from rlm_async.trajectory import read_trajectory

QUERY = "How big is the context, and what did the sub-model say?"

CONTEXTS: dict[str, Any] = {
    "str": "first line\nsecond line, é ✓\n",
    "list": ["alpha", "beta\ngamma", "", "δ"],
    "dict": {"a": [1, 2.5, None], "b": {"nested": True}, "c": "text"},
    "chat": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
}


def cell(code: str) -> str:
    return f"```repl\n{code}\n```"


async def stopped_run(directory: Path, context: Any, *, keep: bool) -> Path:
    """A run stopped at its second root turn (the model fails) after a turn whose cell made a
    sub-call and read the context; its trajectory is left in ``directory``."""
    root = ScriptedModel([cell("x = llm_query('say 7')\nshape = repr(context)\nprint(len(shape))")])
    sub = ScriptedModel(["7"])
    async with RLM(
        model=root, sub_model=sub, trajectory_dir=directory, trajectory_context=keep
    ) as rlm:
        with pytest.raises(ProviderResponseError, match="ran out of replies"):
            await rlm.completion(context, QUERY)
    (path,) = directory.glob("*.jsonl")
    return path


@pytest.mark.parametrize("kind", list(CONTEXTS))
async def test_a_run_kept_with_its_context_resumes_without_it(tmp_path: Path, kind: str) -> None:
    context = CONTEXTS[kind]
    path = await stopped_run(tmp_path / "first", context, keep=True)
    kept = path.with_suffix(".context")
    assert kept.is_file()
    assert read_trajectory(path).header.context_kept == ("text" if kind == "str" else "json")

    root = ScriptedModel([cell("FINAL(f'{x} {shape == repr(context)} {shape}')")])
    sub = ScriptedModel([])  # any call of it fails the test: the sub-call is replayed
    async with RLM(model=root, sub_model=sub, trajectory_dir=tmp_path / "again") as rlm:
        result = await rlm.resume(path)

    # The REPL held the same value: a str, list, dict or chat messages as given.
    assert result.answer == f"7 True {context!r}"
    assert len(root.requests) == 1 and len(sub.requests) == 0  # only the new turn
    assert result.metadata["resumed"]["replayed_turns"] == 1
    assert result.metadata["resumed"]["replayed_calls"] == 1


async def test_without_trajectory_context_the_resume_asks_for_the_context(tmp_path: Path) -> None:
    path = await stopped_run(tmp_path, CONTEXTS["list"], keep=False)
    assert not path.with_suffix(".context").exists()
    assert read_trajectory(path).header.context_kept is None
    async with RLM(model=ScriptedModel([])) as rlm:
        with pytest.raises(ResumeError) as raised:
            await rlm.resume(path)
    message = str(raised.value)
    assert "context=" in message and "trajectory_context=True" in message


async def test_a_kept_context_that_is_gone_is_a_resume_error(tmp_path: Path) -> None:
    path = await stopped_run(tmp_path, CONTEXTS["str"], keep=True)
    path.with_suffix(".context").unlink()
    async with RLM(model=ScriptedModel([])) as rlm:
        with pytest.raises(ResumeError, match="cannot be read"):
            await rlm.resume(path)


def test_the_context_file_is_linked_when_it_can_be_and_copied_when_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "context.txt"
    source.write_bytes(b"the bytes the child loads\n")
    linked = tmp_path / "run.context"
    _link_or_copy(str(source), linked)
    assert linked.stat().st_ino == source.stat().st_ino  # no copy of a large context

    def other_filesystem(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", other_filesystem)
    copied = tmp_path / "copy.context"
    _link_or_copy(str(source), copied)
    assert copied.stat().st_ino != source.stat().st_ino
    assert copied.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "context.txt",
        "copy.context",
        "run.context",
    ]


async def test_a_session_kept_with_its_context_resumes_without_it(tmp_path: Path) -> None:
    context = CONTEXTS["list"]
    first = ScriptedModel(
        [
            cell("x = llm_query('say 7')\nprint(len(context))"),
            cell("FINAL(x)"),
            cell("y = x * len(context)\nprint('y is', y)"),
        ]
    )
    directory = tmp_path / "first"
    async with (
        RLM(
            model=first,
            sub_model=ScriptedModel(["7"]),
            trajectory_dir=directory,
            trajectory_context=True,
        ) as rlm,
        rlm.session(context) as chat,
    ):
        assert (await chat.completion("One?")).answer == "7"
        with pytest.raises(ProviderResponseError, match="ran out of replies"):
            await chat.completion("Two?")  # its parent "stopped" inside it
    session = read_trajectory(next(directory.glob("*.jsonl"))).header.session
    assert session is not None and len(list(directory.glob("*.context"))) == 2

    root = ScriptedModel([cell("FINAL(f'{y} {context_1 == context} {context!r}')")])
    sub = ScriptedModel([])  # nothing recorded is asked again
    async with (
        RLM(model=root, sub_model=sub, trajectory_dir=directory) as rlm,
        rlm.resume_session(session) as chat,
    ):
        assert [r.answer for r in chat.resumed] == ["7", f"7777 True {context!r}"]
    assert len(root.requests) == 1 and len(sub.requests) == 0


async def test_a_session_without_its_context_kept_asks_for_it(tmp_path: Path) -> None:
    root = ScriptedModel([cell("FINAL('a')")])
    async with RLM(model=root, trajectory_dir=tmp_path) as rlm, rlm.session("c") as chat:
        await chat.completion("One?")
    (path,) = tmp_path.glob("*.jsonl")
    async with RLM(model=ScriptedModel([])) as rlm:
        with pytest.raises(ResumeError, match=r"trajectory_context=True.*resume_session\("):
            async with rlm.resume_session(path):
                pass
