"""The native endpoints' wire mapping: ``POST /v1/rlm`` and ``POST /v1/rlm/stream``.

Request::

    {"context": "..." | [...] | {...}, "query": "...", "options": {"max_iterations": 5},
     "output_schema": {"type": "object", ...}}

Response of ``/v1/rlm``::

    {"id": "<run id>", "object": "rlm.result", "answer": "...", "finished": true,
     "stop_reason": "final_answer", "budget": null, "iterations": 3, "elapsed": 4.2,
     "usage": {"calls": .., "input_tokens": .., "output_tokens": .., "total_tokens": ..,
               "cost_usd": .., "models": {"openai:gpt-5": {...}}, "depths": {"0": {...}}},
     "trajectory_id": "<run id>", "subcalls": 100, "repl_warm": true, "output": null}

With ``output_schema`` (a JSON schema), the answer must match it: ``output`` is the
validated JSON value and ``answer`` its JSON text (see ``RLM.completion(output_type=...)``).

``/v1/rlm/stream`` (or ``/v1/rlm?stream=true``) answers with server-sent events, one per
event of the run: ``event: <type>`` and ``data: <the event as JSON>`` (see
``rlm_async.events``); a failure after the stream started ends it with ``event: error``
and an OpenAI-shaped error as data.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rlm_async._types import RLMResult
from rlm_async.server._options import RunOptions
from rlm_async.server._output_schema import answer_text

__all__ = ["RLMRequest", "result_body", "run_id_of"]


class RLMRequest(BaseModel):
    """The body of ``POST /v1/rlm``.

    Attributes:
        context: The context: a string, a list (of strings, JSON values or chat
            messages) or an object.
        query: The question.
        options: Per-request options that tighten the server's limits (``RunOptions``).
        stream: Answer with server-sent events (same as ``/v1/rlm/stream``).
        output_schema: A JSON schema the answer must match (the run's ``output_type``).
    """

    model_config = ConfigDict(extra="forbid")

    context: str | list[Any] | dict[str, Any]
    query: str = Field(min_length=1)
    options: RunOptions | None = None
    stream: bool = False
    output_schema: dict[str, Any] | None = None


def run_id_of(result: RLMResult) -> str | None:
    """The root run's id (also the trajectory's id), from the result or its events."""
    run_id = result.metadata.get("run_id")
    if isinstance(run_id, str):
        return run_id
    for event in result.trajectory:
        if getattr(event, "depth", None) == 0:
            found = getattr(event, "run_id", None)
            return found if isinstance(found, str) else None
    return None


def result_body(
    result: RLMResult, *, budget: str | None = None, typed: bool = False
) -> dict[str, Any]:
    """The ``/v1/rlm`` response for a finished (or budget-stopped) run."""
    run_id = run_id_of(result)
    usage = result.usage
    return {
        "id": run_id,
        "object": "rlm.result",
        "answer": answer_text(result, typed=typed),
        "output": result.output,
        "finished": result.finished,
        "stop_reason": "final_answer" if result.finished else "budget_exceeded",
        "budget": budget,
        "iterations": result.iterations,
        "elapsed": round(result.elapsed, 6),
        "usage": {
            "calls": usage.calls,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "total_tokens": usage.total_tokens,
            "cost_usd": usage.cost_usd,
            **usage.model_dump(mode="json"),
        },
        "trajectory_id": run_id,
        "subcalls": result.metadata.get("subcalls"),
        "repl_warm": result.metadata.get("repl_warm"),
    }
