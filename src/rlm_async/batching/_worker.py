"""What runs a batch's rows: one event loop with an ``RLM`` answering many rows at once.

The same code serves a local worker process (:func:`process_main`, over a pipe) and a Ray
actor (``batching._ray``). What a worker needs travels as a :class:`WorkerSpec` of plain
values that pickle (model names, ``RLMOptions``, ``Settings``), as ``server._workers``'
``ReplicaApp`` does for the server's workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from rlm_async.batching._rows import Job
from rlm_async.engine._options import RLMOptions
from rlm_async.engine._rlm import RLM
from rlm_async.engine._spend import Spend
from rlm_async.providers._settings import Settings

__all__ = ["WorkerSpec", "error_row", "process_main", "run_job"]


@dataclass(frozen=True)
class WorkerSpec:
    """How a worker makes its ``RLM``, as values that survive ``spawn`` and Ray.

    Attributes:
        model: The root model.
        sub_model: The sub-calls' model (``None``: the root model).
        options: The ``RLM``'s options (rows may change them with their own ``options``).
        settings: Keys and endpoints, read once by the process that starts the batch.
        slots: Rows each worker runs at once.
        cache: A SQLite file of sub-call answers the workers share (``RLM(cache=...)``).
    """

    model: str
    sub_model: str | None
    options: RLMOptions
    settings: Settings
    slots: int
    cache: str | None = None

    def make_rlm(self) -> RLM:
        """The worker's ``RLM``, not opened yet."""
        return RLM(
            model=self.model,
            sub_model=self.sub_model,
            options=self.options,
            settings=self.settings,
            cache=self.cache,
        )


def error_row(
    job: Job, error: BaseException | str, elapsed: float = 0.0, spent: Spend | None = None
) -> dict[str, Any]:
    """The output row of a request that got no answer (with what it spent, if anything)."""
    if isinstance(error, BaseException):
        described = {"type": type(error).__name__, "message": str(error)}
    else:
        described = {"type": "BatchError", "message": error}
    paid = spent is not None and spent.calls > 0
    return {
        "id": job.id,
        "answer": None,
        "error": described,
        "usage": (
            {
                "calls": spent.calls,
                "input_tokens": spent.input_tokens,
                "output_tokens": spent.output_tokens,
            }
            if spent is not None and paid
            else None
        ),
        "cost_usd": spent.cost_usd if spent is not None and paid and not spent.unpriced else None,
        "elapsed": round(elapsed, 4),
    }


async def run_job(rlm: RLM, job: Job, context: Any = None) -> dict[str, Any]:
    """Answer one request; its output row, with the error instead when it failed.

    ``context`` is the context when the caller has it already (Ray hands it over from the
    object store); else it is the row's own, or read from its ``context_path`` here.
    Nothing raises: a row's failure is its row's, and the others go on.
    """
    started = time.perf_counter()
    spent = Spend()
    try:
        if context is None:
            context = job.context if job.context_path is None else _read(job)
        result = await rlm.completion(context, job.query, options=job.options, on_event=spent)
    except Exception as exc:
        return error_row(job, exc, time.perf_counter() - started, spent)
    usage = result.usage
    return {
        "id": job.id,
        "answer": result.answer,
        "error": None,
        "usage": {
            "calls": usage.calls,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "models": {
                name: {
                    "calls": m.calls,
                    "input_tokens": m.input_tokens,
                    "output_tokens": m.output_tokens,
                }
                for name, m in usage.models.items()
            },
        },
        "cost_usd": usage.cost_usd,
        "elapsed": round(time.perf_counter() - started, 4),
        "iterations": result.iterations,
        "finished": result.finished,
    }


def read_context(path: str, as_json: bool) -> Any:
    """A context file's content: its text, or its JSON value."""
    text = Path(path).read_text(encoding="utf-8")
    return json.loads(text) if as_json else text


def _read(job: Job) -> Any:
    assert job.context_path is not None
    return read_context(job.context_path, job.as_json)


# -- a local worker process ------------------------------------------------------------
#
# Parent to worker: ("job", Job) or ("stop",). Worker to parent: ("ready",) once its RLM is
# open, ("failed", message) when it could not open it, and ("row", index, row) per job.


def process_main(conn: Connection, spec: WorkerSpec) -> None:
    """A worker process's body (the target of a ``spawn`` process)."""
    asyncio.run(_serve(conn, spec))


async def _serve(conn: Connection, spec: WorkerSpec) -> None:
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[tuple[Any, ...] | None] = asyncio.Queue()

    def receive() -> None:
        # A thread blocks on the pipe so the event loop never does.
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):  # the parent is gone
                message = None
            loop.call_soon_threadsafe(inbox.put_nowait, message)
            if message is None or message[0] == "stop":
                return

    threading.Thread(target=receive, name="rlm-batch-receive", daemon=True).start()
    try:
        rlm = spec.make_rlm()
        await rlm.__aenter__()
    except Exception as exc:
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    tasks: set[asyncio.Task[None]] = set()

    async def answer(job: Job) -> None:
        row = await run_job(rlm, job)
        with contextlib.suppress(OSError):  # the parent is gone: nobody to tell
            conn.send(("row", job.index, row))

    try:
        conn.send(("ready",))
        while (message := await inbox.get()) is not None and message[0] == "job":
            task = asyncio.create_task(answer(message[1]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        # "stop" or the parent gone (killed): nobody reads a row from here on, so the rows
        # still in flight are cancelled, not finished (paying for answers nobody records);
        # the RLM's clean-up then ends their REPLs and this process exits.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await rlm.aclose()
