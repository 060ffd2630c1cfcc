"""``rlm-async run --cache PATH``: a second run answers its sub-calls from the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlm_async.demo import demo_responder, make_haystack
from rlm_async.testing import MockLLMServer
from tests.test_cli import cli, run_args


async def test_a_second_run_with_the_same_cache_sends_no_sub_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text, number = make_haystack(5_000, seed=11)  # the demo model reads it in 5 chunks
    context = tmp_path / "haystack.txt"
    context.write_text(text, encoding="utf-8")
    store = tmp_path / "subcalls.sqlite3"
    async with MockLLMServer(demo_responder) as server:
        monkeypatch.setenv("OPENAI_COMPATIBLE_BASE_URL", server.base_url)
        assert await cli(*run_args(context, "--cache", str(store))) == 0
        assert len(server.requests) == 3 + 5  # three root turns, five chunks
        assert await cli(*run_args(context, "--cache", str(store))) == 0
        assert len(server.requests) == 8 + 3, "the second run sends its root turns only"
    assert capsys.readouterr().out == f"{number}\n{number}\n"
