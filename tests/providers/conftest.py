"""Fixtures for the provider tests: fake keys, instant recorded retries, both transports.

Every test that sends requests through respx runs twice, once per transport under httpx
(``providers/_transport.py``): on httpcore, where respx intercepts, and on aiohttp, where
``respx_bridge.py`` answers from the same routes over real loopback connections. A test
marked ``httpcore_only`` checks something only an in-process response can show.
"""

from __future__ import annotations

import pytest

from rlm_async.providers import RetryPolicy, _transport
from rlm_async.providers._settings import Settings
from tests.providers.support import KEYS, SleepRecorder


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "httpcore_only: runs on the httpcore transport only (in-process responses)"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "respx_mock" in metafunc.fixturenames or hasattr(metafunc.module, "respx"):
        only_httpcore = metafunc.definition.get_closest_marker("httpcore_only") is not None
        names = ("httpcore",) if only_httpcore else _transport.TRANSPORTS
        metafunc.parametrize("http_transport", names, indirect=True)


@pytest.fixture(autouse=True)
def http_transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The transport providers get by default in this test (see the module's docstring)."""
    name: str = getattr(request, "param", _transport.DEFAULT_TRANSPORT)
    monkeypatch.setattr(_transport, "DEFAULT_TRANSPORT", name)
    return name


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
