"""Trajectories: a run's events saved as JSON Lines, read back, and arranged as a tree.

A trajectory file is UTF-8 JSON Lines. The first line is a header::

    {"type": "trajectory", "schema_version": 1, "rlm_async_version": "0.1.0",
     "created": "2025-01-01T12:00:00Z", "run_id": "…", "model": "…", "sub_model": "…",
     "query": "…", "metadata": {}}

and every further line is one event of the run, exactly ``event.model_dump(mode="json")``
(see :mod:`rlm_async.events`), in emission order. ``docs/trajectory.md`` documents every
field. The schema version is ``events.TRAJECTORY_SCHEMA_VERSION``; readers refuse a file of
another version rather than guess.

:class:`TrajectoryWriter` is an event listener (``RLM(on_event=writer)``): it writes and
flushes line by line, so a run that crashes still leaves a readable file. Before anything is
written, strings that look like API keys (and the values of ``*_API_KEY`` environment
variables) are replaced by ``[REDACTED]``: a trajectory can be shared without leaking keys.

:func:`read_trajectory` validates every line and says which line is wrong. :func:`build_tree`
arranges events as nested runs → turns → cells → sub-calls, with each sub-RLM run hung under
the ``rlm_query`` sub-call that started it; the HTML viewer (``rlm-async view``) draws it.
"""

from rlm_async._redact import REDACTED, scrub_secrets
from rlm_async.trajectory._files import (
    TrajectoryError,
    TrajectoryHeader,
    TrajectoryWriter,
    write_trajectory,
)
from rlm_async.trajectory._nodes import (
    CellNode,
    RunNode,
    SubCallNode,
    ToolCallNode,
    Totals,
    TurnNode,
)
from rlm_async.trajectory._reader import Trajectory, read_trajectory
from rlm_async.trajectory._tree import build_tree

__all__ = [
    "REDACTED",
    "CellNode",
    "RunNode",
    "SubCallNode",
    "ToolCallNode",
    "Totals",
    "Trajectory",
    "TrajectoryError",
    "TrajectoryHeader",
    "TrajectoryWriter",
    "TurnNode",
    "build_tree",
    "read_trajectory",
    "scrub_secrets",
    "write_trajectory",
]
