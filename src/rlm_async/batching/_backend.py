"""What the batch loop needs of whatever runs its rows: local processes or a Ray cluster."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from rlm_async.batching._rows import Job

__all__ = ["Backend", "Outcome"]


@dataclass(frozen=True)
class Outcome:
    """A row that left the backend: its output row, or ``None`` and why it was lost.

    A lost row (its worker died under it) may be dispatched again; a row whose completion
    failed is not lost: its output row carries the error.
    """

    job: Job
    row: dict[str, Any] | None
    lost: str | None = None


class Backend(Protocol):
    """Runs rows, many at once, and hands them back in order of completion."""

    @property
    def description(self) -> str:
        """What runs the rows, for the summary (``"2 local processes x 8 rows"``)."""
        ...

    async def start(self) -> None:
        """Make the workers ready (each with an open ``RLM``)."""
        ...

    def has_room(self) -> bool:
        """Whether a worker can take another row now."""
        ...

    def alive(self) -> bool:
        """Whether any worker is left."""
        ...

    async def wait_for_room(self) -> None:
        """With no row in flight: wait until a worker can take one, or none is left."""
        ...

    async def submit(self, job: Job) -> None:
        """Dispatch ``job`` to a worker with room."""
        ...

    async def next_outcome(self) -> Outcome:
        """The next row to finish, in order of completion."""
        ...

    async def aclose(self) -> None:
        """Stop the workers and release what the backend holds."""
        ...
