"""``rlm-async serve --drain-delay``: SIGTERM fails readiness first, serves on, then drains.

The real command (``--demo``) in a process of its own, as in ``test_workers.py`` (whose
SIGTERM tests cover the drain itself: runs in flight finish, or are cancelled at
``--drain-timeout`` with their REPLs killed, and no process is left).
"""

from __future__ import annotations

import os
import signal

import httpx

from tests.helpers import alive
from tests.server.test_workers import (
    NUMBER,
    Asker,
    descendants,
    ready_workers,
    repls_under,
    serve,
    wait_for,
)


def probe(url: str, path: str) -> tuple[int, dict[str, object]] | None:
    """One probe on a connection of its own (any worker may answer it)."""
    try:
        response = httpx.get(f"{url}{path}", timeout=5)
    except httpx.TransportError:
        return None
    body: dict[str, object] = response.json()
    return response.status_code, body


def test_sigterm_makes_each_worker_unready_while_it_still_serves_then_it_drains() -> None:
    with serve("--workers", "2", "--max-concurrent-runs", "1", "--drain-delay", "120") as (
        process,
        url,
    ):
        workers = ready_workers(process, url, 2)
        first = Asker(url)
        first.start()
        wait_for(lambda: any(repls_under(w) for w in workers), "a run in flight")
        tree = descendants(process.pid)

        process.send_signal(signal.SIGTERM)  # to the supervisor, as Kubernetes does
        unready: set[int] = set()

        def both_unready() -> bool:
            answer = probe(url, "/readyz")
            if answer is not None and answer[0] == 503:
                assert answer[1]["status"] == "draining", answer
                unready.add(int(str(answer[1]["pid"])))
            return unready == workers

        wait_for(both_unready, "both workers to answer 503 on /readyz")
        live = probe(url, "/livez")
        assert live is not None and live[0] == 200  # not restarted: it is finishing its work
        # Still serving: a new run is taken and answered in the window.
        second = Asker(url)
        second.start()
        second.join(timeout=60)
        assert second.response is not None and second.response.status_code == 200
        assert second.response.json()["answer"] == str(NUMBER)
        assert process.poll() is None

        # A second SIGTERM to each worker ends the window: the drain starts now.
        for worker in workers:
            os.kill(worker, signal.SIGTERM)
        first.join(timeout=30)
        assert process.wait(timeout=30) == 0
        assert first.response is not None and first.response.status_code == 200
        wait_for(lambda: not [p for p in tree if alive(p)], "the process tree to be gone", 5)


def test_in_one_process_the_drain_starts_by_itself_once_the_delay_is_over() -> None:
    with serve("--workers", "1", "--drain-delay", "3") as (process, url):
        # The banner comes before the server listens: wait for its first answer.
        wait_for(lambda: (probe(url, "/readyz") or (0,))[0] == 200, "/readyz to answer 200")
        asker = Asker(url)
        asker.start()
        wait_for(lambda: repls_under(process.pid), "a run in flight")
        tree = descendants(process.pid)  # asked before it exits: its REPLs, pool included

        process.send_signal(signal.SIGTERM)
        # Polled at once: the window is seconds long, the probe milliseconds.
        wait_for(lambda: (probe(url, "/readyz") or (0,))[0] == 503, "/readyz to answer 503", 3)
        assert process.wait(timeout=30) == 0  # no second signal: the delay ran out
        asker.join(timeout=30)
        assert asker.response is not None and asker.response.status_code == 200
        assert asker.response.json()["answer"] == str(NUMBER)
        wait_for(lambda: not [p for p in tree if alive(p)], "the process tree to be gone", 5)
