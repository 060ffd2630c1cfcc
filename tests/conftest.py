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
