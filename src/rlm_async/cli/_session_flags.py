"""``rlm-async serve``'s session flags: ``--max-sessions N`` and ``--session-idle-timeout S``
(alias ``--session-ttl``).

With ``--workers`` above 1 the limit is per worker: a session's REPL lives in the worker
that made it, which its requests reach through ``server._session_affinity``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from typing import Any

__all__ = [
    "MAX_SESSIONS",
    "SESSION_IDLE_TIMEOUT",
    "add_session_arguments",
    "max_sessions",
    "positive_seconds",
    "sessions_line",
]

MAX_SESSIONS = 16  # create_app's defaults
SESSION_IDLE_TIMEOUT = 600.0


def positive_seconds(text: str) -> float:
    """A finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def add_session_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--max-sessions`` and ``--session-idle-timeout`` / ``--session-ttl``."""
    parser.add_argument(
        "--max-sessions",
        type=_count,
        default=None,
        metavar="N",
        help=f"sessions (POST /v1/sessions, one REPL each) open at once per worker, more are "
        f"refused with 429; 0: no sessions (default {MAX_SESSIONS})",
    )
    parser.add_argument(
        "--session-idle-timeout",
        "--session-ttl",
        dest="session_idle_timeout",
        type=positive_seconds,
        default=SESSION_IDLE_TIMEOUT,
        metavar="S",
        help="close a session (kill its REPL) unused for S seconds "
        f"(default {SESSION_IDLE_TIMEOUT:g})",
    )


def max_sessions(args: argparse.Namespace) -> int:
    """``--max-sessions``, else the default."""
    return MAX_SESSIONS if args.max_sessions is None else int(args.max_sessions)


def sessions_line(url: str, app_options: Mapping[str, Any]) -> str:
    """The banner's line about sessions."""
    limit = app_options.get("max_sessions", MAX_SESSIONS)
    if not limit:
        return "sessions: off (--max-sessions 0)"
    idle = app_options.get("session_idle_timeout", SESSION_IDLE_TIMEOUT)
    return f"POST {url}/v1/sessions   (at most {limit} open, closed after {idle:g} s idle)"
