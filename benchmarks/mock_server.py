"""The loopback mock LLM server in its own process: ``python benchmarks/mock_server.py ...``.

Prints its base URL (``http://127.0.0.1:PORT/v1``) on the first stdout line, then serves until
its stdin closes. A ``stats`` line on stdin is answered with one JSON line (requests served,
most in flight at once). Running it apart keeps the server's CPU off the event loop being
measured, as with a real, remote provider.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import latency_by_role, serve_until_stdin_closes
from _responders import RESPONDERS

from rlm_async.testing import MockLLMServer


async def serve(responder: str, root_latency: float, sub_latency: float) -> None:
    server = MockLLMServer(
        RESPONDERS[responder], latency=latency_by_role(root_latency, sub_latency)
    )
    await server.start()

    def counters() -> dict[str, int]:
        return {"requests": len(server.requests), "max_in_flight": server.max_in_flight}

    try:
        await serve_until_stdin_closes(server.base_url, counters)
    finally:
        await server.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--responder", choices=sorted(RESPONDERS), default="echo")
    parser.add_argument("--root-latency", type=float, default=0.0)
    parser.add_argument("--sub-latency", type=float, default=0.0)
    args = parser.parse_args()
    asyncio.run(serve(args.responder, args.root_latency, args.sub_latency))


if __name__ == "__main__":
    main()
