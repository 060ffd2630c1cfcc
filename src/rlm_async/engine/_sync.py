"""``RLM.completion_sync`` runs an event loop of its own: never inside a running one."""

from __future__ import annotations

import asyncio

from rlm_async._exceptions import ConfigurationError

__all__ = ["refuse_inside_event_loop"]


def refuse_inside_event_loop() -> None:
    """Raise when called from inside a running event loop, where ``asyncio.run`` cannot run.

    Raises:
        ConfigurationError: there is a running loop (saying to ``await`` instead).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise ConfigurationError(
        "completion_sync() cannot run inside an event loop; use `await rlm.completion(...)`"
    )
