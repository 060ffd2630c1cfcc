"""``rlm-async serve --cache PATH``: each worker's RLM keeps its sub-call answers in the one
SQLite file, so a query one worker answered costs another worker its root turns only.

Two workers' apps are made from pickled copies of the command's ``ReplicaApp`` (what
``--workers N`` hands each worker process) and served over real HTTP on 127.0.0.1, with
the offline demo model behind a loopback mock provider."""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import httpx

from rlm_async.cli._serve import _replica, add_serve_arguments
from rlm_async.demo import demo_responder, make_haystack
from rlm_async.providers._settings import Settings
from rlm_async.server import create_app, open_server
from rlm_async.testing import MockLLMServer


def serve_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return parser.parse_args(list(argv))


async def ask(replica_bytes: bytes, body: dict[str, str]) -> str:
    replica = pickle.loads(replica_bytes)
    async with (
        open_server(create_app(replica.make_rlm)) as url,
        httpx.AsyncClient(base_url=url, timeout=60) as client,
    ):
        response = await client.post("/v1/rlm", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["answer"])


async def test_a_second_worker_answers_the_sub_calls_from_the_shared_file(tmp_path: Path) -> None:
    text, number = make_haystack(5_000, seed=11)  # the demo model reads it in 5 chunks
    body = {"context": text, "query": "What is the magic number?"}
    store = tmp_path / "subcalls.sqlite3"
    async with MockLLMServer(demo_responder) as mock:
        settings = Settings(openai_compatible_base_url=mock.base_url)
        args = serve_args("--cache", str(store), "--workers", "2")
        replica = _replica(args, settings, "openai-compatible:x", "openai-compatible:y", None)
        copy = pickle.dumps(replica)
        assert await ask(copy, body) == str(number)
        assert len(mock.requests) == 3 + 5  # three root turns, five chunks
        assert await ask(copy, body) == str(number)  # another worker's RLM, the same file
        assert len(mock.requests) == 8 + 3, "the second worker sends its root turns only"
    assert store.exists()


async def test_without_cache_each_worker_pays_for_its_sub_calls(tmp_path: Path) -> None:
    text, _ = make_haystack(5_000, seed=11)
    body = {"context": text, "query": "What is the magic number?"}
    async with MockLLMServer(demo_responder) as mock:
        settings = Settings(openai_compatible_base_url=mock.base_url)
        replica = _replica(serve_args(), settings, "openai-compatible:x", None, None)
        copy = pickle.dumps(replica)
        await ask(copy, body)
        await ask(copy, body)
        assert len(mock.requests) == 2 * (3 + 5)
