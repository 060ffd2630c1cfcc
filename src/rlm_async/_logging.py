"""Library-friendly structlog loggers.

A library must not print on its host's stdout, and must not configure logging for it.
structlog's unconfigured default prints every level to stdout, so until the application
configures structlog, our events go through the standard library's ``logging`` (logger
``rlm_async``), where debug and info are silent by default and warnings reach stderr.
Once the application calls ``structlog.configure(...)``, events follow its configuration.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

__all__ = ["get_logger"]


class _LibraryLogger:
    """Resolves, at each call, to structlog (when configured) or to stdlib logging."""

    __slots__ = ("_logger", "_name", "_stdlib")

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger = logging.getLogger(name)
        self._stdlib: Any = None

    def _target(self, level: int) -> Any:
        """Where an event of ``level`` goes; ``None`` when stdlib logging would drop it.

        Asked before the event is built: structlog's stdlib wrapper renders the event to a
        string first and lets ``logging`` drop it after (a REPL start's debug line cost
        ~20 us for nothing).
        """
        if structlog.is_configured():
            return structlog.get_logger(self._name)
        if not self._logger.isEnabledFor(level):
            return None
        if self._stdlib is None:
            self._stdlib = structlog.wrap_logger(
                self._logger,
                processors=[structlog.processors.KeyValueRenderer(key_order=["event"])],
                wrapper_class=structlog.stdlib.BoundLogger,
            )
        return self._stdlib

    def debug(self, event: str, **fields: Any) -> None:
        if (target := self._target(logging.DEBUG)) is not None:
            target.debug(event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        if (target := self._target(logging.INFO)) is not None:
            target.info(event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        if (target := self._target(logging.WARNING)) is not None:
            target.warning(event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        if (target := self._target(logging.ERROR)) is not None:
            target.error(event, **fields)


def get_logger(name: str) -> _LibraryLogger:
    """A logger for ``name`` (e.g. ``"rlm_async.repl"``) that never prints to stdout."""
    return _LibraryLogger(name)
