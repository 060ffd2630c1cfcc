"""The sandbox the REPL child applies to itself before the first cell. Standard library only.

Loaded by path (never imported through ``rlm_async``) by ``_child.py`` right after start-up,
before any other thread exists and before the context is loaded. One file of ~900 lines, over
the package's ~400: it runs in the untrusted process, so it must be readable as one sequence
of layers applied in order, each with the syscall numbers and constants it needs beside it,
and it is loaded by path (one file to find, read and allow under Landlock). Layers, in order:

1. **rlimits**: address space (``MemoryError`` instead of the OOM killer), file size (writes
   past it fail with ``EFBIG``: Python ignores ``SIGXFSZ``), open files, no core dumps.
2. **parent death**: ``PR_SET_PDEATHSIG`` = ``SIGKILL``, then a check that the parent is still
   the one that started us (it may have died before the ``prctl``); and a child subreaper,
   so that descendants (when subprocesses are allowed) stay in our tree for the parent.
3. **privileges**: if we are still root, drop every capability; a child that is root in the
   initial user namespace is reported (and refused under ``strict``).
4. **no_new_privs**: required by both layers below; exec can never gain privileges again.
5. **Landlock**: read-only Python runtime and system libraries, read-write work dir, nothing
   else; no TCP bind/connect (ABI >= 4) and no signals or abstract unix sockets outside the
   sandbox (ABI >= 6).
6. **seccomp** (through ``libseccomp.so.2``, by soname): socket creation, io_uring, ptrace and
   process-memory calls, bpf, perf, userfaultfd, keyrings, mount and namespace calls, signals
   to other processes, fork/exec, System V IPC and POSIX message queues, new sessions
   (``setsid``: descendants stay in the child's session). Denied calls fail
   with ``EPERM`` so model code gets a ``PermissionError`` it can read; nothing kills the REPL.

The policy is a plain JSON dict written by the parent (``SandboxOptions.to_policy``)::

    work_dir               str   read-write, also HOME and TMPDIR
    parent_pid             int   the process that must stay our parent (PDEATHSIG race check)
    parent_pid_ns          str   the parent's ``/proc/self/ns/pid`` link; a different one means
                                 bwrap gave us our own pid namespace (its init ends us instead)
    parent_uid             int   the parent's euid (same uid and no bwrap -> deny path chmod)
    allow_network          bool  keep sockets and TCP (default False)
    allow_subprocess       bool  keep fork/exec and signals to our own children (default False)
    read_paths/write_paths list  extra directories or files
    memory_limit_bytes, file_size_limit_bytes, max_open_files   int or None
    landlock, seccomp      bool  request the layer (default True)
    require_unprivileged   bool  report a root child as a missing layer (default True)
    strict                 bool  a missing layer raises ``SandboxUnavailable`` instead of warning

Public: ``apply_sandbox(policy) -> report``, ``arm_cell_cpu_limit(seconds)`` /
``disarm_cell_cpu_limit()`` around each cell, ``explain_denial(exc)`` for tracebacks,
``end_descendants()`` on the way out, ``probe()``; ``SandboxUnavailable`` and
``CellCpuLimitExceeded``. If the parent is already
gone when the child starts (PDEATHSIG race), the child exits with status 70.

Not covered, by design of the kernel features: Landlock (ABI <= 7) does not govern
``chmod``/``chown``/``utime`` on files the uid already owns, nor UDP or unix sockets (seccomp
does); seccomp is a deny-list, so system calls newer than libseccomp are allowed. A separate
uid (``run_as``) and bwrap's mount namespace close what remains.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import resource
import signal
import stat
import sys
import time

TYPE_CHECKING = False  # without importing typing (2 ms of the child's start-up)
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "CellCpuLimitExceeded",
    "SandboxUnavailable",
    "apply_sandbox",
    "arm_cell_cpu_limit",
    "disarm_cell_cpu_limit",
    "end_descendants",
    "explain_denial",
    "landlock_abi",
    "policy_allows_subprocess",
    "probe",
]

REPORT_VERSION = 1

# ---- Linux constants (uapi headers) -----------------------------------------------------

_PR_SET_PDEATHSIG = 1
_PR_CAPBSET_DROP = 24
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

# Landlock system calls share one number on every architecture (asm-generic, >= 5.13).
_SYS_LANDLOCK_CREATE_RULESET = 444
_SYS_LANDLOCK_ADD_RULE = 445
_SYS_LANDLOCK_RESTRICT_SELF = 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1

_FS_EXECUTE = 1 << 0
_FS_WRITE_FILE = 1 << 1
_FS_READ_FILE = 1 << 2
_FS_READ_DIR = 1 << 3
_FS_MAKE_CHAR = 1 << 6
_FS_MAKE_BLOCK = 1 << 11
_FS_ABI1 = (1 << 13) - 1  # EXECUTE .. MAKE_SYM
_FS_REFER = 1 << 13  # ABI 2
_FS_TRUNCATE = 1 << 14  # ABI 3
_FS_IOCTL_DEV = 1 << 15  # ABI 5
_FS_FILE_ONLY = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV
_NET_BIND_TCP = 1 << 0  # ABI 4
_NET_CONNECT_TCP = 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
_SCOPE_SIGNAL = 1 << 1

# libseccomp (seccomp.h)
_SCMP_ACT_ALLOW = 0x7FFF0000
_SCMP_ACT_ERRNO = 0x00050000
_SCMP_FLTATR_ACT_BADARCH = 2
_SCMP_FLTATR_CTL_TSYNC = 4
_SCMP_CMP_NE = 1
_SCMP_CMP_MASKED_EQ = 7
_NR_SCMP_ERROR = -1

_CLONE_THREAD = 0x00010000
_CLONE_NAMESPACES = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)
_AF_UNIX = 1
_SOCK_STREAM = 1
_SOCK_TYPE_MASK = 0xF
_F_SETOWN = 8
_F_SETSIG = 10
_F_SETOWN_EX = 15
_FIOSETOWN = 0x8901
_SIOCSPGRP = 0x8902

# Calls no REPL cell has a reason to make; all fail with EPERM.
_ALWAYS_DENIED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "process_mrelease",
    "kcmp", "pidfd_getfd", "pidfd_send_signal", "tkill",
    "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "mount", "umount", "umount2", "unshare", "setns", "pivot_root", "chroot",
    "fsopen", "fsconfig", "fsmount", "fspick", "open_tree", "move_mount", "mount_setattr",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "iopl", "ioperm", "swapon", "swapoff", "reboot", "acct", "quotactl", "quotactl_fd",
    "syslog", "name_to_handle_at", "open_by_handle_at", "lookup_dcookie", "vhangup",
    "ioprio_set", "migrate_pages", "move_pages",
    "chown", "lchown", "fchownat",
    # ACLs and attributes by path are not governed by Landlock: an ACL could open a file
    # to other users, where chmod is refused.
    "setxattr", "lsetxattr", "removexattr", "lremovexattr",
    # Shared memory outside RLIMIT_AS: memfds are what a memory bomb would use instead.
    "memfd_create", "memfd_secret",
    # System V IPC and POSIX message queues: objects that outlive the run (1 GiB segments
    # held after it ended), a channel between users' REPLs, and, without an IPC namespace
    # of our own, other processes' segments to enumerate (SHM_STAT) and read (shmat).
    "shmget", "shmat", "shmctl", "shmdt", "msgget", "msgsnd", "msgrcv", "msgctl",
    "semget", "semop", "semtimedop", "semctl", "ipc",
    "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify", "mq_getsetattr",
    # A new session: the child leads its own (made before this filter, by the parent's
    # Popen or bwrap), and every process it starts must stay in it, where the parent finds
    # what to kill once the child is gone. setpgid stays: a process group is harmless.
    "setsid",
)  # fmt: skip
# Calls too new for older libseccomp releases to know by name, denied by number: system
# calls added since Linux 5.1 have one number on every architecture.
_ALWAYS_DENIED_NUMBERS = {"setxattrat": 463, "removexattrat": 466, "file_setattr": 469}
_PROCESS_CREATION = ("fork", "vfork", "execve", "execveat", "pidfd_open")
_CHMOD = ("chmod", "fchmodat", "fchmodat2", "fchmod")
_SELF_ONLY_ARG0 = ("sched_setaffinity", "sched_setscheduler", "sched_setparam", "sched_setattr")


class SandboxUnavailable(RuntimeError):
    """A sandbox layer the policy requires (``strict``) cannot be applied on this machine.

    Not raised for a cell that hits the sandbox: those get ``PermissionError`` from the call
    that was denied. The parent turns this into ``rlm_async.SandboxError``.
    """


class CellCpuLimitExceeded(BaseException):
    """The cell used more CPU time than ``cpu_seconds_per_cell``.

    A ``BaseException`` (like ``KeyboardInterrupt``) so that model code's ``except Exception``
    does not swallow it; the REPL catches it, reports it as the cell's error and keeps its state.
    Raised again every CPU second while the cell keeps running.
    """


# Tracebacks shown to the model read "CellCpuLimitExceeded: ...", not "_rlm_async_sandbox...".
CellCpuLimitExceeded.__module__ = "builtins"


# ---- small helpers ----------------------------------------------------------------------

_libc_handle: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL:
    global _libc_handle
    if _libc_handle is None:
        _libc_handle = ctypes.CDLL(None, use_errno=True)
        _libc_handle.syscall.restype = ctypes.c_long
        _libc_handle.prctl.restype = ctypes.c_int
        _libc_handle.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    return _libc_handle


def _prctl(option: int, arg2: int = 0, arg3: int = 0) -> None:
    if _libc().prctl(option, arg2, arg3, 0, 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"prctl({option}): {os.strerror(code)}")


def _layer(active: bool, detail: str, **extra: Any) -> dict[str, Any]:
    return {"active": active, "detail": detail, **extra}


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, or 0 when Landlock is absent or disabled."""
    if not sys.platform.startswith("linux"):
        return 0
    abi = _libc().syscall(
        _SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0),
        ctypes.c_uint32(_LANDLOCK_CREATE_RULESET_VERSION),
    )  # fmt: skip
    return int(abi) if abi > 0 else 0


def _load_libseccomp() -> ctypes.CDLL | None:
    # By soname: ctypes.util.find_library forks ldconfig, slow and broken under rlimits.
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError:
        return None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p,
    ]  # fmt: skip
    lib.seccomp_version.restype = ctypes.POINTER(ctypes.c_uint * 3)
    return lib


def _libseccomp_version(lib: ctypes.CDLL) -> str:
    try:
        return ".".join(str(part) for part in lib.seccomp_version().contents)
    except (AttributeError, ValueError):
        return "unknown"


def _kernel_has_seccomp() -> bool:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as handle:
            return any(line.startswith("Seccomp:") for line in handle)
    except OSError:
        return False


def _in_initial_user_namespace() -> bool:
    try:
        with open("/proc/self/uid_map", encoding="ascii") as handle:
            return handle.read().split() == ["0", "0", "4294967295"]
    except OSError:
        return True  # no /proc: assume the worst


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def probe() -> dict[str, Any]:
    """What this machine can offer the child, without applying anything.

    Cheap (no process is spawned): used by ``rlm-async doctor`` and reports.
    """
    linux = sys.platform.startswith("linux")
    abi = landlock_abi() if linux else 0
    lib = _load_libseccomp() if linux else None
    return {
        "platform": sys.platform,
        "machine": os.uname().machine,
        "kernel": os.uname().release,
        "euid": os.geteuid(),
        "initial_user_namespace": _in_initial_user_namespace() if linux else None,
        "landlock": {
            "available": abi > 0,
            "abi": abi,
            "tcp": abi >= 4,
            "scopes": abi >= 6,
        },
        "seccomp": {
            "available": linux and lib is not None and _kernel_has_seccomp(),
            "kernel": linux and _kernel_has_seccomp(),
            "libseccomp": _libseccomp_version(lib) if lib is not None else None,
        },
        "no_new_privs": linux,
        "rlimits": True,
    }


# ---- the layers ---------------------------------------------------------------------------


class _Report:
    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.layers: dict[str, dict[str, Any]] = {}
        self.warnings: list[str] = []

    def active(self, name: str, detail: str, started: float, **extra: Any) -> None:
        self.layers[name] = _layer(True, detail, ms=_ms(started), **extra)

    def missing(self, name: str, detail: str, started: float, **extra: Any) -> None:
        self.layers[name] = _layer(False, detail, ms=_ms(started), **extra)
        if self.strict:
            raise SandboxUnavailable(f"sandbox layer {name!r} is unavailable: {detail}")
        self.warnings.append(f"{name}: {detail}")


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _apply_rlimits(policy: dict[str, Any], report: _Report) -> None:
    started = time.perf_counter()
    applied: list[str] = []
    limits = (
        ("AS", resource.RLIMIT_AS, policy.get("memory_limit_bytes")),
        ("FSIZE", resource.RLIMIT_FSIZE, policy.get("file_size_limit_bytes")),
        ("NOFILE", resource.RLIMIT_NOFILE, policy.get("max_open_files")),
        ("CORE", resource.RLIMIT_CORE, 0),
    )
    for name, which, value in limits:
        if value is None:
            continue
        _, hard = resource.getrlimit(which)
        value = int(value)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        # soft == hard: model code cannot raise it back.
        resource.setrlimit(which, (value, value))
        applied.append(f"{name}={value}")
    report.active("rlimits", ", ".join(applied), started)


def _apply_parent_death(policy: dict[str, Any], report: _Report) -> None:
    started = time.perf_counter()
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    # A child subreaper: a descendant that double-forks (setsid, then exit) is reparented to
    # us, not to init, so the parent finds every one of them below our pid and kills them.
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    parent_pid = policy.get("parent_pid")
    parent_ns = policy.get("parent_pid_ns")
    own_ns = _pid_namespace()
    if parent_ns is not None and own_ns is not None and own_ns != parent_ns:
        report.active(
            "parent_death", "SIGKILL with the parent; own pid namespace (its init ends us)",
            started,
        )  # fmt: skip
        return
    if parent_pid is not None and os.getppid() != int(parent_pid):
        # The parent died before the prctl: nobody will ever read our output.
        os._exit(70)
    report.active(
        "parent_death", f"SIGKILL when pid {os.getppid()} exits; subreaper of its descendants",
        started,
    )  # fmt: skip


def _drop_capabilities() -> None:
    libc = _libc()
    try:
        with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as handle:
            last = int(handle.read())
    except (OSError, ValueError):
        last = 63
    for cap in range(last + 1):
        libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)  # EINVAL for unknown caps is fine
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # two {effective, permitted, inheritable} all zero
    if libc.capset(ctypes.byref(header), ctypes.byref(data)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"capset: {os.strerror(code)}")


def _apply_privileges(policy: dict[str, Any], report: _Report) -> None:
    started = time.perf_counter()
    euid = os.geteuid()
    if euid != 0:
        report.active("unprivileged", f"uid {os.getuid()}, euid {euid}", started)
        return
    _drop_capabilities()
    if not _in_initial_user_namespace():
        report.active("unprivileged", "uid 0 of its own user namespace, no capabilities", started)
        return
    detail = (
        "the REPL runs as root (capabilities dropped); root-owned files and processes are "
        "only protected by Landlock and seccomp; set SandboxOptions.run_as or install bubblewrap"
    )
    if policy.get("require_unprivileged", True):
        report.missing("unprivileged", detail, started)
    else:
        report.layers["unprivileged"] = _layer(False, detail, ms=_ms(started))
        report.warnings.append(f"unprivileged: {detail}")


class _RulesetAttr(ctypes.Structure):
    _fields_ = (
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    )


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # __attribute__((packed)) in the uapi header: 12 bytes
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


def _runtime_paths(policy: dict[str, Any]) -> list[str]:
    """Read-only paths the interpreter needs: its prefixes and what ``sys.path`` holds in them.

    Entries of ``sys.path`` outside the prefixes (an editable install's project root, which
    may hold a ``.env``) are deliberately left out.
    """
    prefixes = {
        os.path.realpath(p)
        for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)
    }
    paths = set(prefixes)
    for entry in sys.path:
        if not entry:
            continue
        real = os.path.realpath(entry)
        if any(real == p or real.startswith(p.rstrip("/") + "/") for p in prefixes):
            paths.add(real)
    paths.add(os.path.dirname(os.path.realpath(os.__file__)))  # the stdlib, wherever it is
    paths.add(os.path.dirname(os.path.realpath(__file__)))  # this file and _child.py
    paths.update(str(p) for p in policy.get("runtime_paths") or ())
    paths.discard("/")  # a prefix of "/" must not open the whole disk
    return sorted(paths)


def _landlock_rules(policy: dict[str, Any], handled: int) -> list[tuple[str, int]]:
    subprocess = bool(policy.get("allow_subprocess"))
    execute = _FS_EXECUTE if subprocess else 0
    read = _FS_READ_FILE | _FS_READ_DIR | execute
    write = handled & ~(_FS_MAKE_CHAR | _FS_MAKE_BLOCK | _FS_IOCTL_DEV | _FS_EXECUTE) | execute
    rules: list[tuple[str, int]] = [(p, read) for p in _runtime_paths(policy)]
    system = ["/usr", "/lib", "/lib64", "/lib32", "/libx32"]
    if subprocess:
        system += ["/bin", "/sbin"]
    # Only what Python and the C library read at run time; not /etc as a whole.
    system += ["/etc/ld.so.cache", "/etc/localtime", "/sys/devices/system/cpu"]
    system += ["/proc/self", "/proc/cpuinfo", "/proc/meminfo", "/proc/stat"]
    system += ["/dev/zero", "/dev/urandom", "/dev/random", "/dev/full"]
    if policy.get("allow_network"):
        system += [
            "/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf",
            "/etc/host.conf", "/etc/services", "/etc/protocols", "/etc/ssl",
            "/etc/ca-certificates", "/etc/pki",
        ]  # fmt: skip
    rules += [(p, read) for p in system]
    rules.append(("/dev/null", _FS_READ_FILE | _FS_WRITE_FILE | _FS_TRUNCATE))
    rules += [(str(p), read) for p in policy.get("read_paths") or ()]
    rules.append((str(policy["work_dir"]), write))
    rules += [(str(p), write) for p in policy.get("write_paths") or ()]
    return rules


def _apply_landlock(policy: dict[str, Any], report: _Report) -> None:
    started = time.perf_counter()
    abi = landlock_abi()
    if abi <= 0:
        report.missing("landlock", "not supported or disabled by this kernel", started, abi=0)
        return
    handled = _FS_ABI1
    if abi >= 2:
        handled |= _FS_REFER
    if abi >= 3:
        handled |= _FS_TRUNCATE
    if abi >= 5:
        handled |= _FS_IOCTL_DEV
    network = not policy.get("allow_network") and abi >= 4
    attr = _RulesetAttr(
        handled_access_fs=handled,
        handled_access_net=(_NET_BIND_TCP | _NET_CONNECT_TCP) if network else 0,
        scoped=(_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL) if abi >= 6 else 0,
    )
    size = 8 if abi < 4 else 16 if abi < 6 else 24  # older kernels reject unknown fields
    libc = _libc()
    ruleset = libc.syscall(
        _SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0)
    )
    if ruleset < 0:
        code = ctypes.get_errno()
        report.missing(
            "landlock", f"landlock_create_ruleset: {os.strerror(code)}", started, abi=abi
        )
        return
    added = 0
    try:
        for path, access in _landlock_rules(policy, handled):
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # absent on this system (e.g. /lib32): nothing to allow
            try:
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    access &= _FS_FILE_ONLY
                rule = _PathBeneathAttr(allowed_access=access & handled, parent_fd=fd)
                rc = libc.syscall(
                    _SYS_LANDLOCK_ADD_RULE, ctypes.c_int(ruleset),
                    ctypes.c_int(_LANDLOCK_RULE_PATH_BENEATH), ctypes.byref(rule),
                    ctypes.c_uint32(0),
                )  # fmt: skip
                if rc != 0:
                    code = ctypes.get_errno()
                    raise OSError(code, f"landlock_add_rule({path}): {os.strerror(code)}")
                added += 1
            finally:
                os.close(fd)
        if libc.syscall(_SYS_LANDLOCK_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)):
            code = ctypes.get_errno()
            raise OSError(code, f"landlock_restrict_self: {os.strerror(code)}")
    finally:
        os.close(ruleset)
    parts = [f"ABI {abi}", f"{added} path rules", "work dir read-write"]
    parts.append("TCP denied" if network else "TCP not handled (ABI < 4 or network allowed)")
    parts.append("signal/abstract-socket scopes" if abi >= 6 else "no scopes (ABI < 6)")
    report.active(
        "landlock", ", ".join(parts), started,
        abi=abi, tcp=network, scopes=abi >= 6, rules=added,
    )  # fmt: skip


class _ArgCmp(ctypes.Structure):
    _fields_ = (
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    )


class _Filter:
    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        self.ctx = lib.seccomp_init(_SCMP_ACT_ALLOW)
        if not self.ctx:
            raise OSError(errno.ENOMEM, "seccomp_init failed")
        self.rules = 0
        self.denied: list[str] = []

    def deny(
        self,
        name: str,
        *cmps: tuple[int, int, int, int],
        err: int = errno.EPERM,
        number: int | None = None,
    ) -> None:
        if number is None:
            number = self.lib.seccomp_syscall_resolve_name(name.encode())
        if number == _NR_SCMP_ERROR:
            return  # unknown to this libseccomp: nothing to filter
        array = (_ArgCmp * max(len(cmps), 1))(*(_ArgCmp(*c) for c in cmps))
        rc = self.lib.seccomp_rule_add_array(
            self.ctx, _SCMP_ACT_ERRNO | err, number, len(cmps), array if cmps else None
        )
        if rc < 0:
            raise OSError(-rc, f"seccomp_rule_add({name}): {os.strerror(-rc)}")
        self.rules += 1
        if name not in self.denied:
            self.denied.append(name)

    def load(self) -> None:
        # Calls through another ABI (x32, or i386 via int 0x80) would bypass a filter written
        # for the native one: refuse them all, with EPERM like the rest (not SIGSYS).
        self.lib.seccomp_attr_set(self.ctx, _SCMP_FLTATR_ACT_BADARCH, _SCMP_ACT_ERRNO | errno.EPERM)
        self.lib.seccomp_attr_set(self.ctx, _SCMP_FLTATR_CTL_TSYNC, 1)
        rc = self.lib.seccomp_load(self.ctx)
        if rc < 0:
            raise OSError(-rc, f"seccomp_load: {os.strerror(-rc)}")

    def release(self) -> None:
        self.lib.seccomp_release(self.ctx)


def _build_filter(lib: ctypes.CDLL, policy: dict[str, Any], report: _Report) -> _Filter:
    network = bool(policy.get("allow_network"))
    subprocess = bool(policy.get("allow_subprocess"))
    scopes = report.layers.get("landlock", {}).get("scopes", False)
    pid = os.getpid()  # as this pid namespace numbers it, which is what the calls carry
    flags_arg = 1 if os.uname().machine.startswith("s390") else 0  # clone's flags argument
    ne = _SCMP_CMP_NE
    f = _Filter(lib)
    for name in _ALWAYS_DENIED:
        f.deny(name)
    for name, number in _ALWAYS_DENIED_NUMBERS.items():
        if lib.seccomp_syscall_resolve_name(name.encode()) == _NR_SCMP_ERROR:
            f.deny(name, number=number)
    # Asking for SIGIO/SIGURG to go to another process: Landlock's signal scope (ABI >= 6)
    # would stop the signal, older kernels would not.
    for command in (_F_SETOWN, _F_SETSIG, _F_SETOWN_EX):
        f.deny("fcntl", (1, _SCMP_CMP_MASKED_EQ, 0xFFFFFFFF, command))
    for request in (_FIOSETOWN, _SIOCSPGRP):  # the same through ioctl on a socket
        f.deny("ioctl", (1, _SCMP_CMP_MASKED_EQ, 0xFFFFFFFF, request))
    if not network:
        f.deny("socket")
        # asyncio's self-pipe needs AF_UNIX stream pairs. Any other type (datagram, and
        # SOCK_RAW, which AF_UNIX turns into datagram) could sendto() a named socket such as
        # /dev/log, so only SOCK_STREAM pairs are left.
        f.deny("socketpair", (0, ne, _AF_UNIX, 0))
        for sock_type in range(_SOCK_TYPE_MASK + 1):
            if sock_type != _SOCK_STREAM:
                f.deny("socketpair", (1, _SCMP_CMP_MASKED_EQ, _SOCK_TYPE_MASK, sock_type))
    # clone3 passes its flags in memory seccomp cannot read: ENOSYS makes glibc use clone.
    f.deny("clone3", err=errno.ENOSYS)
    for flag in _CLONE_NAMESPACES:
        f.deny("clone", (flags_arg, _SCMP_CMP_MASKED_EQ, flag, flag))
    if not subprocess:
        f.deny("clone", (flags_arg, _SCMP_CMP_MASKED_EQ, _CLONE_THREAD, 0))  # threads only
        for name in _PROCESS_CREATION:
            f.deny(name)
    if not subprocess or not scopes:
        # Signals only to ourselves (os.kill(os.getpid(), ...), raise(), pthread_kill).
        # With subprocesses and Landlock's signal scope, the scope protects the parent instead.
        for name in ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo"):
            if subprocess and name == "kill":
                continue  # our own children must stay killable; warned about below
            f.deny(name, (0, ne, pid, 0))
    f.deny("prctl", (0, _SCMP_CMP_MASKED_EQ, 0xFFFFFFFF, _PR_SET_PDEATHSIG))
    # Still a subreaper: orphaned descendants must stay in our tree for the parent to find.
    f.deny("prctl", (0, _SCMP_CMP_MASKED_EQ, 0xFFFFFFFF, _PR_SET_CHILD_SUBREAPER))
    f.deny("prlimit64", (0, ne, 0, 0))  # other processes' limits
    f.deny("setpriority", (0, ne, 0, 0))  # PRIO_PGRP / PRIO_USER reach other processes
    f.deny("setpriority", (1, ne, 0, 0))
    for name in _SELF_ONLY_ARG0:
        f.deny(name, (0, ne, 0, 0))
    same_uid = policy.get("parent_uid") is not None and os.geteuid() == int(policy["parent_uid"])
    own_namespace = policy.get("parent_pid_ns") not in (None, _pid_namespace())
    if same_uid and not own_namespace:
        # Landlock does not govern chmod: with the parent's uid and the parent's view of the
        # disk, chmod could open up the user's own files, by path or (fchmod) on an open fd.
        # Not for a run_as child: shutil.copy needs chmod, and its uid owns nothing of ours
        # (its work dir is inside a directory of the parent's that it cannot change).
        for name in _CHMOD:
            f.deny(name)
    return f


def _apply_seccomp(policy: dict[str, Any], report: _Report) -> None:
    started = time.perf_counter()
    if not _kernel_has_seccomp():
        report.missing("seccomp", "the kernel has no seccomp filter support", started)
        return
    lib = _load_libseccomp()
    if lib is None:
        report.missing(
            "seccomp", "libseccomp.so.2 not found (Debian/Ubuntu: apt-get install libseccomp2)",
            started,
        )  # fmt: skip
        return
    f = _build_filter(lib, policy, report)
    try:
        f.load()
    finally:
        f.release()
    report.active(
        "seccomp",
        f"libseccomp {_libseccomp_version(lib)}, {f.rules} rules on {len(f.denied)} calls, "
        "EPERM on denial",
        started,
        rules=f.rules,
        denied=f.denied,
    )


def _check_coverage(policy: dict[str, Any], report: _Report) -> None:
    """Warn about what no active layer covers, so the report never overstates."""
    layers = report.layers
    seccomp = layers.get("seccomp", {}).get("active", False)
    landlock = layers.get("landlock", {})
    if not policy.get("allow_network") and not seccomp:
        what = "UDP, unix and netlink sockets" if landlock.get("tcp") else "all sockets"
        report.warnings.append(f"network: {what} are not blocked (seccomp is not active)")
    if policy.get("allow_subprocess") and not landlock.get("scopes"):
        report.warnings.append(
            "signals: subprocesses are allowed and Landlock's signal scope (ABI 6) is not "
            "available, so kill() is not restricted to the sandbox"
        )


def end_descendants(within: float = 1.0) -> None:
    """Kill every process this one started, and what they started (we are their subreaper).

    Called by the child as it exits, so that even a child the parent lets exit on its own
    leaves nothing behind. Only our own children are visible here (Landlock allows
    ``/proc/self``), and that is enough: the children of a killed child come to us.
    """
    if not policy_allows_subprocess():
        return  # nothing can have been started
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        children = _own_children()
        if not children:
            return
        for pid in children:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for pid in children:  # reaped: the next pass sees only their orphans, now ours
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def policy_allows_subprocess() -> bool:
    return bool(_applied and _applied.get("allow_subprocess"))


def _own_children() -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/children", "rb") as handle:
                found += [int(part) for part in handle.read().split()]
        except (OSError, ValueError):
            continue
    return found


_applied: dict[str, Any] | None = None  # the policy in force, for explain_denial


def explain_denial(exc: BaseException) -> str | None:
    """A one-line note for the model when ``exc`` looks like the sandbox refusing something.

    ``None`` when no sandbox was applied or the error is not a permission error. Append the
    note to the cell's traceback: model code that gets ``PermissionError`` otherwise tends to
    retry the same thing.
    """
    if _applied is None or not isinstance(exc, OSError):
        return None
    if exc.errno not in (errno.EPERM, errno.EACCES, errno.EXDEV):
        return None
    blocked = ["files outside the work dir"]
    if not _applied.get("allow_network"):
        blocked.append("network sockets")
    if not _applied.get("allow_subprocess"):
        blocked.append("subprocesses")
    else:
        blocked.append(
            "new sessions (os.setsid, start_new_session=True: use process_group=0 instead)"
        )
    blocked.append("signals to other processes")
    return (
        f"[sandbox] This REPL is sandboxed: {', '.join(blocked)} are not allowed. "
        f"Work inside {_applied.get('work_dir')} (it is also HOME and the temp dir)."
    )


def apply_sandbox(policy: dict[str, Any]) -> dict[str, Any]:
    """Apply every requested layer to the current process, irreversibly.

    Must be called before any other thread exists (Landlock and no_new_privs are per thread).

    Returns:
        A JSON-able report: ``{"version", "layers": {name: {"active", "detail", "ms", ...}},
        "warnings": [...], "uid", "pid", "ms"}``.

    Raises:
        SandboxUnavailable: ``policy["strict"]`` and a requested layer is unavailable, or
            other threads are already running.
    """
    started = time.perf_counter()
    if not sys.platform.startswith("linux"):
        if policy.get("strict"):
            raise SandboxUnavailable(f"the REPL sandbox needs Linux, not {sys.platform}")
        return {
            "version": REPORT_VERSION, "layers": {}, "uid": os.geteuid(), "pid": os.getpid(),
            "warnings": [f"no sandbox on {sys.platform}: only the parent's limits apply"],
        }  # fmt: skip
    if "work_dir" not in policy:
        raise SandboxUnavailable("the sandbox policy has no work_dir")
    threads = _thread_count()
    if threads > 1:
        raise SandboxUnavailable(
            f"apply_sandbox() must run before any other thread starts ({threads} threads)"
        )
    report = _Report(bool(policy.get("strict")))
    _apply_rlimits(policy, report)
    _apply_parent_death(policy, report)
    _apply_privileges(policy, report)
    layer_started = time.perf_counter()
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)
    report.active("no_new_privs", "exec can never gain privileges", layer_started)
    if policy.get("landlock", True):
        _apply_landlock(policy, report)
    if policy.get("seccomp", True):
        _apply_seccomp(policy, report)
    _check_coverage(policy, report)
    global _applied
    _applied = dict(policy)
    return {
        "version": REPORT_VERSION,
        "layers": report.layers,
        "warnings": report.warnings,
        "uid": os.geteuid(),
        "pid": os.getpid(),
        "ms": _ms(started),
    }


# ---- per-cell CPU limit -------------------------------------------------------------------

_cpu_armed = False
_cpu_seconds: float | None = None
_cpu_handler_installed = False


def _on_sigxcpu(signum: int, frame: Any) -> None:
    if _cpu_armed:
        raise CellCpuLimitExceeded(
            f"the cell used more than {_cpu_seconds:g} s of CPU time (cpu_seconds_per_cell); "
            "the REPL and its variables are intact"
        )


def arm_cell_cpu_limit(seconds: float | None) -> None:
    """Allow the coming cell ``seconds`` of CPU time, then raise ``CellCpuLimitExceeded``.

    Implemented as a soft ``RLIMIT_CPU`` = CPU used so far + ``seconds`` (whole seconds: the
    kernel counts in seconds) and a ``SIGXCPU`` handler. Call from the main thread. ``None``
    or a non-positive value disarms. The hard limit is left alone: lowering it could never be
    undone, so a cell that ignores the signal is stopped by the parent's wall-clock timeout.
    """
    global _cpu_armed, _cpu_seconds, _cpu_handler_installed
    if seconds is None or seconds <= 0:
        disarm_cell_cpu_limit()
        return
    if not _cpu_handler_installed:
        signal.signal(signal.SIGXCPU, _on_sigxcpu)
        _cpu_handler_installed = True
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = int(used + seconds + 0.999)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    _cpu_seconds = seconds
    _cpu_armed = True
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def disarm_cell_cpu_limit() -> None:
    """Lift the per-cell CPU limit (call in the cell's ``finally``, first thing)."""
    global _cpu_armed
    _cpu_armed = False
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (hard, hard))
