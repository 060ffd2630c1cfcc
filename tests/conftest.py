"""Shared fixtures. No test reaches the network: see tests/test_no_network.py."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _no_provider_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's real keys (and so can never spend with them)."""
    for name in list(os.environ):
        if name.endswith("_API_KEY") or name.endswith("_BASE_URL") or name == "OLLAMA_HOST":
            monkeypatch.delenv(name, raising=False)


def _open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


def _work_dirs() -> set[str]:
    import glob
    import tempfile

    return set(glob.glob(os.path.join(tempfile.gettempdir(), "rlm-repl-*")))


@pytest.fixture(scope="session", autouse=True)
def _host_back_at_baseline() -> object:
    """After the whole suite: no REPL process, no work dir and no fd left behind."""
    import gc

    from tests.helpers import child_pids

    fds, dirs = _open_fds(), _work_dirs()
    yield
    gc.collect()
    leaked_children = child_pids()
    leaked_dirs = _work_dirs() - dirs
    leaked_fds = {
        fd
        for fd in _open_fds() - fds
        if not os.path.islink(f"/proc/self/fd/{fd}")
        or not os.readlink(f"/proc/self/fd/{fd}").startswith(("/dev/", "anon_inode:"))
    }
    assert not leaked_children, f"child processes left after the suite: {leaked_children}"
    assert not leaked_dirs, f"REPL work dirs left after the suite: {sorted(leaked_dirs)[:5]}"
    assert not leaked_fds, f"file descriptors left open after the suite: {leaked_fds}"


@pytest.fixture(autouse=True)
def _structlog_left_unconfigured() -> object:
    """``structlog.testing.capture_logs`` leaves structlog "configured" (with its defaults,
    which print to stdout); put it back so the library's own routing is what later tests see."""
    import structlog

    was = structlog.is_configured()
    yield
    if not was and structlog.is_configured():
        structlog.reset_defaults()
