"""What a cell's outcome (``CellRun.run``) says: the child's result, capped, or why the REPL
was lost and has to be restarted."""

from __future__ import annotations

from rlm_async._text import cap_middle
from rlm_async.repl._cell_result import CellResult
from rlm_async.repl._protocol import ResultMessage

__all__ = ["lost_cell_reason", "lost_cell_result", "result_from_child"]


def result_from_child(
    outcome: ResultMessage,
    *,
    cell: int,
    output_limit: int,
    process_output: str,
    duration: float,
    timed_out: bool,
) -> CellResult:
    """The ``CellResult`` of a cell the child answered."""
    # The child caps its own output, but the line is the child's to write: a
    # forged one must not carry 400 MB into the trajectory and the events.
    cap = output_limit + 200  # room for the child's own marker
    return CellResult(
        cell=cell,
        stdout=cap_middle(outcome.stdout, cap),
        stderr=cap_middle(outcome.stderr, cap),
        error=None if outcome.error is None else cap_middle(outcome.error, cap),
        final=outcome.final,
        final_chars=outcome.final_chars,
        final_json=outcome.final_json,
        process_output=process_output,
        duration=duration,
        timed_out=timed_out,
    )


def lost_cell_reason(outcome: str | None, *, limit: float, interrupt_grace: float) -> str:
    """Why the REPL is restarted after a cell the child did not answer (``None``: killed)."""
    if outcome is None:
        return (
            f"the cell ran past its {limit:g} s limit and did not stop within "
            f"{interrupt_grace:g} s of being interrupted, "
            "so the REPL was killed"
        )
    return outcome


def lost_cell_result(
    reason: str, *, cell: int, process_output: str, duration: float, timed_out: bool
) -> CellResult:
    """The ``CellResult`` of a cell whose REPL was lost (and restarted): its state is gone."""
    return CellResult(
        cell=cell,
        error=f"[{reason}]",
        process_output=process_output,
        duration=duration,
        timed_out=timed_out,
        restarted=True,
        state_lost=True,
    )
