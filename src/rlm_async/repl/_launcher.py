"""The REPL child's launcher: who it runs as and in which namespaces (bwrap, setpriv, run_as).

The child applies the kernel layers to itself (``child/_sandbox.py``). The parent decides who the
child runs as and in which namespaces, because that must happen *before* the interpreter
starts:

* **Not root**: the child keeps the parent's uid; with bubblewrap it also gets its own user,
  pid, network, ipc and mount namespaces (only the Python runtime, the system libraries and
  the work dir are visible, the parent's processes are not).
* **Root** (``run_as``, default ``"nobody"``): the child must not stay root, because root
  can read every other root process's ``/proc/<pid>/environ`` once any layer slips.

  - With bubblewrap: bwrap starts as root (so it can reach an interpreter under a 0700
    ``/root``), builds the mount namespace, and ``setpriv`` drops to ``run_as`` before the
    interpreter starts: the child is a real unprivileged uid with no capabilities.
  - Without it: ``Popen(user=, group=, extra_groups=[])`` (no ``preexec_fn``), but only if
    that uid can reach the interpreter, its prefix and the work dir; this is checked by
    running the interpreter once as that uid (a pyenv under ``/root`` fails the check,
    and would otherwise silently pick up the system's ``libpython``).
  - Neither: ``strict`` raises ``SandboxError``; otherwise the child runs as root without
    capabilities, with a loud warning.

The work dir belongs to the child (its uid, or chowned to ``run_as`` before each start), so
model code controls its entries: the parent must never write into it by name (a planted
symlink turns ``open(path, "w")`` into a write anywhere the parent can write; use
``create_child_file``) nor follow names there when reading. Call ``build_child_command``
from a long-lived thread (the event loop's): ``PR_SET_PDEATHSIG`` fires when the *thread*
that forked the child exits, not the process.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
import shutil
import stat
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlm_async._exceptions import SandboxError
from rlm_async.repl._host_lookups import (
    PROBE_TIMEOUT,
    bwrap_path,
    bwrap_version,
    interpreter_paths,
    setpriv_argv,
    system_links,
)
from rlm_async.repl._sandbox_options import SandboxOptions
from rlm_async.repl._work_dir import give_work_dir, open_private_parent_to
from rlm_async.repl.child import _sandbox

__all__ = ["ChildCommand", "build_child_command", "probe_sandbox"]

_CHILD_DIR = str(Path(_sandbox.__file__).resolve().parent)  # _child.py and _sandbox.py
_ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime")
_ETC_NETWORK = (
    "/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf", "/etc/host.conf",
    "/etc/services", "/etc/protocols", "/etc/ssl", "/etc/ca-certificates", "/etc/pki",
)  # fmt: skip


@dataclass(frozen=True)
class ChildCommand:
    """How to start the child: the final argv and the extra ``Popen`` keyword arguments.

    Attributes:
        argv: The command, possibly wrapped in ``bwrap`` (and ``setpriv``).
        popen_kwargs: ``user``/``group``/``extra_groups`` when the uid is dropped by Popen.
        warnings: What could not be applied; log them (the report repeats them).
        strategy: ``"plain"``, ``"run_as"``, ``"bwrap"``, ``"bwrap+run_as"`` or ``"root"``.
        uid: The uid the child runs as, seen from the host.
        gid: Its gid, when it differs from the parent's.
    """

    argv: tuple[str, ...]
    popen_kwargs: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    strategy: str = "plain"
    uid: int = 0
    gid: int | None = None


def build_child_command(
    python_argv: Sequence[str],
    *,
    work_dir: str,
    options: SandboxOptions,
    env: Mapping[str, str] | None = None,
) -> ChildCommand:
    """Wrap the child's command line according to ``options`` and who we are.

    Args:
        python_argv: ``[python, "-I", child_file, ...]``; protocol fds may be placeholders.
        work_dir: The child's work dir; chowned to the child's uid when that differs.
        options: The sandbox options.
        env: The child's environment; pass the same mapping to ``Popen(env=...)``. It is
            never put on a command line (bwrap inherits it), so it stays out of
            ``/proc/<pid>/cmdline``.

    Raises:
        SandboxError: ``bwrap="always"`` and bwrap does not work here, or ``strict`` and
            the child would run as root.
    """
    argv = list(python_argv)
    if argv and os.sep not in argv[0]:
        argv[0] = shutil.which(argv[0]) or argv[0]  # bwrap and the probes need a path
    if not options.enabled or not sys.platform.startswith("linux"):
        return ChildCommand(tuple(argv), strategy="plain", uid=os.geteuid())
    warnings: list[str] = []
    euid = os.geteuid()
    target = _resolve_user(options.run_as) if euid == 0 and options.run_as is not None else None
    if target is not None:
        open_private_parent_to(work_dir, target[1])
    use_bwrap = False
    if options.bwrap != "never":
        reason = _bwrap_problem(argv[0], target, network=options.allow_network)
        if reason is None:
            use_bwrap = True
        elif options.bwrap == "always":
            raise SandboxError(f"bwrap='always' but bubblewrap cannot be used here: {reason}")
        elif euid == 0 and target is not None:
            warnings.append(f"bubblewrap unavailable ({reason})")

    if use_bwrap:
        bwrap_argv = _bwrap_argv(argv[0], work_dir, options, env, drop=target)
        if target is not None:
            give_work_dir(work_dir, *target)
            setpriv = setpriv_argv(*target)
            return ChildCommand(
                (*bwrap_argv, *setpriv, *argv), warnings=tuple(warnings),
                strategy="bwrap+run_as", uid=target[0], gid=target[1],
            )  # fmt: skip
        if euid == 0:
            _root_refusal(options, warnings, "run_as is None")
        return ChildCommand(
            (*bwrap_argv, *argv), warnings=tuple(warnings),
            strategy="root" if euid == 0 else "bwrap", uid=euid,
        )  # fmt: skip

    if target is not None:
        problem = _run_as_problem(argv[0], work_dir, *target)
        if problem is None:
            give_work_dir(work_dir, *target)
            uid, gid = target
            return ChildCommand(
                tuple(argv), {"user": uid, "group": gid, "extra_groups": []},
                tuple(warnings), "run_as", uid, gid,
            )  # fmt: skip
        warnings.append(problem)
        _root_refusal(options, warnings, "cannot drop to run_as")
        return ChildCommand(tuple(argv), warnings=tuple(warnings), strategy="root", uid=0)
    if euid == 0:
        _root_refusal(options, warnings, "run_as is None")
        return ChildCommand(tuple(argv), warnings=tuple(warnings), strategy="root", uid=0)
    return ChildCommand(tuple(argv), warnings=tuple(warnings), strategy="plain", uid=euid)


def probe_sandbox(python: str = sys.executable) -> dict[str, Any]:
    """What this machine offers the REPL sandbox (for ``rlm-async doctor``), nothing applied."""
    report = _sandbox.probe()
    target: tuple[int, int] | None = None
    if os.geteuid() == 0:
        with contextlib.suppress(SandboxError):
            target = _resolve_user("nobody")
    problem = _bwrap_problem(python, target, network=False)
    report["bwrap"] = {"path": bwrap_path(), "usable": problem is None, "problem": problem}
    report["setpriv"] = shutil.which("setpriv")
    if target is not None:
        report["run_as_nobody_without_bwrap"] = _interpreter_problem(python, *target) or "ok"
    return report


# ---- helpers ------------------------------------------------------------------------------


def _resolve_user(user: str | int) -> tuple[int, int]:
    try:
        entry = pwd.getpwuid(user) if isinstance(user, int) else pwd.getpwnam(user)
    except KeyError:
        if isinstance(user, int):
            return user, user  # a uid without a passwd entry: its own group
        raise SandboxError(
            f"SandboxOptions.run_as={user!r}: no such user; give an existing name or a uid"
        ) from None
    if entry.pw_uid == 0:
        raise SandboxError("SandboxOptions.run_as must not be root; use e.g. 'nobody' or a uid")
    return entry.pw_uid, entry.pw_gid


def _root_refusal(options: SandboxOptions, warnings: list[str], why: str) -> None:
    message = (
        f"the REPL child would run as root ({why}): with root, any gap in the other layers "
        "exposes every root process's environment and files. Install bubblewrap "
        "(apt-get install bubblewrap), use a Python that run_as can read, or run the "
        "parent as an ordinary user"
    )
    if options.strict:
        raise SandboxError(message)
    warnings.append(message)


def _minimal_paths(paths: set[str]) -> list[str]:
    """Drop paths inside other paths of the set; shortest first (mount order)."""
    result: list[str] = []
    for path in sorted(paths, key=lambda p: (p.count("/"), p)):
        if not any(path == kept or path.startswith(kept.rstrip("/") + "/") for kept in result):
            result.append(path)
    return result


def _bwrap_argv(
    python: str,
    work_dir: str | None,
    options: SandboxOptions | None,
    env: Mapping[str, str] | None,
    *,
    drop: tuple[int, int] | None,
) -> list[str]:
    bwrap = bwrap_path() or "bwrap"
    root = os.geteuid() == 0
    args = [bwrap, "--die-with-parent", "--new-session"]
    args += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if options is None or not options.allow_network:
        args.append("--unshare-net")
    if not root:
        args.append("--unshare-user")
        if bwrap_version() >= (0, 8):
            args.append("--disable-userns")  # seccomp denies it too; this holds without it
    elif drop is not None:
        # bwrap keeps every capability for root: keep only what setpriv needs to drop them.
        args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]
    else:
        args += ["--cap-drop", "ALL"]
    args += ["--ro-bind", "/usr", "/usr"]
    args += system_links()
    etc = list(_ETC_FILES)
    if options is not None and options.allow_network:
        etc += _ETC_NETWORK
    for path in etc:
        args += ["--ro-bind-try", path, path]
    args += ["--proc", "/proc", "--dev", "/dev"]

    read_only = set(interpreter_paths(python)) | {_CHILD_DIR}
    writable = {os.path.realpath(work_dir)} if work_dir is not None else set()
    if options is not None:
        read_only |= {os.path.realpath(p) for p in options.read_paths if os.path.exists(p)}
        writable |= {os.path.realpath(p) for p in options.write_paths if os.path.exists(p)}
    read_only = {p for p in read_only if not p.startswith("/usr/") and p != "/usr"}
    mounts = _minimal_paths(read_only)
    # Directories bwrap creates for mount points copy the host's modes (a 0700 /root would
    # hide the interpreter from run_as): create them 0755 first.
    created: set[str] = {"/", "/usr", "/proc", "/dev"}
    for target in sorted(set(mounts) | writable, key=lambda p: (p.count("/"), p)):
        for parent in reversed(Path(target).parents):
            text = str(parent)
            if text in created or any(text.startswith(m + "/") or text == m for m in mounts):
                continue
            args += ["--perms", "0755", "--dir", text]
            created.add(text)
    for path in mounts:
        args += ["--ro-bind", path, path]
    for path in sorted(writable, key=lambda p: (p.count("/"), p)):
        args += ["--bind", path, path]
    # No --clearenv/--setenv: values on bwrap's command line are readable by every local
    # user in /proc/<pid>/cmdline. bwrap and setpriv pass on the environment Popen gives
    # them (the same allow-listed mapping), and /proc/<pid>/environ is private to the uid.
    del env
    args += ["--chdir", os.path.realpath(work_dir) if work_dir is not None else "/", "--"]
    return args


@functools.lru_cache(maxsize=8)
def _bwrap_probe(python: str, euid: int, drop: tuple[int, int] | None, network: bool) -> str | None:
    if bwrap_path() is None:
        return "bwrap is not installed (apt-get install bubblewrap)"
    if drop is not None and shutil.which("setpriv") is None:
        return "setpriv (util-linux) is not installed"
    options = SandboxOptions(allow_network=network)
    try:
        argv = _bwrap_argv(python, None, options, None, drop=drop)
        if drop is not None:
            argv += list(setpriv_argv(*drop))
        done = subprocess.run(
            [*argv, python, "-I", "-S", "-c", _CHECK_CODE], capture_output=True,
            timeout=PROBE_TIMEOUT, env={"PATH": "/usr/bin:/bin"},
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bwrap failed to start: {exc}"
    if done.returncode != 0:
        return f"bwrap failed: {done.stderr.decode(errors='replace').strip()[-300:]}"
    return _check_output(python, done.stdout, "inside bwrap")


def _bwrap_problem(python: str, target: tuple[int, int] | None, *, network: bool) -> str | None:
    """``None`` if bwrap runs this interpreter here (as ``target``), else why not.

    Probed once per interpreter and uid by running it under the very same bwrap arguments.
    """
    return _bwrap_probe(python, os.geteuid(), target, network)


@functools.lru_cache(maxsize=8)
def _interpreter_problem(python: str, uid: int, gid: int) -> str | None:
    """Whether ``uid`` can run this interpreter with its own prefix (run once, cached)."""
    try:
        done = subprocess.run(
            [python, "-I", "-S", "-c", _CHECK_CODE], capture_output=True, timeout=PROBE_TIMEOUT,
            user=uid, group=gid, extra_groups=[], cwd="/", env={"PATH": "/usr/bin:/bin"},
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        return f"uid {uid} cannot run {python}: {exc}"
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip()[-200:]
        return f"uid {uid} cannot run {python}: {tail}"
    return _check_output(python, done.stdout, f"as uid {uid}")


# Run by the probes: the interpreter must reach its own stdlib and our files. A pyenv under
# a 0700 /root otherwise starts with the *system's* libpython and stdlib, silently.
_CHECK_CODE = (
    f"import os,sys;open({_sandbox.__file__!r}).close();print(os.path.realpath(sys.base_prefix))"
)


def _check_output(python: str, stdout: bytes, where: str) -> str | None:
    seen = stdout.decode(errors="replace").strip()
    if seen not in interpreter_paths(python):
        return (
            f"{python} {where} starts with prefix {seen!r}, not its own "
            f"{list(interpreter_paths(python))} (its directories are not readable there)"
        )
    return None


def _run_as_problem(python: str, work_dir: str, uid: int, gid: int) -> str | None:
    problem = _interpreter_problem(python, uid, gid)
    if problem is not None:
        return problem
    for path in Path(os.path.realpath(work_dir)).parents:
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            return f"cannot stat {path}: {exc}"
        info = os.stat(path)
        if not (
            mode & stat.S_IXOTH
            or (mode & stat.S_IXGRP and info.st_gid == gid)
            or (mode & stat.S_IXUSR and info.st_uid == uid)
        ):
            return f"uid {uid} cannot traverse {path} (mode {stat.filemode(mode)})"
    return None
