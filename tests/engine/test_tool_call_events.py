"""Tool call and sub-call events on the result: capped, and named by the parent."""

from __future__ import annotations

import json

import pytest

from rlm_async import RLM, ReplOptions, SandboxOptions
from rlm_async import events as ev
from rlm_async.testing import ScriptedModel
from tests.helpers import repl

OUT_FD = "int(sys.argv[sys.argv.index('--out-fd') + 1])"
REPL_OPTIONS = ReplOptions(sandbox=SandboxOptions(bwrap="never"))


def echo(a: int) -> int:
    """Return a."""
    return a


async def test_tool_calls_past_the_cap_are_counted_not_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A cell can call a tool 20,000 times: 40,000 events kept on the result, unless they are
    # counted past the cap like sub-calls. Listeners still see all of them.
    import rlm_async.engine._state

    monkeypatch.setattr(rlm_async.engine._state, "MAX_KEPT_EVENTS", 10)
    root = ScriptedModel([repl("print(sum(echo(i) for i in range(20)))"), "FINAL(x)"])
    seen: list[ev.Event] = []
    async with RLM(model=root, tools=[echo], repl=REPL_OPTIONS, on_event=seen.append) as rlm:
        result = await rlm.completion("text", "q")
    kept = [e for e in result.trajectory if isinstance(e, ev.ToolCallStarted | ev.ToolCallFinished)]
    every = [e for e in seen if isinstance(e, ev.ToolCallStarted | ev.ToolCallFinished)]
    assert len(every) == 40
    assert len(kept) < 40
    assert result.metadata["trajectory_dropped"] == len(seen) - len(result.trajectory)
    assert isinstance(result.trajectory[-1], ev.RunFinished)
    assert any(isinstance(e, ev.CellFinished) for e in result.trajectory)


def forged_call(request_id: int, value: int) -> str:
    """Model code writing a tool request of its own, under an id it chose."""
    line = json.dumps(
        {"type": "tool_request", "id": request_id, "name": "echo", "args": [value], "keywords": {}}
    )
    return (
        "import os, sys, json\n"
        f"_line = json.loads({line!r})\n"
        "_line['cell'] = llm_query.__self__.current_cell\n"
        f"os.write({OUT_FD}, json.dumps(_line).encode() + b'\\n')\n"
    )


async def test_call_ids_are_the_parents_not_the_childs() -> None:
    """The child reusing a request id (one after the other, never two in flight) does not
    make two calls of the trajectory one: call ids are numbered by the parent."""
    code = (
        forged_call(1_000_001, 1)
        + "echo(2)\n"
        + forged_call(1_000_001, 3)
        + "echo(4)\n"
        + "print('done')"
    )
    root = ScriptedModel([repl(code), "FINAL(x)"])
    async with RLM(model=root, tools=[echo], repl=REPL_OPTIONS) as rlm:
        result = await rlm.completion("text", "q")
    started = [e.call for e in result.trajectory if isinstance(e, ev.ToolCallStarted)]
    finished = [e.call for e in result.trajectory if isinstance(e, ev.ToolCallFinished)]
    assert len(started) >= 3  # the cell's own two, and at least one forged
    assert len(set(started)) == len(started)
    assert sorted(finished) == sorted(started)
    assert not any(call.endswith(".1000001") for call in started)


def forged_llm_request(request_id: int, prompt: str) -> str:
    """Model code writing a sub-call request of its own, under an id it chose."""
    line = json.dumps({"type": "llm_request", "id": request_id, "prompts": [prompt]})
    return (
        "import os, sys, json\n"
        f"_line = json.loads({line!r})\n"
        "_line['cell'] = llm_query.__self__.current_cell\n"
        f"os.write({OUT_FD}, json.dumps(_line).encode() + b'\\n')\n"
    )


async def test_subcall_ids_are_the_parents_not_the_childs() -> None:
    """The same for sub-calls: a reused request id does not make two sub-calls one."""
    code = (
        forged_llm_request(1_000_001, "a")
        + "llm_query('b')\n"
        + forged_llm_request(1_000_001, "c")
        + "llm_query('d')\n"
        + "print('done')"
    )
    root = ScriptedModel([repl(code), "FINAL(x)"])
    sub = ScriptedModel(lambda request: "ok")
    async with RLM(model=root, sub_model=sub, repl=REPL_OPTIONS) as rlm:
        result = await rlm.completion("text", "q")
    started = [e.subcall for e in result.trajectory if isinstance(e, ev.SubCallStarted)]
    assert len(started) >= 3  # the cell's own two, and at least one forged
    assert len(set(started)) == len(started)
    assert not any(".1000001." in call for call in started)
