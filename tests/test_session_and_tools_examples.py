"""examples/chat_session.py and examples/tools.py run offline (scripted model, the real child
REPL): the second question of the chat reads what the first left in the REPL, and the tools
example's calls are served by this process."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


def load(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.delenv("MODEL", raising=False)
    spec = importlib.util.spec_from_file_location(f"{name}_example", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


async def test_the_chat_session_example_runs_offline(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    await load("chat_session", monkeypatch).main()
    out = capsys.readouterr().out.splitlines()
    # Ada and Linus churned in March; of them only Ada has an open ticket (from context_2,
    # filtered through `march`, a variable of the first completion).
    assert out[:2] == ["1: Ada, Linus", "2: Ada"]
    assert out[2].startswith("one REPL (pid ") and out[2].endswith(" for 2 completions")


async def test_the_tools_example_runs_offline(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    await load("tools", monkeypatch).main()
    out = capsys.readouterr().out.splitlines()
    assert out[0] == 'Answer: ["Ada", "Grace"]'
    calls = [line.split(":")[0].strip() for line in out[1:]]
    assert calls == ["search_tickets"] * 3 + ["customer_name"] * 2
