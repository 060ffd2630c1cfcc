"""``rlm-async serve``'s session flags: ``--max-sessions N`` and ``--session-idle-timeout S``
(alias ``--session-ttl``).

With ``--workers`` above 1 the limit is per worker: a session's REPL lives in the worker
that made it, which its requests reach through ``server._session_affinity``.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from rlm_async.cli._arg_types import non_negative_int, positive_seconds

__all__ = [
    "MAX_SESSIONS",
    "SESSION_IDLE_TIMEOUT",
    "add_session_arguments",
    "max_sessions",
    "sessions_line",
]

MAX_SESSIONS = 16  # create_app's defaults
SESSION_IDLE_TIMEOUT = 600.0


def add_session_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--max-sessions`` and ``--session-idle-timeout`` / ``--session-ttl``."""
    parser.add_argument(
        "--max-sessions",
        type=non_negative_int,
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
