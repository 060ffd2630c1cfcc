"""Typed messages of the parent ↔ child JSON-lines protocol (parent side), both ways.

The child (stdlib only) speaks plain dicts; the parent validates every line it receives
against these models, because the protocol fd is reachable by model code on purpose:
anything that does not validate is a protocol violation and the REPL is restarted. What the
parent sends is built as a model too and encoded by ``encode_message``, so both directions
are written down here. To add a message: a model with its ``type`` literal, in the union of
its direction (``ChildMessage``) or passed to ``encode_message`` (``ParentMessage``), and its
handling in ``child/_child.py``; bump ``PROTOCOL_VERSION`` (and the child's copy) when an
older peer would misread it.

The version is checked both ways: the parent writes it into the child's config and the
child refuses a different one (``fatal``, kind ``protocol_version``); the child says its own
in ``ready`` and the parent refuses a different one. A mismatch (a child file from another
install) is a ``ReplProtocolError``, never a half-understood conversation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import from_json

from rlm_async._exceptions import ReplProtocolError

__all__ = [
    "FATAL_KINDS",
    "PROTOCOL_VERSION",
    "CancelMessage",
    "ChildMessage",
    "ContextLoadedMessage",
    "DefineToolsMessage",
    "ExecMessage",
    "FatalKind",
    "FatalMessage",
    "InterruptMessage",
    "LLMRequest",
    "LLMResponse",
    "LoadContextMessage",
    "ParentMessage",
    "ReadyMessage",
    "ResultMessage",
    "ShutdownMessage",
    "SubCallResult",
    "ToolCallResult",
    "ToolRequest",
    "ToolResponse",
    "check_version",
    "decode_child_message",
    "encode_message",
    "sub_call_results",
]

# 2: the child checks the parent's version (config "protocol_version");
# 3: load_context may name its variable (an older child would load it into `context`)
# 4: tools (define_tools, tool_request, tool_response)
# 5: llm_request may carry a JSON schema, answered with JSON text (an older parent would
#    answer with the reply's text, which the child would then try to parse)
PROTOCOL_VERSION = 5

FatalKind = Literal["sandbox", "protocol_version", "startup"]
"""Why a child gave up before saying ready: a required sandbox layer failed, the parent
speaks another protocol version, or anything else while starting."""
FATAL_KINDS: tuple[FatalKind, ...] = ("sandbox", "protocol_version", "startup")


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
    final_json: bool = False  # ``final`` is the JSON text of a dict, list or dataclass
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
    # ``llm_query(..., schema=...)``: the JSON schema every answer must match; each answer's
    # text is then the JSON of its validated value, which the child parses.
    response_schema: dict[str, Any] | None = None


class ToolRequest(_Message):
    """A call of one of the application's tools from model code: the arguments it was
    given (JSON), and nothing else; the parent applies the defaults and validates."""

    type: Literal["tool_request"]
    id: int  # from the same counter as llm_request ids: a cancel names either
    cell: int
    name: str
    args: list[Any] = Field(default_factory=list)
    # Not "kwargs": pydantic's mypy plugin would give __init__ two parameters of that name.
    keywords: dict[str, Any] = Field(default_factory=dict)  # the keyword arguments


class CancelMessage(_Message):
    type: Literal["cancel"]
    id: int


class FatalMessage(_Message):
    type: Literal["fatal"]
    error: str
    kind: FatalKind  # one of FATAL_KINDS: anything else is not part of the protocol


ChildMessage = Annotated[
    ReadyMessage
    | ContextLoadedMessage
    | ResultMessage
    | LLMRequest
    | ToolRequest
    | CancelMessage
    | FatalMessage,
    Field(discriminator="type"),
]
_child_adapter: TypeAdapter[ChildMessage] = TypeAdapter(ChildMessage)


# ---- parent -> child ---------------------------------------------------------------------


class SubCallResult(_Message):
    """The answer to one prompt of a sub-call request, as model code receives it.

    Build one with :meth:`answer` or :meth:`failure`.
    """

    ok: bool
    text: str | None = None
    error: str | None = None
    unfinished: bool = False  # given up by an interrupted batch before it finished

    @classmethod
    def answer(cls, text: str) -> SubCallResult:
        """A prompt that was answered."""
        return cls(ok=True, text=text)

    @classmethod
    def failure(cls, error: str, *, unfinished: bool = False) -> SubCallResult:
        """A prompt that failed (model code gets ``error`` raised or returned)."""
        return cls(ok=False, error=error, unfinished=unfinished)


class LoadContextMessage(_Message):
    """Load a context file into a variable of the REPL (``context`` unless ``name`` says)."""

    type: Literal["load_context"] = "load_context"
    path: str
    format: str
    name: str | None = None  # a session's further contexts: "context_2", ...; None: "context"


class ExecMessage(_Message):
    type: Literal["exec"] = "exec"
    cell: int
    code: str


class InterruptMessage(_Message):
    type: Literal["interrupt"] = "interrupt"
    cell: int


class LLMResponse(_Message):
    type: Literal["llm_response"] = "llm_response"
    id: int
    results: list[SubCallResult]


class ToolCallResult(_Message):
    """The outcome of one tool call, as model code receives it: a JSON value, or an error
    (the exception type's name, raised in the child with ``error`` as its message).

    The same fields as ``rlm_async.tools.ToolResult``, which this room cannot import.
    """

    ok: bool
    value: Any = None
    error: str | None = None
    error_type: str | None = None

    @classmethod
    def failure(cls, error: str, *, error_type: str) -> ToolCallResult:
        """A call that failed (or was refused) with ``error_type: error``."""
        return cls(ok=False, error=error, error_type=error_type)


class ToolResponse(_Message):
    type: Literal["tool_response"] = "tool_response"
    id: int
    result: ToolCallResult


class DefineToolsMessage(_Message):
    """The tools model code can call (each ``ToolSet.stub_specs()`` item): the child
    defines one function per tool. Sent after ``load_context``, and again after a restart."""

    type: Literal["define_tools"] = "define_tools"
    tools: list[dict[str, Any]]


class ShutdownMessage(_Message):
    type: Literal["shutdown"] = "shutdown"


ParentMessage = (
    LoadContextMessage
    | ExecMessage
    | InterruptMessage
    | LLMResponse
    | ToolResponse
    | DefineToolsMessage
    | ShutdownMessage
)


def check_version(ready: ReadyMessage) -> None:
    """Refuse a child that speaks another protocol version (``ReplProtocolError``)."""
    if ready.version != PROTOCOL_VERSION:
        raise ReplProtocolError(
            f"the REPL child speaks protocol version {ready.version}, this parent "
            f"{PROTOCOL_VERSION}: its files come from another rlm-async install; "
            "reinstall rlm-async so that both come from the same version"
        )


def decode_child_message(line: bytes) -> ChildMessage:
    """Parse and validate one line from the child, or raise ``ReplProtocolError``.

    The line may end with its newline (JSON whitespace).
    """
    try:
        # Parsed to Python values, then validated: the strings are made straight from the
        # line. ``validate_json`` first builds a tree holding an unescaped copy of each
        # (the prompts of a big batch: twice their size at the peak, and 1.7x the time).
        value = from_json(line, cache_strings="keys")
    except ValueError:
        # A lone surrogate escape ("\udc80", from text that model code decoded with
        # surrogateescape, in a prompt or in what a cell printed) is JSON and a Python
        # string, and the child writes it so: jiter refuses it, the standard library not.
        try:
            value = json.loads(line)
        except (ValueError, RecursionError):
            raise _violation(line, "not JSON") from None
    try:
        return _child_adapter.validate_python(value)
    except ValidationError as exc:
        raise _violation(line, f"{exc.error_count()} validation errors") from None


def _violation(line: bytes, why: str) -> ReplProtocolError:
    preview = line[:200].decode("utf-8", "replace")
    return ReplProtocolError(
        f"the REPL sent a message that is not part of the protocol: {preview!r} ({why})"
    )


def encode_message(message: ParentMessage) -> bytes:
    """One protocol line for the child: UTF-8 JSON and its newline.

    ``None`` fields are left out: the child reads them with ``dict.get``. The child splits
    its input on ``b"\\n"`` alone (a binary ``readline``) and ``json.loads`` the bytes, so
    text outside ASCII (U+2028 too) travels as UTF-8, and a newline in a string is escaped.
    Text with a lone surrogate, which UTF-8 cannot carry, goes as ASCII JSON (``\\udc80``).
    """
    fields = message.model_dump(exclude_none=True)
    try:
        # 4x (ASCII) to 18x (other text) faster than json.dumps with ensure_ascii.
        return orjson.dumps(fields, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        return (json.dumps(fields) + "\n").encode("ascii")


def sub_call_results(
    results: Sequence[SubCallResult | Mapping[str, Any]],
) -> list[SubCallResult]:
    """The handler's results as ``SubCallResult``s (plain ``{"ok", "text"|"error"}`` dicts
    are accepted and validated, so a handler can build either)."""
    # One adapter call, not a model per item: 3x faster on a 1,000-prompt batch (0.7 ms).
    return _results_adapter.validate_python(results)


_results_adapter: TypeAdapter[list[SubCallResult]] = TypeAdapter(list[SubCallResult])
