"""Shared fixtures. No test reaches the network: see tests/test_no_network.py."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_provider_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's real keys (and so can never spend with them)."""
    for name in list(os.environ):
        if name.endswith("_API_KEY") or name.endswith("_BASE_URL") or name == "OLLAMA_HOST":
            monkeypatch.delenv(name, raising=False)


def _open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


@pytest.fixture(scope="session", autouse=True)
def _host_back_at_baseline() -> Iterator[None]:
    """After the whole suite: no REPL process, no work dir and no fd left behind.

    REPL work dirs go to a temp root of this suite's own (world-traversable, so a child
    running as ``nobody`` can reach its dir), so other processes' dirs never count.
    """
    import gc
    import shutil
    import tempfile

    from tests.helpers import child_pids

    root = tempfile.mkdtemp(prefix="rlm-tests-")
    os.chmod(root, 0o755)
    saved, tempfile.tempdir = tempfile.tempdir, root
    fds = _open_fds()
    try:
        yield
        gc.collect()
        leaked_children = child_pids()
        leaked_dirs = [d for d in os.listdir(root) if d.startswith("rlm-repl-")]
        leaked_fds = {
            fd
            for fd in _open_fds() - fds
            if not os.readlink(f"/proc/self/fd/{fd}").startswith(("/dev/", "anon_inode:"))
        }
        assert not leaked_children, f"child processes left after the suite: {leaked_children}"
        assert not leaked_dirs, f"REPL work dirs left after the suite: {leaked_dirs[:5]}"
        assert not leaked_fds, f"file descriptors left open after the suite: {leaked_fds}"
    finally:
        tempfile.tempdir = saved
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
def _respx_reaches_aiohttp(monkeypatch: pytest.MonkeyPatch) -> None:
    """respx mocks httpcore; on the aiohttp transport its routes answer over loopback instead
    (tests/providers/respx_bridge.py). With no respx router active, requests go as they are."""
    from rlm_async.providers import _transport_aiohttp
    from tests.providers.respx_bridge import BridgedTransport

    monkeypatch.setattr(_transport_aiohttp, "_Transport", BridgedTransport)


@pytest.fixture(autouse=True)
def _structlog_left_unconfigured() -> object:
    """``structlog.testing.capture_logs`` leaves structlog "configured" (with its defaults,
    which print to stdout); put it back so the library's own routing is what later tests see."""
    import structlog

    was = structlog.is_configured()
    yield
    if not was and structlog.is_configured():
        structlog.reset_defaults()
