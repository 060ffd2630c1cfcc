"""``rlm-async serve --tools module:attr`` end to end: the command in a process of its own,
its model an OpenAI-compatible mock on loopback (scripted), whose model code calls the tools;
the session flags reach the served app."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import pytest

from rlm_async.providers import CompletionRequest
from rlm_async.server._session_affinity import FORWARDED_HEADER
from rlm_async.testing import MockLLMServer
from tests.helpers import alive, repl

ROOT = Path(__file__).resolve().parents[2]
MCP_SERVER = ROOT / "tests" / "tools" / "mcp_server.py"


def command() -> list[str]:
    """The installed console script (its ``sys.path`` starts with its own directory, so
    the working directory is on the path only because ``serve`` puts it there)."""
    script = Path(sys.executable).with_name("rlm-async")
    if script.exists():
        return [str(script), "serve"]
    return [sys.executable, "-m", "rlm_async.cli", "serve"]


def calls_the_tools(request: CompletionRequest) -> str:
    """Root model: model code calls both tools and answers with what they returned."""
    assert request.system is not None
    if "def ticket_count(customer_id: str) -> int" not in request.system:
        return "FINAL(the tools are not in the system prompt)"
    # ticket_count is an async def in the server: a coroutine function in the REPL too.
    return repl(
        'FINAL(f\'{serving_pid()} {await ticket_count("c1")} '
        '{await ticket_count(customer_id="c9")}\')'
    )


def calls_the_mcp_tools(request: CompletionRequest) -> str:
    """Root model: model code calls the tools of the MCP server the command started."""
    return repl("FINAL(f'{add(1, b=5)} {shout(\"hi\")} {server_pid()}')")


async def wait_healthy(client: httpx.AsyncClient) -> None:
    with anyio.fail_after(30):  # the lifespan opens the RLM right after the banner
        while True:
            try:
                if (await client.get("/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await anyio.sleep(0.05)


async def test_serve_exposes_the_tools_it_is_given_to_model_code() -> None:
    async with MockLLMServer(calls_the_tools) as mock:
        env = {
            **os.environ,
            "OPENAI_COMPATIBLE_BASE_URL": mock.base_url,
            "OPENAI_COMPATIBLE_API_KEY": "test",
        }
        process = subprocess.Popen(
            [*command(), "--model", "openai-compatible:scripted", "--port", "0",
             "--workers", "1", "--no-dotenv", "--log-level", "warning",
             "--tools", "tests.server.serve_tools:TOOLS",
             "--max-sessions", "1", "--session-ttl", "45"],
            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
        )  # fmt: skip
        try:
            assert process.stderr is not None
            banner = [await anyio.to_thread.run_sync(process.stderr.readline) for _ in range(6)]
            assert banner[0].startswith("rlm-async serve: http://127.0.0.1:"), banner
            url = banner[0].split()[2]
            assert "at most 1 open, closed after 45 s idle" in banner[4], banner
            assert "tools: tests.server.serve_tools:TOOLS" in banner[5], banner
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                await wait_healthy(client)
                answered = await client.post("/v1/rlm", json={"context": "x", "query": "q"})
                session = await client.post("/v1/sessions", json={"context": "x"})
                over = await client.post("/v1/sessions", json={"context": "y"})
                in_session = await client.post(
                    f"/v1/sessions/{session.json()['id']}/completions", json={"query": "q"}
                )
            process.send_signal(signal.SIGINT)
            assert await anyio.to_thread.run_sync(lambda: process.wait(timeout=20)) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            if process.stderr is not None:
                process.stderr.close()
    # serving_pid ran in the server's process (not the REPL child), ticket_count validated
    # its argument by keyword and by position.
    assert answered.status_code == 200, answered.text
    assert answered.json()["answer"] == f"{process.pid} 3 0"
    assert session.status_code == 201 and session.json()["idle_timeout"] == 45
    assert over.status_code == 429 and over.json()["error"]["code"] == "too_many_sessions"
    assert in_session.json()["answer"] == f"{process.pid} 3 0"


async def test_serve_exposes_the_tools_of_an_mcp_server_it_starts_and_ends_it() -> None:
    pytest.importorskip("mcp", reason='the MCP tests need the extra: pip install "rlm-async[mcp]"')
    mcp_command = shlex.join([sys.executable, str(MCP_SERVER)])
    async with MockLLMServer(calls_the_mcp_tools) as mock:
        env = {**os.environ, "OPENAI_COMPATIBLE_BASE_URL": mock.base_url}
        process = subprocess.Popen(
            [*command(), "--model", "openai-compatible:scripted", "--port", "0",
             "--workers", "1", "--no-dotenv", "--log-level", "warning",
             "--mcp-server", mcp_command],
            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
        )  # fmt: skip
        try:
            assert process.stderr is not None
            banner = [await anyio.to_thread.run_sync(process.stderr.readline) for _ in range(6)]
            assert "tools: MCP python" in banner[5] and "mcp_server.py" in banner[5], banner
            url = banner[0].split()[2]
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                await wait_healthy(client)
                answered = await client.post("/v1/rlm", json={"context": "x", "query": "q"})
            process.send_signal(signal.SIGINT)
            assert await anyio.to_thread.run_sync(lambda: process.wait(timeout=20)) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            if process.stderr is not None:
                process.stderr.close()
    assert answered.status_code == 200, answered.text
    added, shouted, server_pid = answered.json()["answer"].split()
    assert (added, shouted) == ("6", "HI")
    with anyio.fail_after(10):  # closing the served RLM ended the MCP server it started
        while alive(int(server_pid)):
            await anyio.sleep(0.02)


def counts_turns(request: CompletionRequest) -> str:
    """Root model: each completion of a session adds one to a variable of its REPL, and
    asks a tool which process serves it."""
    return repl("n = globals().get('n', 0) + 1\nFINAL(f'{n} {serving_pid()}')")


async def test_serve_with_two_workers_keeps_a_session_on_the_worker_holding_its_repl() -> None:
    async with MockLLMServer(counts_turns) as mock:
        env = {**os.environ, "OPENAI_COMPATIBLE_BASE_URL": mock.base_url}
        process = subprocess.Popen(
            [*command(), "--model", "openai-compatible:scripted", "--port", "0",
             "--workers", "2", "--no-dotenv", "--log-level", "warning",
             "--tools", "tests.server.serve_tools:serving_pid"],
            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
        )  # fmt: skip
        try:
            assert process.stderr is not None
            banner = [await anyio.to_thread.run_sync(process.stderr.readline) for _ in range(5)]
            assert "2 worker processes" in banner[2], banner
            assert "/v1/sessions   (at most 16 open" in banner[4], banner
            url = banner[0].split()[2]
            answers: list[httpx.Response] = []
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                await wait_healthy(client)
                made = await client.post("/v1/sessions", json={"context": "x"})
                assert made.status_code == 201, made.text
                completions = f"/v1/sessions/{made.json()['id']}/completions"
                # Each request is a new connection, which either worker may accept: go on
                # until one was forwarded to the other (bounded).
                while len(answers) < 60:
                    answers.append(await client.post(completions, json={"query": "q"}))
                    if FORWARDED_HEADER in answers[-1].headers and len(answers) >= 3:
                        break
            process.send_signal(signal.SIGINT)
            assert await anyio.to_thread.run_sync(lambda: process.wait(timeout=30)) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            if process.stderr is not None:
                process.stderr.close()
    assert [a.status_code for a in answers] == [200] * len(answers)
    # One REPL for every completion, whichever worker took the request; each worker
    # imported the tools (the one holding the session served them).
    counts, pids = zip(*(a.json()["answer"].split() for a in answers), strict=True)
    assert counts == tuple(str(n) for n in range(1, len(answers) + 1))
    forwarded = [a.headers[FORWARDED_HEADER] for a in answers if FORWARDED_HEADER in a.headers]
    assert forwarded and set(pids) == set(forwarded) and pids[0] != str(process.pid)
