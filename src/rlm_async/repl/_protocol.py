"""Typed messages of the parent ↔ child JSON-lines protocol (parent side).

The child (stdlib only) speaks plain dicts; the parent validates every line it receives
against these models, because the protocol fd is reachable by model code on purpose:
anything that does not validate is a protocol violation and the REPL is restarted.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from rlm_async._exceptions import ReplProtocolError

__all__ = [
    "PROTOCOL_VERSION",
    "CancelMessage",
    "ChildMessage",
    "ContextLoadedMessage",
    "FatalMessage",
    "LLMRequest",
    "ReadyMessage",
    "ResultMessage",
    "decode_child_message",
    "encode_message",
]

PROTOCOL_VERSION = 1


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ReadyMessage(_Message):
    type: Literal["ready"]
    version: int
    pid: int
    python: str = ""
    sandbox: dict[str, Any] = Field(default_factory=dict)


class ContextLoadedMessage(_Message):
    type: Literal["context_loaded"]
    seconds: float = 0.0
    error: str | None = None


class ResultMessage(_Message):
    type: Literal["result"]
    cell: int
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    final: str | None = None
    final_chars: int | None = None  # the answer's length before the child capped it
    duration: float = 0.0


class LLMRequest(_Message):
    """A sub-call request from model code: one prompt, or a batch served concurrently."""

    type: Literal["llm_request"]
    id: int
    cell: int
    kind: Literal["llm", "rlm"] = "llm"
    prompts: list[str]
    model: str | None = None
    contexts: list[Any] | None = None


class CancelMessage(_Message):
    type: Literal["cancel"]
    id: int


class FatalMessage(_Message):
    type: Literal["fatal"]
    error: str
    kind: str = ""


ChildMessage = Annotated[
    ReadyMessage | ContextLoadedMessage | ResultMessage | LLMRequest | CancelMessage | FatalMessage,
    Field(discriminator="type"),
]
_child_adapter: TypeAdapter[ChildMessage] = TypeAdapter(ChildMessage)


def decode_child_message(line: bytes) -> ChildMessage:
    """Parse and validate one line from the child, or raise ``ReplProtocolError``."""
    try:
        return _child_adapter.validate_json(line)
    except ValidationError as exc:
        preview = line[:200].decode("utf-8", "replace")
        raise ReplProtocolError(
            f"the REPL sent a message that is not part of the protocol: {preview!r} "
            f"({exc.error_count()} validation errors)"
        ) from None


def encode_message(message: dict[str, Any]) -> bytes:
    """One protocol line for the child (ASCII-safe JSON plus newline)."""
    return (json.dumps(message) + "\n").encode("ascii")
