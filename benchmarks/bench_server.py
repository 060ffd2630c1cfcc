"""The HTTP service under load: requests/second with and without a warm REPL pool, and the
``rlm-async serve`` command with one worker process and with two.

    python benchmarks/bench_server.py                  # 200 requests, 20 at a time
    python benchmarks/bench_server.py --requests 50 --concurrency 10 --latency 0.05

In-process figures: the mock LLM server (the scripted NIAH of ``rlm_async.demo``, a fixed
latency per model call), ``rlm-async``'s app under uvicorn and an httpx client sending
``POST /v1/rlm`` with a 20,000-line haystack all run in this process over loopback. Each
request is a full RLM run: three root turns and ~20 concurrent sub-calls, in its own REPL
process.

Command figures: the same requests, from the same load generator (an httpx client in this
process), to a real ``rlm-async serve --workers N`` subprocess on 127.0.0.1, whose model
is the same scripted NIAH served by ``mock_server.py`` in a process of its own.

Also measured, outside HTTP: how long a ``ReplSession`` takes from start to "context
loaded" (``ReplSession.start_seconds``) with a fresh process (cold) and with one taken
from a ``ReplPool`` (warm), and how long ``ReplPool.take()`` itself takes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Result, Row, ServerProcess

from rlm_async import RLM, ReplOptions, ReplSession, Settings
from rlm_async.demo import demo_responder, make_haystack
from rlm_async.repl._pool import ReplPool
from rlm_async.server import create_app, open_server
from rlm_async.testing import MockLLMServer

HERE = Path(__file__).resolve().parent
HAYSTACK_LINES = 20_000
SERVE_TODAY = "14-16 req/s"  # issue 14's figure, before --workers: one process
SERVE_TARGET = 60.0  # req/s, issue 14


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


def _worker_pids(url: str, workers: int, deadline: float) -> set[int]:
    """Health-check on fresh connections until every worker has answered (workers start
    after the command's banner); their pids."""
    pids: set[int] = set()
    while len(pids) < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(pids)} of {workers} workers answered")
        try:
            response = httpx.get(f"{url}/health", timeout=5)
        except httpx.TransportError:
            response = None
        if response is not None and response.status_code == 200:
            body = response.json()
            warm = body["warm_repls"]
            if warm is None or warm["ready"] >= warm["size"]:
                pids.add(body["pid"])
                continue
        time.sleep(0.05)  # a worker still starting (or filling its pool): poll, bounded
    return pids


def _cpu_seconds(pids: set[int]) -> tuple[float, float]:
    """CPU seconds of ``pids`` themselves, and of their children already waited for (the
    REPL processes of finished runs), from ``/proc/PID/stat``."""
    own = children = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        own += int(fields[11]) + int(fields[12])  # utime, stime
        children += int(fields[13]) + int(fields[14])  # cutime, cstime
    tick = os.sysconf("SC_CLK_TCK")
    return own / tick, children / tick


def _machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of every CPU since boot, from ``/proc/stat``."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return sum(values) - idle, sum(values)


def _runs_per_worker(url: str, workers: int) -> dict[int, int]:
    """Runs each worker served, from its warm pool's counters (taken + missed)."""
    served: dict[int, int] = {}
    for _ in range(50 * workers):
        body = httpx.get(f"{url}/health", timeout=5).json()
        warm = body["warm_repls"]
        if warm is not None:
            served[body["pid"]] = warm["taken"] + warm["missed"]
        if len(served) == workers:
            break
    return served


async def _serve_command_and_load(
    workers: int,
    warm_repls: int,
    n_requests: int,
    concurrency: int,
    model_url: str,
    body: bytes,
    expected: str,
) -> dict[str, Any]:
    """``rlm-async serve --workers N`` as a subprocess, loaded over loopback HTTP."""
    argv = [
        sys.executable, "-m", "rlm_async.cli", "serve", "--port", "0",
        "--workers", str(workers), "--warm-repls", str(warm_repls),
        "--model", "openai-compatible:rlm-demo-root",
        "--sub-model", "openai-compatible:rlm-demo-sub",
        "--max-concurrency", "32", "--max-iterations", "10",
        "--max-concurrent-runs", str(concurrency), "--log-level", "warning", "--no-dotenv",
    ]  # fmt: skip
    # The command from this checkout's src/, whatever is installed.
    path = os.pathsep.join(p for p in (str(HERE.parent / "src"), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, OPENAI_COMPATIBLE_BASE_URL=model_url, PYTHONPATH=path)
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env, cwd=HERE.parent)
    try:
        assert process.stderr is not None
        banner = process.stderr.readline()
        if not banner.startswith("rlm-async serve: http://"):
            raise RuntimeError(f"rlm-async serve did not start: {banner!r}")
        url = banner.split()[2]
        pids = await anyio.to_thread.run_sync(_worker_pids, url, workers, time.monotonic() + 60)
        before = (*_cpu_seconds(pids), time.process_time(), *_machine_busy())
        figures = await _load(url, n_requests, concurrency, body, expected)
        after = (*_cpu_seconds(pids), time.process_time(), *_machine_busy())
        own, repl, client, busy, total = (a - b for a, b in zip(after, before, strict=True))
        # Per request: the workers' own CPU, their finished REPL children's, the load
        # generator's; and how busy the whole machine was meanwhile (every process).
        figures["worker_cpu_ms_per_request"] = round(own / n_requests * 1e3, 1)
        figures["repl_cpu_ms_per_request"] = round(repl / n_requests * 1e3, 1)
        figures["client_cpu_ms_per_request"] = round(client / n_requests * 1e3, 1)
        figures["machine_cpu_busy"] = round(busy / max(1, total), 3)
        figures["workers"] = workers
        figures["warm_repls_per_worker"] = warm_repls
        if warm_repls:
            figures["runs_per_worker"] = await anyio.to_thread.run_sync(
                _runs_per_worker, url, workers
            )
        figures["worker_pids"] = sorted(pids)
        process.send_signal(signal.SIGTERM)
        figures["exit_status"] = await anyio.to_thread.run_sync(process.wait, 60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
    return figures


async def bench_serve_command(
    n_requests: int = 200,
    concurrency: int = 20,
    latency: float = 0.05,
    workers: tuple[int, ...] = (1, 2),
    repeats: int = 2,
) -> dict[str, Any]:
    """Requests/second of ``rlm-async serve --workers N`` for each N, warm pool off and on.

    Args:
        n_requests: Requests per configuration.
        concurrency: Requests in flight at once (and each worker's run limit).
        latency: Seconds the mock model takes per call (root turns and sub-calls).
        workers: The worker counts to measure.
        repeats: Rounds over every configuration, one after the other (so that a burst of
            load from elsewhere hits them alike); each keeps its best round.

    Returns:
        ``{"workers_N_cold": figures, "workers_N_warm": figures, ...}`` and the settings;
        warm means ``--warm-repls`` of ``concurrency / N`` (rounded up) in each worker.
        ``rps_rounds`` lists every round's figure.
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
            "cpus": len(os.sched_getaffinity(0)),
        }
    }
    rounds: dict[str, list[dict[str, Any]]] = {}
    with ServerProcess("demo", root_latency=latency, sub_latency=latency) as mock:
        for _ in range(repeats):
            for count in workers:
                for mode, warm in (("cold", 0), ("warm", -(-concurrency // count))):
                    figures = await _serve_command_and_load(
                        count, warm, n_requests, concurrency, mock.base_url, body, str(number)
                    )
                    rounds.setdefault(f"workers_{count}_{mode}", []).append(figures)
        results["model_server"] = mock.stats()
    for key, runs in rounds.items():
        results[key] = max(runs, key=lambda figures: figures["rps"])
        results[key]["rps_rounds"] = [figures["rps"] for figures in runs]
    return results


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


async def run(quick: bool) -> Result:
    """Entry point for ``benchmarks/run.py``: the figures as ``_common.Result`` rows."""
    n_requests = 60 if quick else 200
    figures = await bench_server(n_requests=n_requests)
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

    command = await bench_serve_command(n_requests=n_requests, repeats=1 if quick else 2)
    _command_rows(result, command)
    return result


def _command_rows(result: Result, command: dict[str, Any]) -> None:
    """The ``rlm-async serve`` rows: each worker count next to ``--workers 1`` (today's
    single process, measured in the same run) and issue 14's target."""
    runs = {key: row for key, row in command.items() if key.startswith("workers_")}
    one = max(row["rps"] for row in runs.values() if row["workers"] == 1)
    many = [row for row in runs.values() if row["workers"] > 1]
    best = max(many, key=lambda row: row["rps"], default=None)
    for row in runs.values():
        mode = "warm pool" if row["warm_repls_per_worker"] else "no warm pool"
        case = f"rlm-async serve --workers {row['workers']}, {mode}: POST /v1/rlm req/s"
        fields: dict[str, Any] = {"higher_is_better": True, "extra": row}
        if row["workers"] > 1:
            fields |= {
                "reference": one,
                "reference_label": f"--workers 1, same run (issue 14 before: {SERVE_TODAY})",
                "target": f">= {SERVE_TARGET:g} req/s",
                "ok": row["rps"] >= SERVE_TARGET,
            }
        if row is best and "key" in Row.__dataclass_fields__:
            fields["key"] = "server.rps"  # what run.py's issue-14 summary reads
        result.add("server", case, row["rps"], "/s", **fields)
        spread = f", runs per worker {row['runs_per_worker']}" if "runs_per_worker" in row else ""
        result.notes.append(
            f"{case}: rounds {row['rps_rounds']} req/s; CPU per request in the best round: "
            f"worker {row['worker_cpu_ms_per_request']} ms, its REPLs "
            f"{row['repl_cpu_ms_per_request']} ms, load generator "
            f"{row['client_cpu_ms_per_request']} ms; machine CPU busy "
            f"{row['machine_cpu_busy']:.0%} (every process){spread}"
        )
    result.notes.append(
        f"bench_server, rlm-async serve: {command['settings']}; the model: mock_server.py "
        f"(scripted NIAH) in its own process, {command['model_server']}; warm pool: "
        "--warm-repls ceil(concurrency / workers) in each worker; load generator: one httpx "
        "client in the benchmark process, a keep-alive connection per request in flight"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument(
        "--only-command", action="store_true", help="only the rlm-async serve figures"
    )
    args = parser.parse_args()
    figures: dict[str, Any] = {}
    if not args.only_command:
        figures = asyncio.run(bench_server(args.requests, args.concurrency, args.latency))
    figures["command"] = asyncio.run(
        bench_serve_command(args.requests, args.concurrency, args.latency)
    )
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
