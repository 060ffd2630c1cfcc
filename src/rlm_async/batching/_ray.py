"""A batch on a Ray cluster: actors each running an event loop with many rows at once.

Ray (the optional extra ``ray``) is imported when a batch asks for it, not before: its
import alone takes about half a second. Each actor is an async actor holding one ``RLM``
(made from a :class:`WorkerSpec`), running up to ``spec.slots`` rows concurrently on its
event loop. A context goes into Ray's object store once (``ray.put``) and every row that
reads it gets the reference: a file named by many rows is read and sent once, not per row.
Rows come back in order of completion. A row whose actor died is handed back as lost (the
batch loop dispatches it again); Ray restarts the actor.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
from typing import Any

from rlm_async._exceptions import ConfigurationError
from rlm_async.batching._backend import Outcome
from rlm_async.batching._local import DEFAULT_ROWS_PER_WORKER, slots_per_worker
from rlm_async.batching._rows import Job
from rlm_async.batching._worker import WorkerSpec, error_row, read_context, run_job
from rlm_async.engine._rlm import RLM

__all__ = ["RayBackend", "import_ray"]


def import_ray() -> Any:
    """The ``ray`` module.

    Raises:
        ConfigurationError: Ray is not installed (with the command that installs it).
    """
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise ConfigurationError(
            "a batch on Ray needs the ray package: pip install 'rlm-async[ray]'"
        ) from None


class BatchActor:
    """One Ray actor's state: an ``RLM`` opened on the actor's event loop at first use."""

    def __init__(self, spec: WorkerSpec) -> None:
        self._spec = spec
        self._rlm: RLM | None = None
        self._opening: asyncio.Lock | None = None

    async def ready(self) -> bool:
        await self._open()
        return True

    async def run(self, job: Job, context: Any) -> dict[str, Any]:
        return await run_job(await self._open(), job, context)

    async def _open(self) -> RLM:
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._rlm is None:
                rlm = self._spec.make_rlm()
                await rlm.__aenter__()
                self._rlm = rlm
        return self._rlm


class RayBackend:
    """Rows run by Ray actors, ``spec.slots`` at once in each.

    Args:
        spec: How each actor makes its ``RLM``.
        actors: How many actors (``None``: one per CPU of the cluster).
        address: ``ray.init``'s address when Ray is not initialized yet (``None``: Ray's
            own choice: ``RAY_ADDRESS``, else a local Ray on this machine).
        concurrency: Rows in flight in all, shared among the actors (``None``: 8 each).
    """

    def __init__(
        self,
        spec: WorkerSpec,
        actors: int | None,
        address: str | None,
        concurrency: int | None,
    ) -> None:
        self._ray = import_ray()
        self._concurrency = concurrency
        self._spec = spec
        self._actor_count = actors
        self._address = address
        self._started_ray = False
        self._actors: list[Any] = []
        self._in_flight: list[int] = []
        self._running: dict[asyncio.Future[Any], tuple[Job, int]] = {}
        self._shared: dict[tuple[str, bool], Any] = {}  # context files already in the store
        self._ready: list[Outcome] = []

    @property
    def description(self) -> str:
        return f"{len(self._in_flight)} Ray actors x {self._spec.slots} rows"

    async def start(self) -> None:
        ray = self._ray
        if not ray.is_initialized():
            ray.init(address=self._address, include_dashboard=False, logging_level="warning")
            self._started_ray = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        count = self._actor_count or max(1, cpus)
        if count > cpus:  # each actor holds a CPU: the ones past the cluster's would wait forever
            raise ConfigurationError(
                f"{count} batch actors need {count} CPUs and the Ray cluster has {cpus}: "
                f"ask for at most {cpus} (or leave the number out: one per CPU)"
            )
        slots = slots_per_worker(self._concurrency or DEFAULT_ROWS_PER_WORKER * count, count)
        self._spec = dataclasses.replace(self._spec, slots=slots)
        remote = ray.remote(BatchActor).options(
            max_concurrency=self._spec.slots,
            max_restarts=-1,  # a dead actor comes back; its rows are dispatched again
            num_cpus=1,
        )
        self._actors = [remote.remote(self._spec) for _ in range(count)]
        self._in_flight = [0] * count
        try:
            await asyncio.gather(*(self._wrap(a.ready.remote()) for a in self._actors))
        except Exception as exc:
            raise ConfigurationError(f"a batch actor could not start on Ray: {exc}") from exc

    @staticmethod
    def _wrap(ref: Any) -> asyncio.Future[Any]:
        return asyncio.wrap_future(ref.future())

    def has_room(self) -> bool:
        return any(n < self._spec.slots for n in self._in_flight)

    def alive(self) -> bool:
        return bool(self._actors)

    async def wait_for_room(self) -> None:
        return  # an actor Ray restarts takes its calls meanwhile: there is always room

    async def submit(self, job: Job) -> None:
        try:
            context = await self._context_ref(job)
        except (OSError, ValueError) as exc:  # a missing file, bad JSON: this row's error
            self._ready.append(Outcome(job, error_row(job, exc)))
            return
        actor = min(range(len(self._actors)), key=self._in_flight.__getitem__)
        self._in_flight[actor] += 1
        sent = dataclasses.replace(job, context=None)  # it travels through the store
        future = self._wrap(self._actors[actor].run.remote(sent, context))
        self._running[future] = (job, actor)

    async def _context_ref(self, job: Job) -> Any:
        if job.context_path is None:
            return self._ray.put(job.context)
        key = (job.context_path, job.as_json)
        if key not in self._shared:
            # Read in a thread: a large file would hold the event loop (and every result).
            self._shared[key] = self._ray.put(await asyncio.to_thread(read_context, *key))
        return self._shared[key]

    async def next_outcome(self) -> Outcome:
        while not self._ready:
            done, _ = await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                job, actor = self._running.pop(future)
                self._in_flight[actor] -= 1
                try:
                    self._ready.append(Outcome(job, future.result()))
                except Exception as exc:  # the actor died under it (run_job never raises)
                    self._ready.append(Outcome(job, None, f"{type(exc).__name__}: {exc}"))
        return self._ready.pop(0)

    async def aclose(self) -> None:
        for future in self._running:
            future.cancel()
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors.clear()
        self._shared.clear()
        if self._started_ray:
            self._ray.shutdown()
