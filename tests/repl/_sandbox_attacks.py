"""Attacks run inside a sandboxed child by ``test_sandbox_layers.py``. Standard library only.

Run as ``python -I -c <this source> CONFIG_JSON``: loads ``_sandbox.py`` by path, applies the
policy, runs the attacks the config names and prints one JSON object on stdout:
``{"report": ..., "results": {name: {"ok": bool, "value" | "error", "errno"}}}``.
Each attack returns normally when the sandbox let it through.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import importlib.util
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

config: dict[str, Any] = json.loads(sys.argv[1])
spec = importlib.util.spec_from_file_location("_rlm_async_sandbox", config["sandbox_file"])
assert spec is not None and spec.loader is not None
sandbox: Any = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sandbox)

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
work = config["policy"]["work_dir"]
secrets = config.get("secrets_dir", "/nonexistent")
ppid = int(config.get("host_parent_pid", os.getppid()))


def _raw(number: int, *args: int) -> int:
    result = libc.syscall(number, *(ctypes.c_long(a) for a in args))
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return int(result)


def _libc_call(name: str, *args: Any) -> int:
    result = int(getattr(libc, name)(*args))
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def _read(path: str) -> str:
    with open(path, "rb") as handle:
        return handle.read(4096).decode("latin-1")


def _scan_proc_environ() -> str:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                found.append(_read(f"/proc/{entry}/environ"))
    return "\n".join(found)


def _parent_mem() -> str:
    with open(f"/proc/{ppid}/maps") as maps:
        start = int(maps.readline().split("-")[0], 16)
    with open(f"/proc/{ppid}/mem", "rb") as mem:
        mem.seek(start)
        return mem.read(64).hex()


def _symlink_out() -> str:
    link = os.path.join(work, "link-out")
    os.symlink(os.path.join(secrets, ".env"), link)
    return _read(link)


def _hardlink_out() -> str:
    target = os.path.join(work, "hard-out")
    os.link(os.path.join(secrets, ".env"), target)
    return _read(target)


def _rename_in() -> str:
    target = os.path.join(work, "stolen")
    os.rename(os.path.join(secrets, ".env"), target)
    return _read(target)


def _rename_out() -> str:
    source = os.path.join(work, "out.txt")
    with open(source, "w") as handle:
        handle.write("x")
    os.rename(source, os.path.join(secrets, "dropped.txt"))
    return "renamed"


def _write(path: str) -> str:
    with open(path, "w") as handle:
        handle.write("written by the sandboxed child")
    return "written"


def _efbig() -> str:
    with open(os.path.join(work, "big.bin"), "wb") as handle:
        handle.write(b"x" * (int(config["policy"]["file_size_limit_bytes"]) + 4096))
    return "wrote past the limit"


def _tcp() -> str:
    with socket.create_connection(("127.0.0.1", int(config["tcp_port"])), timeout=2) as conn:
        conn.sendall(b"leak")
    return "connected"


def _udp() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"leak", ("127.0.0.1", int(config["tcp_port"])))
    return "sent"


def _unix_path() -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(config["unix_path"])
    return "connected"


def _abstract() -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect("\0" + config["abstract_name"])
    return "connected"


def _netlink() -> str:
    netlink = getattr(socket, "AF_NETLINK", 16)
    with socket.socket(netlink, socket.SOCK_RAW, 0):
        return "opened"


def _dns() -> str:
    return repr(socket.getaddrinfo("localhost", 80)[:1])


def _socketpair() -> str:
    left, right = socket.socketpair()
    with left, right:
        left.sendall(b"ok")
        return right.recv(2).decode()


def _socketpair_dgram() -> str:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    left.close()
    right.close()
    return "opened"


def _x32_socket() -> str:
    if os.uname().machine != "x86_64":
        raise OSError(errno.ENOSYS, "not x86_64")
    return str(_raw(0x40000000 | 41, 2, 1, 0))  # socket() through the x32 ABI


def _i386_socket() -> str:
    """socket() through the 32-bit ABI (int 0x80), which a native-only filter would miss."""
    if os.uname().machine != "x86_64":
        raise OSError(errno.ENOSYS, "not x86_64")
    import mmap

    code = (
        b"\xb8" + (359).to_bytes(4, "little")  # mov eax, 359 (i386 socket)
        + b"\xbb\x02\x00\x00\x00\xb9\x01\x00\x00\x00\xba\x00\x00\x00\x00"  # ebx, ecx, edx
        + b"\x53\xcd\x80\x5b\xc3"  # push rbx; int 0x80; pop rbx; ret
    )  # fmt: skip
    page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(code)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    result = ctypes.CFUNCTYPE(ctypes.c_int)(address)()
    if result < 0:
        raise OSError(-result, os.strerror(-result))
    return str(result)


def _io_uring() -> str:
    params = ctypes.create_string_buffer(120)
    return str(_raw(425, 4, ctypes.addressof(params)))


def _ptrace() -> str:
    libc.ptrace.restype = ctypes.c_long
    return str(_libc_call("ptrace", ctypes.c_long(16), ctypes.c_long(ppid), None, None))


def _unshare() -> str:
    return str(_libc_call("unshare", ctypes.c_int(0x10000000)))  # CLONE_NEWUSER


def _mount() -> str:
    return str(_libc_call("mount", b"none", work.encode(), b"tmpfs", ctypes.c_ulong(0), None))


def _bpf() -> str:
    attr = ctypes.create_string_buffer(128)
    return str(_raw(321, 0, ctypes.addressof(attr), 128))  # BPF_MAP_CREATE


def _keyctl() -> str:
    return str(_raw(250, 0, -3, 0))  # KEYCTL_GET_KEYRING_ID, session keyring


def _setns() -> str:
    fd = os.open("/proc/self/ns/net", os.O_RDONLY)
    return str(_libc_call("setns", ctypes.c_int(fd), ctypes.c_int(0)))


def _signal_self() -> str:
    hits: list[int] = []
    signal.signal(signal.SIGUSR1, lambda *_: hits.append(1))
    os.kill(os.getpid(), signal.SIGUSR1)
    signal.raise_signal(signal.SIGUSR1)
    return f"handled {len(hits)}"


def _signal(send: Callable[[int, int], None], target: int) -> str:
    send(target, 0)  # signal 0: the permission check without the signal
    return "allowed"


def _fork() -> str:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return "forked"


def _subprocess() -> str:
    import subprocess

    return str(subprocess.run(["/bin/true"], check=True, timeout=5).returncode)


def _system() -> str:
    status = os.system("true")
    if status != 0:
        raise OSError(errno.EPERM, f"os.system returned {status}")
    return "ran"


def _exec() -> str:
    os.execv("/bin/true", ["/bin/true"])
    return "unreachable"


def _threads() -> str:
    done = []
    lock = threading.Lock()

    def work_item() -> None:
        time.sleep(0.05)
        with lock:
            done.append(1)

    threads = [threading.Thread(target=work_item) for _ in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return str(len(done))


def _memory() -> str:
    try:
        bytearray(3 * 1024**3)
    except MemoryError:
        block = bytearray(1024**3)
        return f"MemoryError, then {len(block) // 1024**3} GiB ok"
    return "allocated 3 GiB"


def _cpu() -> str:
    sandbox.arm_cell_cpu_limit(1.0)
    started = time.monotonic()
    try:
        while True:
            pass
    except sandbox.CellCpuLimitExceeded as exc:
        caught = f"{type(exc).__name__} after {time.monotonic() - started:.1f} s"
    finally:
        sandbox.disarm_cell_cpu_limit()
    return f"{caught}; alive: {sum(range(1000))}"


def _cpu_not_swallowed() -> str:
    sandbox.arm_cell_cpu_limit(1.0)
    try:
        try:
            while True:
                pass
        except Exception:
            return "swallowed by except Exception"
    except sandbox.CellCpuLimitExceeded:
        return "escaped except Exception"
    finally:
        sandbox.disarm_cell_cpu_limit()


def _chmod_out() -> str:
    os.chmod(os.path.join(secrets, ".env"), 0o666)
    return "chmodded"


def _prlimit_parent() -> str:
    import resource

    return repr(resource.prlimit(ppid, resource.RLIMIT_NOFILE, (16, 16)))


def _status() -> str:
    lines = _read("/proc/self/status").splitlines()
    return "; ".join(line for line in lines if line.startswith(("Uid", "CapEff", "NoNewPrivs")))


ATTACKS: dict[str, Callable[[], str]] = {
    "environ_self": lambda: json.dumps(dict(os.environ)),
    "proc_parent_environ": lambda: _read(f"/proc/{ppid}/environ"),
    "proc_init_environ": lambda: _read("/proc/1/environ"),
    "proc_scan_environ": _scan_proc_environ,
    "proc_parent_mem": _parent_mem,
    "proc_parent_fd": lambda: repr(os.listdir(f"/proc/{ppid}/fd")),
    "proc_parent_cmdline": lambda: _read(f"/proc/{ppid}/cmdline"),
    "read_dotenv": lambda: _read(os.path.join(secrets, ".env")),
    "read_ssh_key": lambda: _read(os.path.join(secrets, ".ssh", "id_ed25519")),
    "read_etc_passwd": lambda: _read("/etc/passwd"),
    "list_root": lambda: repr(os.listdir("/")),
    "symlink_out": _symlink_out,
    "hardlink_out": _hardlink_out,
    "rename_in": _rename_in,
    "rename_out": _rename_out,
    "write_outside": lambda: _write(os.path.join(secrets, "new.txt")),
    "write_tmp": lambda: _write("/tmp/rlm-sandbox-escape.txt"),
    "write_work": lambda: _write(os.path.join(work, "inside.txt")),
    "read_stdlib": lambda: str(
        len(_read(os.path.join(os.path.dirname(os.__file__), "json", "decoder.py")))
    ),
    "dev_null": lambda: _write(os.devnull),
    "efbig": _efbig,
    "tcp": _tcp,
    "udp": _udp,
    "unix_path": _unix_path,
    "abstract_unix": _abstract,
    "netlink": _netlink,
    "dns": _dns,
    "socketpair": _socketpair,
    "socketpair_dgram": _socketpair_dgram,
    "x32_socket": _x32_socket,
    "i386_socket": _i386_socket,
    "io_uring": _io_uring,
    "ptrace": _ptrace,
    "unshare": _unshare,
    "mount": _mount,
    "bpf": _bpf,
    "keyctl": _keyctl,
    "setns": _setns,
    "kill_parent": lambda: _signal(os.kill, ppid),
    "killpg_parent": lambda: _signal(os.killpg, int(config.get("host_parent_pgid", ppid))),
    "kill_all": lambda: _signal(os.kill, -1),
    "signal_self": _signal_self,
    "fork": _fork,
    "subprocess": _subprocess,
    "os_system": _system,
    "exec": _exec,
    "threads": _threads,
    "memory": _memory,
    "cpu": _cpu,
    "cpu_not_swallowed": _cpu_not_swallowed,
    "chmod_out": _chmod_out,
    "prlimit_parent": _prlimit_parent,
    "asyncio": lambda: str(__import__("asyncio").run(__import__("asyncio").sleep(0, "ran"))),
    "cpu_count": lambda: str(os.cpu_count()),
    "status": _status,
}


def main() -> None:
    before = config.get("before")
    if before == "deny_landlock":
        # Make the kernel look as if it had no Landlock: a real ENOSYS from the syscall.
        lib = ctypes.CDLL("libseccomp.so.2")
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_rule_add.argtypes = [
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_int,
            ctypes.c_uint,
        ]
        ctx = ctypes.c_void_p(lib.seccomp_init(0x7FFF0000))
        lib.seccomp_rule_add(ctx, 0x00050000 | errno.ENOSYS, 444, 0)
        if lib.seccomp_load(ctx) != 0:
            raise SystemExit("could not pre-install the test filter")
    elif before == "no_libseccomp":
        sandbox._load_libseccomp = lambda: None  # as on a machine without libseccomp.so.2
    output: dict[str, Any] = {"results": {}}
    try:
        output["report"] = sandbox.apply_sandbox(config["policy"])
    except sandbox.SandboxUnavailable as exc:
        output["unavailable"] = str(exc)
        print(json.dumps(output), flush=True)
        return
    for name in config["attacks"]:
        try:
            output["results"][name] = {"ok": True, "value": ATTACKS[name]()}
        except BaseException as exc:  # every outcome, even SystemExit, is data for the test
            output["results"][name] = {
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}",
                "errno": getattr(exc, "errno", None),
            }
    print(json.dumps(output), flush=True)


main()
