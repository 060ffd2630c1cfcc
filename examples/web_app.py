"""A small Starlette web app with an RLM inside, opened and closed by the app's lifespan.

    python examples/web_app.py                 # serves http://127.0.0.1:8000
    python examples/web_app.py --self-test     # start, ask one question over HTTP, stop

    curl -s localhost:8000/demo?lines=50000
    curl -s localhost:8000/ask -H 'content-type: application/json' \\
         -d '{"document": "...a long text...", "question": "What is it about?"}'

With OPENAI_API_KEY (or ANTHROPIC_API_KEY, GOOGLE_API_KEY, XAI_API_KEY) in the
environment it uses a real model; without one it runs offline: the scripted demo model
of ``rlm-async demo`` behind a loopback mock server (it answers "what is the magic
number?" questions over haystacks from ``rlm_async.demo.make_haystack``).

The app owns one ``RLM`` for its lifetime: provider connections are pooled, and
``warm_repls`` keeps REPL processes started ahead of requests. A request whose client
goes away is cancelled, which kills its REPL process (see ``ask``). To expose the whole
OpenAI-compatible API instead of your own routes, use ``rlm_async.server.create_app``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rlm_async import RLM, RLMError, Settings
from rlm_async.demo import ROOT_LATENCY, SUB_LATENCY, demo_responder, make_haystack
from rlm_async.server import open_server
from rlm_async.testing import MockLLMServer

REAL_MODELS = {
    "OPENAI_API_KEY": ("gpt-5", "gpt-5-mini"),
    "ANTHROPIC_API_KEY": ("claude-sonnet-4-5", "claude-haiku-4-5"),
    "GOOGLE_API_KEY": ("gemini-2.5-pro", "gemini-2.5-flash"),
    "XAI_API_KEY": ("grok-4", "grok-3-mini"),
}


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    mock: MockLLMServer | None = None
    picked = next((m for var, m in REAL_MODELS.items() if os.environ.get(var)), None)
    if picked is None:  # offline: the demo model over loopback HTTP
        mock = MockLLMServer(
            demo_responder,
            latency=lambda r: ROOT_LATENCY if r.system is not None else SUB_LATENCY,
        )
        await mock.start()
        settings = Settings(openai_compatible_base_url=mock.base_url)
        picked = ("openai-compatible:rlm-demo-root", "openai-compatible:rlm-demo-sub")
    else:
        settings = Settings.from_env()
    app.state.offline = mock is not None
    model, sub_model = picked
    try:
        async with RLM(model=model, sub_model=sub_model, settings=settings, warm_repls=2) as rlm:
            app.state.rlm = rlm
            try:
                yield
            finally:
                # No request reaches the model any more: stop the offline model first.
                if mock is not None:
                    await mock.aclose()
    finally:
        if mock is not None:
            await mock.aclose()  # idempotent; covers a failed start-up


async def until_disconnected(request: Request, scope: anyio.CancelScope) -> None:
    """Cancel ``scope`` when the client goes away (no point finishing a run for nobody)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


async def answer(request: Request, context: str, question: str) -> Response:
    rlm: RLM = request.app.state.rlm
    result = None
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(until_disconnected, request, tg.cancel_scope)
            result = await rlm.completion(context, question)
            tg.cancel_scope.cancel()
    except RLMError as exc:
        return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=502)
    if result is None:  # the client left; the run was cancelled and its REPL killed
        return Response(status_code=499)
    return JSONResponse(
        {
            "answer": result.answer,
            "iterations": result.iterations,
            "seconds": round(result.elapsed, 2),
            "usage": str(result.usage),
            "offline_demo_model": request.app.state.offline,
        }
    )


async def ask(request: Request) -> Response:
    body = await request.json()
    return await answer(request, str(body["document"]), str(body["question"]))


async def demo(request: Request) -> Response:
    lines = min(int(request.query_params.get("lines", "20000")), 2_000_000)
    text, number = await anyio.to_thread.run_sync(make_haystack, lines)
    response = await answer(request, text, "What is the magic number hidden in the text?")
    response.headers["x-expected-answer"] = str(number)
    return response


app = Starlette(
    routes=[Route("/ask", ask, methods=["POST"]), Route("/demo", demo, methods=["GET"])],
    lifespan=lifespan,
)


async def self_test() -> None:
    async with open_server(app) as url, httpx.AsyncClient(base_url=url, timeout=120) as client:
        response = await client.get("/demo", params={"lines": 20_000})
        print(f"GET {url}/demo?lines=20000 ->", response.status_code)
        print(response.json(), "expected:", response.headers["x-expected-answer"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--self-test", action="store_true", help="one request, then exit")
    args = parser.parse_args()
    if args.self_test:
        asyncio.run(self_test())
    else:
        uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
