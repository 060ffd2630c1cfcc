"""One budget for the whole tree of a completion, checked before work is dispatched.

A batch of sub-calls that would exceed what is left (sub-calls, or tokens estimated from
the prompts' characters) is refused as a whole, with a message the model reads, rather
than half-spent. Spending that is only known afterwards (output tokens, cost) is checked
after every call; when it is over, the run ends with :class:`BudgetExceeded`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import Field

from rlm_async._exceptions import BudgetExceeded
from rlm_async._options import OptionsModel
from rlm_async._tokens import estimate_tokens
from rlm_async._types import UsageSummary

__all__ = ["Budget", "BudgetTracker", "estimate_tokens"]


class Budget(OptionsModel):
    """Limits for one completion, sub-RLMs included. ``None`` means no limit.

    Attributes:
        max_tokens: Input plus output tokens of every call.
        max_cost_usd: Dollars, from the price table (calls of unpriced models count 0).
        max_seconds: Wall time of the whole completion.
        max_subcalls: Sub-calls (``llm_query`` prompts and sub-RLMs) in total.
        max_live_repls: REPL processes alive at once (the root's included).
        max_prompt_chars: The longest prompt code may send in one sub-call.
        max_tool_calls: Calls of the application's tools (``RLM(tools=...)``) in total; a
            call past it is refused with an error model code reads, not sent to the tool.
        warn_at: Fraction of a budget at which a ``BudgetWarning`` event is emitted.
    """

    max_tokens: int | None = Field(default=None, gt=0)
    max_cost_usd: float | None = Field(default=None, gt=0)
    max_seconds: float | None = Field(default=None, gt=0)
    max_subcalls: int | None = Field(default=None, ge=0)
    max_live_repls: int | None = Field(default=None, ge=1)
    max_prompt_chars: int | None = Field(default=2_000_000, gt=0)
    max_tool_calls: int | None = Field(default=None, ge=0)
    warn_at: float = Field(default=0.8, gt=0, le=1)


@dataclass
class BudgetTracker:
    """The budget's live state for one completion tree (single event loop: no locks needed)."""

    budget: Budget
    usage: UsageSummary
    reserved_tokens: int = 0
    subcalls: int = 0
    live_repls: int = 0
    tool_calls: int = 0
    warned: set[str] = field(default_factory=set)

    def refuse_batch(self, prompt_chars: list[int], output_tokens: int) -> str | None:
        """Reserve a batch of sub-calls, or say why it is refused (nothing is reserved then).

        Args:
            prompt_chars: The length of each prompt.
            output_tokens: Output tokens to reserve per call (the sub-call token limit, or 0).
        """
        budget = self.budget
        count = len(prompt_chars)
        if budget.max_prompt_chars is not None:
            longest = max(prompt_chars, default=0)
            if longest > budget.max_prompt_chars:
                return (
                    f"budget: a prompt of {longest:,} characters is over the limit of "
                    f"{budget.max_prompt_chars:,}; split it into smaller pieces"
                )
        if budget.max_subcalls is not None and self.subcalls + count > budget.max_subcalls:
            left = budget.max_subcalls - self.subcalls
            return (
                f"budget: this batch of {count} sub-calls would exceed the sub-call budget "
                f"({left} of {budget.max_subcalls} left); nothing was sent. Use fewer, larger "
                "chunks, or answer from what you have."
            )
        estimate = sum(estimate_tokens(c) for c in prompt_chars) + count * output_tokens
        if budget.max_tokens is not None:
            left = budget.max_tokens - self.usage.total_tokens - self.reserved_tokens
            if estimate > left:
                return (
                    f"budget: this batch needs about {estimate:,} tokens but {max(left, 0):,} of "
                    f"{budget.max_tokens:,} are left; nothing was sent. Send less text, or "
                    "answer from what you have."
                )
        if budget.max_cost_usd is not None and self._cost() >= budget.max_cost_usd:
            return f"budget: the cost budget of ${budget.max_cost_usd:.4f} is spent"
        self.subcalls += count
        self.reserved_tokens += estimate
        return None

    def settle(self, reserved: int) -> None:
        """A reserved call finished (its real usage is already in ``usage``)."""
        self.reserved_tokens = max(self.reserved_tokens - reserved, 0)

    def check_root_turn(self, prompt_chars: int) -> None:
        """Before a root turn: is there room for its prompt?"""
        if self.budget.max_tokens is None:
            return
        needed = estimate_tokens(prompt_chars)
        left = self.budget.max_tokens - self.usage.total_tokens - self.reserved_tokens
        if needed > left:
            raise BudgetExceeded(
                f"the token budget ({self.budget.max_tokens:,}) has no room for the next root "
                f"turn (about {needed:,} tokens, {max(left, 0):,} left)",
                budget="max_tokens",
            )

    def check_spent(self) -> None:
        """After a call: raise if what was spent is over a budget."""
        budget = self.budget
        if budget.max_tokens is not None and self.usage.total_tokens > budget.max_tokens:
            raise BudgetExceeded(
                f"the token budget ({budget.max_tokens:,}) is spent "
                f"({self.usage.total_tokens:,} tokens used)",
                budget="max_tokens",
            )
        if budget.max_cost_usd is not None and (cost := self._cost()) > budget.max_cost_usd:
            raise BudgetExceeded(
                f"the cost budget (${budget.max_cost_usd:.4f}) is spent (${cost:.4f})",
                budget="max_cost_usd",
            )

    def warnings(self) -> list[tuple[str, float, float]]:
        """Budgets that just crossed ``warn_at``: (name, used, limit), each reported once.

        Called after every model call: usage is summed only for the budgets that are set
        and not warned about yet (none, most of the time).
        """
        budget = self.budget
        found: list[tuple[str, float, float]] = []
        for name, limit, used in (
            ("max_tokens", budget.max_tokens, self._tokens_used),
            ("max_cost_usd", budget.max_cost_usd, self._cost),
            ("max_subcalls", budget.max_subcalls, self._subcalls_made),
        ):
            if not limit or name in self.warned:
                continue
            spent = used()
            if spent >= budget.warn_at * limit:
                self.warned.add(name)
                found.append((name, float(spent), float(limit)))
        return found

    def acquire_repl(self) -> str | None:
        """Count a new REPL process, or say why there is no room for one."""
        limit = self.budget.max_live_repls
        if limit is not None and self.live_repls >= limit:
            return (
                f"budget: {limit} REPL processes are already running for this completion "
                "(max_live_repls); wait for sub-RLMs to finish or use llm_query"
            )
        self.live_repls += 1
        return None

    def acquire_tool_call(self, name: str) -> str | None:
        """Count one tool call, or say why it is refused (nothing is counted then)."""
        limit = self.budget.max_tool_calls
        if limit is not None and self.tool_calls >= limit:
            return (
                f"budget: all {limit} tool calls of this completion are spent "
                f"(max_tool_calls); {name}() was not called. Answer with what you have."
            )
        self.tool_calls += 1
        return None

    def release_repl(self) -> None:
        self.live_repls = max(self.live_repls - 1, 0)

    def _cost(self) -> float:
        return self.usage.cost_usd or 0.0

    def _tokens_used(self) -> int:
        return self.usage.total_tokens

    def _subcalls_made(self) -> int:
        return self.subcalls
