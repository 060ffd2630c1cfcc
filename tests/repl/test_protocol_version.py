"""Both sides check the protocol version, and the parent's messages are typed too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlm_async import ReplOptions, ReplProtocolError
from rlm_async.repl._protocol import (
    PROTOCOL_VERSION,
    FatalMessage,
    LLMResponse,
    SubCallResult,
    decode_child_message,
    encode_message,
)
from rlm_async.repl._start import make_work_dir, remove_work_dir, start_child

CHILD = Path(__file__).parents[2] / "src" / "rlm_async" / "repl" / "child" / "_child.py"


def test_the_child_refuses_a_parent_of_another_protocol_version(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"protocol_version": PROTOCOL_VERSION - 1}))
    to_child, from_parent = os.pipe()
    from_child, to_parent = os.pipe()
    done = subprocess.run(
        [sys.executable, "-I", str(CHILD), "--in-fd", str(to_child),
         "--out-fd", str(to_parent), "--config", str(config)],
        pass_fds=(to_child, to_parent), timeout=30, capture_output=True, check=False,
    )  # fmt: skip
    os.close(to_parent)
    with os.fdopen(from_child, "rb") as lines:
        line = lines.readline()
    for fd in (to_child, from_parent):
        os.close(fd)
    message = decode_child_message(line)
    assert done.returncode == 3
    assert isinstance(message, FatalMessage)
    assert message.kind == "protocol_version"


def fake_interpreter(tmp_path: Path, line: dict[str, object]) -> str:
    """An "interpreter" that answers the start with one line, as a child of another
    install would."""
    path = tmp_path / "python"
    path.write_text(
        f"#!{sys.executable}\n"
        "import os, sys\n"
        "args = sys.argv\n"
        "out_fd = int(args[args.index('--out-fd') + 1])\n"
        f"os.write(out_fd, {json.dumps(line).encode()!r} + b'\\n')\n"
    )
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize(
    "line",
    [
        {"type": "ready", "version": PROTOCOL_VERSION + 1, "pid": 1},
        {"type": "fatal", "error": "the parent speaks 1", "kind": "protocol_version"},
    ],
)
async def test_the_parent_refuses_a_child_of_another_protocol_version(
    tmp_path: Path, line: dict[str, object]
) -> None:
    options = ReplOptions(python=fake_interpreter(tmp_path, line), sandbox=None, start_timeout=30)
    work_dir = make_work_dir()
    try:
        with pytest.raises(ReplProtocolError, match="reinstall rlm-async"):
            await start_child(options, work_dir)
    finally:
        await remove_work_dir(work_dir)


def test_sub_call_results_are_typed_on_the_wire() -> None:
    message = LLMResponse(
        id=4, results=[SubCallResult.answer("hi"), SubCallResult.failure("budget")]
    )
    assert json.loads(encode_message(message)) == {
        "type": "llm_response",
        "id": 4,
        "results": [
            {"ok": True, "text": "hi", "unfinished": False},
            {"ok": False, "error": "budget", "unfinished": False},
        ],
    }
