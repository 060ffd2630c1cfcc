"""Prometheus metrics of one app: ``GET /metrics`` in the text exposition format.

Made with the standard client library (``prometheus_client``) in a registry of the app's own,
not the process-wide default one: two apps in one process (tests, an app mounting two RLMs)
keep apart, and nothing the host application registers is served by accident.

What is counted, and where it comes from:

* the run slots (``server._limits.RunSlots``), read at scrape time: runs in flight and
  requests queued for a slot;
* the process, read at scrape time: REPL processes alive (this process's direct children
  running the REPL child, warm ones included) and the warm pool's ready ones;
* the run slots' admissions (:class:`MeteredSlots`): each admitted run's time queued for a
  slot and its time holding it, refusals (429 busy, 503 queue timeout) by reason;
* the engine's events, from a listener the service attaches to every run (sub-RLMs
  included, at any depth): runs' outcomes, tokens and cost of root turns, compactions and
  sub-calls by model, sub-calls by kind and whether the cache answered them. Calls
  replayed by ``RLM.resume`` were paid earlier and are not counted again.

Each worker of ``rlm-async serve --workers N`` has its own registry; the one a scrape
reaches gathers the others' (``server._metrics_peers``).
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rlm_async import events as ev
from rlm_async.server._errors import ApiError
from rlm_async.server._limits import RunSlot, RunSlots

__all__ = ["CONTENT_TYPE", "MeteredSlots", "ServerMetrics", "ServiceGauges", "repls_alive"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Marks the REPL child in a process's command line (bwrap's and setpriv's too: they carry it).
_CHILD_MARK = b"rlm_async/repl/child/_child.py"

# A run takes from a second (one root turn) to many minutes (deep recursion over a big input).
RUN_BUCKETS = (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
# Time queued for a slot: 0 when one is free, up to the queue timeout (30 s by default).
QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class ServiceGauges:
    """What the app's state says at scrape time (read by :class:`ServerMetrics`)."""

    runs_in_flight: int
    runs_queued: int
    warm_repls_ready: int
    draining: bool


class ServerMetrics:
    """The app's metrics in a registry of its own.

    Args:
        gauges: Reads the app's state at scrape time.
    """

    def __init__(self, gauges: Callable[[], ServiceGauges]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_StateCollector(gauges))
        self.runs = Counter(
            "rlm_runs",
            "Runs ended (completions, streamed or not, sessions' included), by outcome: ok, "
            "budget (a budget stopped it), error, cancelled (client gone, server shutting "
            "down).",
            ["outcome"],
            registry=self.registry,
        )
        self.run_seconds = Histogram(
            "rlm_run_duration_seconds",
            "Seconds a run held its run slot: from admission to the end of its response.",
            buckets=RUN_BUCKETS,
            registry=self.registry,
        )
        self.queue_seconds = Histogram(
            "rlm_run_queue_seconds",
            "Seconds an admitted run waited for a run slot (0 when one was free).",
            buckets=QUEUE_BUCKETS,
            registry=self.registry,
        )
        self.rejected = Counter(
            "rlm_runs_rejected",
            "Requests refused a run slot: busy (429, slots and queue full) or "
            "queue_timeout (503, no slot within the queue timeout).",
            ["reason"],
            registry=self.registry,
        )
        self.tokens = Counter(
            "rlm_tokens",
            "Tokens of model calls (root turns, compactions, sub-calls at any depth) by model "
            "and kind: input (the whole prompt), output, cached (read from the prompt cache, "
            "part of input), cache_write (written to it, part of input).",
            ["model", "kind"],
            registry=self.registry,
        )
        self.cost = Counter(
            "rlm_cost_usd",
            "Cost in US dollars of model calls whose price is known, by model.",
            ["model"],
            registry=self.registry,
        )
        self.subcalls = Counter(
            "rlm_subcalls",
            "Sub-calls ended (llm_query, rlm_query), by kind, whether the sub-call cache "
            "answered them (cached: not paid) and whether they succeeded.",
            ["kind", "cached", "ok"],
            registry=self.registry,
        )

    # ---- feeding ---------------------------------------------------------------------------

    def on_event(self, event: ev.Event) -> None:
        """The engine's event listener: runs' outcomes, tokens, cost and sub-calls."""
        if event.depth == 0 and isinstance(event, ev.RunFinished | ev.RunFailed):
            self.runs.labels(outcome=_outcome(event)).inc()
        elif isinstance(event, ev.TurnFinished | ev.Compacted):
            if not event.replayed:
                self._usage(event)
        elif isinstance(event, ev.SubCallFinished) and not event.replayed:
            self.subcalls.labels(
                kind=event.kind, cached=_flag(event.cached), ok=_flag(event.ok)
            ).inc()
            self._usage(event)

    def _usage(self, event: ev.TurnFinished | ev.Compacted | ev.SubCallFinished) -> None:
        """One model call's tokens and cost, from the event that says it ended."""
        for kind, count in (
            ("input", event.input_tokens),
            ("output", event.output_tokens),
            ("cached", event.cached_tokens),
            ("cache_write", event.cache_write_tokens),
        ):
            if count > 0:
                self.tokens.labels(model=event.model, kind=kind).inc(count)
        if event.cost_usd:
            self.cost.labels(model=event.model).inc(event.cost_usd)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)


class MeteredSlots(RunSlots):
    """:class:`RunSlots` that time each admitted run's wait and hold, and count refusals.

    Args:
        metrics: Where to record.
        limit, max_queue, queue_timeout: As for :class:`RunSlots`.
    """

    def __init__(
        self, metrics: ServerMetrics, limit: int, *, max_queue: int = 0, queue_timeout: float = 30.0
    ) -> None:
        super().__init__(limit, max_queue=max_queue, queue_timeout=queue_timeout)
        self._metrics = metrics

    async def acquire(self) -> RunSlot:
        asked = time.perf_counter()
        try:
            await super().acquire()  # the slot is ours: a timed one is given out instead
        except ApiError as exc:
            reason = "busy" if exc.code == "server_busy" else "queue_timeout"
            self._metrics.rejected.labels(reason=reason).inc()
            raise
        admitted = time.perf_counter()
        self._metrics.queue_seconds.observe(admitted - asked)
        return _TimedSlot(self, self._metrics, admitted)


class _TimedSlot(RunSlot):
    """A slot that records how long it was held when it is released (once)."""

    __slots__ = ("_admitted", "_metrics")

    def __init__(self, slots: RunSlots, metrics: ServerMetrics, admitted: float) -> None:
        super().__init__(slots)
        self._metrics = metrics
        self._admitted = admitted

    def release(self) -> None:
        if not self._released:
            self._metrics.run_seconds.observe(time.perf_counter() - self._admitted)
        super().release()


def _outcome(event: ev.RunFinished | ev.RunFailed) -> str:
    if isinstance(event, ev.RunFinished):
        return "ok"
    # A cancelled run's error type is the engine's cancel reason (engine._state).
    return {"BudgetExceeded": "budget", "Cancelled": "cancelled"}.get(event.error_type, "error")


def _flag(value: bool) -> str:
    return "true" if value else "false"


class _StateCollector(Collector):
    """The gauges, read from the app and the process when scraped (never stale)."""

    def __init__(self, gauges: Callable[[], ServiceGauges]) -> None:
        self._gauges = gauges

    def collect(self) -> Iterator[Metric]:
        state = self._gauges()
        yield GaugeMetricFamily(
            "rlm_runs_in_flight", "Runs holding a run slot now.", value=state.runs_in_flight
        )
        yield GaugeMetricFamily(
            "rlm_runs_queued", "Requests waiting for a run slot now.", value=state.runs_queued
        )
        yield GaugeMetricFamily(
            "rlm_warm_repls_ready",
            "Pre-started REPL processes waiting to be taken (the warm pool).",
            value=state.warm_repls_ready,
        )
        yield GaugeMetricFamily(
            "rlm_draining",
            "1 while the server is shutting down (readiness answers 503), else 0.",
            value=1 if state.draining else 0,
        )
        alive = repls_alive()
        if alive is not None:
            yield GaugeMetricFamily(
                "rlm_repls_alive",
                "REPL processes alive that this process started (runs, sessions, warm pool).",
                value=alive,
            )

    def describe(self) -> Iterator[Metric]:
        # Without this, registering would call collect() (and the app's state) at once.
        return iter(())


def repls_alive(pid: int | None = None) -> int | None:
    """REPL processes among the direct children of ``pid`` (default: this process).

    Each REPL is one direct child (the interpreter, or ``bwrap`` around it), whose command
    line names the REPL child's file; one that has exited (a zombie) has an empty command
    line and is not counted. ``None`` where ``/proc`` cannot tell (not Linux).
    """
    pid = os.getpid() if pid is None else pid
    tasks = glob.glob(f"/proc/{pid}/task/*/children")
    if not tasks:
        return None
    children: set[int] = set()
    for path in tasks:
        try:
            with open(path) as handle:
                children.update(int(each) for each in handle.read().split())
        except OSError:  # the thread ended while we looked
            continue
    count = 0
    for child in children:
        try:
            with open(f"/proc/{child}/cmdline", "rb") as handle:
                if _CHILD_MARK in handle.read():
                    count += 1
        except OSError:  # it exited while we looked
            continue
    return count
