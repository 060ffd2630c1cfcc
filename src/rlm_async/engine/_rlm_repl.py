"""Names for people coming from the minimal RLM version (``RLM_REPL``)."""

from __future__ import annotations

from typing import Any

from rlm_async.engine._rlm import RLM
from rlm_async.engine._routes import ModelChoice

__all__ = ["RLM_REPL"]


class RLM_REPL(RLM):
    """The seed's interface: ``RLM_REPL(model, recursive_model, enable_logging, max_iterations)``.

    ``completion(context=..., query=...)`` is awaited and returns the answer as a ``str``
    (as the seed did); use ``RLM.completion`` for the full ``RLMResult``.

    Example:
        rlm = RLM_REPL(model="gpt-5", recursive_model="gpt-5-mini", enable_logging=True)
        answer = await rlm.completion(context=text, query="...")
    """

    def __init__(
        self,
        model: ModelChoice = "gpt-5",
        recursive_model: ModelChoice | None = None,
        *,
        enable_logging: bool = False,
        max_iterations: int = 20,
        **options: Any,
    ) -> None:
        super().__init__(
            model,
            recursive_model,
            enable_logging=enable_logging,
            max_iterations=max_iterations,
            **options,
        )

    async def completion(self, context: Any, query: str) -> str:  # type: ignore[override]
        """Answer ``query`` about ``context``; returns the answer text."""
        result = await super().completion(context, query)
        return result.answer

    def completion_sync(self, context: Any, query: str) -> str:  # type: ignore[override]
        """The synchronous form, for scripts."""
        return super().completion_sync(context, query).answer
