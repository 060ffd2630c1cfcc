"""What the REPL launcher looks up on the host, once per process: bwrap, setpriv, the
interpreter's prefixes and the system's ``/bin``, ``/lib``... links.

Starting a REPL builds its command every time; these answers do not change while the process
runs, so each is looked up (or probed) once and cached.
"""

from __future__ import annotations

import compileall
import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys

__all__ = [
    "PROBE_TIMEOUT",
    "SYSTEM_LINKS",
    "bwrap_path",
    "bwrap_version",
    "child_bytecode",
    "interpreter_paths",
    "setpriv_argv",
    "system_links",
]

PROBE_TIMEOUT = 10.0
SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


# Looked up once per process, like the probes that decide whether bwrap is used at all:
# a PATH search is ~50-70 us, a quarter of building the command of each REPL started.
@functools.lru_cache(maxsize=1)
def bwrap_path() -> str | None:
    return shutil.which("bwrap")


@functools.lru_cache(maxsize=1)
def bwrap_version() -> tuple[int, ...]:
    path = bwrap_path()
    if path is None:
        return ()
    try:
        done = subprocess.run([path, "--version"], capture_output=True, timeout=PROBE_TIMEOUT)
        text = done.stdout.decode(errors="replace").split()[-1]  # "bubblewrap 0.8.0"
        return tuple(int(part) for part in text.split("."))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return ()


@functools.lru_cache(maxsize=8)
def setpriv_argv(uid: int, gid: int) -> tuple[str, ...]:
    setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
    return (
        setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
        "--inh-caps=-all", "--bounding-set=-all", "--",
    )  # fmt: skip


@functools.lru_cache(maxsize=8)
def interpreter_paths(python: str) -> tuple[str, ...]:
    """Directories the interpreter needs (its prefixes), as real paths."""
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        prefixes = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    else:
        code = "import json,sys;print(json.dumps([sys.prefix,sys.base_prefix,sys.exec_prefix,sys.base_exec_prefix]))"  # noqa: E501 - one command line
        done = subprocess.run(
            [python, "-I", "-S", "-c", code], capture_output=True, timeout=PROBE_TIMEOUT,
            check=True, env={"PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        prefixes = json.loads(done.stdout)
    paths = {os.path.realpath(p) for p in prefixes}
    paths.add(os.path.dirname(os.path.realpath(python)))
    paths.discard("/")
    return tuple(sorted(paths))


@functools.lru_cache(maxsize=1)
def system_links() -> tuple[str, ...]:
    """bwrap's arguments for ``/bin``, ``/lib``...: the host's symlinks into ``/usr`` made
    again, or directories bound read-only (looked at once per process)."""
    args: list[str] = []
    for link in SYSTEM_LINKS:
        if os.path.islink(link):
            args += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            args += ["--ro-bind", link, link]
    return tuple(args)


class _ChildBytecode:
    """Writes the child's bytecode beside it once per process, if missing or stale.

    pip writes it at install; an editable install or a source checkout has none, and the
    child would compile ~1,000 lines on every start. ``checked`` lets the caller skip the
    thread hop after the first start. A directory that cannot be written (a read-only
    install) is left as it is, and so is one whose user asked for no bytecode
    (``PYTHONDONTWRITEBYTECODE``): the child then compiles its file, as a script would.
    """

    checked = False

    def __call__(self, path: str) -> None:
        if not sys.dont_write_bytecode:
            with contextlib.suppress(OSError):  # unwritable: compiled by the child instead
                compileall.compile_file(path, quiet=2)
        type(self).checked = True


child_bytecode = _ChildBytecode()
