"""Directory trees and process trees that model code controlled: ended without trusting them.

Both are the parent's clean-up after a run, so both are bounded and never raise:

* ``remove_tree`` deletes a work dir iteratively (no recursion limit: 3,000 nested
  directories made ``shutil.rmtree`` raise ``RecursionError``) through directory file
  descriptors opened with ``O_NOFOLLOW`` (a planted symlink is unlinked, never followed),
  holding one descriptor at a time whatever the depth.
* ``kill_descendants`` kills every live descendant of a process (``setsid`` and double-forked
  ones included: the REPL child is a child subreaper, so they stay in its tree), walking
  ``/proc/<pid>/task/<tid>/children`` again until none is left or the deadline passes.
* ``kill_session`` kills every live process of a session, wherever it was reparented: what
  a REPL child that died on its own left behind.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import stat
import time

from rlm_async._logging import get_logger

__all__ = ["descendants", "kill_descendants", "kill_session", "remove_tree"]

_log = get_logger("rlm_async.repl")
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
# Between passes of the kill loops that found no new process: the wait for the killed to
# exit (then a pass looks again), or without pidfds a sleep of 0.25, 0.5, 1, 2, 4, 4... ms.
_LONGEST_WAIT = 0.05
_FIRST_PAUSE = 0.00025
_LONGEST_PAUSE = 0.004
_PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


# ---- directories ----------------------------------------------------------------------------


def remove_tree(path: str) -> bool:
    """Remove ``path`` and everything under it; ``True`` when nothing is left.

    Never raises (clean-up must not replace a run's outcome) and never follows a symlink.
    What cannot be removed is logged as ``rlm_async.repl.cleanup_failed``.
    """
    try:
        _remove(os.path.abspath(path))
    except Exception as exc:  # clean-up reports, it does not raise
        _log.warning("rlm_async.repl.cleanup_failed", path=path, error=repr(exc))
    gone = not os.path.lexists(path)
    if not gone:
        _log.warning("rlm_async.repl.cleanup_failed", path=path, error="entries left behind")
    return gone


def _open_dir(name: str, dir_fd: int) -> int:
    """Open a subdirectory for listing; one its owner made unreadable is given back 0700."""
    try:
        return os.open(name, _DIR, dir_fd=dir_fd)
    except PermissionError:
        # Not root (root reads any mode): model code of our uid chmodded it to 0. O_PATH
        # needs no permission and, with O_NOFOLLOW | O_DIRECTORY, cannot be a symlink.
        handle = os.open(name, _PATH_DIR, dir_fd=dir_fd)
        try:
            os.chmod(f"/proc/self/fd/{handle}", 0o700)
        finally:
            os.close(handle)
        return os.open(name, _DIR, dir_fd=dir_fd)


def _remove(path: str) -> None:
    parent, name = os.path.split(path)
    parent_fd = os.open(parent or "/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fd = _open_dir(name, parent_fd)
        except FileNotFoundError:
            return
        except (NotADirectoryError, OSError):
            # A symlink (ELOOP) or a file where the directory was: the name goes, not its target.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=parent_fd)
            return
        _empty(fd)  # closes fd
        os.rmdir(name, dir_fd=parent_fd)
    finally:
        os.close(parent_fd)


def _empty(fd: int) -> None:
    """Empty the directory open as ``fd`` (and close it), depth first, without recursion.

    Only the current directory is open: going up reopens ``..``, checked to be the directory
    we came from (device and inode), so depth costs names in memory, not descriptors.
    """
    # Per level: (identity, name of this dir in its parent, names still to visit here).
    stack: list[tuple[tuple[int, int], str, list[str]]] = []
    identity = _identity(fd)
    names = _list(fd)
    try:
        while True:
            if names:
                name = names.pop()
                try:
                    os.unlink(name, dir_fd=fd)
                    continue
                except IsADirectoryError:
                    pass
                except FileNotFoundError:
                    continue
                except OSError:
                    if not _is_dir(name, fd):
                        continue  # cannot remove it: reported by remove_tree at the end
                try:
                    child = _open_dir(name, fd)
                except OSError:
                    continue
                stack.append((identity, name, names))
                os.close(fd)
                fd, identity, names = child, _identity(child), _list(child)
                continue
            if not stack:
                return
            up = os.open("..", _DIR, dir_fd=fd)
            parent_identity, name, names = stack.pop()
            os.close(fd)
            fd = up
            if _identity(fd) != parent_identity:
                raise OSError(f"a directory moved during removal (under {name!r})")
            identity = parent_identity
            with contextlib.suppress(OSError):
                os.rmdir(name, dir_fd=fd)
    finally:
        os.close(fd)


def _identity(fd: int) -> tuple[int, int]:
    info = os.fstat(fd)
    return info.st_dev, info.st_ino


def _list(fd: int) -> list[str]:
    try:
        return os.listdir(fd)
    except PermissionError:
        os.fchmod(fd, 0o700)  # our uid's dir made unlistable (mode 0300) by model code
        return os.listdir(fd)


def _is_dir(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


# ---- processes ------------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (zombies included), parents before their children."""
    found: list[int] = []
    seen = {pid}
    todo = [pid]
    while todo:
        for child in _children(todo.pop()):
            if child not in seen:
                seen.add(child)
                found.append(child)
                todo.append(child)
    return found


def _children(pid: int) -> list[int]:
    result: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return result
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as handle:
                result += [int(part) for part in handle.read().split()]
        except (OSError, ValueError):
            continue
    return result


def _live(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            state = handle.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def _pause(idle_passes: int, dying: list[int] | None = None) -> None:
    """Before the next pass of a kill loop: yield, or wait for the killed to finish dying.

    A pass that found a process appeared since the first pass (``idle_passes`` 0:
    something is still forking) only yields, so a fork loop is chased as fast as it runs.
    After the first pass, and one that found only processes already killed, still exiting
    (a killed interpreter takes a millisecond or more: its memory is torn down), this
    waits for them to exit (``dying``, by their pidfds), or sleeps a little longer each
    time where there are none: spinning meanwhile walked ``/proc`` ~17 times, 2.4 ms of
    CPU per REPL closed, on a core the dying process needed.
    """
    if idle_passes == 0:
        os.sched_yield()
    elif not (dying and _wait_for_exits(dying, _LONGEST_WAIT)):
        time.sleep(min(_FIRST_PAUSE * 2 ** (idle_passes - 1), _LONGEST_PAUSE))


def _wait_for_exits(pids: list[int], timeout: float) -> bool:
    """Wait (at most ``timeout`` s) until every process of ``pids`` has exited (a zombie
    counts); ``False`` when the kernel gives no pidfds, so the caller sleeps instead.

    A pid reused meanwhile by another process only makes this wait for ``timeout``.
    """
    fds: list[int] = []
    try:
        for pid in pids:
            try:
                fds.append(os.pidfd_open(pid))
            except ProcessLookupError:
                continue  # gone (and reaped) already
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        waiting = len(fds)
        end = time.monotonic() + timeout
        while waiting and (left := end - time.monotonic()) > 0:
            for fd, _ in poller.poll(left * 1000):
                poller.unregister(fd)
                waiting -= 1
        return True
    except (AttributeError, OSError):  # no os.pidfd_open (not Linux 5.3+), or refused
        return False
    finally:
        for fd in fds:
            os.close(fd)


def kill_descendants(pid: int, *, within: float = 1.0, keep_stopped: bool = False) -> int:
    """SIGKILL every live descendant of ``pid`` until none is left; bounded by ``within`` s.

    ``pid`` itself is stopped meanwhile (SIGSTOP: it can fork no more) and continued after,
    unless ``keep_stopped`` (it is about to be killed). Killed processes' children move up
    to the nearest subreaper (the REPL child, or bwrap's init), still below ``pid``, so each
    pass finds them. Returns how many processes were signalled.
    """
    if not _children(pid):
        return 0  # the common case, one small read: nothing to stop or walk
    killed = 0
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + within
        signalled: set[int] = set()
        idle = 0  # passes in a row that found no new process since the first
        while time.monotonic() < deadline:
            live = [p for p in descendants(pid) if _live(p)]
            if not live:
                break
            # New processes after the first pass: something forks as they are killed.
            idle = idle + 1 if not signalled or signalled.issuperset(live) else 0
            for target in live:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(target, signal.SIGKILL)
                    killed += 1
            signalled.update(live)
            _pause(idle, live)
        else:
            _log.warning("rlm_async.repl.descendants_left", pid=pid, seconds=within)
    finally:
        if not keep_stopped:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGCONT)
    return killed


def _session_of(pid: str) -> int | None:
    """The session id of a live process (field 6 of ``/proc/<pid>/stat``), else ``None``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if len(fields) < 4 or fields[0] in (b"Z", b"X"):
        return None
    try:
        return int(fields[3])
    except ValueError:
        return None


def kill_session(sid: int, *, within: float = 1.0) -> int:
    """SIGKILL every live process whose session id is ``sid``; bounded by ``within`` s.

    Scans all of ``/proc`` (a few milliseconds for hundreds of processes: call it off the
    event loop), again until a pass finds none or the deadline passes. The caller makes
    sure ``sid`` is the session it means: a session id is the pid of the process that made
    the session, which the kernel does not give to another process while that one is
    unreaped or any process is still in the session. Returns how many were signalled.
    """
    if sid <= 1:
        return 0
    own = os.getpid()
    killed = 0
    deadline = time.monotonic() + within
    signalled: set[int] = set()
    idle = 0  # passes in a row that found no process not signalled before
    while True:
        found: list[int] = []
        try:
            entries = os.listdir("/proc")
        except OSError:
            return killed
        for entry in entries:
            if entry.isdigit() and int(entry) != own and _session_of(entry) == sid:
                found.append(int(entry))
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(entry), signal.SIGKILL)
                    killed += 1
        if not found:
            return killed
        if time.monotonic() >= deadline:
            _log.warning("rlm_async.repl.session_left", sid=sid, seconds=within)
            return killed
        idle = idle + 1 if signalled.issuperset(found) else 0
        signalled.update(found)
        _pause(idle)
