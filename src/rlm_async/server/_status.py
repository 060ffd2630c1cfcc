"""What the service says about itself: the bodies of ``GET /health`` and ``GET /v1/models``.

``/health`` names the process that answered (``pid``): under ``rlm-async serve --workers N``
each worker is a replica with its own runs, queue and warm pool, and a health check reaches
one of them, so its figures are that worker's.
"""

from __future__ import annotations

import os
from typing import Any

from rlm_async.engine._rlm import RLM
from rlm_async.server._limits import RunSlots

__all__ = ["health_body", "models_body"]


def health_body(rlm: RLM | None, slots: RunSlots, state: str) -> tuple[dict[str, Any], int]:
    """The health check's JSON body and status (503 unless the RLM is open)."""
    pool = rlm.repl_pool if rlm is not None else None
    warm = (
        None
        if pool is None
        else {
            "size": pool.size,
            "ready": pool.ready,
            "started": pool.started,
            "taken": pool.taken,
            "missed": pool.missed,
        }
    )
    body = {
        "status": "ok" if rlm is not None else state,
        "pid": os.getpid(),
        "runs_in_flight": slots.in_flight,
        "queued": slots.queued,
        "max_concurrent_runs": slots.limit,
        "max_queue": slots.max_queue,
        "warm_repls": warm,
        "model": rlm.model if rlm is not None else None,
        "sub_model": rlm.sub_model if rlm is not None else None,
    }
    return body, 200 if rlm is not None else 503


def models_body(model_name: str, rlm: RLM) -> dict[str, Any]:
    """``/v1/models``: the one model this server serves, and the models behind it."""
    return {
        "object": "list",
        "data": [
            {
                "id": model_name,
                "object": "model",
                "created": 0,
                "owned_by": "rlm-async",
                "root_model": rlm.model,
                "sub_model": rlm.sub_model,
            }
        ],
    }
