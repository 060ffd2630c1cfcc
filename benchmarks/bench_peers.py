"""6. Peers on the same workload and the same server: rlm-async, rlms, one call at a time.

The NIAH run with K chunks (one sub-call per chunk), root turns and sub-calls at 100 ms, over
loopback HTTP to one mock server in its own process. Its scripted root speaks each library's
dialect (see ``_responders.py``): peek at the context, fan out over K chunks, answer.

* rlm-async, at its defaults (``max_concurrency=16``) and with ``max_concurrency=K``;
* rlms (the official library, from PyPI, in its own venv ``benchmarks/.venv-peers``, created
  on first use): ``environment="local"``, its OpenAI backend pointed at the mock server;
  its ``llm_query_batched`` runs under a fixed semaphore of 16;
* the minimal version's strategy: ``[llm_query(p) for p in prompts]``, one call after
  another, run through rlm-async (same REPL, same HTTP adapter, same server).

Wall time of ``completion()`` per library, median of the repeats, after a warm-up run.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import HERE, Result, ServerProcess, median, settings_for
from _responders import niah_query

from rlm_async import RLM
from rlm_async.demo import make_haystack

LATENCY = 0.1
CHUNKS = 50
LINES = 100_000
RLMS_VERSION = "0.1.3"
PEERS_VENV = HERE / ".venv-peers"


def peers_python() -> tuple[Path | None, str]:
    """The peers venv's interpreter, creating the venv (``pip install rlms``) if needed."""
    python = PEERS_VENV / "bin" / "python"
    check = [str(python), "-c", "import rlm, importlib.metadata as m; print(m.version('rlms'))"]
    if python.exists():
        found = subprocess.run(check, capture_output=True, text=True, timeout=120)
        if found.returncode == 0 and found.stdout.strip() == RLMS_VERSION:
            return python, ""
    print(f"   creating {PEERS_VENV} with rlms=={RLMS_VERSION}", file=sys.stderr, flush=True)
    steps = [
        [sys.executable, "-m", "venv", str(PEERS_VENV)],
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         f"rlms=={RLMS_VERSION}"],
    ]  # fmt: skip
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            return None, f"could not set up rlms: {' '.join(step[:4])}: {done.stderr[-400:]}"
    found = subprocess.run(check, capture_output=True, text=True, timeout=120)
    if found.returncode != 0:
        return None, f"rlms does not import in {PEERS_VENV}: {found.stderr[-400:]}"
    return python, ""


async def _rlm_async(
    base_url: str, text: str, number: int, repeats: int, *, concurrency: int, sequential: bool
) -> list[float]:
    query = niah_query(CHUNKS, sequential=sequential)
    walls = []
    async with RLM(
        model="openai-compatible:niah-root",
        sub_model="openai-compatible:niah-sub",
        settings=settings_for(base_url),
        max_concurrency=concurrency,
        max_iterations=10,
    ) as rlm:
        for index in range(repeats + 1):
            started = time.perf_counter()
            result = await rlm.completion(text, query)
            if str(number) != result.answer.strip():
                raise RuntimeError(f"rlm-async answered {result.answer!r}, expected {number}")
            if result.metadata.get("subcalls") != CHUNKS:
                raise RuntimeError(f"rlm-async made {result.metadata.get('subcalls')} sub-calls")
            if index:
                walls.append(time.perf_counter() - started)
    return walls


def run_rlms(
    python: Path,
    base_url: str,
    text: str,
    number: int,
    repeats: int,
    *,
    chunks: int = CHUNKS,
    warmups: int = 1,
) -> dict[str, Any]:
    """``peer_rlms.py`` on the NIAH workload with ``chunks`` sub-calls; its JSON report.

    Raises:
        RuntimeError: rlms failed, or answered wrongly.
    """
    with tempfile.TemporaryDirectory(prefix="rlm-bench-peers-") as tmp:
        context = os.path.join(tmp, "context.txt")
        Path(context).write_text(text, encoding="utf-8")
        # A clean cwd and environment: rlms loads a .env from the cwd, and needs no real key.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp, "LANG": "C.UTF-8"}
        done = subprocess.run(
            [str(python), str(HERE / "peer_rlms.py"), base_url, context,
             niah_query(chunks), str(repeats), str(warmups)],
            capture_output=True, text=True, timeout=900, cwd=tmp, env=env,
        )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"rlms failed: {done.stderr[-1000:]}")
    data: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    wrong = [a for a in data["answers"] if a.strip() != str(number)]
    if wrong:
        raise RuntimeError(f"rlms answered {wrong[0]!r}, expected {number}")
    return data


async def run(quick: bool) -> Result:
    res = Result()
    repeats = 2 if quick else 5
    text, number = make_haystack(LINES, seed=13)
    floor = 3 * LATENCY
    res.notes.append(
        f"peers: NIAH, {LINES:,}-line haystack in K={CHUNKS} chunks, {LATENCY * 1000:.0f} ms per "
        f"root turn and per sub-call, one mock server in its own process for all; 3 root turns "
        f"(peek, fan out, answer); median of {repeats} after a warm-up (sequential: 1 run). "
        "Ideal = 3 root turns + ceil(K/C) waves of sub-calls."
    )
    python, problem = peers_python()
    with ServerProcess("niah", root_latency=LATENCY, sub_latency=LATENCY) as server:
        for concurrency in (16, CHUNKS):
            walls = await _rlm_async(
                server.base_url, text, number, repeats, concurrency=concurrency, sequential=False
            )
            res.add(
                "peers",
                f"rlm-async, max_concurrency={concurrency}"
                + (" (default)" if concurrency == 16 else ""),
                median(walls),
                "s",
                reference=floor + math.ceil(CHUNKS / concurrency) * LATENCY,
                reference_label="ideal",
                extra={"walls": walls},
            )
        if python is None:
            res.notes.append(f"peers: rlms skipped: {problem}")
        else:
            try:
                report = run_rlms(python, server.base_url, text, number, repeats)
                walls, version = report["walls"], report["version"]
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                res.notes.append(f"peers: rlms failed: {exc}")
            else:
                res.add(
                    "peers",
                    f"rlms {version} (official), environment='local'",
                    median(walls),
                    "s",
                    reference=floor + math.ceil(CHUNKS / 16) * LATENCY,
                    reference_label="ideal at its 16-wide batch",
                    extra={"walls": walls},
                )
        walls = await _rlm_async(server.base_url, text, number, 1, concurrency=16, sequential=True)
        res.add(
            "peers",
            "minimal version's strategy: llm_query one after another",
            median(walls),
            "s",
            reference=floor + CHUNKS * LATENCY,
            reference_label="ideal",
            extra={"walls": walls},
        )
    return res
