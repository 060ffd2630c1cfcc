"""How much each model reads at once: context windows, and the sizes derived from them.

Two numbers in a run depend on a model's context window (input and output tokens
together): how much one sub-call can read, which the system prompt tells the root model
(so it sizes its chunks), and how much of a cell's output is fed back to the root model
(20,000 characters are ~5,300 tokens: a third of a 16K-token window, and a 64 s turn on a
small local model).

Windows are the providers' published defaults (OpenAI, Anthropic, Google and xAI model
pages); opt-in larger windows, such as Anthropic's 1M-token beta, are not assumed. Keys
and lookup are those of :class:`~rlm_async.PriceTable`: ``"provider:model"``, a bare model
id, a dated or versioned id falling back to its base id, ``"provider:*"``; a ``Provider``
instance is looked up by its name. A model not in the table is assumed to read
:data:`UNKNOWN_WINDOW` tokens, small on purpose (a guess too small costs a few more
sub-calls; one too large makes prompts the model silently truncates), and the system
prompt says it is a guess. Set the real window with ``RLM(context_windows={...})``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from rlm_async._exceptions import ConfigurationError
from rlm_async.providers._pricing import lookup_keys

__all__ = [
    "UNKNOWN_WINDOW",
    "ContextWindows",
    "Window",
    "output_chars_for",
    "prompt_chars_for",
]

#: Tokens assumed for a model the table does not know.
UNKNOWN_WINDOW: Final = 8_192

# Characters per token assumed when turning a window into characters: ~4 for English
# prose, fewer for code, numbers and other languages; 3 keeps a prompt inside the window.
_CHARS_PER_TOKEN: Final = 3
# Room kept for a sub-call's reply when sub_max_tokens is not set.
_REPLY_RESERVE: Final = 4_096
# The cell output fed back to the root model: half a character per window token (about
# an eighth of the window), within these bounds.
_OUTPUT_CHARS_MIN: Final = 2_000
_OUTPUT_CHARS_MAX: Final = 20_000

_DEFAULT_WINDOWS: Final[dict[str, int]] = {
    # OpenAI
    "openai:gpt-5": 400_000,
    "openai:gpt-5-mini": 400_000,
    "openai:gpt-5-nano": 400_000,
    "openai:gpt-5-chat-latest": 128_000,
    "openai:gpt-4.1": 1_047_576,
    "openai:gpt-4.1-mini": 1_047_576,
    "openai:gpt-4.1-nano": 1_047_576,
    "openai:gpt-4o": 128_000,
    "openai:gpt-4o-mini": 128_000,
    "openai:o1": 200_000,
    "openai:o3": 200_000,
    "openai:o3-mini": 200_000,
    "openai:o4-mini": 200_000,
    # Anthropic (the standard window; 1M for Sonnet 4/4.5 is an opt-in beta)
    "anthropic:claude-opus-4-5": 200_000,
    "anthropic:claude-opus-4-1": 200_000,
    "anthropic:claude-opus-4": 200_000,
    "anthropic:claude-sonnet-4-5": 200_000,
    "anthropic:claude-sonnet-4": 200_000,
    "anthropic:claude-3-7-sonnet": 200_000,
    "anthropic:claude-haiku-4-5": 200_000,
    "anthropic:claude-3-5-haiku": 200_000,
    # Google Gemini
    "gemini:gemini-2.5-pro": 1_048_576,
    "gemini:gemini-2.5-flash": 1_048_576,
    "gemini:gemini-2.5-flash-lite": 1_048_576,
    "gemini:gemini-2.0-flash": 1_048_576,
    "gemini:gemini-2.0-flash-lite": 1_048_576,
    # xAI
    "xai:grok-4": 256_000,
    "xai:grok-4-fast-reasoning": 2_000_000,
    "xai:grok-4-fast-non-reasoning": 2_000_000,
    "xai:grok-code-fast-1": 256_000,
    "xai:grok-3": 131_072,
    "xai:grok-3-mini": 131_072,
}


@dataclass(frozen=True, slots=True)
class Window:
    """A model's context window in tokens, and whether it is known or assumed."""

    tokens: int
    known: bool


class ContextWindows:
    """Context windows per model, in tokens: the built-in table with overrides laid over it.

    Args:
        windows: ``{"provider:model" | "model" | "provider:*": tokens}``.
        include_defaults: Start from the built-in table (default) or from nothing.

    Raises:
        ConfigurationError: a key that is not a model name, or a window that is not a
            positive int.
    """

    def __init__(
        self, windows: Mapping[str, int] | None = None, *, include_defaults: bool = True
    ) -> None:
        if windows is not None and not isinstance(windows, Mapping):
            raise ConfigurationError(
                "context_windows must be a mapping of model name to tokens, e.g. "
                f"{{'openai-compatible:qwen2.5-coder': 16384}}; got {type(windows).__name__}"
            )
        self._defaults = dict(_DEFAULT_WINDOWS) if include_defaults else {}
        table: dict[str, int] = {}
        for key, tokens in (windows or {}).items():
            if not isinstance(key, str) or not key.strip():
                raise ConfigurationError(
                    f"context_windows: a key must be a model name, got {key!r}"
                )
            if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
                raise ConfigurationError(
                    f"context_windows[{key!r}] must be a positive int (tokens), got {tokens!r}"
                )
            table[key.strip()] = tokens
        self._windows = table

    def window(self, provider: str, model: str) -> int | None:
        """The window of ``model`` served by ``provider`` in tokens, or ``None``.

        A window given by the user wins over the built-in one, however it is keyed
        (``{"gpt-5": 272_000}`` overrides the table's ``"openai:gpt-5"``).
        """
        keys = lookup_keys(provider, model)
        for table in (self._windows, self._defaults):
            for key in keys:
                if key in table:
                    return table[key]
        return None

    def for_label(self, label: str, model: str) -> Window:
        """The window of a resolved model (``"provider:model"`` label, or a provider's name),
        or :data:`UNKNOWN_WINDOW` marked as assumed."""
        provider = label.split(":", 1)[0]
        tokens = self.window(provider, model)
        if tokens is None:
            tokens = self._windows.get(label)
        if tokens is None:
            return Window(UNKNOWN_WINDOW, known=False)
        return Window(tokens, known=True)

    def __repr__(self) -> str:
        return f"ContextWindows({len(self._windows) + len(self._defaults)} models)"


def prompt_chars_for(window: int, reply_tokens: int | None) -> int:
    """Characters of prompt that fit in ``window`` tokens with room for the reply."""
    reserve = reply_tokens if reply_tokens is not None else min(_REPLY_RESERVE, window // 4)
    return max(window - reserve, window // 4) * _CHARS_PER_TOKEN


def output_chars_for(window: int) -> int:
    """The default cap on a cell's output fed back to a root model with ``window`` tokens."""
    return max(_OUTPUT_CHARS_MIN, min(_OUTPUT_CHARS_MAX, window // 2))
