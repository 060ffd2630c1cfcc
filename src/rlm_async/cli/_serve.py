"""``rlm-async serve``: the command's arguments and what it does.

Wired into ``rlm_async.cli`` with :func:`add_serve_arguments` (parser) and :func:`serve`
(``async``, returns the exit status). This module imports neither Starlette nor uvicorn
until the command runs, so the rest of the CLI works without the ``server`` extra.

The bearer token is read from the environment variable named by ``--api-key-env``, never
from the command line (argv is visible to every user of the machine in ``ps``). Several
tokens, comma-separated, let several callers in, each owning its own sessions.

``--workers 1`` serves in this process and event loop; more workers are uvicorn's worker
processes (``server._workers``), each making its own app from a pickled ``ReplicaApp``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import ipaddress
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from rlm_async.cli._arg_types import (
    non_negative_seconds,
    port_number,
    positive_int,
    positive_seconds,
)
from rlm_async.cli._dotenv_flag import add_dotenv_argument, settings_from_env
from rlm_async.cli._engine_flags import DEFAULT_MODEL, add_engine_arguments, engine_options
from rlm_async.cli._session_flags import (
    add_session_arguments,
    max_sessions,
    sessions_line,
)
from rlm_async.cli._tool_flags import add_tool_arguments, put_cwd_on_path

if TYPE_CHECKING:
    from rlm_async.providers._settings import Settings
    from rlm_async.server._workers import ReplicaApp

__all__ = ["add_serve_arguments", "default_workers", "run_serve", "serve"]

DEMO_ROOT = "openai-compatible:rlm-demo-root"
DEMO_SUB = "openai-compatible:rlm-demo-sub"
DRAIN_TIMEOUT = 10.0


def default_workers() -> int:
    """The CPUs this process may run on (its affinity mask), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no sched_getaffinity (macOS, Windows)
        return os.cpu_count() or 1


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``serve`` command's options to ``parser``.

    Also turns off abbreviated options on this parser, so ``--api-key`` cannot silently
    mean ``--api-key-env``.
    """
    parser.allow_abbrev = False
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=port_number, default=8000, help="port (default 8000; 0: any free)"
    )
    add_engine_arguments(parser, model_help=DEFAULT_MODEL)
    cores = default_workers()
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=cores,
        metavar="N",
        help=f"worker processes behind the one socket, each with its own runs and warm pool "
        f"(default: the CPUs available, {cores}; 1: serve in this process)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=positive_seconds,
        default=DRAIN_TIMEOUT,
        metavar="S",
        help="on SIGTERM/SIGINT, seconds runs in flight get to finish before they are "
        f"cancelled (default {DRAIN_TIMEOUT:g})",
    )
    parser.add_argument(
        "--drain-delay",
        type=non_negative_seconds,
        default=0.0,
        metavar="S",
        help="on SIGTERM, answer 503 on /readyz and keep serving S seconds (for load "
        "balancers to stop sending) before the drain starts; a second SIGTERM skips the "
        "rest (default 0)",
    )
    parser.add_argument(
        "--max-concurrent-runs",
        type=int,
        default=8,
        help="runs at once (per worker); more are refused with 429 (default 8)",
    )
    parser.add_argument(
        "--max-queue", type=int, default=0, help="requests that may wait for a run (default 0)"
    )
    parser.add_argument(
        "--max-request-mb", type=float, default=64.0, help="largest request body (default 64)"
    )
    parser.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="close a connection whose request headers take longer (default 10)",
    )
    parser.add_argument(
        "--body-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="answer 408 to a request body that takes longer (default 60)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=None,
        metavar="N",
        help="connections held at once, more are refused (default: half the open-file limit, "
        "at most 1024)",
    )
    parser.add_argument(
        "--keep-alive-timeout",
        type=float,
        default=5.0,
        metavar="S",
        help="close an idle keep-alive connection after S seconds (default 5)",
    )
    parser.add_argument(
        "--api-key-env",
        metavar="VAR",
        default=None,
        help="require 'Authorization: Bearer <token>', the token read from this env variable "
        "(several, comma-separated: one per caller, each owning its own sessions)",
    )
    parser.add_argument(
        "--warm-repls",
        type=int,
        default=0,
        metavar="N",
        help="keep N REPL processes pre-started (per worker)",
    )
    add_session_arguments(parser)
    add_tool_arguments(parser)
    parser.add_argument(
        "--demo",
        action="store_true",
        help="serve the offline demo model (loopback mock server; no keys needed)",
    )
    parser.add_argument(
        "--metrics-no-auth",
        action="store_true",
        help="serve GET /metrics without the bearer token (for a Prometheus scraping without "
        "credentials; keep the port private)",
    )
    add_dotenv_argument(parser)
    parser.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _replica(
    args: argparse.Namespace,
    settings: Settings,
    model: str,
    sub: str | None,
    token: str | list[str] | None,
) -> ReplicaApp:
    from rlm_async.server._workers import ReplicaApp

    # The server's limits: a request's own options may tighten them (with_options), never
    # loosen them (see server._options).
    return ReplicaApp(
        model=model,
        sub_model=sub,
        options=engine_options(args),
        settings=settings,
        warm_repls=args.warm_repls,
        app_options={
            "api_key": token,
            "max_concurrent_runs": args.max_concurrent_runs,
            "max_queue": args.max_queue,
            "max_request_bytes": max(1, int(args.max_request_mb * 1024 * 1024)),
            "body_timeout": args.body_timeout,
            "max_sessions": max_sessions(args),
            "session_idle_timeout": args.session_idle_timeout,
            "metrics_auth": not args.metrics_no_auth,
        },
        tools=tuple(args.tools),
        mcp_servers=tuple(args.mcp_server),
        drain_delay=args.drain_delay,
        cache=args.cache,
    )


async def serve(args: argparse.Namespace) -> int:
    """Run the server until SIGINT/SIGTERM; returns the exit status.

    Raises:
        ConfigurationError: a bad model name, a missing key, the server extra missing, a
            ``--tools`` name that cannot be imported, or ``--mcp-server`` without the
            ``mcp`` extra.
    """
    if args.mcp_server:
        from rlm_async.tools._mcp import require_mcp

        require_mcp()
    if args.tools:
        put_cwd_on_path()
    token: str | list[str] | None = None
    if args.api_key_env:
        tokens = [t.strip() for t in os.environ.get(args.api_key_env, "").split(",")]
        token = [t for t in tokens if t] or None
        if token is not None and len(token) == 1:
            token = token[0]
        if not token:
            print(
                f"rlm-async serve: error: --api-key-env {args.api_key_env}: "
                "that environment variable is not set or empty",
                file=sys.stderr,
            )
            return 2
    elif not _is_loopback(args.host):
        print(
            f"rlm-async serve: warning: serving on {args.host} without authentication; "
            "anyone who can reach it can spend your model budget (use --api-key-env VAR)",
            file=sys.stderr,
        )
    if args.demo:
        return await _serve_demo(args, token)
    replica = _replica(
        args, settings_from_env(args), args.model or DEFAULT_MODEL, args.sub_model, token
    )
    return await _serve(args, replica, label=None)


async def _serve_demo(args: argparse.Namespace, token: str | list[str] | None) -> int:
    from rlm_async.demo import ROOT_LATENCY, SUB_LATENCY, demo_responder
    from rlm_async.providers._settings import Settings
    from rlm_async.testing import MockLLMServer

    # One mock model in this process's event loop, for every worker (they reach it over
    # loopback, as they would a provider).
    async with MockLLMServer(
        demo_responder,
        latency=lambda r: ROOT_LATENCY if r.system is not None else SUB_LATENCY,
    ) as mock:
        settings = Settings(openai_compatible_base_url=mock.base_url)
        replica = _replica(args, settings, DEMO_ROOT, DEMO_SUB, token)
        label = (
            "OFFLINE DEMO MODEL (scripted, served over loopback HTTP; it answers "
            "needle-in-a-haystack questions: try a context from rlm_async.demo.make_haystack)"
        )
        return await _serve(args, replica, label=label)


async def _serve(args: argparse.Namespace, replica: ReplicaApp, *, label: str | None) -> int:
    from rlm_async.server._app import create_app
    from rlm_async.server._drain import DrainOnSigterm
    from rlm_async.server._heap import SettleHeapAfterStartup
    from rlm_async.server._uvicorn import base_url_of, bind_socket, server_config
    from rlm_async.server._workers import serve_workers

    options: dict[str, Any] = {
        "header_timeout": args.header_timeout,
        "max_connections": args.max_connections,
        "keep_alive_timeout": args.keep_alive_timeout,
        "log_level": args.log_level,
        "timeout_graceful_shutdown": args.drain_timeout,
        # The command is an application: uvicorn's own log set-up is fine here.
    }
    # Made here whatever the number of workers, so that a bad model name, a missing key or
    # a bad limit is this command's error, before any worker starts.
    rlm = replica.make_rlm()
    app = create_app(lambda: rlm, **replica.app_options)
    served: Any = app
    if args.drain_delay:
        served = DrainOnSigterm(
            app, delay=args.drain_delay, on_drain=app.state.rlm_service.begin_drain
        )
    # This process serves and nothing else: its start-up heap is frozen (server._heap).
    config = server_config(SettleHeapAfterStartup(served), **options)
    label = label or f"root {rlm.model}, sub-calls {rlm.sub_model}"
    if args.workers > 1:
        await rlm.aclose()  # that one was the check: each worker makes and opens its own
    sock = bind_socket(args.host, args.port)
    try:
        url = base_url_of(sock)
        token = replica.app_options.get("api_key")
        auth = "no authentication"
        if isinstance(token, list):
            auth = f"{len(token)} bearer tokens from ${args.api_key_env}"
        elif token:
            auth = f"bearer token from ${args.api_key_env}"
        workers = (
            "this process"
            if args.workers == 1
            else f"{args.workers} worker processes (each: its own runs, queue and warm pool)"
        )
        print(
            f"rlm-async serve: {url}  ({auth})\n"
            f"  model: {label}\n"
            f"  serving in {workers}\n"
            f"  POST {url}/v1/chat/completions   POST {url}/v1/rlm   "
            f"POST {url}/v1/rlm/stream   GET {url}/health   GET {url}/metrics\n"
            f"  {sessions_line(url, replica.app_options)}{_tools_line(replica)}",
            file=sys.stderr,
            flush=True,
        )
        if args.workers == 1:
            await _make_server(config).serve(sockets=[sock])
            return 0
        # The workers' Unix sockets, through which a session's requests reach its worker.
        with tempfile.TemporaryDirectory(prefix="rlm-async-sessions-") as session_dir:
            replica = dataclasses.replace(replica, session_dir=session_dir)
            return await serve_workers(replica, sock, workers=args.workers, **options)
    finally:
        sock.close()


def _tools_line(replica: ReplicaApp) -> str:
    named = [*replica.tools, *(f"MCP {server.label}" for server in replica.mcp_servers)]
    return f"\n  tools: {', '.join(named)}" if named else ""


def _make_server(config: Any) -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, minus raising SIGINT/SIGTERM again after its graceful shutdown.

        uvicorn re-raises the signal so that a host loop stops too; for this command the
        shutdown is the normal end, so it returns 0 (as ``uvicorn``'s own CLI does).
        """

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            signals = (signal.SIGINT, signal.SIGTERM)
            original = {sig: signal.signal(sig, self.handle_exit) for sig in signals}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

    return Server(config)


def run_serve(args: argparse.Namespace) -> int:
    """``serve`` in a fresh event loop (for callers without one)."""
    from rlm_async._exceptions import RLMError

    try:
        return asyncio.run(serve(args))
    except RLMError as exc:
        print(f"rlm-async serve: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
