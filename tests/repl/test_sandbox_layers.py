"""The REPL sandbox, layer by layer, against the adversarial cases (stdlib child, no session).

Each test starts a *launcher* process that plays the parent: it has a fake API key in its
real environment (``/proc/<pid>/environ`` shows only a process's initial environment, so a
secret set with ``monkeypatch`` in this process would prove nothing), builds the child's
command with ``build_child_command`` and runs ``_sandbox_attacks.py`` in the sandboxed
child. As root (CI), the default options exercise the unprivileged path: the child runs as
``nobody``, through bubblewrap + setpriv when bwrap works here, else through ``Popen(user=)``.
Nothing is skipped: where this machine cannot offer a layer, the test asserts the report.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rlm_async._exceptions import ConfigurationError, SandboxError
from rlm_async.repl._launcher import build_child_command, probe_sandbox
from rlm_async.repl._sandbox_options import SandboxOptions
from rlm_async.repl._work_dir import create_child_file
from rlm_async.repl.child import _sandbox
from tests.helpers import processes_with
from tests.repl._bait import SECRET, Host

ATTACKS_SOURCE = (Path(__file__).parent / "_sandbox_attacks.py").read_text()
SYSTEM_PYTHON = "/usr/bin/python3"
IS_ROOT = os.geteuid() == 0
PROBE = probe_sandbox()
TIMEOUT = 60

LAUNCHER = r"""
import json, os, subprocess, sys, time
from rlm_async._exceptions import ConfigurationError, SandboxError
from rlm_async.repl._launcher import build_child_command
from rlm_async.repl._sandbox_options import SandboxOptions

spec = json.loads(sys.argv[1])
work = spec["work_dir"]
options = SandboxOptions(**spec["options"])
config = spec["config"]
config["policy"] = {**options.to_policy(work, os.getpid()), **config.pop("policy_overrides", {})}
config["host_parent_pid"] = os.getpid()
config["host_parent_pgid"] = os.getpgid(0)
env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": work, "TMPDIR": work,
       "MALLOC_ARENA_MAX": "2"}
argv = [spec["python"], "-I", "-c", spec["source"], json.dumps(config)]
try:
    command = build_child_command(argv, work_dir=work, options=options, env=env)
except SandboxError as exc:
    print(json.dumps({"sandbox_error": str(exc)}), flush=True)
    raise SystemExit(0)
child = subprocess.Popen(command.argv, env=env, cwd=work, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True, **command.popen_kwargs)
head = {"strategy": command.strategy, "uid": command.uid, "warnings": list(command.warnings),
        "child_pid": child.pid}
if spec.get("hang"):
    print(json.dumps(head), flush=True)
    print(child.stdout.readline().decode(), flush=True)
    time.sleep(120)
out, err = child.communicate(timeout=50)
head.update(stdout=out.decode(errors="replace"), stderr=err.decode(errors="replace")[-3000:],
            returncode=child.returncode)
print(json.dumps(head), flush=True)
"""

ALL_ATTACKS = [
    "environ_self", "proc_parent_environ", "proc_init_environ", "proc_scan_environ",
    "proc_parent_mem", "proc_parent_fd", "proc_parent_cmdline", "read_dotenv", "read_ssh_key",
    "read_etc_passwd", "list_root", "symlink_out", "hardlink_out", "rename_in", "rename_out",
    "write_outside", "write_tmp", "write_work", "read_stdlib", "dev_null", "efbig", "tcp",
    "udp", "unix_path", "abstract_unix", "netlink", "dns", "socketpair", "socketpair_dgram",
    "x32_socket", "i386_socket", "io_uring", "ptrace",
    "unshare", "mount", "bpf", "keyctl", "setns", "kill_parent", "killpg_parent", "kill_all",
    "signal_self", "fork", "subprocess", "os_system", "exec", "threads", "memory", "cpu",
    "cpu_not_swallowed", "chmod_out", "prlimit_parent", "asyncio", "cpu_count", "status",
]  # fmt: skip
DENIED = {
    "proc_parent_environ", "proc_init_environ", "proc_parent_mem", "proc_parent_fd",
    "proc_parent_cmdline", "read_dotenv", "read_ssh_key", "read_etc_passwd", "list_root",
    "symlink_out", "hardlink_out", "rename_in", "rename_out", "write_outside", "write_tmp",
    "efbig", "tcp", "udp", "unix_path", "abstract_unix", "netlink", "dns", "io_uring",
    "socketpair_dgram", "x32_socket", "i386_socket",
    "ptrace", "unshare", "mount", "bpf", "keyctl", "setns", "kill_parent", "killpg_parent",
    "kill_all", "fork", "subprocess", "os_system", "exec", "chmod_out", "prlimit_parent",
    "proc_scan_environ",
}  # fmt: skip
EPERM_BY_SECCOMP = {
    "io_uring", "ptrace", "unshare", "bpf", "keyctl", "setns", "kill_all", "socketpair_dgram",
}  # fmt: skip
OTHER_ABI = {"x32_socket", "i386_socket"}  # EPERM on x86_64, ENOSYS (not tried) elsewhere


@pytest.fixture
def work_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="rlm-sbx-work-")  # under /tmp: reachable by run_as
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def launch(
    host: Host,
    work_dir: str,
    options: dict[str, Any],
    attacks: list[str],
    *,
    python: str = sys.executable,
    hang: bool = False,
    **config: Any,
) -> dict[str, Any]:
    spec = {
        "work_dir": work_dir,
        "options": options,
        "python": python,
        "source": ATTACKS_SOURCE,
        "config": {**host.config(), "attacks": attacks, **config},
        "hang": hang,
    }
    done = subprocess.run(
        [sys.executable, "-c", LAUNCHER, json.dumps(spec)],
        capture_output=True, timeout=TIMEOUT, env=dict(os.environ),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    outer: dict[str, Any] = json.loads(done.stdout)
    assert SECRET not in done.stdout.decode() + done.stderr.decode()
    if "sandbox_error" in outer:
        return outer
    assert outer["returncode"] == 0, outer["stderr"]
    outer.update(json.loads(outer.pop("stdout")))
    return outer


def expected_run_as_strategy() -> str:
    """What the default options must choose on this machine."""
    if not IS_ROOT:
        return "bwrap" if PROBE["bwrap"]["usable"] else "plain"
    if PROBE["bwrap"]["usable"]:
        return "bwrap+run_as"
    return "run_as" if PROBE.get("run_as_nobody_without_bwrap") == "ok" else "root"


def system_python_reachable_by_nobody() -> bool:
    if not os.path.exists(SYSTEM_PYTHON):
        return False
    probe = probe_sandbox(SYSTEM_PYTHON)
    return probe.get("run_as_nobody_without_bwrap") == "ok"


# (options, interpreter) per strategy; each runs every attack in one child.
STRATEGIES: dict[str, tuple[dict[str, Any], str]] = {
    "default": ({}, sys.executable),
    "no_bwrap": ({"bwrap": "never"}, SYSTEM_PYTHON),
    "kernel_layers_only": ({"bwrap": "never", "run_as": None}, sys.executable),
}


def assert_contained(outcome: dict[str, Any], host: Host) -> None:
    results = outcome["results"]
    assert SECRET not in json.dumps(outcome)
    assert host.connections() == []
    allowed = {name for name, result in results.items() if result["ok"]}
    assert allowed.isdisjoint(DENIED), {name: results[name] for name in allowed & DENIED}
    for name in EPERM_BY_SECCOMP:
        assert results[name]["errno"] == 1, (name, results[name])
    for name in OTHER_ABI:
        expected = 1 if os.uname().machine == "x86_64" else 38
        assert results[name]["errno"] == expected, (name, results[name])
    assert results["efbig"]["errno"] == 27  # EFBIG
    assert results["write_work"]["ok"]
    assert results["read_stdlib"]["ok"]
    assert results["dev_null"]["ok"]
    assert results["socketpair"]["value"] == "ok"  # asyncio's self-pipe still works
    assert results["asyncio"]["value"] == "ran"
    assert results["signal_self"]["value"] == "handled 2"
    assert results["threads"]["value"] == "200"
    assert results["memory"]["value"] == "MemoryError, then 1 GiB ok"
    assert "CellCpuLimitExceeded" in results["cpu"]["value"]
    assert results["cpu"]["value"].endswith("alive: 499500")
    assert results["cpu_not_swallowed"]["value"] == "escaped except Exception"
    assert "NoNewPrivs:\t1" in results["status"]["value"]
    assert "CapEff:\t0000000000000000" in results["status"]["value"]
    assert stat.S_IMODE(os.stat(os.path.join(host.secrets, ".env")).st_mode) == 0o644
    assert Path(host.secrets, ".env").read_text().startswith("OPENAI_API_KEY=")
    assert not Path(host.secrets, "dropped.txt").exists()
    assert not Path("/tmp/rlm-sandbox-escape.txt").exists()


@pytest.mark.slow
@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_every_attack_is_contained(strategy: str, host: Host, work_dir: str) -> None:
    """Cases 3-6, 9-15, 22: each strategy this machine offers contains every attack."""
    options, python = STRATEGIES[strategy]
    if strategy == "no_bwrap" and not system_python_reachable_by_nobody():
        python = sys.executable  # then the only honest outcome as root is a warning
    outcome = launch(host, work_dir, options, ALL_ATTACKS, python=python)
    assert_contained(outcome, host)
    report = outcome["report"]
    layers = report["layers"]
    for name in ("rlimits", "parent_death", "no_new_privs"):
        assert layers[name]["active"], layers[name]
    assert layers["landlock"]["active"] is (PROBE["landlock"]["abi"] > 0)
    assert layers["seccomp"]["active"] is PROBE["seccomp"]["available"]
    status = outcome["results"]["status"]["value"]
    if strategy == "default":
        assert outcome["strategy"] == expected_run_as_strategy()
    if outcome["strategy"] in ("bwrap+run_as", "run_as"):
        assert outcome["uid"] == 65534
        assert "Uid:\t65534\t65534\t65534\t65534" in status
        assert layers["unprivileged"]["active"]
    elif IS_ROOT:  # case 22 when nothing can drop root: warned, reported, never silent
        assert outcome["strategy"] == "root"
        assert any("root" in warning for warning in outcome["warnings"])
        assert not layers["unprivileged"]["active"]
        assert any(w.startswith("unprivileged:") for w in report["warnings"])
    if outcome["strategy"].startswith("bwrap"):
        assert "own pid namespace" in layers["parent_death"]["detail"]


def test_opt_outs_open_only_what_they_name(host: Host, work_dir: str) -> None:
    """allow_subprocess / allow_network work; files, /tmp and the parent stay protected."""
    attacks = ["subprocess", "fork", "tcp", "read_dotenv", "write_tmp", "kill_parent", "status"]
    options = {"allow_subprocess": True, "allow_network": True}
    results = launch(host, work_dir, options, attacks)["results"]
    assert results["subprocess"]["value"] == "0"
    assert results["fork"]["value"] == "forked"
    assert results["tcp"]["value"] == "connected"
    assert host.connections() == ["tcp"]
    for name in ("read_dotenv", "write_tmp", "kill_parent"):
        assert not results[name]["ok"], results[name]


def test_report_matches_the_machine(host: Host, work_dir: str) -> None:
    """The report names every layer with its real state and costs a few milliseconds."""
    outcome = launch(host, work_dir, {"bwrap": "never", "run_as": None}, ["status"])
    report = outcome["report"]
    assert report["version"] == 1
    landlock = report["layers"]["landlock"]
    if PROBE["landlock"]["abi"]:
        assert landlock["abi"] == PROBE["landlock"]["abi"]
        assert landlock["detail"].startswith(f"ABI {PROBE['landlock']['abi']}")
        assert landlock["scopes"] is (PROBE["landlock"]["abi"] >= 6)
    else:
        assert not landlock["active"]
    seccomp = report["layers"]["seccomp"]
    assert seccomp["active"] is PROBE["seccomp"]["available"]
    if seccomp["active"]:
        assert seccomp["rules"] > 50
        assert {"socket", "ptrace", "io_uring_setup", "clone", "kill"} <= set(seccomp["denied"])
    assert report["ms"] < 500
    json.dumps(report)  # travels in the "ready" message


def test_missing_landlock_is_a_warning_with_an_accurate_report(host: Host, work_dir: str) -> None:
    """Case 21: a kernel without Landlock (ENOSYS) is reported, seccomp still applies."""
    outcome = launch(host, work_dir, {}, ["tcp", "status"], before="deny_landlock")
    layers = outcome["report"]["layers"]
    assert layers["landlock"]["active"] is False
    assert "not supported" in layers["landlock"]["detail"]
    assert any(w.startswith("landlock:") for w in outcome["report"]["warnings"])
    assert layers["seccomp"]["active"]
    assert outcome["results"]["tcp"]["errno"] == 1  # seccomp alone still stops sockets


def test_missing_landlock_is_an_error_when_strict(host: Host, work_dir: str) -> None:
    """Case 21, strict: the child refuses to run cells without a requested layer."""
    outcome = launch(
        host, work_dir, {}, ["status"],
        before="deny_landlock",
        # A root child (no bwrap to drop it) must not fail on that first: Landlock is tested.
        policy_overrides={"strict": True, "require_unprivileged": False},
    )  # fmt: skip
    assert outcome["results"] == {}
    assert "sandbox layer 'landlock' is unavailable" in outcome["unavailable"]


def test_missing_libseccomp_is_reported_and_strict_refuses(host: Host, work_dir: str) -> None:
    """Case 21: no libseccomp.so.2 -> seccomp inactive, a warning about unblocked sockets."""
    outcome = launch(
        host, work_dir, {"bwrap": "never", "run_as": None}, ["udp", "tcp"],
        before="no_libseccomp",
    )  # fmt: skip
    report = outcome["report"]
    assert report["layers"]["seccomp"]["active"] is False
    assert "libseccomp.so.2 not found" in report["layers"]["seccomp"]["detail"]
    assert any("UDP" in w or "all sockets" in w for w in report["warnings"])
    if report["layers"]["landlock"].get("tcp"):
        assert not outcome["results"]["tcp"]["ok"]  # Landlock ABI >= 4 still stops TCP


def test_strict_child_raises_sandbox_unavailable(work_dir: str) -> None:
    """``strict`` turns a missing layer into ``SandboxUnavailable`` in the child."""
    policy = SandboxOptions(run_as=None, strict=True).to_policy(work_dir, os.getpid())
    config = {
        "sandbox_file": _sandbox.__file__,
        "policy": policy,
        "attacks": [],
        "before": "no_libseccomp",
    }
    done = subprocess.run(
        [sys.executable, "-I", "-c", ATTACKS_SOURCE, json.dumps(config)],
        capture_output=True, timeout=TIMEOUT, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    output = json.loads(done.stdout)
    if IS_ROOT:  # root in the initial namespace is the first missing layer
        assert "'unprivileged' is unavailable" in output["unavailable"]
    else:
        assert "'seccomp' is unavailable" in output["unavailable"]


@pytest.mark.parametrize("strict", [False, True])
def test_root_parent_never_silently_runs_a_root_child(strict: bool, work_dir: str) -> None:
    """Case 22: as root, run_as=None is refused when strict and warned about otherwise."""
    options = SandboxOptions(run_as=None, bwrap="never", strict=strict)
    argv = [sys.executable, "-I", "-c", "pass"]
    if not IS_ROOT:
        command = build_child_command(argv, work_dir=work_dir, options=options)
        assert (command.strategy, command.uid, command.warnings) == ("plain", os.geteuid(), ())
        return
    if strict:
        with pytest.raises(SandboxError, match="would run as root"):
            build_child_command(argv, work_dir=work_dir, options=options)
    else:
        command = build_child_command(argv, work_dir=work_dir, options=options)
        assert command.strategy == "root"
        assert any("would run as root" in w for w in command.warnings)


def test_root_parent_drops_to_nobody_or_says_why(work_dir: str) -> None:
    """Case 22: default options as root give a nobody child, chown the work dir, no preexec_fn."""
    Path(work_dir, "context.txt").write_text("data")
    command = build_child_command(
        [sys.executable, "-I", "-c", "pass"], work_dir=work_dir, options=SandboxOptions()
    )
    assert "preexec_fn" not in command.popen_kwargs
    if not IS_ROOT:
        assert command.uid == os.geteuid()
        return
    assert command.strategy == expected_run_as_strategy()
    if command.strategy == "bwrap+run_as":
        assert "--reuid=65534" in command.argv
        assert os.stat(Path(work_dir, "context.txt")).st_uid == 65534
    else:
        assert any("cannot" in w for w in command.warnings)


def test_run_as_without_bwrap_needs_a_reachable_interpreter(work_dir: str) -> None:
    """As root with bwrap off: Popen(user=) when nobody can run the interpreter, else refused."""
    options = SandboxOptions(bwrap="never", strict=True)
    if not IS_ROOT:
        command = build_child_command([sys.executable], work_dir=work_dir, options=options)
        assert command.strategy == "plain"
        return
    reachable = probe_sandbox(sys.executable)["run_as_nobody_without_bwrap"] == "ok"
    if reachable:
        command = build_child_command([sys.executable], work_dir=work_dir, options=options)
        assert command.popen_kwargs == {"user": 65534, "group": 65534, "extra_groups": []}
    else:  # e.g. a pyenv under a 0700 /root: refusing beats silently running another Python
        with pytest.raises(SandboxError, match="would run as root"):
            build_child_command([sys.executable], work_dir=work_dir, options=options)
    if system_python_reachable_by_nobody():
        command = build_child_command([SYSTEM_PYTHON], work_dir=work_dir, options=options)
        assert command.strategy == "run_as"
        assert os.stat(work_dir).st_uid == 65534


def test_bwrap_always_uses_bwrap_or_fails_loudly(work_dir: str) -> None:
    options = SandboxOptions(bwrap="always")
    if PROBE["bwrap"]["usable"]:
        command = build_child_command([sys.executable], work_dir=work_dir, options=options)
        assert command.argv[0].endswith("bwrap")
    else:
        with pytest.raises(SandboxError, match="bwrap='always'"):
            build_child_command([sys.executable], work_dir=work_dir, options=options)


@pytest.mark.slow
def test_child_dies_with_its_parent(host: Host, work_dir: str) -> None:
    """Case 18: SIGKILL the parent; the sandboxed child is gone within a second."""
    marker = "rlm-sbx-marker-" + uuid.uuid4().hex
    spec = {
        "work_dir": work_dir,
        "options": {},
        "python": sys.executable,
        "source": ATTACKS_SOURCE + "\ntime.sleep(60)\n",
        "config": {**host.config(), "attacks": ["status"], "marker": marker},
        "hang": True,
    }
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, json.dumps(spec)], stdout=subprocess.PIPE
    )
    try:
        assert launcher.stdout is not None
        head = json.loads(launcher.stdout.readline())
        assert json.loads(launcher.stdout.readline())["results"]["status"]["ok"]
        assert processes_with(marker), "the child should be running"
        launcher.kill()
        launcher.wait(timeout=5)
        deadline = time.monotonic() + 5.0  # a loaded machine may schedule the exit late
        while processes_with(marker) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert processes_with(marker) == [], head
    finally:
        launcher.kill()
        launcher.wait(timeout=5)
        if launcher.stdout is not None:
            launcher.stdout.close()
        for pid in processes_with(marker):
            os.kill(pid, signal.SIGKILL)


def test_cpu_limit_disarmed_between_cells() -> None:
    """arm/disarm leave RLIMIT_CPU as it was; None disarms."""
    import resource

    before = resource.getrlimit(resource.RLIMIT_CPU)
    code = (
        "import importlib.util,resource,sys\n"
        f"spec=importlib.util.spec_from_file_location('s',{_sandbox.__file__!r})\n"
        "m=importlib.util.module_from_spec(spec);spec.loader.exec_module(m)\n"
        "m.arm_cell_cpu_limit(5);armed=resource.getrlimit(resource.RLIMIT_CPU)\n"
        "m.arm_cell_cpu_limit(None);print(armed[0], resource.getrlimit(resource.RLIMIT_CPU))\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, timeout=TIMEOUT, check=True
    )
    armed, after = done.stdout.decode().split(" ", 1)
    assert 5 <= int(armed) <= 7
    assert after.strip() == str((before[1], before[1]))


def test_policy_is_json_and_paths_are_checked(work_dir: str) -> None:
    policy = SandboxOptions(read_paths=("/opt/data",), memory_limit_mb=100).to_policy(work_dir, 123)
    assert json.loads(json.dumps(policy)) == policy
    assert policy["memory_limit_bytes"] == 100 * 1024 * 1024
    assert policy["parent_pid"] == 123
    with pytest.raises(ConfigurationError, match="absolute"):
        SandboxOptions(write_paths=("relative/dir",))


def test_create_child_file_never_writes_through_a_planted_symlink(work_dir: str) -> None:
    """Confused deputy: model code plants repl-config.json -> a file outside; we replace it."""
    victim = Path(tempfile.mkdtemp(prefix="rlm-sbx-victim-"), "victim")
    victim.write_text("original")
    try:
        planted = Path(work_dir, "repl-config.json")
        planted.symlink_to(victim)
        with create_child_file(str(planted)) as handle:
            handle.write(b"{}")
        assert victim.read_text() == "original"
        assert not planted.is_symlink()
        assert planted.read_bytes() == b"{}"
    finally:
        shutil.rmtree(victim.parent, ignore_errors=True)


def test_giving_the_work_dir_to_run_as_touches_only_our_own_top_level_files(
    work_dir: str,
) -> None:
    """The chown is not recursive and follows no symlink the child may have left."""
    outside = Path(tempfile.mkdtemp(prefix="rlm-sbx-outside-"), "owned-by-root")
    outside.write_text("x")
    try:
        Path(work_dir, "context.txt").write_text("ours")
        Path(work_dir, "link").symlink_to(outside)
        Path(work_dir, "sub").mkdir()
        Path(work_dir, "sub", "deep.txt").write_text("not ours to chown")
        options = SandboxOptions()
        command = build_child_command([sys.executable], work_dir=work_dir, options=options)
        if command.uid == os.geteuid():  # not root, or nothing could drop root
            assert os.stat(work_dir).st_uid == os.geteuid()
            return
        assert os.stat(work_dir).st_uid == command.uid
        assert os.stat(Path(work_dir, "context.txt")).st_uid == command.uid
        assert os.stat(outside).st_uid == os.geteuid()
        assert os.stat(Path(work_dir, "sub", "deep.txt")).st_uid == os.geteuid()
    finally:
        shutil.rmtree(outside.parent, ignore_errors=True)
