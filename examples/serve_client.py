"""Call a running ``rlm-async serve`` with plain HTTP (httpx): OpenAI-style and native.

    rlm-async serve --demo &                  # offline demo model, no keys needed
    python examples/serve_client.py           # http://127.0.0.1:8000 by default
    python examples/serve_client.py --url http://127.0.0.1:8000 --lines 50000

If the server was started with ``--api-key-env VAR``, export the same token as
``RLM_SERVER_TOKEN`` here. The context is a demo haystack (a number hidden in random
lines), which the demo model knows how to search; a real model answers anything.

Any OpenAI client works too: the context goes in the messages (or in ``extra_body=
{"context": ...}``), e.g. ``OpenAI(base_url=f"{url}/v1", api_key=token)``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import httpx

from rlm_async.demo import make_haystack

QUESTION = "What is the magic number hidden in the text? Answer with the number only."


def chat_non_streaming(client: httpx.Client, document: str) -> None:
    started = time.perf_counter()
    response = client.post(
        "/v1/chat/completions",
        json={
            "model": "rlm",
            # The last user message is the query. Without a "context" field, the earlier
            # messages are the context (as a list of chat messages): fine for a real
            # model; the demo model only knows how to search a plain string.
            "messages": [{"role": "user", "content": QUESTION}],
            "context": document,
        },
    )
    response.raise_for_status()
    body = response.json()
    print("chat (non-streaming):", body["choices"][0]["message"]["content"])
    print(f"  finish_reason={body['choices'][0]['finish_reason']}  usage={body['usage']}")
    print(f"  {time.perf_counter() - started:.2f} s, rlm={body['rlm']}")


def chat_streaming(client: httpx.Client, document: str) -> None:
    payload = {
        "model": "rlm",
        "messages": [{"role": "user", "content": QUESTION}],
        "context": document,  # non-standard field: the context itself
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    print("chat (streaming): ", end="", flush=True)
    with client.stream("POST", "/v1/chat/completions", json=payload) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue  # blank separators and ": ping" keep-alives
            data = line.removeprefix("data: ")
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if "error" in chunk:
                raise RuntimeError(chunk["error"]["message"])
            for choice in chunk["choices"]:
                print(choice["delta"].get("content", ""), end="", flush=True)
            if chunk.get("usage"):
                print(f"\n  usage={chunk['usage']}")


def native_events(client: httpx.Client, document: str) -> None:
    print("native event stream:")
    payload = {"context": document, "query": QUESTION, "options": {"max_iterations": 8}}
    with client.stream("POST", "/v1/rlm/stream", json=payload) as response:
        response.raise_for_status()
        event = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = json.loads(line.removeprefix("data: "))
                if event in ("turn_finished", "cell_finished", "run_finished", "error"):
                    detail = next(
                        (data[k] for k in ("answer", "output", "text", "error") if data.get(k)), ""
                    )
                    print(f"  {event:<14} {str(detail)[:70]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--lines", type=int, default=20_000, help="lines of haystack")
    args = parser.parse_args()
    token = os.environ.get("RLM_SERVER_TOKEN")
    headers = {"authorization": f"Bearer {token}"} if token else {}
    document, number = make_haystack(args.lines, seed=1)
    print(f"context: {args.lines:,} lines, {len(document):,} characters; expected {number}")
    with httpx.Client(base_url=args.url, headers=headers, timeout=300) as client:
        print("health:", client.get("/health").json())
        chat_non_streaming(client, document)
        chat_streaming(client, document)
        native_events(client, document)


if __name__ == "__main__":
    main()
