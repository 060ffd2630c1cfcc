"""``rlm-async serve``: the session flags, ``--tools module:attr`` and ``--mcp-server``."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pytest

from rlm_async import ConfigurationError
from rlm_async.cli import _serve as serve_module
from rlm_async.cli._serve import _replica, add_serve_arguments, run_serve
from rlm_async.providers._settings import Settings
from rlm_async.server._tool_specs import import_tools
from rlm_async.server._workers import ReplicaApp
from rlm_async.tools import MCPServer, Tool
from tests.server import serve_tools

MISSING_MCP = re.escape('pip install "rlm-async[mcp]"')


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rlm-async serve")
    add_serve_arguments(parser)
    return parser.parse_args(argv)


def app_options(*argv: str) -> dict[str, object]:
    replica = _replica(parse(*argv), Settings(), "openai:gpt-5", None, None)
    return dict(replica.app_options)


def test_the_session_flags_reach_the_app_and_ttl_is_another_name_for_the_idle_timeout() -> None:
    assert parse("--session-ttl", "30").session_idle_timeout == 30.0
    assert parse("--session-idle-timeout", "2.5").session_idle_timeout == 2.5
    options = app_options("--workers", "1", "--max-sessions", "3", "--session-ttl", "45")
    assert (options["max_sessions"], options["session_idle_timeout"]) == (3, 45.0)
    assert app_options("--workers", "1")["max_sessions"] == 16
    assert app_options("--workers", "1")["session_idle_timeout"] == 600.0


def test_with_several_workers_the_session_limit_is_per_worker() -> None:
    assert app_options("--workers", "2")["max_sessions"] == 16
    assert app_options("--workers", "2", "--max-sessions", "0")["max_sessions"] == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--session-ttl", "0"], "must be a positive number of seconds"),
        (["--session-ttl", "soon"], "expected seconds"),
        (["--max-sessions", "-1"], "must be 0 or more"),
        (["--tools", "no_colon"], "expected module:attr"),
        (["--tools", "mod:"], "expected module:attr"),
        (["--tools", "a b:c"], "expected module:attr"),
        (["--mcp-server", ""], "expected a command line or an http(s):// URL"),
        (["--mcp-server", "server 'unclosed"], "cannot split"),
    ],
)
def test_bad_flags_are_usage_errors_that_name_the_problem(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse(*argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_tools_and_mcp_servers_are_repeatable_and_reach_the_replica() -> None:
    args = parse(
        "--tools", "tests.server.serve_tools:TOOLS",
        "--tools", "tests.server.serve_tools:serving_pid",
        "--mcp-server", "python -m my_server --root '/data/my files'",
        "--mcp-server", "http://127.0.0.1:9000/mcp",
    )  # fmt: skip
    assert args.tools == ["tests.server.serve_tools:TOOLS", "tests.server.serve_tools:serving_pid"]
    stdio, http = args.mcp_server
    assert stdio == MCPServer(
        command="python", args=["-m", "my_server", "--root", "/data/my files"]
    )
    assert http == MCPServer(url="http://127.0.0.1:9000/mcp")
    replica = _replica(args, Settings(), "openai:gpt-5", None, None)
    assert replica.tools == tuple(args.tools) and replica.mcp_servers == (stdio, http)
    assert parse().tools == [] and parse().mcp_server == []


def test_a_tool_name_may_be_a_function_a_list_or_a_toolset() -> None:
    assert import_tools("tests.server.serve_tools:serving_pid") == [serve_tools.serving_pid]
    listed = import_tools("tests.server.serve_tools:TOOLS")
    assert listed[0] is serve_tools.serving_pid
    assert isinstance(listed[1], Tool) and listed[1].name == "ticket_count"
    (from_set,) = import_tools("tests.server.serve_tools:TOOLSET")
    assert isinstance(from_set, Tool) and from_set.name == "serving_pid"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module_h15:fn", "no module named 'no_such_module_h15' on the Python path"),
        ("tests.server.no_such_h15:fn", "no module named 'tests.server.no_such_h15'"),
        ("tests.server.serve_tools:nothing", "has no attribute 'nothing'"),
        ("tests.server.serve_tools:NOT_A_TOOL", "int 42 is not a tool"),
        ("tests.server.serve_tools:Tool", "is not a tool"),
    ],
)
def test_a_tool_name_that_cannot_be_imported_is_a_named_error(spec: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)) as raised:
        import_tools(spec)
    assert spec in str(raised.value)


def test_a_module_whose_own_import_fails_is_told_apart_from_a_missing_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_tools_h15.py").write_text("import not_installed_dep_h15\n")
    (tmp_path / "raising_tools_h15.py").write_text("raise RuntimeError('bad config')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigurationError, match="importing its module failed: ModuleNotFound"):
        import_tools("broken_tools_h15:fn")
    with pytest.raises(ConfigurationError, match="RuntimeError: bad config"):
        import_tools("raising_tools_h15:fn")


def test_serve_with_a_tool_that_cannot_be_imported_exits_2_naming_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = parse("--demo", "--workers", "1", "--port", "0", "--tools", "no_such_module_h15:f")
    assert run_serve(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("rlm-async serve: error: --tools 'no_such_module_h15:f'"), err


def test_mcp_server_without_the_mcp_extra_exits_2_saying_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "mcp", None)  # what importing a missing package does
    args = parse("--demo", "--workers", "1", "--port", "0", "--mcp-server", "my-server")
    assert run_serve(args) == 2
    assert re.search(MISSING_MCP, capsys.readouterr().err)


def test_the_token_variable_may_hold_one_token_per_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RLM_TEST_SERVER_TOKENS", " alice-token, bob-token ,")
    seen: list[ReplicaApp] = []

    async def capture(args: argparse.Namespace, replica: ReplicaApp, *, label: object) -> int:
        seen.append(replica)
        return 0

    monkeypatch.setattr(serve_module, "_serve", capture)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert run_serve(parse("--api-key-env", "RLM_TEST_SERVER_TOKENS", "--no-dotenv")) == 0
    monkeypatch.setenv("RLM_TEST_SERVER_TOKENS", "only-one")
    assert run_serve(parse("--api-key-env", "RLM_TEST_SERVER_TOKENS", "--no-dotenv")) == 0
    several, one = (replica.app_options["api_key"] for replica in seen)
    assert several == ["alice-token", "bob-token"] and one == "only-one"
