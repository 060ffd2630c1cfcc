"""What ``RLM.resume`` and ``RLM.resume_session`` say when what they are given is not a
trajectory they can read: a typed ``ResumeError`` naming the path, never a bare ``OSError``."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlm_async import RLM, ResumeError
from rlm_async.testing import ScriptedModel


async def test_a_missing_file_or_a_directory_is_a_resume_error(tmp_path: Path) -> None:
    missing = tmp_path / "20250101T000000Z-3f2a.jsonl"
    async with RLM(model=ScriptedModel([])) as rlm:
        with pytest.raises(ResumeError, match="no trajectory file") as caught:
            await rlm.resume(missing, context="c")
        assert str(missing) in str(caught.value)
        with pytest.raises(ResumeError, match="not a trajectory file"):
            await rlm.resume(tmp_path, context="c")


async def test_a_session_file_that_does_not_exist_is_named_as_a_file(tmp_path: Path) -> None:
    missing = tmp_path / "20250101T000000Z-3f2a.jsonl"
    async with RLM(model=ScriptedModel([]), trajectory_dir=tmp_path) as rlm:
        with pytest.raises(ResumeError, match="no trajectory file") as caught:
            async with rlm.resume_session(missing, context="c"):
                pass
    assert str(missing) in str(caught.value)
