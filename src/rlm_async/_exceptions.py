"""The error tree of rlm-async.

Everything the library raises on purpose is an :class:`RLMError`; cancellation
(``asyncio.CancelledError`` and anyio's cancel scopes) always propagates untouched::

    RLMError
    ├── ConfigurationError            misuse: a bad option, unknown model, missing key
    │   └── ContextTypeError          a context of a type the REPL cannot hold (also a TypeError)
    ├── ProviderError                 a provider failed (provider, status_code, message, request_id)
    │   ├── AuthenticationError       401/403, and Gemini's / xAI's 400 for a bad key
    │   ├── BadRequestError           other 4xx the provider will refuse again
    │   ├── NotFoundError             unknown model or path
    │   ├── RateLimitError            429 after retries, or a quota that retries cannot fix
    │   ├── ProviderUnavailableError  5xx / 529 / connection failures after retries
    │   ├── ProviderTimeoutError      the request timed out after retries
    │   └── ProviderResponseError     a 2xx reply we cannot use: malformed, empty, blocked
    ├── ReplError                     the child REPL process failed
    │   ├── ReplCrashed               it died (and could not be restarted, or too often)
    │   ├── ReplTimeout               it did not start or stop in time
    │   ├── ReplProtocolError         it sent something that is not our protocol
    │   └── SandboxError              a sandbox layer was required (strict) but is unavailable
    ├── BudgetExceeded                a budget ended the run; carries the partial result
    ├── ContextWindowExceeded         a root conversation does not fit its model's window
    ├── OutputValidationError         a typed answer (output_type) did not validate in time
    └── RLMClosed                     the RLM was closed (aclose()) while the run was going

Errors inside a cell (a ``NameError`` in model code, a timed-out cell that was interrupted)
are not raised: they are fed back to the model as the cell's output, which is how it learns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rlm_async._types import RLMResult

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceeded",
    "ConfigurationError",
    "ContextTypeError",
    "ContextWindowExceeded",
    "NotFoundError",
    "OutputValidationError",
    "ProviderError",
    "ProviderResponseError",
    "ProviderTimeoutError",
    "ProviderUnavailableError",
    "RLMClosed",
    "RLMError",
    "RateLimitError",
    "ReplCrashed",
    "ReplError",
    "ReplProtocolError",
    "ReplTimeout",
    "ResumeError",
    "SandboxError",
]


class RLMError(Exception):
    """Base class of every error rlm-async raises on purpose.

    It is *not* raised for cancellation: a cancelled ``completion()`` propagates the
    event loop's own cancellation exception.
    """


class ConfigurationError(RLMError):
    """The library was called in a way that cannot work; the message says how to fix it.

    Not a runtime failure: retrying the same call will fail the same way.
    """


class ContextTypeError(ConfigurationError, TypeError):
    """The context is of a type the REPL cannot hold (accepted: str, list, dict, chat messages)."""


class ProviderError(RLMError):
    """A model provider failed to give a usable answer.

    Attributes:
        provider: The provider's name, e.g. ``"openai"``.
        status_code: The HTTP status, or ``None`` when no response was received.
        message: The provider's own message, or ours when it gave none.
        request_id: The provider's request id where it sent one (quote it to their support).
        body: The raw response body (truncated), for debugging; never contains our API key.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status_code: int | None = None,
        request_id: str | None = None,
        body: Any = None,
    ) -> None:
        self.provider = provider
        self.status_code = status_code
        self.message = message
        self.request_id = request_id
        self.body = body
        super().__init__(message)

    def __str__(self) -> str:
        parts = [f"{self.provider}"]
        if self.status_code is not None:
            parts.append(f"HTTP {self.status_code}")
        text = f"[{' '.join(parts)}] {self.message}"
        if self.request_id:
            text += f" (request id: {self.request_id})"
        return text

    def __reduce__(self) -> Any:  # keep keyword-only fields through pickling (e.g. to_thread)
        return (
            _rebuild_provider_error,
            (type(self), self.message, self.provider, self.status_code, self.request_id, self.body),
        )


def _rebuild_provider_error(
    cls: type[ProviderError],
    message: str,
    provider: str,
    status_code: int | None,
    request_id: str | None,
    body: Any,
) -> ProviderError:
    return cls(
        message, provider=provider, status_code=status_code, request_id=request_id, body=body
    )


class AuthenticationError(ProviderError):
    """The provider refused the credentials (a missing, wrong or unauthorised API key)."""


class BadRequestError(ProviderError):
    """The provider refused the request as malformed; retrying it unchanged will not help."""


class NotFoundError(ProviderError):
    """The provider does not know the model or the path (check the model name and base URL)."""


class RateLimitError(ProviderError):
    """Rate limited after all retries, or a quota that retries cannot fix.

    Attributes:
        retry_after: Seconds the provider asked us to wait, when it said.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ProviderUnavailableError(ProviderError):
    """The provider is down, overloaded or unreachable (5xx, 529, connection errors)."""


class ProviderTimeoutError(ProviderError):
    """The request to the provider timed out after retries."""


class ProviderResponseError(ProviderError):
    """A successful status with a reply we cannot use: malformed JSON, no text, a blocked prompt.

    Never an empty answer passed on silently.
    """


class ReplError(RLMError):
    """The child REPL process failed in a way the engine could not recover from."""


class ReplCrashed(ReplError):
    """The child REPL died and could not be restarted (or restarted too often)."""


class ReplTimeout(ReplError):
    """The child REPL did not start, answer or stop within its time limit."""


class ReplProtocolError(ReplError):
    """The child REPL sent a message that is not part of the protocol (garbage, oversized)."""


class SandboxError(ReplError):
    """A sandbox layer that was required (``strict=True``) is not available on this machine."""


class BudgetExceeded(RLMError):
    """A budget (tokens, cost, time, sub-calls) ended the run before a final answer.

    Attributes:
        partial: The result so far: usage, trajectory, and the best partial answer if any.
        budget: Which budget ran out, e.g. ``"max_cost_usd"``.
    """

    def __init__(self, message: str, *, budget: str, partial: RLMResult | None = None) -> None:
        super().__init__(message)
        self.budget = budget
        self.partial = partial


class ContextWindowExceeded(RLMError):
    """A root conversation would not fit its model's context window, even after its earlier
    turns were compacted (or with compaction off): the message says how big it is and what
    to change (a root model with a bigger window, its real window in ``context_windows``,
    smaller cell outputs or replies).

    Attributes:
        model: The root model (``"provider:model"``).
        tokens: The conversation's size in tokens (estimated, 4 characters a token).
        limit: The tokens its window holds for a prompt (the window less the reply's room).
    """

    def __init__(self, message: str, *, model: str, tokens: int, limit: int) -> None:
        super().__init__(message)
        self.model = model
        self.tokens = tokens
        self.limit = limit

    def __reduce__(self) -> Any:  # keep keyword-only fields through pickling
        return (_rebuild_window_error, (str(self), self.model, self.tokens, self.limit))


def _rebuild_window_error(
    message: str, model: str, tokens: int, limit: int
) -> ContextWindowExceeded:
    return ContextWindowExceeded(message, model=model, tokens=tokens, limit=limit)


class OutputValidationError(RLMError):
    """The answers of a completion with an ``output_type`` kept failing its validation:
    each failure went back to the model, and ``output_retries`` more answers failed too.

    Attributes:
        last_attempt: The text of the last answer given.
        errors: What was wrong with it: one dict per error, with ``loc`` (the path into
            the answer) and ``msg``, as pydantic's ``ValidationError.errors()``.
        partial: The result so far (usage, trajectory; ``output`` is ``None``).
    """

    def __init__(
        self,
        message: str,
        *,
        last_attempt: str,
        errors: list[dict[str, Any]],
        partial: RLMResult | None = None,
    ) -> None:
        super().__init__(message)
        self.last_attempt = last_attempt
        self.errors = errors
        self.partial = partial

    def __reduce__(self) -> Any:  # keep keyword-only fields through pickling
        return (
            _rebuild_output_error,
            (str(self), self.last_attempt, self.errors, self.partial),
        )


def _rebuild_output_error(
    message: str, last_attempt: str, errors: list[dict[str, Any]], partial: RLMResult | None
) -> OutputValidationError:
    return OutputValidationError(message, last_attempt=last_attempt, errors=errors, partial=partial)


class RLMClosed(RLMError):
    """The ``RLM`` was closed (``aclose()``, or the end of its ``async with`` block) while
    this completion was running, which cut it short.

    Not a configuration mistake and not a provider failure: close an ``RLM`` after its
    completions finish, or expect this from the ones still running.
    """


class ResumeError(RLMError):
    """``RLM.resume`` cannot continue a run from its trajectory: the file does not hold what
    replay needs (a root run, the full text of a recorded answer), the context given does not
    match the one recorded, or a replayed cell asked or printed something other than what
    was recorded (the message names the turn and cell)."""
