"""Fixtures for the provider tests: fake keys and instant, recorded retries."""

from __future__ import annotations

import pytest

from rlm_async.providers import RetryPolicy
from rlm_async.providers._settings import Settings
from tests.providers.support import KEYS, SleepRecorder


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def retry(sleeps: SleepRecorder) -> RetryPolicy:
    """Deterministic retries (no jitter) that never really sleep."""
    return RetryPolicy(max_attempts=3, initial_backoff=0.5, jitter=0.0, sleep=sleeps)


@pytest.fixture
def settings() -> Settings:
    return Settings(**KEYS, openai_compatible_base_url="http://compat.test/v1")
