"""rlm-async: async-first Recursive Language Models."""

from rlm_async._exceptions import (
    AuthenticationError,
    BadRequestError,
    BudgetExceeded,
    ConfigurationError,
    ContextTypeError,
    NotFoundError,
    ProviderError,
    ProviderResponseError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitError,
    ReplCrashed,
    ReplError,
    ReplProtocolError,
    ReplTimeout,
    RLMError,
    SandboxError,
)
from rlm_async._types import Completion, Message, ModelUsage, RLMResult, Usage, UsageSummary

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceeded",
    "Completion",
    "ConfigurationError",
    "ContextTypeError",
    "Message",
    "ModelUsage",
    "NotFoundError",
    "ProviderError",
    "ProviderResponseError",
    "ProviderTimeoutError",
    "ProviderUnavailableError",
    "RLMError",
    "RLMResult",
    "RateLimitError",
    "ReplCrashed",
    "ReplError",
    "ReplProtocolError",
    "ReplTimeout",
    "SandboxError",
    "Usage",
    "UsageSummary",
]
