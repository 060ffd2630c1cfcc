"""Fixtures shared by the sandbox tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.repl._bait import SECRET, Host


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> Iterator[Host]:
    """Bait on this machine: a secret in the environment (inherited by a real launcher's
    environ), secret files, listening sockets; closed after the test."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    bait = Host()
    try:
        yield bait
    finally:
        bait.close()
