"""``rlm-async run --output-schema FILE [--output-retries N]``: a typed answer from the
command line, against the offline demo model on a loopback mock server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rlm_async.demo import demo_responder, make_haystack
from rlm_async.testing import MockLLMServer
from tests.test_cli import cli, run_args


@pytest.fixture
async def server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MockLLMServer]:
    async with MockLLMServer(demo_responder) as server:
        monkeypatch.setenv("OPENAI_COMPATIBLE_BASE_URL", server.base_url)
        yield server


@pytest.fixture
def haystack(tmp_path: Path) -> tuple[Path, int]:
    text, number = make_haystack(5_000, seed=11)  # the demo model reads it in 5 chunks
    path = tmp_path / "haystack.txt"
    path.write_text(text, encoding="utf-8")
    return path, number


def schema_file(tmp_path: Path, schema: object) -> str:
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(schema), encoding="utf-8")
    return str(path)


async def test_the_validated_answer_is_printed_as_json(
    server: MockLLMServer,
    haystack: tuple[Path, int],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, number = haystack
    schema = schema_file(tmp_path, {"type": "integer"})
    assert await cli(*run_args(path, "--output-schema", schema, "--result-json")) == 0
    assert json.loads(capsys.readouterr().out)["output"] == number
    assert await cli(*run_args(path, "--output-schema", schema)) == 0
    assert capsys.readouterr().out == f"{number}\n"


async def test_an_answer_that_never_matches_fails_after_output_retries(
    server: MockLLMServer,
    haystack: tuple[Path, int],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, _ = haystack
    schema = schema_file(tmp_path, {"type": "object", "required": ["number"]})
    code = await cli(*run_args(path, "--output-schema", schema, "--output-retries", "0"))
    assert code == 2
    err = capsys.readouterr().err
    assert "did not match" in err and "Traceback" not in err
    assert len(server.requests) == 3 + 5  # the demo's run, its answer not sent back


@pytest.mark.parametrize(("text", "said"), [("{not json", "not valid JSON"), ("[1]", "object")])
async def test_a_schema_file_that_is_not_a_json_object_is_an_error(
    haystack: tuple[Path, int],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    said: str,
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(text, encoding="utf-8")
    assert await cli(*run_args(haystack[0], "--output-schema", str(bad))) == 2
    err = capsys.readouterr().err
    assert f"--output-schema {bad}" in err and said in err
