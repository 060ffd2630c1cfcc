"""Batch throughput: rows per second for 1 and 2 local processes and for Ray in local mode.

``python benchmarks/bench_batch.py [--rows N] [--no-ray]``

The workload is the demo's scripted needle-in-a-haystack run (``demo_responder``: peek, fan
out over the chunks, answer) on 2,000-line haystacks: three root turns and two sub-calls a
row, every model call 50 ms, over loopback HTTP to the mock server in its own process. Four
haystack files are shared by the rows (``context_path``), so Ray puts each in its object
store once. Each row runs in its own REPL process, as every completion does. Each case runs
``rlm_async.batch`` to a fresh output file with the same rows in flight in all (16: one
process runs all 16, two run 8 each), so what differs is the CPU behind them. Rows/s
count from the moment the workers are up (``BatchSummary.rows_per_second``); the wall
time with the start-up is printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ServerProcess, settings_for

import rlm_async
from rlm_async.demo import make_haystack

LATENCY = 0.05
LINES = 2_000
FILES = 4
QUERY = "What is the magic number?"


def _requests(folder: Path, rows: int) -> tuple[Path, dict[int, str]]:
    numbers = {}
    for n in range(FILES):
        text, number = make_haystack(LINES, seed=n)
        (folder / f"haystack-{n}.txt").write_text(text, encoding="utf-8")
        numbers[n] = str(number)
    lines = [
        json.dumps({"id": i, "query": QUERY, "context_path": f"haystack-{i % FILES}.txt"})
        for i in range(rows)
    ]
    requests = folder / "requests.jsonl"
    requests.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return requests, {i: numbers[i % FILES] for i in range(rows)}


async def _case(
    label: str, requests: Path, expected: dict[int, str], base_url: str, **how: object
) -> dict[str, object]:
    out = requests.parent / f"results-{label.replace(' ', '-')}.jsonl"
    load = os.getloadavg()[0]
    started = time.perf_counter()
    summary = await rlm_async.batch(
        requests,
        out=out,
        model="openai-compatible:rlm-demo-root",
        sub_model="openai-compatible:rlm-demo-sub",
        settings=settings_for(base_url),
        **how,  # type: ignore[arg-type]
    )
    wall = time.perf_counter() - started
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    wrong = [r for r in rows if r["answer"] != expected[r["id"]]]
    if wrong or len(rows) != len(expected):
        raise RuntimeError(f"{label}: {len(wrong)} wrong rows, e.g. {wrong[:1]}")
    figures = {
        "case": label,
        "rows": len(rows),
        "rows_per_s": round(summary.rows_per_second, 2),
        "wall_s": round(wall, 2),
        "workers": summary.workers,
        "load_before": round(load, 2),
    }
    print(
        f"{label:<22} {summary.rows_per_second:6.2f} rows/s   wall {wall:5.1f} s "
        f"(with start-up)   {summary.workers}   load before {load:.2f}",
        flush=True,
    )
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=16, help="rows in flight in all")
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    total = args.concurrency
    print(f"{os.cpu_count()} cores; {args.rows} rows; {total} rows in flight in every case")
    with (
        tempfile.TemporaryDirectory() as folder,
        ServerProcess("demo", root_latency=LATENCY, sub_latency=LATENCY) as server,
    ):
        requests, expected = _requests(Path(folder), args.rows)
        results = [
            await _case("1 process", requests, expected, server.base_url,
                        processes=1, concurrency=total),
            await _case("2 processes", requests, expected, server.base_url,
                        processes=2, concurrency=total),
        ]  # fmt: skip
        if args.no_ray:
            pass
        else:
            try:
                import ray
            except ImportError:
                print("Ray local mode: skipped (pip install 'rlm-async[ray]')")
            else:
                ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
                try:
                    results.append(
                        await _case("Ray local, 2 actors", requests, expected, server.base_url,
                                    ray=True, processes=2, concurrency=total)
                    )  # fmt: skip
                finally:
                    ray.shutdown()
    print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main())
