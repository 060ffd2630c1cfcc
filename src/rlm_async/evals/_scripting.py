"""The shape every scripted root model shares: one code cell, then ``FINAL_VAR(answer)``."""

from __future__ import annotations

from collections.abc import Callable

from rlm_async.providers._base import CompletionRequest

__all__ = ["Responder", "prompt_text", "root_responder"]

Responder = Callable[[CompletionRequest], str]


def prompt_text(request: CompletionRequest) -> str:
    """Everything the request shows the model: system prompt and messages, in order."""
    parts = [request.system] if request.system else []
    parts.extend(message.content for message in request.messages)
    return "\n".join(parts)


def root_responder(plan: str, code: str, sub: Responder) -> Responder:
    """A root model that runs ``code`` (which sets ``answer``) in its first turn and answers
    with ``FINAL_VAR(answer)`` once it has seen the output. Sub-calls (requests without a
    system prompt) go to ``sub``, so one scripted model can be root and sub-model both."""

    def respond(request: CompletionRequest) -> str:
        if request.system is None:
            return sub(request)
        if not any(message.role == "assistant" for message in request.messages):
            return f"{plan}\n\n```repl\n{code.strip()}\n```"
        return "The output above holds the answer, stored in `answer`.\n\nFINAL_VAR(answer)"

    return respond
