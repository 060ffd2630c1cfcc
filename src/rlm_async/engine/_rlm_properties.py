"""What an ``RLM`` was made with, read-only: :class:`RLMProperties`, the base of ``RLM``.

An ``RLM`` is its options, its models and its resources (see ``_rlm``); these properties show
them (``rlm.max_iterations``, ``rlm.model``, ``rlm.closed``) and change nothing. What an
``RLM`` does, open, close, run completions, is ``RLM``'s own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from rlm_async.engine._budget import Budget
from rlm_async.engine._options import RLMOptions
from rlm_async.engine._resources import EngineResources
from rlm_async.engine._routes import ModelRoutes
from rlm_async.providers import ResolvedModel
from rlm_async.providers._windows import ContextWindows, Window, output_chars_for
from rlm_async.repl import ReplOptions
from rlm_async.repl._pool import ReplPool

if TYPE_CHECKING:
    import os

__all__ = ["RLMProperties"]


class RLMProperties:
    """The read-only properties of an ``RLM``: its options, models and resources."""

    _options: RLMOptions
    _models: ModelRoutes
    _resources: EngineResources

    @property
    def options(self) -> RLMOptions:
        """The options completions of this ``RLM`` run with (before per-call overrides)."""
        return self._options

    @property
    def budget(self) -> Budget:
        return self._options.budget

    @property
    def on_budget_exceeded(self) -> Literal["raise", "return"]:
        return self._options.on_budget_exceeded

    @property
    def max_iterations(self) -> int:
        return self._options.max_iterations

    @property
    def max_depth(self) -> int:
        return self._options.max_depth

    @property
    def max_concurrency(self) -> int:
        return self._options.max_concurrency

    @property
    def max_tokens(self) -> int | None:
        return self._options.max_tokens

    @property
    def sub_max_tokens(self) -> int | None:
        return self._options.sub_call_max_tokens

    @property
    def temperature(self) -> float | None:
        return self._options.temperature

    @property
    def sub_temperature(self) -> float | None:
        return self._options.sub_call_temperature

    @property
    def repl_options(self) -> ReplOptions:
        return self._options.repl

    @property
    def trajectory_dir(self) -> os.PathLike[str] | None:
        return self._options.trajectory_dir

    @property
    def max_output_chars(self) -> int:
        """Characters of a cell's output fed back (sized for the root model by default)."""
        chosen = self._options.max_output_chars
        return chosen or output_chars_for(self.window_of(self._models.root).tokens)

    @property
    def windows(self) -> ContextWindows:
        return self._resources.windows

    @property
    def repl_pool(self) -> ReplPool | None:
        return self._resources.repl_pool

    def window_of(self, model: ResolvedModel) -> Window:
        """The context window of a resolved model (from ``context_windows`` and the table)."""
        return self._resources.window_of(model)

    @property
    def allowed_model_names(self) -> list[str]:
        """Model labels the REPL may ask for with ``model=``, the default sub-model first."""
        return self._models.allowed_names

    @property
    def closed(self) -> bool:
        """``True`` once ``aclose()`` ran: no new completions are accepted."""
        return self._resources.closed

    @property
    def model(self) -> str:
        return self._models.root.label

    @property
    def sub_model(self) -> str:
        return self._models.sub.label
