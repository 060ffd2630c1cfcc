"""Event listeners called together: the one place that fans an event out."""

from __future__ import annotations

from collections.abc import Callable

from rlm_async import events as ev

__all__ = ["Listener", "fan_out"]

Listener = Callable[[ev.Event], None]


def fan_out(*listeners: Listener | None) -> Listener | None:
    """One listener that calls each of ``listeners`` in order (``None``s are skipped).

    Returns:
        ``None`` when there is no listener, the listener itself when there is one (no
        extra call per event on the hot path), else a function calling each in turn. A
        listener that raises stops the ones after it: order the ones that must see every
        event (a trajectory file) first.
    """
    active = tuple(listener for listener in listeners if listener is not None)
    if not active:
        return None
    if len(active) == 1:
        return active[0]

    def emit(event: ev.Event) -> None:
        for listener in active:
            listener(event)

    return emit
