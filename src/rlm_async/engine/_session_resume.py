"""Finding and loading what a session recorded, for ``RLM.resume_session``.

A session's completions each write a trajectory of their own (``RLM(trajectory_dir=...)``);
their ``run_started`` event and header name the session (``session``: its id) and the
completion (``session_turn``). :func:`load_session` gathers them from one directory, in the
order they were written, and keeps what a resumed session replays: every completion that
finished, then the last one if it was cut (the session's parent died inside it). A cut
completion that later ones followed (it failed, and the conversation went on) is left out,
as its ``query_N`` and ``answer_N`` were: what its cells left in the REPL is not replayed.
"""

from __future__ import annotations

import os
from pathlib import Path

from rlm_async._exceptions import ResumeError
from rlm_async.engine._resume import Replay, load_replay

__all__ = ["load_session"]


def load_session(
    source: str | os.PathLike[str], directory: str | os.PathLike[str] | None
) -> list[Replay]:
    """What the session of ``source`` recorded, in order: the completions to replay.

    Args:
        source: A trajectory file of the session (any of its completions), or its id, looked
            for in ``directory``.
        directory: The ``RLM``'s ``trajectory_dir``, for an id.

    Raises:
        ResumeError: the file is not a session's, or no trajectory of the session is found.
        TrajectoryError: a file of the session cannot be read.
    """
    from rlm_async.trajectory._files import TrajectoryError
    from rlm_async.trajectory._reader import read_header

    path = Path(source)
    if path.is_file():
        header = read_header(path)
        if header.session is None:
            raise ResumeError(
                f"{path} is not a session's completion (its header names no session); "
                "resume a single run with rlm.resume(path, context=...)"
            )
        session, folder = header.session, path.parent
    elif path.suffix == ".jsonl" or len(path.parts) > 1:
        raise ResumeError(
            f"no trajectory file {str(source)!r}: give the path of one of the session's "
            ".jsonl files, or the session's id (result.metadata['session'])"
        )
    elif directory is None:
        raise ResumeError(
            f"{str(source)!r} is not a trajectory file, and this RLM has no trajectory_dir "
            "in which to look for a session of that id; give the path of one of its files"
        )
    else:
        session, folder = str(source), Path(directory)
    found: list[tuple[str, Path]] = []
    for candidate in folder.glob("*.jsonl"):
        try:
            header = read_header(candidate)
        except (TrajectoryError, OSError, UnicodeDecodeError):
            continue  # another file in the directory: not one of the session's
        if header.session == session:
            found.append((header.created, candidate))
    if not found:
        raise ResumeError(f"no trajectory of session {session!r} in {folder}")
    replays = [load_replay(file) for _, file in sorted(found)]
    chosen = [replay for replay in replays if replay.answer is not None]
    if replays[-1].answer is None:
        chosen.append(replays[-1])  # the completion the session stopped inside: resumed
    return chosen
