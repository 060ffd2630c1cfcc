"""Data types shared by the engine, the providers and users: messages, usage, results."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Completion",
    "Message",
    "ModelUsage",
    "RLMResult",
    "Usage",
    "UsageSummary",
]

Role = Literal["system", "user", "assistant"]


class Message(BaseModel):
    """One chat message."""

    model_config = ConfigDict(frozen=True)

    role: Role
    content: str


class Usage(BaseModel):
    """Token usage of one model call, normalised across providers.

    ``output_tokens`` includes reasoning tokens on every provider (xAI and Gemini report
    them separately; the adapters add them back), so ``input_tokens + output_tokens`` is
    what is billed. ``input_tokens`` is the whole prompt: ``cached_tokens`` (read from the
    provider's prompt cache) and ``cache_write_tokens`` (written to it, which Anthropic
    bills above the input rate) are parts of it.
    """

    model_config = ConfigDict(frozen=True)

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class Completion(BaseModel):
    """The result of one plain model call (``llm_complete``, a root turn, a sub-call)."""

    text: str
    finish_reason: str | None = None
    usage: Usage = Field(default_factory=Usage)
    model: str
    provider: str
    request_id: str | None = None


class ModelUsage(BaseModel):
    """Usage of one model summed over a run."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = None

    def add(self, usage: Usage) -> None:
        self.calls += 1
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.cached_tokens += usage.cached_tokens
        self.reasoning_tokens += usage.reasoning_tokens
        self.cache_write_tokens += usage.cache_write_tokens
        if usage.cost_usd is not None:
            self.cost_usd = (self.cost_usd or 0.0) + usage.cost_usd


class UsageSummary(BaseModel):
    """Usage of a whole run, per model (``"provider:model"``) and per recursion depth.

    Every call's usage is recorded from its own response, so totals are exact under
    any amount of concurrency.
    """

    models: dict[str, ModelUsage] = Field(default_factory=dict)
    depths: dict[int, ModelUsage] = Field(default_factory=dict)

    def record(self, model: str, usage: Usage, *, depth: int = 0) -> None:
        """Add one call's usage."""
        self.models.setdefault(model, ModelUsage()).add(usage)
        self.depths.setdefault(depth, ModelUsage()).add(usage)

    @property
    def calls(self) -> int:
        return sum(m.calls for m in self.models.values())

    @property
    def input_tokens(self) -> int:
        return sum(m.input_tokens for m in self.models.values())

    @property
    def output_tokens(self) -> int:
        return sum(m.output_tokens for m in self.models.values())

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def cost_usd(self) -> float | None:
        """Total cost in USD, or ``None`` when no call was priced."""
        costs = [m.cost_usd for m in self.models.values() if m.cost_usd is not None]
        return sum(costs) if costs else None

    def __getitem__(self, model: str) -> ModelUsage:
        return self.models[model]

    def __str__(self) -> str:
        cost = f", ${self.cost_usd:.4f}" if self.cost_usd is not None else ""
        per = "; ".join(
            f"{name}: {m.calls} calls, {m.input_tokens} in / {m.output_tokens} out"
            for name, m in self.models.items()
        )
        return f"{self.calls} calls, {self.total_tokens} tokens{cost} ({per})"


class RLMResult(BaseModel):
    """What ``RLM.completion`` returns.

    Attributes:
        answer: The final answer.
        iterations: Root turns taken (the last "give your answer now" turn included).
        usage: Tokens and cost per model and per depth.
        elapsed: Wall time of the run in seconds.
        trajectory: Every event of the run, in order (see ``rlm_async.events``); past
            20,000 events, sub-call and text-delta events are counted in
            ``metadata["trajectory_dropped"]`` instead of kept (listeners and trajectory
            files get them all).
        metadata: Facts about the run: REPL restarts, sandbox layers, sub-call count, and
            ``answer_source``: how the answer came (``"code"``/``"text"``/``"variable"``:
            a FINAL; ``"forced"``: FINAL in the last turn after ``max_iterations``;
            ``"last_reply"``: no FINAL, a bare value in the last reply; ``None``: no
            answer), and ``answer_truncated`` when the answer was capped (see the README,
            "How answers are extracted").
        finished: ``False`` when a budget ended the run and the caller asked for a
            result instead of ``BudgetExceeded``, or when the last turns gave code and
            no answer (``answer`` is then empty).
        output: With ``output_type``: the answer validated as that type (a model
            instance, a dataclass, a list...; ``None`` when the run gave no answer).
            ``None`` without one. ``answer`` stays the text.
    """

    answer: str
    iterations: int
    usage: UsageSummary
    elapsed: float
    trajectory: list[Any] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    finished: bool = True
    output: Any = None

    def __str__(self) -> str:
        return self.answer
