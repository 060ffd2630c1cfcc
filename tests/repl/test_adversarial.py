"""Adversarial cells through the real ReplSession with the sandbox on (cases 3-6, 9-15, 21-22).

The lifecycle cases (timeouts, crashes, floods, protocol abuse) live in ``test_session.py``;
these are the ones the sandbox answers. As root (CI) the child must run as ``nobody``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rlm_async.repl import ReplOptions, ReplSession
from rlm_async.repl._launcher import probe_sandbox
from rlm_async.repl._sandbox_options import SandboxOptions
from tests.repl._bait import SECRET, Host

PROBE = probe_sandbox()
SANDBOX = SandboxOptions(cpu_seconds_per_cell=1, file_size_limit_mb=1)
OPTIONS = ReplOptions(cell_timeout=20, interrupt_grace=1, sandbox=SANDBOX)
DENIED = ("PermissionError", "FileNotFoundError", "Operation not permitted", "Errno 18")


@pytest.fixture(params=["always", "never"])
async def repl(host: Host, request: pytest.FixtureRequest) -> AsyncIterator[ReplSession]:
    """A sandboxed session under bubblewrap, then with bubblewrap forced off."""
    sandbox = SANDBOX.model_copy(update={"bwrap": request.param})
    options = OPTIONS.model_copy(update={"sandbox": sandbox})
    async with ReplSession("the context", options=options) as session:
        yield session


async def run(repl: ReplSession, code: str) -> str:
    """The cell's output as the model reads it; never contains the secret."""
    result = await repl.execute(code)
    assert not result.restarted, result.render()
    text = result.render()
    assert SECRET not in text
    return text


def sessions_processes(leader: int) -> int:
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            count += int(fields[3]) == leader  # the session id
    return count


async def test_the_report_names_every_layer_and_root_is_dropped(repl: ReplSession) -> None:
    """Cases 21-22: the ready report is accurate; a root parent gets a nobody child."""
    layers = repl.sandbox_report["layers"]
    assert layers["landlock"]["active"] is (PROBE["landlock"]["abi"] > 0)
    assert layers["seccomp"]["active"] is PROBE["seccomp"]["available"]
    uid = await run(repl, "import os\nprint(os.getuid(), context)")
    if os.geteuid() == 0 and layers["unprivileged"]["active"]:
        assert uid.startswith("65534 the context")
    elif os.geteuid() == 0:  # nothing could drop root here: it must say so
        assert any(w.startswith("unprivileged:") for w in repl.sandbox_report["warnings"])


async def test_api_keys_never_reach_the_repl(repl: ReplSession) -> None:
    """Case 10: os.environ, the parent's environ/mem/fds and a /proc scan leak nothing."""
    parent = os.getpid()
    assert "None" in await run(repl, "import os\nprint(os.environ.get('OPENAI_API_KEY'))")
    for code in (
        f"open('/proc/{parent}/environ').read()",
        f"open('/proc/{parent}/mem', 'rb').read(16)",
        f"os.listdir('/proc/{parent}/fd')",
        "[open(f'/proc/{p}/environ').read() for p in os.listdir('/proc') if p.isdigit()]",
    ):
        output = await run(repl, code)
        assert any(word in output for word in DENIED), (code, output)


async def test_files_outside_the_work_dir_are_out_of_reach(repl: ReplSession, host: Host) -> None:
    """Cases 11-12: .env, ~/.ssh, symlink/hardlink/rename out, writes outside, EFBIG."""
    env_file = os.path.join(host.secrets, ".env")
    await run(repl, "import os")
    for code in (
        f"open({env_file!r}).read()",
        f"open({os.path.join(host.secrets, '.ssh', 'id_ed25519')!r}).read()",
        f"os.symlink({env_file!r}, 'l')\nopen('l').read()",
        f"os.link({env_file!r}, 'h')\nopen('h').read()",
        f"os.rename({env_file!r}, 'stolen')",
        f"open('mine', 'w').close()\nos.rename('mine', {host.secrets + '/dropped'!r})",
        f"open({host.secrets + '/new'!r}, 'w').write('x')",
        "open('/tmp/rlm-adversarial-escape', 'w').write('x')",
    ):
        output = await run(repl, code)
        assert any(word in output for word in DENIED), (code, output)
    assert "File too large" in await run(repl, "open('big', 'wb').write(b'x' * (2 << 20))")
    assert "ok" in await run(
        repl, "open('notes.txt', 'w').write('ok')\nprint(open('notes.txt').read())"
    )
    assert sorted(os.listdir(host.secrets)) == [".env", ".ssh", "agent.sock"]
    assert not os.path.exists("/tmp/rlm-adversarial-escape")


async def test_the_network_is_closed(repl: ReplSession, host: Host) -> None:
    """Case 13: TCP, UDP, DNS, unix-path, abstract and netlink sockets are refused."""
    port = host.tcp.getsockname()[1]
    for code in (
        f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)",
        f"socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', {port}))",
        "socket.getaddrinfo('example.com', 443)",
        f"socket.socket(socket.AF_UNIX).connect({host.unix_path!r})",
        f"socket.socket(socket.AF_UNIX).connect('\\0{host.abstract_name}')",
        "socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)",
        # Datagram pairs (SOCK_RAW is one too, for AF_UNIX) could sendto() /dev/log.
        "socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)",
        "socket.socketpair(socket.AF_UNIX, socket.SOCK_RAW)",
        "socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)",
    ):
        output = await run(repl, code)
        assert "Operation not permitted" in output or "gaierror" in output, (code, output)
    assert host.connections() == []


async def test_kernel_attack_surface_is_refused(repl: ReplSession) -> None:
    """Cases 9, 14: io_uring, ptrace, unshare, mount, bpf, keyctl fail with EPERM."""
    await run(repl, "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)")
    for call in (
        "libc.syscall(425, 4, ctypes.create_string_buffer(120))",  # io_uring_setup
        f"libc.ptrace(16, {os.getpid()}, None, None)",  # PTRACE_ATTACH to the parent
        "libc.unshare(0x10000000)",  # CLONE_NEWUSER
        "libc.mount(b'none', b'.', b'tmpfs', 0, None)",
        "libc.syscall(321, 0, ctypes.create_string_buffer(128), 128)",  # bpf
        "libc.syscall(250, 0, -3, 0)",  # keyctl
    ):
        output = await run(repl, f"print({call}, ctypes.get_errno())")
        assert output.strip() == "-1 1", (call, output)  # -1, errno EPERM


async def test_signals_reach_only_the_repl_itself(repl: ReplSession) -> None:
    """Case 15: kill(parent), killpg(parent's group), kill(-1) are denied; self-signals work."""
    parent = os.getpid()
    for code in (
        f"os.kill({parent}, 0)",
        f"os.killpg({os.getpgid(0)}, 0)",
        "os.kill(-1, 0)",
    ):
        assert "Operation not permitted" in await run(repl, "import os\n" + code), code
    code = (
        "import signal\nhits = []\nsignal.signal(signal.SIGUSR1, lambda *a: hits.append(1))\n"
        "os.kill(os.getpid(), signal.SIGUSR1)\nprint(len(hits))"
    )
    assert (await run(repl, code)).strip() == "1"


async def test_what_the_review_found_is_closed(repl: ReplSession) -> None:
    """ACLs by xattr, memfd memory outside RLIMIT_AS, SIGIO to the parent: all EPERM."""
    await run(repl, "import os, fcntl\nopen('mine.txt', 'w').write('x')")
    for code in (
        "os.setxattr('mine.txt', 'system.posix_acl_access', b'\\x02\\0\\0\\0')",
        "os.setxattr('mine.txt', 'user.note', b'1')",
        "os.memfd_create('bomb')",
        f"fcntl.fcntl(os.open('mine.txt', os.O_RDONLY), fcntl.F_SETOWN, {os.getpid()})",
        # The same through ioctl (FIOSETOWN, SIOCSPGRP) on a socket cells may have.
        "import socket, struct\na, b = socket.socketpair()\n"
        f"fcntl.ioctl(a, 0x8901, struct.pack('i', {os.getpid()}))",
        f"fcntl.ioctl(a, 0x8902, struct.pack('i', {os.getpid()}))",
    ):
        assert "Operation not permitted" in await run(repl, code), code
    # What cells do need still works: directories, stream socket pairs (asyncio), fcntl.
    work = "os.makedirs('a/b')\nimport socket, asyncio\nsocket.socketpair()\n"
    work += "print(os.path.isdir('a/b'), asyncio.run(asyncio.sleep(0, 'ok')))"
    assert "True ok" in await run(repl, work)


async def test_a_directory_planted_where_the_parent_writes_does_not_stop_a_restart(
    repl: ReplSession,
) -> None:
    """Model code replaces repl-config.json and the context file with directory trees."""
    plant = (
        "import os\n"
        "for name in ('repl-config.json', 'context.txt'):\n"
        "    if os.path.exists(name):\n"
        "        os.remove(name)\n"
        "    os.makedirs(name + '/deep/er')\n"
        "os._exit(1)"
    )
    result = await repl.execute(plant)
    assert result.restarted, result.render()
    assert "the context" in await run(repl, "print(context)")


async def test_a_forged_result_line_cannot_flood_the_parent(repl: ReplSession) -> None:
    """Output is capped in the child, and again in the parent for a line the child forged."""
    forge = (
        "import json, os, sys\n"
        "fd = int(sys.argv[sys.argv.index('--out-fd') + 1])\n"
        "line = json.dumps({'type': 'result', 'cell': 1, 'stdout': 'A' * 5_000_000})\n"
        "os.write(fd, line.encode() + b'\\n')"
    )
    result = await repl.execute(forge)
    assert len(result.stdout) < 2 * OPTIONS.output_limit
    assert "characters truncated" in result.stdout


async def test_processes_cannot_be_created(repl: ReplSession) -> None:
    """Case 6: fork bomb and subprocess are refused; the process count stays at baseline."""
    assert repl.pid is not None
    baseline = sessions_processes(repl.pid)
    bomb = "import os\nfor _ in range(64):\n    os.fork()"
    assert "Operation not permitted" in await run(repl, bomb)
    assert "Operation not permitted" in await run(
        repl, "import subprocess\nsubprocess.run(['/bin/true'])"
    )
    assert sessions_processes(repl.pid) == baseline


async def test_cpu_limit_raises_in_the_cell_and_the_repl_survives(repl: ReplSession) -> None:
    """Case 3: a busy loop is stopped at the per-cell CPU limit; the variables survive."""
    await run(repl, "kept = 'still here'")
    output = await run(repl, "while True:\n    pass")
    assert "CellCpuLimitExceeded" in output
    assert "still here" in await run(repl, "print(kept)")


async def test_memory_and_thread_limits_leave_room_for_real_work(host: Host) -> None:
    """Cases 4-5: 3 GiB is a MemoryError, 1 GiB and 200 threads work, the REPL survives.

    Zeroing 1 GiB costs real CPU time on a loaded machine, so this session gets a CPU
    limit that cannot be the thing under test.
    """
    roomy = ReplOptions(
        cell_timeout=60,
        interrupt_grace=1,
        sandbox=SANDBOX.model_copy(update={"cpu_seconds_per_cell": 30}),
    )
    async with ReplSession("the context", options=roomy) as repl:
        await run(repl, "kept = 'still here'")
        assert "MemoryError" in await run(repl, "block = bytearray(3 * 1024**3)")
        assert "1073741824" in await run(
            repl, "block = bytearray(1024**3)\nprint(len(block))\ndel block"
        )
        threads = (
            "import threading, time\n"
            "ts = [threading.Thread(target=time.sleep, args=(0.05,)) for _ in range(200)]\n"
            "[t.start() for t in ts]; [t.join() for t in ts]\nprint(len(ts))"
        )
        assert "200" in await run(repl, threads)
        assert "still here" in await run(repl, "print(kept)")
