"""The official ``rlms`` library on the NIAH workload; run by ``bench_peers.py`` in its own venv.

``benchmarks/.venv-peers/bin/python benchmarks/peer_rlms.py BASE_URL CONTEXT_FILE QUERY N [W]``

Its OpenAI backend points at the loopback mock server (the same one rlm-async uses), whose
scripted root answers in rlms's dialect (``answer["ready"] = True``). Runs W warm-up
completions (default 1), then N timed ones; prints one JSON line: the wall times, the
answers, and the process's peak RSS (rlms's ``environment="local"`` runs the code in this
process, so that is all of its memory). Imports only rlms and the standard library (this
venv has no rlm_async).
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    base_url, context_file, query, repeats = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    warmups = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    import resource
    from importlib.metadata import version

    from rlm import RLM

    with open(context_file, encoding="utf-8") as handle:
        context = handle.read()
    backend = {"base_url": base_url, "api_key": "bench-no-key", "max_retries": 0}
    rlm = RLM(
        backend="openai",
        backend_kwargs={"model_name": "rlms-root", **backend},
        other_backends=["openai"],
        other_backend_kwargs=[{"model_name": "rlms-sub", **backend}],
        environment="local",
        max_iterations=10,
    )
    walls: list[float] = []
    answers: list[str] = []
    for index in range(int(repeats) + warmups):
        started = time.perf_counter()
        result = rlm.completion(context, root_prompt=query)
        if index >= warmups:  # a warm-up run warms up connections and lazy imports
            walls.append(time.perf_counter() - started)
            answers.append(str(result.response))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    report = {"version": version("rlms"), "walls": walls, "answers": answers, "maxrss": peak}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
