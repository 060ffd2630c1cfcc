"""Typed events of a run: what ``RLM.stream`` yields and what a trajectory holds.

Every event carries ``run_id`` (one per RLM run; a sub-RLM has its own, and its
``parent_run_id`` names the run that started it), ``depth`` (0 for the root), ``seq``
(order within the whole completion) and ``t`` (seconds since the completion started).
Sub-call events carry the ``turn`` and ``cell`` that made them, so a viewer can hang each
sub-call under the code that asked for it. Tool calls (``RLM(tools=...)``) carry them too.

Prompts and answers inside events are previews, capped at ``RLM(trajectory_preview_chars=...)``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

__all__ = [
    "TRAJECTORY_SCHEMA_VERSION",
    "AnswerRejected",
    "CellFinished",
    "CellStarted",
    "Compacted",
    "Event",
    "FinalAnswer",
    "ModelDelta",
    "ReplRestarted",
    "RunFailed",
    "RunFinished",
    "RunStarted",
    "SubCallFinished",
    "SubCallStarted",
    "ToolCallFinished",
    "ToolCallStarted",
    "TurnFinished",
    "TurnStarted",
    "event_adapter",
]

TRAJECTORY_SCHEMA_VERSION = 1


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True)

    run_id: str
    depth: int = 0
    seq: int = 0
    t: float = 0.0


class RunStarted(_Event):
    type: Literal["run_started"] = "run_started"
    parent_run_id: str | None = None
    parent_subcall: str | None = None
    model: str
    sub_model: str
    query: str
    context: str
    max_iterations: int
    max_depth: int
    session: str | None = None  # the session's id (``rlm.session``): links its completions
    session_turn: int | None = None  # which completion of the session (its query_N's N)


class TurnStarted(_Event):
    type: Literal["turn_started"] = "turn_started"
    turn: int
    final_turn: bool = False


class ModelDelta(_Event):
    """A piece of a root turn's text as the provider streams it (``RLM.stream`` only)."""

    type: Literal["model_delta"] = "model_delta"
    turn: int
    text: str


class TurnFinished(_Event):
    type: Literal["turn_finished"] = "turn_finished"
    turn: int
    model: str
    text: str
    input_tokens: int = 0  # the whole prompt, the two counts below included
    output_tokens: int = 0
    cached_tokens: int = 0  # read from the provider's prompt cache (billed at its rate)
    cache_write_tokens: int = 0  # written to it (Anthropic bills them above input)
    cost_usd: float | None = None
    latency: float = 0.0
    replayed: bool = False  # RLM.resume answered it from the trajectory: not paid again


class Compacted(_Event):
    """Before root turn ``turn``, the run's earlier turns were folded into a summary the root
    model wrote (its conversation had outgrown ``RLMOptions.compact_at``).

    ``kept_turns`` latest turns stayed word for word, with the first message (the query);
    ``summary`` is kept whole, as a turn's text is (a resume uses it again), and is capped by
    the engine. Tokens are estimates (4 characters a token); ``input_tokens``,
    ``output_tokens`` and ``cost_usd`` are the summary call's usage.
    """

    type: Literal["compacted"] = "compacted"
    turn: int
    model: str
    kept_turns: int
    messages_before: int
    messages_after: int
    tokens_before: int
    tokens_after: int
    summary: str
    input_tokens: int = 0  # the whole prompt, the two counts below included
    cached_tokens: int = 0  # read from the prompt cache: the turns before sent this prefix
    cache_write_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    latency: float = 0.0
    replayed: bool = False  # RLM.resume used the recorded summary: not paid again


class CellStarted(_Event):
    type: Literal["cell_started"] = "cell_started"
    turn: int
    cell: int
    code: str


class CellFinished(_Event):
    type: Literal["cell_finished"] = "cell_finished"
    turn: int
    cell: int
    output: str
    error: bool = False
    final: str | None = None
    duration: float = 0.0
    timed_out: bool = False
    restarted: bool = False


class SubCallStarted(_Event):
    type: Literal["subcall_started"] = "subcall_started"
    subcall: str
    turn: int
    cell: int
    kind: Literal["llm", "rlm"] = "llm"
    model: str
    prompt: str
    prompt_chars: int = 0


class SubCallFinished(_Event):
    type: Literal["subcall_finished"] = "subcall_finished"
    subcall: str
    turn: int
    cell: int
    kind: Literal["llm", "rlm"] = "llm"
    model: str
    ok: bool
    answer: str
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0  # of input_tokens, read from the provider's prompt cache
    cache_write_tokens: int = 0  # of input_tokens, written to it
    cost_usd: float | None = None
    latency: float = 0.0
    replayed: bool = False  # RLM.resume answered it from the trajectory: not paid again
    cached: bool = False  # the sub-call cache answered it (RLM(cache=...)): not paid
    # llm_query(..., schema=...): ``answer`` is the validated value's JSON (when ``ok``)
    structured: bool = False


class ToolCallStarted(_Event):
    """Model code called one of the application's tools (``RLM(tools=...)``)."""

    type: Literal["tool_call_started"] = "tool_call_started"
    call: str  # unique in the completion
    turn: int
    cell: int
    tool: str
    arguments: str  # the arguments as JSON (a preview)


class ToolCallFinished(_Event):
    """A tool call ended: its result (a preview, as JSON) or its error."""

    type: Literal["tool_call_finished"] = "tool_call_finished"
    call: str
    turn: int
    cell: int
    tool: str
    ok: bool
    result: str  # the value as JSON (a preview), or the error message
    error_type: str | None = None
    latency: float = 0.0
    replayed: bool = False  # RLM.resume answered it from the trajectory: not paid again


class ReplRestarted(_Event):
    type: Literal["repl_restarted"] = "repl_restarted"
    reason: str


class BudgetWarning(_Event):
    type: Literal["budget_warning"] = "budget_warning"
    budget: str
    used: float
    limit: float


class AnswerRejected(_Event):
    """An answer that did not match the completion's ``output_type``: sent back to the
    model (``retries_left`` more answers), or, at 0, the run ends with
    ``OutputValidationError``."""

    type: Literal["answer_rejected"] = "answer_rejected"
    turn: int
    answer: str  # a preview (``trajectory_preview_chars``)
    errors: list[dict[str, Any]] = Field(default_factory=list)  # ``loc``, ``msg``, ``type``
    retries_left: int = 0


class FinalAnswer(_Event):
    type: Literal["final_answer"] = "final_answer"
    answer: str
    source: Literal["code", "text", "variable", "forced", "last_reply"]
    output: Any = None  # with output_type: the validated answer, as JSON values


class RunFinished(_Event):
    type: Literal["run_finished"] = "run_finished"
    answer: str
    iterations: int
    elapsed: float
    usage: dict[str, Any] = Field(default_factory=dict)


class RunFailed(_Event):
    type: Literal["run_failed"] = "run_failed"
    error_type: str
    message: str


Event = Annotated[
    RunStarted
    | TurnStarted
    | ModelDelta
    | TurnFinished
    | Compacted
    | CellStarted
    | CellFinished
    | SubCallStarted
    | SubCallFinished
    | ToolCallStarted
    | ToolCallFinished
    | ReplRestarted
    | BudgetWarning
    | AnswerRejected
    | FinalAnswer
    | RunFinished
    | RunFailed,
    Field(discriminator="type"),
]
"""Any event of a run (a discriminated union on ``type``)."""

event_adapter: TypeAdapter[Event] = TypeAdapter(Event)
"""Validates an event from a dict or JSON (e.g. a trajectory line)."""
