"""The public names: one façade, a sorted __all__, and the design's contract."""

from __future__ import annotations

import pytest

import rlm_async

CONTRACT = [
    "RLM",
    "RLM_REPL",
    "RLMResult",
    "Completion",
    "llm_complete",
    "RLMError",
    "ConfigurationError",
    "ProviderError",
    "AuthenticationError",
    "BadRequestError",
    "NotFoundError",
    "RateLimitError",
    "ProviderUnavailableError",
    "ProviderTimeoutError",
    "ReplError",
    "ReplCrashed",
    "ReplTimeout",
    "ReplProtocolError",
    "SandboxError",
    "BudgetExceeded",
]


def test_all_has_no_duplicates_and_every_name_exists() -> None:
    # Its order is kept by ruff (RUF022, isort-style sorting).
    assert len(set(rlm_async.__all__)) == len(rlm_async.__all__)
    missing = [name for name in rlm_async.__all__ if not hasattr(rlm_async, name)]
    assert missing == []


@pytest.mark.parametrize("name", CONTRACT)
def test_the_design_contract_names_are_importable_from_the_package(name: str) -> None:
    assert name in rlm_async.__all__


def test_every_error_is_an_rlm_error() -> None:
    errors = [
        getattr(rlm_async, n)
        for n in rlm_async.__all__
        if n.endswith(("Error", "Exceeded", "Crashed", "Timeout"))
    ]
    assert errors
    assert all(issubclass(e, rlm_async.RLMError) for e in errors)


def test_importing_the_package_does_not_configure_logging() -> None:
    import logging

    import structlog

    assert not structlog.is_configured()
    assert logging.getLogger().handlers == [] or all(
        type(h).__module__.startswith("_pytest") for h in logging.getLogger().handlers
    )
