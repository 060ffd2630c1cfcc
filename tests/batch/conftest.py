"""Batches start worker processes with ``spawn``, which starts the standard library's
resource tracker process once per interpreter: it is stopped after these tests, so the
suite's check for leftover children sees only what the library left."""

from __future__ import annotations

from collections.abc import Iterator
from multiprocessing import resource_tracker

import pytest


@pytest.fixture(scope="package", autouse=True)
def _stop_the_resource_tracker() -> Iterator[None]:
    yield
    resource_tracker._resource_tracker._stop()  # type: ignore[attr-defined]
