"""``/metrics`` under ``rlm-async serve --workers N``: one scrape answers for every worker.

Each worker has its own registry, and a scrape is one connection that one worker accepts:
alone, each scrape would show a different worker's figures. So the worker that accepts it
also asks every other worker for its own, over the Unix sockets the workers already serve
their app on (``<directory>/<pid>.sock``, see ``server._session_affinity``), and answers
with all of them, each sample labelled ``worker="<pid>"``. Sum over that label in queries
(``sum without (worker) (...)``). A worker that does not answer within a second (gone,
restarting) is left out of that scrape; its series come back with it, under its new pid.

prometheus-client's own multi-process mode (``PROMETHEUS_MULTIPROC_DIR``) is not used: the
gauges here are read from live state at scrape time, which that mode cannot do.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable

import anyio
import httpx
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from rlm_async._logging import get_logger

__all__ = ["LOCAL_HEADER", "PeerMetrics", "merge_expositions"]

_log = get_logger("rlm_async.server")

# On a worker's request to another: answer with your own metrics only (no fan-out again).
LOCAL_HEADER = "x-rlm-metrics-local"
PEER_TIMEOUT = 1.0


class PeerMetrics:
    """The other workers' metrics, fetched over their Unix sockets.

    Args:
        directory: Where the workers' sockets are (``<pid>.sock``).
        worker: This worker's pid (its socket is skipped).
    """

    def __init__(self, directory: str, worker: int | None = None) -> None:
        self.directory = directory
        self.worker = os.getpid() if worker is None else worker

    def peers(self) -> list[int]:
        """The pids of the other workers with a socket now."""
        found: list[int] = []
        for path in glob.glob(os.path.join(self.directory, "*.sock")):
            name = os.path.basename(path).removesuffix(".sock")
            if name.isdigit() and int(name) != self.worker:
                found.append(int(name))
        return sorted(found)

    async def gather(self, own: bytes, authorization: str | None) -> bytes:
        """This worker's exposition and every other worker's, merged and labelled.

        Args:
            own: This worker's exposition.
            authorization: The scrape's ``Authorization`` header, passed on (each worker
                checks it as it would its own scrape's).
        """
        texts: dict[int, str] = {self.worker: own.decode()}

        async def fetch(peer: int) -> None:
            text = await self._fetch(peer, authorization)
            if text is not None:
                texts[peer] = text

        async with anyio.create_task_group() as tg:
            for peer in self.peers():
                tg.start_soon(fetch, peer)
        return merge_expositions(texts)

    async def _fetch(self, peer: int, authorization: str | None) -> str | None:
        headers = {LOCAL_HEADER: "1"}
        if authorization is not None:
            headers["authorization"] = authorization
        path = os.path.join(self.directory, f"{peer}.sock")
        transport = httpx.AsyncHTTPTransport(uds=path)
        try:
            async with httpx.AsyncClient(
                transport=transport, base_url="http://worker", timeout=PEER_TIMEOUT
            ) as client:
                response = await client.get("/metrics", headers=headers)
        except httpx.HTTPError as exc:
            _log.info("rlm_async.server.metrics_peer_missing", worker=peer, error=repr(exc))
            return None
        if response.status_code != 200:
            _log.warning(
                "rlm_async.server.metrics_peer_failed", worker=peer, status=response.status_code
            )
            return None
        return response.text


def merge_expositions(texts: dict[int, str]) -> bytes:
    """Expositions of several workers as one, every sample labelled with its ``worker``.

    Creation-time samples (``*_created``) are left out: optional in the format, and one per
    worker would say little.
    """
    families: dict[str, Metric] = {}
    for worker, text in sorted(texts.items()):
        for family in text_string_to_metric_families(text):
            if family.name.endswith("_created"):
                continue
            merged = families.get(family.name)
            if merged is None:
                merged = Metric(family.name, family.documentation, family.type, family.unit)
                families[family.name] = merged
            merged.samples.extend(
                Sample(
                    sample.name,
                    {**sample.labels, "worker": str(worker)},
                    sample.value,
                    sample.timestamp,
                    sample.exemplar,
                )
                for sample in family.samples
                if not sample.name.endswith("_created")
            )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families.values()))
    return generate_latest(registry)


class _Fixed(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families
