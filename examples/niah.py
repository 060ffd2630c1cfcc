"""Needle in a haystack: find a number hidden in ~1,000,000 lines of random words.

    python examples/niah.py            # offline demo model unless a provider key is set
    python examples/niah.py --lines 200000 --verbose

With OPENAI_API_KEY (or ANTHROPIC_API_KEY, GOOGLE_API_KEY, XAI_API_KEY) in the environment
or a .env file it uses a real model; otherwise an offline demo model served over loopback
HTTP, labelled as such in the output. The same as `rlm-async demo`.
"""

from __future__ import annotations

import argparse
import asyncio

from rlm_async.demo import run_demo


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--offline", action="store_true", help="force the offline demo model")
    parser.add_argument("--verbose", action="store_true", help="print the run as it happens")
    args = parser.parse_args()

    report = await run_demo(
        lines=args.lines,
        seed=args.seed,
        offline=True if args.offline else None,
        enable_logging=args.verbose,
    )
    print(report.render())


if __name__ == "__main__":
    asyncio.run(main())
