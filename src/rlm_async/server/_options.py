"""Per-request run options: a small allow-list that can tighten the server's limits only.

A client may ask for fewer iterations, a shallower recursion, fewer concurrent sub-calls
or a smaller budget than the server's ``RLM`` allows, never for more: whoever runs the
service decides what a request may cost. An unknown option is a 400, not ignored.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rlm_async.engine._rlm import RLM
from rlm_async.server._errors import ApiError

__all__ = ["RunOptions", "apply_options"]


class RunOptions(BaseModel):
    """Options of one run (``options`` in ``/v1/rlm``, ``rlm_options`` in chat completions).

    Attributes:
        max_iterations: Root turns, at most the server's ``max_iterations``.
        max_depth: Recursion depth, at most the server's ``max_depth``.
        max_concurrency: Sub-calls in flight at once, at most the server's.
        max_seconds: Wall-time budget of the run.
        max_subcalls: Sub-calls in total.
        max_tool_calls: Calls of the served RLM's tools in total.
        max_total_tokens: Input plus output tokens of every call of the run.
        max_cost_usd: Dollars, for priced models.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_iterations: int | None = Field(default=None, ge=1)
    max_depth: int | None = Field(default=None, ge=1)
    max_concurrency: int | None = Field(default=None, ge=1)
    max_seconds: float | None = Field(default=None, gt=0)
    max_subcalls: int | None = Field(default=None, ge=0)
    max_tool_calls: int | None = Field(default=None, ge=0)
    max_total_tokens: int | None = Field(default=None, gt=0)
    max_cost_usd: float | None = Field(default=None, gt=0)


# option -> the Budget field it tightens
_BUDGET_FIELDS = {
    "max_seconds": "max_seconds",
    "max_subcalls": "max_subcalls",
    "max_tool_calls": "max_tool_calls",
    "max_total_tokens": "max_tokens",
    "max_cost_usd": "max_cost_usd",
}
_RLM_FIELDS = ("max_iterations", "max_depth", "max_concurrency")


def apply_options(rlm: RLM, options: RunOptions | None, *, param: str = "options") -> RLM:
    """``rlm`` itself when no option is set, else a view of it with the options applied.

    The view shares everything with ``rlm`` (provider clients, warm pool, the set of live
    REPLs that ``rlm.aclose()`` kills) and differs only in the limits set here.

    Raises:
        ApiError: 400 when an option asks for more than the server allows.
    """
    if options is None:
        return rlm
    chosen = options.model_dump(exclude_none=True)
    if not chosen:
        return rlm
    for name in _RLM_FIELDS:
        value = chosen.get(name)
        allowed = getattr(rlm, name)
        if value is not None and value > allowed:
            raise _over_limit(name, allowed, value, param)
    budget_update: dict[str, Any] = {}
    for name, field in _BUDGET_FIELDS.items():
        value = chosen.get(name)
        if value is None:
            continue
        allowed = getattr(rlm.budget, field)
        if allowed is not None and value > allowed:
            raise _over_limit(name, allowed, value, param)
        budget_update[field] = value
    # A view: same provider clients, warm pool and live-session set, other options.
    changes: dict[str, Any] = {name: chosen[name] for name in _RLM_FIELDS if name in chosen}
    if budget_update:
        changes["budget"] = rlm.budget.model_copy(update=budget_update)
    return rlm.with_options(changes)


def _over_limit(name: str, allowed: object, value: object, param: str) -> ApiError:
    return ApiError(
        400,
        f"{name} may be at most {allowed} on this server, got {value}",
        param=f"{param}.{name}",
        code="option_over_limit",
    )
