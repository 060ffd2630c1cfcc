"""The public names: one façade, a sorted __all__, and the design's contract."""

from __future__ import annotations

import subprocess
import sys

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


def test_importing_and_using_the_package_configures_no_logging_and_prints_nothing() -> None:
    # A fresh interpreter: other tests (structlog.testing.capture_logs) configure structlog.
    code = (
        "import logging, structlog, rlm_async\n"
        "from rlm_async._logging import get_logger\n"
        "get_logger('rlm_async.test').warning('rlm_async.test_event', detail=1)\n"
        "get_logger('rlm_async.test').debug('rlm_async.debug_event')\n"
        "assert not structlog.is_configured()\n"
        "assert logging.getLogger().handlers == []\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "", "a library must not print on its host's stdout"
    assert "rlm_async.test_event" in done.stderr  # warnings reach stderr via logging
    assert "debug_event" not in done.stderr
