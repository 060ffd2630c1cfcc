"""The server package: its public names, and what it needs (and does not) to import."""

from __future__ import annotations

import logging
import subprocess
import sys

import httpx

import rlm_async.server
from rlm_async import RLM
from rlm_async.server import create_app, open_server
from rlm_async.testing import ScriptedModel


def test_all_is_sorted_and_every_name_exists() -> None:
    assert rlm_async.server.__all__ == sorted(rlm_async.server.__all__)
    assert all(hasattr(rlm_async.server, name) for name in rlm_async.server.__all__)


def test_the_cli_arguments_load_without_starlette_and_the_app_says_what_to_install() -> None:
    code = (
        "import sys\n"
        "sys.modules['starlette'] = None\n"
        "sys.modules['uvicorn'] = None\n"
        "import argparse\n"
        "from rlm_async.cli._serve import add_serve_arguments\n"
        "add_serve_arguments(argparse.ArgumentParser())\n"
        "from rlm_async import ConfigurationError\n"
        "try:\n"
        "    from rlm_async.server import create_app\n"
        "except ConfigurationError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'rlm-async[server]'" in done.stdout


async def test_serving_configures_no_logging_for_the_host() -> None:
    root, uvicorn_logger = logging.getLogger(), logging.getLogger("uvicorn")
    before = (list(root.handlers), root.level, list(uvicorn_logger.handlers))
    app = create_app(RLM(model=ScriptedModel(["FINAL(x)"])))
    async with open_server(app) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/health")).status_code == 200
    assert (list(root.handlers), root.level, list(uvicorn_logger.handlers)) == before
