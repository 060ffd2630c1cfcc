"""An async app asking one question of many large documents at once, offline.

    python examples/many_documents.py

Each document is a haystack of random lines with a number hidden in it; one `RLM` answers
all of them concurrently (each completion gets its own sandboxed REPL process) while the
event loop stays free. With no provider key this uses the offline demo model served over
loopback HTTP; with a key, set MODEL (e.g. MODEL=gpt-5-mini) to use a real one.
"""

from __future__ import annotations

import asyncio
import os
import time

from rlm_async import RLM, Settings
from rlm_async.demo import demo_responder, make_haystack
from rlm_async.testing import MockLLMServer

QUESTION = "What is the magic number hidden in the text? Answer with the number only."


async def answer_all(rlm: RLM, documents: list[str]) -> list[str]:
    results = await asyncio.gather(*(rlm.completion(doc, QUESTION) for doc in documents))
    return [r.answer for r in results]


async def main() -> None:
    documents, expected = zip(*(make_haystack(100_000, seed=i) for i in range(8)), strict=True)
    started = time.perf_counter()
    if os.environ.get("MODEL"):
        async with RLM(model=os.environ["MODEL"], load_dotenv=True) as rlm:
            answers = await answer_all(rlm, list(documents))
    else:
        print("Using the OFFLINE DEMO MODEL (set MODEL and a provider key for a real one).")
        async with MockLLMServer(demo_responder, latency=0.3) as server:
            settings = Settings(openai_compatible_base_url=server.base_url)
            async with RLM(model="openai-compatible:demo", settings=settings) as rlm:
                answers = await answer_all(rlm, list(documents))
    for answer, number in zip(answers, expected, strict=True):
        verdict = "ok" if answer == str(number) else "WRONG"
        print(f"answer {answer:>10}   expected {number}   {verdict}")
    print(f"{len(documents)} documents in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    asyncio.run(main())
