"""Liveness and readiness: what an orchestrator asks before it restarts or routes to a replica.

* ``GET /livez``: the process is up and its event loop answers (this handler runs on it).
  200 whatever the app's state: starting, serving, draining. A failing liveness probe
  makes Kubernetes restart the container, which would cut the runs a drain is finishing.
* ``GET /readyz``: send this replica new work. 200 once the RLM is open and its warm pool
  (``warm_repls``) has been filled once since start-up, so the first requests do not pay
  for cold REPL starts; 503 before, and from the moment the server starts draining (a
  SIGTERM with ``rlm-async serve --drain-delay``, or the app's shutdown), so a load
  balancer stops sending while the runs in flight finish. A full replica stays ready:
  run slots and the queue answer 429 fast, and the autoscaler reads ``rlm_runs_in_flight``.

Both are open without the bearer token, like ``/health``: they reveal no more than it does.
"""

from __future__ import annotations

import os
from typing import Any

from rlm_async.engine._rlm import RLM

__all__ = ["liveness_body", "readiness_body"]


def liveness_body() -> dict[str, Any]:
    """``/livez``'s body (always 200)."""
    return {"status": "alive", "pid": os.getpid()}


def readiness_body(rlm: RLM | None, state: str, *, draining: bool) -> tuple[dict[str, Any], int]:
    """``/readyz``'s body and status: 200 ready, else 503 with the reason.

    Args:
        rlm: The served RLM (``None``: not open yet, or closed).
        state: The service's state (``starting``, ``open``, ``closed``).
        draining: The server has started shutting down.
    """
    pool = rlm.repl_pool if rlm is not None else None
    if draining:
        reason: str | None = "draining"
    elif rlm is None:
        reason = state  # "starting" or "closed"
    elif pool is not None and pool.started < pool.size:
        # Counts children started since the pool opened, taken ones too: once it has been
        # full, a busy server whose pool is refilling stays ready.
        reason = "warming"
    else:
        reason = None
    body: dict[str, Any] = {"status": "ready" if reason is None else reason, "pid": os.getpid()}
    if pool is not None:
        body["warm_repls"] = {"size": pool.size, "started": pool.started, "ready": pool.ready}
    return body, 200 if reason is None else 503
