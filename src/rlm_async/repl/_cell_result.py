"""``CellResult``: what one cell of a REPL session did, and how the model reads it."""

from __future__ import annotations

from pydantic import BaseModel

__all__ = ["CellResult"]


class CellResult(BaseModel):
    """What one cell did.

    Attributes:
        cell: The cell's number in this session (1, 2, ...).
        stdout: What the cell printed (capped, head and tail kept).
        stderr: What it wrote to ``sys.stderr``.
        error: A traceback of the model's code, or what happened to the process.
        final: The answer given with ``FINAL(...)`` / ``FINAL_VAR(...)`` in this cell
            (capped at ``max_answer_chars``).
        final_chars: The answer's length before that cap, when it was capped.
        final_json: ``final`` is the JSON text of the dict, list or dataclass given to
            ``FINAL`` (a typed answer's value).
        process_output: Output written to fds 1/2 directly (``os.write``, ``os.system``).
        duration: Seconds the cell took.
        timed_out: The cell ran past its time limit.
        restarted: The child was restarted after this cell (crash, kill or protocol error).
        state_lost: Variables from earlier cells are gone (``context`` was reloaded).
    """

    cell: int
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    final: str | None = None
    final_chars: int | None = None
    final_json: bool = False
    process_output: str = ""
    duration: float = 0.0
    timed_out: bool = False
    restarted: bool = False
    state_lost: bool = False

    def render(self) -> str:
        """The cell's output as the model reads it."""
        parts: list[str] = []
        if self.stdout:
            parts.append(self.stdout.rstrip("\n"))
        if self.stderr:
            parts.append("[stderr]\n" + self.stderr.rstrip("\n"))
        if self.process_output:
            parts.append("[process output]\n" + self.process_output.rstrip("\n"))
        if self.error:
            parts.append(self.error.rstrip("\n"))
        if self.state_lost:
            parts.append(
                "[The REPL process was restarted: every variable from earlier cells is lost. "
                "`context` and the functions were loaded again.]"
            )
        return "\n".join(parts) if parts else "[no output]"
