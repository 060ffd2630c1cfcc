"""``/metrics`` under ``rlm-async serve --workers 2``: whichever worker a scrape reaches, it
answers for both, each sample labelled with its worker (the real command, ``--demo``)."""

from __future__ import annotations

import signal

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rlm_async.server._metrics_peers import LOCAL_HEADER, merge_expositions
from tests.server.test_workers import NUMBER, Asker, ready_workers, serve


def runs_by_worker(text: str) -> dict[str, float]:
    """``rlm_runs_total{outcome="ok"}`` of each ``worker`` label."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "rlm_runs_total" and sample.labels.get("outcome") == "ok":
                found[sample.labels.get("worker", "")] = sample.value
    return found


def test_every_scrape_has_every_workers_figures() -> None:
    with serve("--workers", "2", "--max-concurrent-runs", "1") as (process, url):
        workers = ready_workers(process, url, 2)
        # One run at a time per worker: two at once are one on each.
        askers = [Asker(url), Asker(url)]
        for asker in askers:
            asker.start()
        for asker in askers:
            asker.join(timeout=60)
            assert asker.response is not None and asker.response.status_code == 200
            assert asker.response.json()["answer"] == str(NUMBER)

        # Each scrape is a new connection, to either worker: all of them see both.
        for _ in range(6):
            response = httpx.get(f"{url}/metrics", timeout=10)
            assert response.status_code == 200
            runs = runs_by_worker(response.text)
            assert set(runs) == {str(pid) for pid in workers}, runs
            assert sum(runs.values()) == 2
            gauges = [
                sample
                for family in text_string_to_metric_families(response.text)
                for sample in family.samples
                if sample.name == "rlm_runs_in_flight"
            ]
            assert sorted(s.labels["worker"] for s in gauges) == sorted(map(str, workers))
        # A worker asked for its own only (what the workers send each other) is unlabelled.
        own = httpx.get(f"{url}/metrics", headers={LOCAL_HEADER: "1"}, timeout=10)
        assert set(runs_by_worker(own.text)) == {""}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def test_the_scrapes_token_is_passed_on_to_the_other_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RLM_TEST_SCRAPE_TOKEN", "s3cret")  # the command inherits it
    with serve("--workers", "2", "--api-key-env", "RLM_TEST_SCRAPE_TOKEN") as (process, url):
        workers = ready_workers(process, url, 2)
        assert httpx.get(f"{url}/metrics", timeout=10).status_code == 401
        for _ in range(4):
            response = httpx.get(
                f"{url}/metrics", headers={"Authorization": "Bearer s3cret"}, timeout=10
            )
            assert response.status_code == 200
            labelled = {
                sample.labels["worker"]
                for family in text_string_to_metric_families(response.text)
                for sample in family.samples
                if sample.name == "rlm_runs_in_flight"
            }
            assert labelled == {str(pid) for pid in workers}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def test_merging_labels_each_workers_samples_and_keeps_the_types() -> None:
    # As prometheus_client writes them.
    one = '# TYPE rlm_runs_total counter\nrlm_runs_total{outcome="ok"} 3.0\n'
    two = '# TYPE rlm_runs_total counter\nrlm_runs_total{outcome="ok"} 4.0\n# TYPE g gauge\ng 1.0\n'
    merged = merge_expositions({11: one, 22: two}).decode()
    families = {f.name: f for f in text_string_to_metric_families(merged)}
    assert families["rlm_runs"].type == "counter" and families["g"].type == "gauge"
    assert runs_by_worker(merged) == {"11": 3.0, "22": 4.0}
    assert [s.labels for s in families["g"].samples] == [{"worker": "22"}]
