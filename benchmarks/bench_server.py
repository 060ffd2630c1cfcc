"""The HTTP service under load: requests/second with and without a warm REPL pool.

    python benchmarks/bench_server.py                  # 200 requests, 20 at a time
    python benchmarks/bench_server.py --requests 50 --concurrency 10 --latency 0.05

Everything runs in this process over loopback: the mock LLM server (the scripted NIAH of
``rlm_async.demo``, a fixed latency per model call), ``rlm-async``'s app under uvicorn,
and an httpx client sending ``POST /v1/rlm`` with a 20,000-line haystack. Each request is
a full RLM run: three root turns and ~20 concurrent sub-calls, in its own REPL process.

Also measured, outside HTTP: how long a ``ReplSession`` takes from start to "context
loaded" (``ReplSession.start_seconds``) with a fresh process (cold) and with one taken
from a ``ReplPool`` (warm), and how long ``ReplPool.take()`` itself takes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from rlm_async import RLM, ReplOptions, ReplSession, Settings
from rlm_async.demo import demo_responder, make_haystack
from rlm_async.repl._pool import ReplPool
from rlm_async.server import create_app, open_server
from rlm_async.testing import MockLLMServer

HAYSTACK_LINES = 20_000


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered)) - 1))]


async def _load(
    base_url: str, n_requests: int, concurrency: int, body: bytes, expected: str
) -> dict[str, Any]:
    latencies: list[float] = []
    correct = 0
    failures: dict[int, int] = {}
    limiter = anyio.CapacityLimiter(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=120) as client:

        async def one() -> None:
            nonlocal correct
            async with limiter:
                started = time.perf_counter()
                response = await client.post(
                    "/v1/rlm", content=body, headers={"content-type": "application/json"}
                )
                latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                failures[response.status_code] = failures.get(response.status_code, 0) + 1
            elif response.json()["answer"] == expected:
                correct += 1

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(n_requests):
                tg.start_soon(one)
        wall = time.perf_counter() - started
    return {
        "rps": round(n_requests / wall, 2),
        "wall_s": round(wall, 3),
        "latency_p50_s": round(statistics.median(latencies), 4),
        "latency_p95_s": round(_pct(latencies, 95), 4),
        "correct": correct,
        "failures": failures,
    }


async def _serve_and_load(
    warm_repls: int,
    n_requests: int,
    concurrency: int,
    settings: Settings,
    body: bytes,
    expected: str,
) -> dict[str, Any]:
    def make_rlm() -> RLM:
        return RLM(
            model="openai-compatible:rlm-demo-root",
            sub_model="openai-compatible:rlm-demo-sub",
            settings=settings,
            max_concurrency=32,
            max_iterations=10,
            warm_repls=warm_repls,
        )

    # The app's lifespan opens and closes the RLM, as under `rlm-async serve`.
    app = create_app(make_rlm, max_concurrent_runs=concurrency)
    async with open_server(app) as url:
        rlm = app.state.rlm_service.rlm
        if rlm.repl_pool is not None:
            await rlm.repl_pool.wait_ready()
        figures = await _load(url, n_requests, concurrency, body, expected)
        if rlm.repl_pool is not None:
            figures["pool"] = {
                "taken": rlm.repl_pool.taken,
                "missed": rlm.repl_pool.missed,
                "started": rlm.repl_pool.started,
            }
    return figures


async def _acquisition(context: str, samples: int) -> dict[str, Any]:
    """Session start -> context loaded, cold vs warm; and ``ReplPool.take()`` alone."""
    options = ReplOptions()
    cold: list[float] = []
    for _ in range(samples):
        async with ReplSession(context, options=options) as session:
            assert session.start_seconds is not None
            cold.append(session.start_seconds)
    warm: list[float] = []
    takes: list[float] = []
    async with ReplPool(options, 1) as pool:
        original = pool.take

        def timed_take() -> Any:
            started = time.perf_counter()
            try:
                return original()
            finally:
                takes.append(time.perf_counter() - started)

        pool.take = timed_take  # type: ignore[method-assign]
        for _ in range(samples):
            await pool.wait_ready()
            async with ReplSession(context, pool=pool) as session:
                assert session.warm and session.start_seconds is not None
                warm.append(session.start_seconds)
    return {
        "samples": samples,
        "context_chars": len(context),
        "cold_start_to_loaded_ms_median": round(statistics.median(cold) * 1e3, 2),
        "warm_start_to_loaded_ms_median": round(statistics.median(warm) * 1e3, 2),
        "cold_start_to_loaded_ms_p95": round(_pct(cold, 95) * 1e3, 2),
        "warm_start_to_loaded_ms_p95": round(_pct(warm, 95) * 1e3, 2),
        "pool_take_us_median": round(statistics.median(takes) * 1e6, 2),
    }


async def bench_server(
    n_requests: int = 200, concurrency: int = 20, latency: float = 0.05
) -> dict[str, Any]:
    """Requests/second of ``POST /v1/rlm`` on the scripted NIAH, warm pool on vs off.

    Args:
        n_requests: Requests per configuration.
        concurrency: Requests in flight at once (and the server's run limit).
        latency: Seconds the mock model takes per call (root turns and sub-calls).

    Returns:
        Figures per configuration (``"cold"``: ``warm_repls=0``; ``"warm"``:
        ``warm_repls=concurrency``), the REPL acquisition times, and the settings.
    """
    text, number = make_haystack(HAYSTACK_LINES, seed=11)
    body = json.dumps({"context": text, "query": "What is the magic number?"}).encode()
    results: dict[str, Any] = {
        "settings": {
            "n_requests": n_requests,
            "concurrency": concurrency,
            "model_latency_s": latency,
            "haystack_lines": HAYSTACK_LINES,
            "request_bytes": len(body),
        }
    }
    async with MockLLMServer(demo_responder, latency=latency) as mock:
        settings = Settings(openai_compatible_base_url=mock.base_url)
        for name, warm in (("cold", 0), ("warm", concurrency)):
            results[name] = await _serve_and_load(
                warm, n_requests, concurrency, settings, body, str(number)
            )
    results["warm_over_cold_rps"] = round(results["warm"]["rps"] / results["cold"]["rps"], 3)
    results["acquisition"] = await _acquisition(text, samples=min(30, n_requests))
    return results


async def run(quick: bool) -> Any:
    """Entry point for ``benchmarks/run.py``: the figures as ``_common.Result`` rows."""
    try:
        from _common import Result  # type: ignore[import-not-found]
    except ImportError:
        from benchmarks._common import Result
    figures = await bench_server(n_requests=60 if quick else 200)
    result = Result()
    for name in ("cold", "warm"):
        mode = "on" if name == "warm" else "off"
        row = figures[name]
        result.add("server", f"POST /v1/rlm req/s, warm_repls {mode}", row["rps"], "/s",
                   higher_is_better=True, extra=row)  # fmt: skip
    acq = figures["acquisition"]
    cold, warm = acq["cold_start_to_loaded_ms_median"], acq["warm_start_to_loaded_ms_median"]
    result.add("server", "REPL start -> context loaded, cold", cold, "ms")
    result.add("server", "REPL start -> context loaded, warm", warm, "ms",
               reference=cold, reference_label="cold")  # fmt: skip
    result.add("server", "ReplPool.take()", acq["pool_take_us_median"], "us")
    result.notes.append(f"bench_server settings: {figures['settings']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()
    figures = asyncio.run(bench_server(args.requests, args.concurrency, args.latency))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
