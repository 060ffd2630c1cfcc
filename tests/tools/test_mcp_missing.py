"""Without the ``mcp`` extra: the package imports, and using MCP says how to install it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from rlm_async import ConfigurationError, MCPServer
from rlm_async.tools import mcp_tools
from rlm_async.tools._mcp import require_mcp


def test_without_the_sdk_the_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "mcp", None)  # what importing a missing package does
    with pytest.raises(ConfigurationError, match=re.escape('pip install "rlm-async[mcp]"')):
        require_mcp()

    async def enter() -> None:
        async with mcp_tools(MCPServer(command=sys.executable)):
            pytest.fail("the block ran")

    with pytest.raises(ConfigurationError, match="not installed"):
        anyio.run(enter)


def test_an_sdk_that_fails_to_import_is_told_apart_from_a_missing_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # An installed SDK too old for the pydantic here fails inside its own imports.
    (tmp_path / "mcp").mkdir()
    (tmp_path / "mcp" / "__init__.py").write_text(
        "raise ImportError(\"cannot import name 'eval_type_backport' from 'pydantic'\")\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mcp", raising=False)
    with pytest.raises(ConfigurationError, match=r"cannot be imported.*eval_type_backport"):
        require_mcp()


def test_the_package_and_its_tools_import_without_the_sdk() -> None:
    code = (
        "import sys\n"
        "sys.modules['mcp'] = None\n"  # as if not installed
        "import rlm_async, rlm_async.tools\n"
        "rlm_async.MCPServer(url='http://127.0.0.1:1/mcp')\n"
        "rlm_async.Tool.from_function(len, name='length')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


def test_importing_the_package_does_not_load_the_sdk() -> None:
    code = "import sys, rlm_async, rlm_async.tools\nassert 'mcp' not in sys.modules\n"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
