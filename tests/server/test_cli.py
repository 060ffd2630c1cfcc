"""``rlm-async serve``: its arguments, the token from the environment, the --demo server."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from rlm_async.cli._serve import add_serve_arguments, serve

LAUNCH = (
    "import argparse, sys\n"
    "from rlm_async.cli._serve import add_serve_arguments, run_serve\n"
    "parser = argparse.ArgumentParser()\n"
    "add_serve_arguments(parser)\n"
    "sys.exit(run_serve(parser.parse_args(sys.argv[1:])))\n"
)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return parser.parse_args(argv)


def test_the_defaults_serve_on_loopback_with_no_token() -> None:
    args = parse()
    assert (args.host, args.port) == ("127.0.0.1", 8000)
    assert args.api_key_env is None and args.demo is False
    assert args.max_concurrent_runs == 8 and args.warm_repls == 0


def test_there_is_no_way_to_pass_the_token_itself_on_the_command_line() -> None:
    with pytest.raises(SystemExit):
        parse("--api-key", "secret")


async def test_a_token_variable_that_is_not_set_is_an_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("RLM_TEST_SERVER_TOKEN", raising=False)
    assert await serve(parse("--demo", "--api-key-env", "RLM_TEST_SERVER_TOKEN")) == 2
    assert "RLM_TEST_SERVER_TOKEN" in capsys.readouterr().err


def test_serve_demo_answers_over_http_with_the_token_from_the_environment() -> None:
    env = {**os.environ, "RLM_TEST_SERVER_TOKEN": "tok-123456"}
    process = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, "--demo", "--port", "0", "--warm-repls", "1",
         "--workers", "1", "--api-key-env", "RLM_TEST_SERVER_TOKEN", "--log-level", "warning"],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        banner = process.stderr.readline()
        assert banner.startswith("rlm-async serve: http://127.0.0.1:"), banner
        url = banner.split()[2]
        assert "tok-123456" not in banner
        deadline = time.monotonic() + 20
        while True:  # the lifespan opens the RLM right after the banner
            try:
                health = httpx.get(f"{url}/health")
                if health.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server never became healthy"
            time.sleep(0.05)
        denied = httpx.get(f"{url}/v1/models")
        models = httpx.get(f"{url}/v1/models", headers={"authorization": "Bearer tok-123456"})
        assert denied.status_code == 401
        assert models.json()["data"][0]["root_model"] == "openai-compatible:rlm-demo-root"
        assert health.json()["warm_repls"]["size"] == 1
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
