"""Small helpers shared by tests."""

from __future__ import annotations

import glob
import os


def child_pids() -> set[int]:
    """Pids of this process's direct children (Linux /proc)."""
    pids: set[int] = set()
    for path in glob.glob(f"/proc/{os.getpid()}/task/*/children"):
        try:
            with open(path) as handle:
                pids.update(int(p) for p in handle.read().split())
        except OSError:
            continue
    return pids


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def repl(code: str) -> str:
    """A root-model reply with one ```repl block."""
    return f"Let me run some code.\n```repl\n{code}\n```"
