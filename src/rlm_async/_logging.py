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

    __slots__ = ("_name", "_stdlib")

    def __init__(self, name: str) -> None:
        self._name = name
        self._stdlib: Any = None

    def _target(self) -> Any:
        if structlog.is_configured():
            return structlog.get_logger(self._name)
        if self._stdlib is None:
            self._stdlib = structlog.wrap_logger(
                logging.getLogger(self._name),
                processors=[structlog.processors.KeyValueRenderer(key_order=["event"])],
                wrapper_class=structlog.stdlib.BoundLogger,
            )
        return self._stdlib

    def debug(self, event: str, **fields: Any) -> None:
        self._target().debug(event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self._target().info(event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._target().warning(event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self._target().error(event, **fields)


def get_logger(name: str) -> _LibraryLogger:
    """A logger for ``name`` (e.g. ``"rlm_async.repl"``) that never prints to stdout."""
    return _LibraryLogger(name)
