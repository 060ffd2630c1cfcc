"""The REPL child's bytecode is written once and read on every start (repl._host_lookups)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from rlm_async.repl._host_lookups import child_bytecode


def _source(tmp_path: Path) -> Path:
    path = tmp_path / "child_like.py"
    path.write_text("def main(argv):\n    return 0\n", encoding="utf-8")
    return path


def test_the_bytecode_is_written_beside_the_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    source = _source(tmp_path)
    child_bytecode(str(source))
    assert Path(importlib.util.cache_from_source(str(source))).is_file()


def test_no_bytecode_when_the_user_asked_for_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    source = _source(tmp_path)
    child_bytecode(str(source))
    assert not Path(importlib.util.cache_from_source(str(source))).exists()


def test_a_directory_that_cannot_take_bytecode_is_left_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As a read-only install, for root too: __pycache__ cannot be made (a file is there).
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    source = _source(tmp_path)
    (tmp_path / "__pycache__").write_text("not a directory", encoding="utf-8")
    child_bytecode(str(source))  # no error: the child compiles its file itself
    assert (tmp_path / "__pycache__").is_file()
