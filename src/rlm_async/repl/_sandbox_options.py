"""How the REPL child is confined: ``SandboxOptions`` and the policy it gives the child."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field, field_validator

from rlm_async._options import OptionsModel
from rlm_async.repl.child import _sandbox

__all__ = ["SandboxOptions"]

_MB = 1024 * 1024


class SandboxOptions(OptionsModel):
    """How the REPL child is confined (Linux; elsewhere only the limits apply).

    Attributes:
        enabled: Apply the sandbox at all. ``False`` keeps only the always-on protections
            (allow-listed environment, private work dir, own session).
        allow_network: Let model code open sockets (TCP, UDP, unix, DNS).
        allow_subprocess: Let model code fork and exec (``subprocess``, ``os.system``).
        read_paths: Extra files or directories model code may read.
        write_paths: Extra files or directories model code may read and write.
        memory_limit_mb: Address-space limit (``RLIMIT_AS``); a bigger allocation raises
            ``MemoryError`` in the cell and the REPL survives. ``None``: no limit.
        cpu_seconds_per_cell: CPU seconds a cell may use before it gets
            ``CellCpuLimitExceeded`` (REPL kept). ``None``: only the wall-clock cell timeout.
        file_size_limit_mb: Largest file model code may write (``EFBIG`` past it).
        max_open_files: File descriptors the child may hold.
        bwrap: Use bubblewrap namespaces: ``"auto"`` when it works here (probed once),
            ``"always"`` (``SandboxError`` if it cannot), ``"never"``.
        run_as: When the parent runs as root, the user (name or uid) the child runs as.
            ``None`` keeps root (refused when ``strict``). Ignored when not root.
        strict: A layer that cannot be applied is an error (``SandboxError``) instead of a
            warning in the report.
    """

    enabled: bool = True
    allow_network: bool = False
    allow_subprocess: bool = False
    read_paths: tuple[str, ...] = ()
    write_paths: tuple[str, ...] = ()
    memory_limit_mb: int | None = Field(default=2048, gt=0)
    cpu_seconds_per_cell: float | None = Field(default=None, gt=0)
    file_size_limit_mb: int | None = Field(default=512, gt=0)
    max_open_files: int | None = Field(default=256, ge=16)
    bwrap: Literal["auto", "always", "never"] = "auto"
    run_as: str | int | None = "nobody"
    strict: bool = False

    @field_validator("read_paths", "write_paths")
    @classmethod
    def _absolute(cls, paths: tuple[str, ...]) -> tuple[str, ...]:
        for path in paths:
            if not os.path.isabs(path):
                raise ValueError(f"sandbox paths must be absolute, got {path!r}")
        return tuple(os.path.normpath(p) for p in paths)

    def to_policy(self, work_dir: str, parent_pid: int) -> dict[str, Any]:
        """The JSON-able policy the child passes to ``apply_sandbox``.

        Args:
            work_dir: The child's private directory (read-write, HOME and TMPDIR).
            parent_pid: The pid the child must have as its parent (normally ``os.getpid()``).
        """
        return {
            "version": _sandbox.REPORT_VERSION,
            "work_dir": os.path.realpath(work_dir),
            "parent_pid": parent_pid,
            "parent_pid_ns": _pid_namespace(),
            "parent_uid": os.geteuid(),
            "allow_network": self.allow_network,
            "allow_subprocess": self.allow_subprocess,
            "read_paths": list(self.read_paths),
            "write_paths": list(self.write_paths),
            "memory_limit_bytes": _bytes(self.memory_limit_mb),
            "file_size_limit_bytes": _bytes(self.file_size_limit_mb),
            "max_open_files": self.max_open_files,
            "landlock": True,
            "seccomp": True,
            "require_unprivileged": True,
            "strict": self.strict,
        }


def _bytes(megabytes: int | None) -> int | None:
    return None if megabytes is None else megabytes * _MB


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
