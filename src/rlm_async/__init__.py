"""rlm-async: async-first Recursive Language Models.

``await RLM(...).completion(context, query)`` answers a query over a context far too long
for any prompt: the context lives in a sandboxed child-process REPL, the root model writes
code to explore it, and sub-calls from that code are served concurrently.
"""

from typing import TYPE_CHECKING, Any

from rlm_async import events, trajectory
from rlm_async._exceptions import (
    AuthenticationError,
    BadRequestError,
    BudgetExceeded,
    ConfigurationError,
    ContextTypeError,
    ContextWindowExceeded,
    NotFoundError,
    OutputValidationError,
    ProviderError,
    ProviderResponseError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
    ReplCrashed,
    ReplError,
    ReplProtocolError,
    ReplTimeout,
    ResumeError,
    RLMClosed,
    RLMError,
    SandboxError,
)
from rlm_async._types import Completion, Message, ModelUsage, RLMResult, Usage, UsageSummary
from rlm_async._version import __version__
from rlm_async.engine._budget import Budget
from rlm_async.engine._options import RLMOptions
from rlm_async.engine._rlm import RLM
from rlm_async.engine._rlm_repl import RLM_REPL
from rlm_async.engine._session import Session
from rlm_async.providers._base import CompletionRequest, Provider
from rlm_async.providers._complete import llm_complete
from rlm_async.providers._pricing import ModelPrice, PriceTable
from rlm_async.providers._ratelimit import RateLimit
from rlm_async.providers._retry import RetryPolicy
from rlm_async.providers._settings import Settings
from rlm_async.repl import CellResult, ReplOptions, ReplSession
from rlm_async.repl._sandbox_options import SandboxOptions
from rlm_async.tools import MCPServer, Tool
from rlm_async.trajectory import Trajectory, TrajectoryError, TrajectoryWriter, read_trajectory

if TYPE_CHECKING:
    from rlm_async.batching import batch

__all__ = [
    "RLM",
    "RLM_REPL",
    "AuthenticationError",
    "BadRequestError",
    "Budget",
    "BudgetExceeded",
    "CellResult",
    "Completion",
    "CompletionRequest",
    "ConfigurationError",
    "ContextTypeError",
    "ContextWindowExceeded",
    "MCPServer",
    "Message",
    "ModelPrice",
    "ModelUsage",
    "NotFoundError",
    "OutputValidationError",
    "PriceTable",
    "Provider",
    "ProviderError",
    "ProviderResponseError",
    "ProviderTimeoutError",
    "ProviderUnavailableError",
    "RLMClosed",
    "RLMError",
    "RLMOptions",
    "RLMResult",
    "RateLimit",
    "RateLimitError",
    "ReplCrashed",
    "ReplError",
    "ReplOptions",
    "ReplProtocolError",
    "ReplSession",
    "ReplTimeout",
    "ResumeError",
    "RetryPolicy",
    "SandboxError",
    "SandboxOptions",
    "Session",
    "Settings",
    "Tool",
    "Trajectory",
    "TrajectoryError",
    "TrajectoryWriter",
    "Usage",
    "UsageSummary",
    "__version__",
    "batch",
    "events",
    "llm_complete",
    "read_trajectory",
    "trajectory",
]


def __getattr__(name: str) -> Any:
    # ``batch`` (worker processes, Ray) is imported when first used, so that
    # ``import rlm_async`` stays as quick for everyone else.
    if name == "batch":
        from rlm_async.batching import batch

        globals()["batch"] = batch
        return batch
    raise AttributeError(f"module 'rlm_async' has no attribute {name!r}")
