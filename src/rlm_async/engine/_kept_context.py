"""A run's context kept beside its trajectory (``RLM(trajectory_context=True)``), and read back.

The context is already a file: the one written in the REPL's work dir for the child to
load (``repl._context``). Keeping it is linking that file beside the trajectory,
``<stem>.context`` next to ``<stem>.jsonl`` (a hard link: no copy of a large context), or
copying it when the two are on different filesystems, or when the file was given to a
``run_as`` child (a link would share what that child may write). Done in a worker thread,
right after the REPL started and before any model code ran in it.

``RLM.resume`` reads it back as the child does (``format`` from the trajectory's header):
text as UTF-8 with lone surrogates kept, anything else as one JSON document.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from rlm_async._logging import get_logger

if TYPE_CHECKING:
    from rlm_async.repl._context import PreparedContext
    from rlm_async.trajectory._writer_thread import BackgroundTrajectory

__all__ = ["ContextKeeper", "kept_context_path", "load_kept_context"]

_log = get_logger("rlm_async.engine")
_COPY_CHUNK = 1024 * 1024


def kept_context_path(trajectory: str | os.PathLike[str]) -> Path:
    """Where the context of the trajectory file ``trajectory`` is kept: ``<stem>.context``."""
    return Path(trajectory).with_suffix(".context")


class ContextKeeper:
    """Keeps a completion's context beside its trajectory, once (a session's completions
    each keep it beside their own file).

    Args:
        writer: The completion's trajectory; its header is told the context is kept.
        prepared: The context, as written for the REPL (its format goes in the header).
    """

    def __init__(self, writer: BackgroundTrajectory, prepared: PreparedContext) -> None:
        self._writer = writer
        self._kept = False
        # Before the first event: the header says it.
        writer.writer.context_kept = "text" if prepared.format == "text" else "json"

    async def keep(self, source: str) -> None:
        """Link (or copy) ``source``, the REPL's context file, beside the trajectory.

        Never raises for the disk: a context that could not be kept is logged, and a
        resume without ``context=`` then says the file is missing.
        """
        if self._kept or self._writer.path is None or not source:
            return
        self._kept = True
        target = kept_context_path(self._writer.path)
        try:
            await anyio.to_thread.run_sync(_link_or_copy, source, target)
        except OSError as exc:
            _log.warning("rlm_async.trajectory_context_not_kept", path=str(target), error=str(exc))


def _link_or_copy(source: str, target: Path) -> None:
    """Blocking. ``source`` is opened without following a link (it is in the child's work
    dir); a link is made only to the very file opened, and only to one of ours."""
    fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        opened = os.fstat(handle.fileno())
        if opened.st_uid == os.geteuid():
            with contextlib.suppress(OSError):  # another filesystem (EXDEV), no links...
                os.link(source, target, follow_symlinks=False)
                if os.stat(target).st_ino == opened.st_ino:
                    return
                os.unlink(target)  # the name was swapped meanwhile: not that file
        partial = target.with_name(target.name + ".partial")
        try:
            with open(partial, "wb") as out:
                shutil.copyfileobj(handle, out, _COPY_CHUNK)
            os.replace(partial, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise


def load_kept_context(trajectory: str | os.PathLike[str], fmt: str) -> Any:
    """The context kept beside ``trajectory``, read by the child's reader (blocking).

    Raises:
        OSError: the file cannot be read (it was not kept, or was removed).
        ValueError: a JSON context that is not JSON (the file was changed).
    """
    # The child's own reader (stdlib only, no side effects on import), not a copy of it;
    # imported here: only a resume needs it.
    from rlm_async.repl.child._child import read_context_file

    return read_context_file(str(kept_context_path(trajectory)), fmt)
