"""A budget for a whole session (``rlm.session(context, budget=...)``), across its completions.

Each completion of a session runs under its own ``Budget`` (the ``RLM``'s, or the one given to
that completion), tightened to what the session's budget has left: tokens, dollars, seconds,
sub-calls and tool calls are summed over the session's completions; ``max_live_repls`` and
``max_prompt_chars`` hold for each completion as they are. A completion that would start with
no tokens, dollars or seconds left is refused before anything is sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rlm_async._exceptions import BudgetExceeded, ConfigurationError
from rlm_async.engine._budget import Budget, BudgetTracker

__all__ = ["SessionBudget"]

# What a session's completions spend together (a field of Budget each).
_SUMMED = ("max_tokens", "max_cost_usd", "max_seconds", "max_subcalls", "max_tool_calls")
# Without any of these left, a completion cannot make a single model call: refused at once.
_NEEDED_TO_START = ("max_tokens", "max_cost_usd", "max_seconds")
_PER_COMPLETION = ("max_live_repls", "max_prompt_chars")


@dataclass
class SessionBudget:
    """What a session may spend in all, and what its completions have spent so far.

    Args:
        budget: The session's limits (``None`` fields: no limit).
    """

    budget: Budget
    spent: dict[str, float] = field(default_factory=lambda: dict.fromkeys(_SUMMED, 0))

    @classmethod
    def of(cls, budget: Budget | None) -> SessionBudget | None:
        """The session's budget from ``rlm.session(budget=...)``.

        Raises:
            ConfigurationError: not a ``Budget``.
        """
        if budget is None:
            return None
        if not isinstance(budget, Budget):
            raise ConfigurationError(
                f"a session's budget must be a Budget, not {type(budget).__name__}: "
                "rlm.session(context, budget=Budget(max_cost_usd=...))"
            )
        return cls(budget)

    def for_completion(self, own: Budget) -> tuple[Budget, set[str]]:
        """The budget a completion runs under: its own, tightened to what is left of the
        session's; and the names of the limits the session's budget set.

        Raises:
            BudgetExceeded: the session has no tokens, dollars or seconds left (no partial).
        """
        changes: dict[str, Any] = {}
        for name in _SUMMED:
            limit = getattr(self.budget, name)
            if limit is None:
                continue
            left = limit - self.spent[name]
            if name in _NEEDED_TO_START and left <= 0:
                raise BudgetExceeded(
                    f"the session's budget {name}={limit:g} is spent "
                    f"({self.spent[name]:g} by its completions so far); start a new session, "
                    "or give this one a larger budget",
                    budget=name,
                )
            left = max(left, 0)
            if isinstance(limit, int):
                left = int(left)
            mine = getattr(own, name)
            if mine is None or left < mine:
                changes[name] = left
        for name in _PER_COMPLETION:
            limit, mine = getattr(self.budget, name), getattr(own, name)
            if limit is not None and (mine is None or limit < mine):
                changes[name] = limit
        if not changes:
            return own, set()
        return own.model_copy(update=changes), set(changes)

    def recorder(self) -> Callable[[BudgetTracker], None]:
        """What a completion starting now is given as ``on_spent``: at its end, what it
        spent (its tracker, and the seconds since now) is added to the session's."""
        started = time.perf_counter()
        return lambda tracker: self.spend(tracker, time.perf_counter() - started)

    def spend(self, tracker: BudgetTracker, seconds: float) -> None:
        """Add what one completion spent (``tracker``: its budget's live state)."""
        self.spent["max_tokens"] += tracker.usage.total_tokens
        self.spent["max_cost_usd"] += tracker.usage.cost_usd or 0.0
        self.spent["max_seconds"] += seconds
        self.spent["max_subcalls"] += tracker.subcalls
        self.spent["max_tool_calls"] += tracker.tool_calls

    def explain(self, error: BudgetExceeded, chosen_by_session: set[str]) -> None:
        """Say in ``error``'s message that the limit it hit was what the session had left."""
        if error.budget in chosen_by_session:
            limit = getattr(self.budget, error.budget)
            error.args = (
                f"{error} (what was left of the session's budget {error.budget}={limit:g})",
            )
