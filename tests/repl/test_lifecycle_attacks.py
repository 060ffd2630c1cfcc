"""Adversarial cases 7, 16 and 17 of sandbox.md, through the real session."""

from __future__ import annotations

import os
import resource
import uuid
from typing import Literal

import anyio
import pytest

from rlm_async import RLM, ReplOptions, ReplSession, SandboxOptions
from rlm_async.testing import ScriptedModel
from tests.helpers import alive, child_pids

OUT_FD = "int(sys.argv[sys.argv.index('--out-fd') + 1])"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def test_a_gibibyte_written_to_stdout_is_capped_and_the_parent_stays_flat() -> None:
    """Case 7: 1 GiB to fd 1 -> the parent keeps head and tail, marks the cut, stays flat."""
    code = (
        "import os\n"
        "chunk = b'x' * (8 << 20)\n"
        "for _ in range(128):\n"
        "    os.write(1, chunk)\n"
        "print('still here')"
    )
    before = peak_rss_mib()
    async with ReplSession("", options=ReplOptions(output_limit=20_000)) as repl:
        result = await repl.execute(code)
    assert result.error is None
    assert result.stdout == "still here\n"
    assert len(result.process_output) < 21_000
    assert "1073721824 bytes truncated" in result.process_output
    assert peak_rss_mib() - before < 64, "the parent must not buffer what the child writes"


async def test_an_oversized_protocol_line_is_a_protocol_error_and_the_repl_restarts() -> None:
    """Case 16: a line past max_message_bytes on the protocol fd restarts the REPL."""
    code = f"import os, sys\nos.write({OUT_FD}, b'{{' * (2 << 20))\nimport time; time.sleep(30)"
    options = ReplOptions(max_message_bytes=1 << 20)
    async with ReplSession("ctx", options=options) as repl:
        result = await repl.execute(code)
        after = await repl.execute("context")
    assert result.restarted and result.state_lost
    assert result.error is not None and "longer than" in result.error
    assert after.stdout == "'ctx'\n"


async def test_closing_the_protocol_fd_is_a_crash_and_the_repl_restarts() -> None:
    """Case 16: model code closing its own protocol pipe is detected like a crash."""
    code = f"import os, sys\nos.close({OUT_FD})\nimport time; time.sleep(30)"
    async with ReplSession("ctx", options=ReplOptions(cell_timeout=20)) as repl:
        result = await repl.execute(code)
        after = await repl.execute("context")
    assert result.restarted
    assert after.stdout == "'ctx'\n"


@pytest.mark.parametrize("bwrap", ["always", "never"])
async def test_a_setsid_grandchild_cannot_keep_a_cancelled_run_waiting_or_alive(
    bwrap: Literal["always", "never"],
) -> None:
    """Case 17: a grandchild in a process group of its own (setsid is refused) holding the
    pipes; cancelling is bounded, none survive.

    With bubblewrap its pid namespace ends them; without it, the REPL child is their
    subreaper and the parent kills its whole tree before the child itself.
    """
    # A duration of this test's own, so another run's `sleep` on the machine never counts.
    marker = f"{300 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6}"
    code = (
        "import subprocess\n"
        f"p = subprocess.Popen(['sleep', '{marker}'], process_group=0, pass_fds=(1, 2))\n"
        "print(p.pid, flush=True)\n"
        "import time; time.sleep(300)"
    )
    started = anyio.Event()

    def script(request: object) -> str:
        started.set()
        return f"```repl\n{code}\n```"

    sandbox = SandboxOptions(allow_subprocess=True, bwrap=bwrap)
    before = child_pids()
    async with RLM(model=ScriptedModel(script), sandbox=sandbox) as rlm:
        with anyio.fail_after(10):  # bounded: a hung close fails the test here
            async with anyio.create_task_group() as tg:
                tg.start_soon(rlm.completion, "abc", "q")
                await started.wait()
                await anyio.sleep(0.5)  # let the cell start its grandchild
                spawned = child_pids() - before
                tg.cancel_scope.cancel()
    assert spawned
    assert not any(alive(pid) for pid in spawned)
    # No `sleep` of ours survives anywhere (it ran in the REPL's pid namespace or session).
    survivors = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    if handle.read() == f"sleep\x00{marker}\x00".encode():
                        survivors.append(pid)
            except OSError:
                continue
    assert survivors == []
