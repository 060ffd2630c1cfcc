"""Starting a REPL child: its work directory, environment, sandboxed command, and hello.

Used by a session for a cold start or a restart, and by the warm pool ahead of time. A child
starts *blank* (no context); ``load_context`` hands it one later, so one pre-started process
can serve whichever completion comes first, and is never reused by another.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from rlm_async._exceptions import (
    ReplCrashed,
    ReplError,
    ReplProtocolError,
    ReplTimeout,
    SandboxError,
)
from rlm_async._logging import get_logger
from rlm_async.repl._host_lookups import child_bytecode
from rlm_async.repl._launcher import ChildCommand, build_child_command
from rlm_async.repl._options import ReplOptions
from rlm_async.repl._process import ChildProcess
from rlm_async.repl._protocol import (
    PROTOCOL_VERSION,
    ContextLoadedMessage,
    FatalMessage,
    LoadContextMessage,
    ReadyMessage,
    check_version,
    encode_message,
)
from rlm_async.repl._sandbox_options import SandboxOptions
from rlm_async.repl._spawn import spawn_child_async
from rlm_async.repl._tree import remove_tree
from rlm_async.repl._work_dir import create_child_file

__all__ = [
    "StartedChild",
    "load_context",
    "make_work_dir",
    "remove_work_dir",
    "remove_work_dir_now",
    "start_child",
]

_log = get_logger("rlm_async.repl")
# Loaded by path, never imported: see child/__init__.py.
_CHILD_FILE = str(Path(__file__).with_name("child") / "_child.py")
# The child is loaded as a module from its file, not run as a script: a script is compiled
# on every start (~10 ms of CPU for _child.py, a fifth of a REPL's start), a module's
# bytecode is read from __pycache__ (written by pip at install, or by ``child_bytecode``).
_BOOT = (
    "import sys, importlib.util as u; "
    "s = u.spec_from_file_location('_rlm_async_child', sys.argv[1]); "
    "m = u.module_from_spec(s); s.loader.exec_module(m); sys.exit(m.main(sys.argv[1:]))"
)


@dataclass
class StartedChild:
    """A child that said it is ready, with its own work directory."""

    child: ChildProcess
    work_dir: str
    ready: ReadyMessage


_WORK = "work"


def make_work_dir() -> str:
    """A fresh private directory for one REPL: ``<tmp>/rlm-repl-XXXX/work``.

    The work dir belongs to model code, which can change its mode (``fchmod`` on an open fd
    where seccomp does not refuse it). The ``rlm-repl-XXXX`` directory around it stays the
    parent's (0700, or 0710 with the group of a ``run_as`` child): whatever mode the work
    dir gets, no other local user can reach it or the context inside.
    """
    outer = tempfile.mkdtemp(prefix="rlm-repl-")
    path = os.path.join(outer, _WORK)
    os.mkdir(path, 0o700)
    return path


def remove_work_dir_now(work_dir: str) -> None:
    """Remove a work dir (and the private directory made around it); never raises."""
    outer, name = os.path.split(work_dir)
    if name == _WORK and os.path.basename(outer).startswith("rlm-repl-"):
        remove_tree(outer)
    else:
        remove_tree(work_dir)


async def remove_work_dir(work_dir: str) -> None:
    """``remove_work_dir_now`` in a worker thread: a big tree takes a while; never raises."""
    await anyio.to_thread.run_sync(remove_work_dir_now, work_dir)


_warned: set[str] = set()


def _warn_once(warnings: tuple[str, ...]) -> None:
    """Log what the sandbox could not do once per process, not at every REPL start.

    The machine does not change between starts; the report of every REPL (``doctor``,
    ``result.metadata["sandbox"]``) still carries the warnings.
    """
    if not warnings:
        return
    text = "; ".join(warnings)
    if text in _warned:
        return
    _warned.add(text)
    _log.warning(
        "rlm_async.repl.sandbox_warning",
        warning=text,
        note="said once per process; every REPL's sandbox report repeats it",
    )


def _child_env(work_dir: str, options: ReplOptions) -> dict[str, str]:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": work_dir,
        "TMPDIR": work_dir,
        # Fewer malloc arenas and single-threaded BLAS keep threads inside RLIMIT_AS.
        "MALLOC_ARENA_MAX": "2",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    env.update(options.env)
    return env


def _sandbox(options: ReplOptions) -> SandboxOptions | None:
    """The sandbox options in force, or ``None`` when the sandbox is off."""
    sandbox = options.sandbox
    return sandbox if sandbox is not None and sandbox.enabled else None


def _write_config(work_dir: str, options: ReplOptions) -> str:
    config: dict[str, Any] = {
        "protocol_version": PROTOCOL_VERSION,  # the child refuses another one
        "output_limit": options.output_limit,
        "max_answer_chars": options.max_answer_chars,
    }
    sandbox = _sandbox(options)
    if sandbox is not None:
        config["sandbox"] = sandbox.to_policy(work_dir, os.getpid())
        config["cpu_seconds_per_cell"] = sandbox.cpu_seconds_per_cell
    path = os.path.join(work_dir, "repl-config.json")
    # Never open(path, "w"): after a crash, model code may have left a symlink here.
    with create_child_file(path) as handle:
        handle.write(json.dumps(config).encode("utf-8"))
    return path


def _own_pid_namespace(argv: tuple[str, ...]) -> bool:
    """Whether ``argv`` runs the child under bwrap in a pid namespace and a session of its
    own (what lets ``ChildProcess`` skip the scan of ``/proc`` for its session at the end)."""
    if not argv or os.path.basename(argv[0]) != "bwrap" or "--" not in argv:
        return False
    bwrap_options = argv[1 : argv.index("--")]
    return "--unshare-pid" in bwrap_options and "--new-session" in bwrap_options


async def start_child(options: ReplOptions, work_dir: str) -> StartedChild:
    """Spawn a blank child in ``work_dir`` and wait for its ``ready`` message.

    Raises:
        ReplTimeout: it did not say ready within ``options.start_timeout``.
        SandboxError: a required sandbox layer could not be applied.
        ReplCrashed: it died or failed while starting (its output is in the message).
    """
    started = time.perf_counter()
    config_path = _write_config(work_dir, options)
    if not child_bytecode.checked:
        await anyio.to_thread.run_sync(child_bytecode, _CHILD_FILE)
    argv = [
        options.python, "-I", "-c", _BOOT, _CHILD_FILE,
        "--in-fd", "{in_fd}", "--out-fd", "{out_fd}", "--config", config_path,
    ]  # fmt: skip
    popen_extra: dict[str, Any] = {}
    env = _child_env(work_dir, options)
    command: ChildCommand | None = None
    sandbox = _sandbox(options)
    if sandbox is not None:
        command = build_child_command(argv, work_dir=work_dir, options=sandbox, env=env)
        argv = list(command.argv)
        popen_extra = dict(command.popen_kwargs)
        _warn_once(command.warnings)
    try:
        child = await spawn_child_async(
            argv,
            cwd=work_dir,
            env=env,
            max_message_bytes=options.max_message_bytes,
            output_limit=options.output_limit,
            popen_extra=popen_extra,
        )
    except OSError as exc:
        raise ReplError(
            f"could not start the REPL process ({options.python}): {exc.strerror or exc}; check "
            "ReplOptions.python (an interpreter path) and that the machine can start processes"
        ) from exc
    child.own_pid_namespace = command is not None and _own_pid_namespace(command.argv)
    try:
        with anyio.fail_after(options.start_timeout):
            message = await child.receive()
    except TimeoutError:
        await child.terminate(grace=0)
        raise ReplTimeout(
            f"the REPL did not start within {options.start_timeout} s "
            "(ReplOptions.start_timeout); is the machine overloaded?"
        ) from None
    except BaseException:
        await child.terminate(grace=0)
        raise
    if isinstance(message, ReadyMessage):
        try:
            check_version(message)
        except ReplProtocolError:
            await child.terminate(grace=0)
            raise
        if command is not None:
            # How the parent launched it, next to what the child applied: the one report
            # that doctor prints and result.metadata["sandbox"] carries.
            message.sandbox["launch"] = {
                "strategy": command.strategy,
                "uid": command.uid,
                "warnings": list(command.warnings),
            }
            message.sandbox.setdefault("warnings", []).extend(
                f"launch: {warning}" for warning in command.warnings
            )
        seconds = time.perf_counter() - started
        _log.debug("rlm_async.repl.started", pid=child.pid, seconds=round(seconds, 4))
        return StartedChild(child, work_dir, message)
    await child.terminate(grace=0)
    child.drain_now()
    detail = child.output.take().strip()
    if isinstance(message, FatalMessage):
        if message.kind == "sandbox":
            raise SandboxError(f"the REPL's sandbox could not be applied: {message.error}")
        if message.kind == "protocol_version":
            raise ReplProtocolError(
                f"the REPL child refused this parent: {message.error}; reinstall rlm-async "
                "so that both come from the same version"
            )
        raise ReplCrashed(f"the REPL failed to start: {message.error}")
    if message is None:
        raise ReplCrashed(
            f"the REPL failed to start: {child.exit_description()}"
            + (f"\n{detail[-2000:]}" if detail else "")
        )
    raise ReplProtocolError(f"the REPL sent {message.type!r} before saying it was ready")


async def load_context(
    child: ChildProcess, path: str, fmt: str, *, within: float, name: str | None = None
) -> float:
    """Tell a child to load a context file (into ``name``, or ``context``); returns the
    child's load time.

    Raises:
        ReplTimeout: the context did not load within ``within`` seconds.
        ReplCrashed: the child died or could not read the file.
    """
    with contextlib.suppress(OSError):
        await child.send(encode_message(LoadContextMessage(path=path, format=fmt, name=name)))
    try:
        with anyio.fail_after(within):
            message = await child.receive()
    except TimeoutError:
        raise ReplTimeout(
            f"the REPL did not load its context within {within} s; raise "
            "ReplOptions.start_timeout for very large contexts"
        ) from None
    if isinstance(message, ContextLoadedMessage):
        if message.error is not None:
            raise ReplCrashed(f"the REPL could not load the context: {message.error}")
        return message.seconds
    if message is None:
        raise ReplCrashed(f"the REPL died while loading the context ({child.exit_description()})")
    raise ReplProtocolError(f"the REPL sent {message.type!r} while loading the context")
