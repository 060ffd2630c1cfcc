"""Run the benchmarks: ``python benchmarks/run.py [--quick] [--only NAME ...] [--out DIR]``.

Each benchmark runs in its own worker process (this script with ``--worker NAME``), so memory
high-water marks and event loops never leak from one into the next. The figures are printed
as a Markdown table, each next to its ideal or peer figure, and written to
``DIR/latest.md`` and ``DIR/latest.json`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib
import inspect
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import Result, Row, emit_worker_result  # noqa: E402  (needs the path above)

BENCHMARKS: dict[str, str] = {
    "fanout": "Fan-out efficiency at 100 ms latency",
    "overhead": "Sub-call overhead at zero latency",
    "context": "Loading a large context into the REPL",
    "repl": "REPL start, cell round trip, warm pool",
    "many": "Many completions at once on one RLM",
    "niah": "1M-line NIAH: 1,000 sub-calls next to rlms; a big context's fixed cost",
    "peers": "Same NIAH workload: rlm-async vs rlms vs sequential",
    "server": "The HTTP server (benchmarks/bench_server.py)",
}
WORKER_TIMEOUT = {"quick": 300, "full": 900}


# ---- worker side ------------------------------------------------------------------------


def _rows_from_foreign(name: str, value: Any) -> Result:
    """A ``Result`` from whatever ``bench_server.bench_server()`` returns."""
    if isinstance(value, Result):
        return value
    result = Result()
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, Row):
            result.rows.append(item)
        elif isinstance(item, dict) and "value" in item:
            known = set(Row.__dataclass_fields__)
            fields = {k: v for k, v in item.items() if k in known}
            fields.setdefault("benchmark", name)
            fields.setdefault("case", str(item.get("name", "")))
            fields.setdefault("unit", "")
            result.rows.append(Row(**fields))
        elif isinstance(item, dict):
            for key, number in item.items():
                if isinstance(number, int | float):
                    result.add(name, key, float(number), "")
        else:
            result.notes.append(f"{name}: {item!r}")
    return result


async def _call_server_bench(quick: bool) -> Result:
    module = importlib.import_module("bench_server")
    function = getattr(module, "run", None) or module.bench_server
    kwargs = {"quick": quick} if "quick" in inspect.signature(function).parameters else {}
    value = function(**kwargs)
    if inspect.isawaitable(value):
        value = await value
    return _rows_from_foreign("server", value)


def worker(name: str, quick: bool) -> None:
    import proposals

    applied = proposals.apply_if_asked()
    if name == "server":
        result = asyncio.run(_call_server_bench(quick))
    else:
        module = importlib.import_module(f"bench_{name}")
        result = asyncio.run(module.run(quick))
    if applied:
        result.notes.append(f"{name}: PROPOSED FIXES APPLIED: {', '.join(applied)}")
    emit_worker_result(result)


# ---- runner side ------------------------------------------------------------------------


def _available() -> list[str]:
    names = [n for n in BENCHMARKS if n != "server"]
    if (HERE / "bench_server.py").exists():
        names.append("server")
    return names


def run_worker(name: str, quick: bool, proposals: bool = False) -> dict[str, Any]:
    argv = [sys.executable, str(HERE / "run.py"), "--worker", name]
    if quick:
        argv.append("--quick")
    started = time.perf_counter()
    timeout = WORKER_TIMEOUT["quick" if quick else "full"]
    try:
        env = dict(os.environ, RLM_BENCH_PROPOSALS="1" if proposals else "0")
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=HERE.parent,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {"rows": [], "notes": [f"{name}: timed out after {timeout} s"], "error": "timeout"}
    elapsed = time.perf_counter() - started
    # The worker's stderr (progress, warnings, a traceback), shown after it ends.
    sys.stderr.write("".join(f"   | {line}\n" for line in proc.stderr.splitlines()))
    marker = "@@RESULT@@ "
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(marker):
            data: dict[str, Any] = json.loads(line[len(marker) :])
            data["seconds"] = round(elapsed, 2)
            return data
    tail = proc.stdout.strip().splitlines()[-5:] + proc.stderr.strip().splitlines()[-1:]
    return {
        "rows": [],
        "notes": [f"{name}: the worker failed (exit {proc.returncode}): {' | '.join(tail)}"],
        "error": f"exit {proc.returncode}",
        "seconds": round(elapsed, 2),
    }


def _number(value: float, unit: str) -> str:
    if value != value:  # NaN
        return "n/a"
    if unit == "s":
        return f"{value * 1000:,.1f} ms" if value < 1 else f"{value:,.2f} s"
    if unit == "ms":
        return f"{value:,.2f} ms"
    if unit == "µs":
        return f"{value:,.0f} µs"
    if unit == "/s":
        return f"{value:,.0f}/s"
    if unit == "MiB":
        return f"{value:,.1f} MiB"
    if unit == "x":
        return f"{value:,.2f}x"
    return f"{value:,.3g} {unit}".strip()


# ---- the issue-14 summary ----------------------------------------------------------------

# The figures issue 14 ("make the engine's own cost vanish") set out to move: its "today"
# column (the before-figure, copied from the issue), what this run measured, the target.
ISSUE14_TODAY = {
    "k1000": "2.45 s (rlms 9.1 s)",
    "k10": "0.59 s",
    "cpu": "44 ms",
    "many": "12x",
    "fanout": "1.29x ideal",
    "serve": "14-16 req/s",
}


def _find(results: dict[str, dict[str, Any]], key: str) -> dict[str, Any] | None:
    for data in results.values():
        for row in data.get("rows", []):
            if row.get("key") == key:
                return row
    return None


def _server_row(results: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The serving figure from ``bench_server``'s rows, whatever their names.

    ``bench_server.py`` is written elsewhere: a row keyed ``"server.rps"`` wins; else a
    req/s row about ``--workers``; else the highest req/s row.
    """
    keyed = _find(results, "server.rps")
    if keyed is not None:
        return keyed
    rates = [
        row
        for row in results.get("server", {}).get("rows", [])
        if row.get("unit") in ("/s", "req/s") and row.get("value") == row.get("value")
    ]
    workers = [row for row in rates if "worker" in row.get("case", "")]
    return max(workers or rates, key=lambda row: row["value"], default=None)


def _met(ok: bool | None) -> str:
    return {True: "yes", False: "**no**", None: ""}[ok]


def summary_table(results: dict[str, dict[str, Any]], *, quick: bool) -> list[str]:
    """The issue-14 table: row, today (issue), now (this run), target, met."""
    title = "## Issue 14 summary"
    lines = [
        title + (" (quick run: fewer repeats, not for comparison)" if quick else ""),
        "",
        "| Row | Today (issue 14, before) | Now (this run) | Target | Met |",
        "|---|---:|---:|---:|:-:|",
    ]

    def add(label: str, today: str, now: str, target: str, ok: bool | None) -> None:
        lines.append(f"| {label} | {today} | {now} | {target} | {_met(ok)} |")

    def missing(what: str) -> str:
        return f"not measured ({what} not run or failed)"

    big, peer = _find(results, "niah.k1000"), _find(results, "niah.k1000.rlms")
    label = "1M-line NIAH, K=1,000 sub-calls, 100 ms each, max_concurrency=128"
    if big is None:
        add(label, ISSUE14_TODAY["k1000"], missing("niah"), "<= 1.1 s", None)
    else:
        rlms = f"rlms {_number(peer['value'], 's')}" if peer else "rlms not run"
        now = f"{_number(big['value'], 's')} ({rlms})"
        add(label, ISSUE14_TODAY["k1000"], now, "<= 1.1 s", big["value"] <= 1.1)
    parent = _find(results, "niah.k1000.parent_rss")
    child = _find(results, "niah.k1000.child_rss")
    rlms_rss = _find(results, "niah.k1000.rlms.rss")
    if parent is not None and child is not None:
        now = (
            f"parent +{_number(parent['value'], 'MiB')}, REPL child "
            f"{_number(child['value'], 'MiB')}"
            + (f" (rlms {_number(rlms_rss['value'], 'MiB')})" if rlms_rss else "")
        )
        add(
            f"the same run: peak RSS next to the {parent['reference_label']}",
            "not measured",
            now,
            "report; remove our copies",
            None,
        )
    small = _find(results, "niah.k10")
    label = "the same context, K=10, zero latency (the fixed cost of a big context)"
    if small is None:
        add(label, ISSUE14_TODAY["k10"], missing("niah"), "<= 0.25 s", None)
    else:
        now = _number(small["value"], "s")
        how = small["case"].split("(", 1)[-1].rstrip(")")
        add(f"{label}; {how}", ISSUE14_TODAY["k10"], now, "<= 0.25 s", small["value"] <= 0.25)
    sent = _find(results, "niah.k10.sent")
    if sent is not None:
        add(
            "the same, Budget(max_prompt_chars=None): the 10 prompts of 4.5M characters sent",
            "not in the issue",
            _number(sent["value"], "s"),
            "",
            None,
        )
    cpu = _find(results, "many.cpu_per_completion.warm")
    label = (
        "parent CPU per completion: 20,000-line haystack, 3 root turns + 20 sub-calls "
        "(100 concurrent, warm pool)"
    )
    if cpu is None:
        add(label, ISSUE14_TODAY["cpu"], missing("many"), "<= 15 ms", None)
    else:
        now = f"{cpu['value'] * 1000:.1f} ms"
        settled = _find(results, "many.cpu_per_completion.warm.settled")
        if settled is not None:
            now += f"; as `serve` runs it (start-up heap frozen): {settled['value'] * 1000:.1f} ms"
        add(label, ISSUE14_TODAY["cpu"], now, "<= 15 ms", cpu["value"] <= 0.015)
    many = _find(results, "many.concurrent.warm")
    label = "100 concurrent completions vs one (warm_repls=100, filled first)"
    if many is None or not many.get("ratio"):
        add(label, ISSUE14_TODAY["many"], missing("many"), "<= 3x", None)
    else:
        now = f"{many['ratio']:.1f}x"
        settled = _find(results, "many.concurrent.warm.settled")
        if settled is not None and settled.get("ratio"):
            now += f"; as `serve` runs it: {settled['ratio']:.1f}x"
        add(label, ISSUE14_TODAY["many"], now, "<= 3x", many["ratio"] <= 3)
    fan = _find(results, "fanout.n1000.lean")
    label = "fan-out 1,000 sub-calls, C=100, 100 ms"
    if fan is None or not fan.get("ratio"):
        add(label, ISSUE14_TODAY["fanout"], missing("fanout"), "<= 1.10x ideal", None)
    else:
        now = f"{fan['ratio']:.2f}x ideal"
        add(label, ISSUE14_TODAY["fanout"], now, "<= 1.10x ideal", fan["ratio"] <= 1.10)
    serve = _server_row(results)
    label = "`rlm-async serve`, scripted NIAH, 50 ms model latency"
    if serve is None:
        add(label, ISSUE14_TODAY["serve"], missing("server"), ">= 60 req/s", None)
    else:
        now = f"{serve['value']:,.0f} req/s ({serve['case']})"
        add(label, ISSUE14_TODAY["serve"], now, ">= 60 req/s", serve["value"] >= 60)
    return lines


def render(results: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# rlm-async benchmarks",
        "",
        f"{meta['when']} · {meta['mode']} run · Python {meta['python']} · {meta['cpus']} cores · "
        f"load average {meta['load_before']} before, {meta['load_after']} after · "
        f"commit {meta['commit']} · {meta['seconds']:.0f} s"
        + (f" · rlm_async from {meta['package']}" if meta.get("package") else "")
        + (" · **PROPOSED FIXES applied** (benchmarks/proposals.py)" if meta["proposals"] else ""),
        "",
        *summary_table(results, quick=meta["mode"] == "quick"),
        "",
        "## Every figure",
        "",
        "| Benchmark | Case | Measured | Ideal / peer | Ratio | Target | Met |",
        "|---|---|---:|---:|---:|---|:-:|",
    ]
    for name, data in results.items():
        for row in data.get("rows", []):
            reference = (
                f"{_number(row['reference'], row['unit'])} ({row['reference_label']})"
                if row.get("reference") is not None
                else row.get("reference_label", "")
            )
            ratio = f"{row['ratio']:.2f}x" if row.get("ratio") is not None else ""
            met = {True: "yes", False: "**no**", None: ""}[row.get("ok")]
            lines.append(
                f"| {row['benchmark']} | {row['case']} | {_number(row['value'], row['unit'])} | "
                f"{reference} | {ratio} | {row.get('target', '')} | {met} |"
            )
        if not data.get("rows"):
            lines.append(f"| {name} | (no figures) | | | | | |")
    notes = [n for data in results.values() for n in data.get("notes", [])]
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=HERE.parent,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        cwd=HERE.parent,
        timeout=10,
    ).stdout.strip()
    return (out.stdout.strip() or "unknown") + ("+dirty" if dirty else "")


def _package() -> str:
    """Where ``rlm_async`` is imported from, when it is not this checkout's ``src/``."""
    found = subprocess.run(
        [sys.executable, "-c", "import rlm_async, os; print(os.path.dirname(rlm_async.__file__))"],
        capture_output=True,
        text=True,
        cwd=HERE.parent,
        timeout=60,
    ).stdout.strip()
    return "" if found == str(HERE.parent / "src" / "rlm_async") else found or "not importable"


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the harness")
    parser.add_argument(
        "--only", action="append", choices=sorted(BENCHMARKS), help="run only these (repeatable)"
    )
    parser.add_argument("--out", default=str(HERE / "results"), help="where latest.* go")
    parser.add_argument(
        "--proposals",
        action="store_true",
        help="apply the proposed library fixes (benchmarks/proposals.py) to compare; "
        "writes proposals.md/.json instead of latest.*",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.quick)
        return 0
    names = [n for n in _available() if not args.only or n in args.only]
    meta: dict[str, Any] = {
        "when": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "mode": "quick" if args.quick else "full",
        "proposals": bool(args.proposals),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_before": _load(),
        "commit": _commit(),
        "package": _package(),
    }
    started = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        print(f"== {name}: {BENCHMARKS[name]}", file=sys.stderr, flush=True)
        results[name] = run_worker(name, args.quick, args.proposals)
        for note in results[name].get("notes", []):
            if results[name].get("error"):
                print(f"   {note}", file=sys.stderr)
        print(f"   {results[name].get('seconds', 0):.1f} s", file=sys.stderr, flush=True)
    meta["seconds"] = time.perf_counter() - started
    meta["load_after"] = _load()
    table = render(results, meta)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "proposals" if args.proposals else "latest"
    (out / f"{stem}.md").write_text(table, encoding="utf-8")
    (out / f"{stem}.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=2) + "\n", encoding="utf-8"
    )
    print(table)
    failed = [n for n, data in results.items() if data.get("error")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
