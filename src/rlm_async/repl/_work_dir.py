"""Files in the child's work dir: given to the child, and written without following its links.

The work dir belongs to the child, whose code may have left symlinks or swapped entries
there: the parent never writes into it by name, nor follows names there when reading.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from rlm_async.repl._tree import remove_tree

__all__ = ["create_child_file", "give_work_dir", "open_private_parent_to"]


def give_work_dir(path: str, uid: int, gid: int) -> None:
    """Chown the work dir and the regular files *we* put at its top level to the child.

    Never recursive and never by path: the directory belongs to the child, whose code may
    have left symlinks or swapped entries there; we only touch what we opened ourselves.
    """
    parent = os.geteuid()
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    dir_fd = os.open(path, flags | os.O_DIRECTORY)
    try:
        if os.fstat(dir_fd).st_uid != uid:
            os.fchown(dir_fd, uid, gid)
        for entry in os.scandir(dir_fd):
            try:
                fd = os.open(entry.name, flags | os.O_NONBLOCK, dir_fd=dir_fd)
            except OSError:
                continue  # a symlink (ELOOP), gone, or not ours to open
            try:
                info = os.fstat(fd)
                if stat.S_ISREG(info.st_mode) and info.st_uid == parent and info.st_nlink == 1:
                    os.fchown(fd, uid, gid)
            finally:
                os.close(fd)
    finally:
        os.close(dir_fd)


def open_private_parent_to(work_dir: str, gid: int) -> None:
    """Let group ``gid`` (the ``run_as`` child's) through the private directory around the
    work dir (``make_work_dir``'s 0700 ``rlm-repl-XXXX``), and nobody else.

    A parent directory that is not ours or not private (``/tmp`` itself) is left alone.
    """
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(os.path.dirname(os.path.realpath(work_dir)), flags)
    try:
        info = os.fstat(fd)
        if info.st_uid == os.geteuid() and not info.st_mode & stat.S_IRWXO:
            if info.st_gid != gid:
                os.fchown(fd, -1, gid)
            os.fchmod(fd, 0o710)
    finally:
        os.close(fd)


def create_child_file(path: str) -> BinaryIO:
    """Open a new file in the child's work dir for writing, never through a symlink.

    The work dir is writable by model code, which can plant ``repl-config.json`` -> any path
    before a restart; ``open(path, "w")`` in the parent would then write through it (as
    root, when the parent is root). This removes what is there and creates the file with
    ``O_EXCL | O_NOFOLLOW``, so a racing symlink makes it fail instead.

    A directory planted under the name is removed too (``remove_tree`` works on file
    descriptors and never follows a symlink out of it).

    Raises:
        OSError: the name was re-created during the call.
    """
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        remove_tree(path)  # iterative: a 3,000-deep planted tree is no RecursionError
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o644)
    os.fchmod(fd, 0o644)  # readable by a run_as child whatever the parent's umask
    return os.fdopen(fd, "wb")
