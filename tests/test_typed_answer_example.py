"""examples/typed_answer.py runs offline (scripted model, real child REPL) and its wrong
first answer is sent back before the right one is taken."""

from __future__ import annotations

import importlib.util
import sys
from datetime import date
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parent.parent / "examples" / "typed_answer.py"


async def test_the_typed_answer_example_runs_offline(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MODEL", raising=False)
    spec = importlib.util.spec_from_file_location("typed_answer_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered, as an import would: pydantic resolves the models' annotations through it.
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    invoice = await module.main()
    assert isinstance(invoice, module.Invoice)
    assert (invoice.number, invoice.issued, invoice.total) == ("INV-2041", date(2025, 3, 14), 44.5)
    assert [line.item for line in invoice.lines] == ["widget", "shipping"]
    assert "(2 turns;" in capsys.readouterr().out
