"""``ReplOptions``: how the REPL child runs (time limits, output caps, sandbox).

A module of its own so that the session, the warm pool and the start-up code can all take
it without importing each other.
"""

from __future__ import annotations

import sys

from pydantic import ConfigDict, Field

from rlm_async._options import OptionsModel
from rlm_async.repl._pipes import DEFAULT_WRITE_TIMEOUT
from rlm_async.repl._sandbox_options import SandboxOptions

__all__ = ["ReplOptions"]


class ReplOptions(OptionsModel):
    """How the REPL child runs.

    Attributes:
        cell_timeout: Seconds a cell may run before it is interrupted (SIGINT, state kept).
        interrupt_grace: Seconds after the interrupt before the child is killed and
            restarted (state lost, context reloaded).
        start_timeout: Seconds the child may take to start and load the context.
        output_limit: Characters of a cell's stdout (and, separately, stderr) kept; the
            middle of longer output is dropped with a marker.
        max_answer_chars: Characters of a final answer kept (``FINAL``, ``FINAL_VAR``, or
            a ``FINAL(...)`` line of text); the middle of a longer one is dropped with a
            marker, in the child before it is sent, and
            ``result.metadata["answer_truncated"]`` says so.
        max_message_bytes: The longest protocol line accepted from the child; a longer
            one is a protocol violation (the REPL is restarted). What crosses the pipe is
            capped cell output, the final answer, and sub-call prompts and ``rlm_query``
            contexts: raise it for batches or sub-contexts larger than the default 64 MiB.
        write_timeout: Seconds a message to the child (a cell, a sub-call's answer, an
            interrupt) may take to be written. The child reads in a thread of its own,
            so one that does not read for that long is hung: killed and restarted.
        max_restarts: Restarts allowed per session before ``ReplCrashed`` is raised.
        python: The interpreter for the child (default: the parent's).
        env: Extra environment variables for the child. Nothing else of the parent's
            environment reaches it (no API keys).
        sandbox: Sandbox settings (``SandboxOptions()`` by default: rlimits, Landlock,
            seccomp, no root, bwrap when it works); ``None`` runs the child with the
            always-on protections only (allow-listed environment, private work dir, own
            session), which is not a security boundary.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    cell_timeout: float = Field(default=120.0, gt=0)
    interrupt_grace: float = Field(default=3.0, ge=0)
    start_timeout: float = Field(default=30.0, gt=0)
    output_limit: int = Field(default=20_000, ge=100)
    max_answer_chars: int = Field(default=1_000_000, ge=100)
    # 64 MiB: a cell's output is capped in the child (output_limit characters, at most 6
    # ASCII bytes each once JSON-escaped: ~0.4 MB for stdout, stderr and error) and so is
    # the final answer (max_answer_chars, ~6-12 MB escaped at the default). The largest
    # legitimate lines are sub-call requests: an llm_query_batched over chunks of the
    # whole context is one line about the context's size (43 MiB for the demo's million
    # lines), and rlm_query sub-contexts. The parent holds at most about twice this
    # while reading and decoding one line; decoding holds the loop (decoders hold the
    # GIL, so a thread would not help): ~0.4 s for 30 MB of small JSON items, far less
    # for text. The old 512 MiB meant ~1 GiB and seconds of stall for one hostile line.
    max_message_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    write_timeout: float = Field(default=DEFAULT_WRITE_TIMEOUT, gt=0)
    max_restarts: int = Field(default=5, ge=0)
    python: str = sys.executable
    env: dict[str, str] = Field(default_factory=dict)
    sandbox: SandboxOptions | None = Field(default_factory=SandboxOptions)
