"""A scripted model for batches, served over loopback so worker processes reach it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlm_async.providers._base import CompletionRequest
from rlm_async.providers._settings import Settings
from rlm_async.testing import MockLLMServer, MockReply

MODEL = "openai-compatible:batch-root"
# $1 per million tokens in and out: each row costs what its two turns' tokens say.
PRICES = {MODEL: (1.0, 1.0)}


def mentions(request: CompletionRequest, text: str) -> bool:
    return any(text in message.content for message in request.messages)


def answer_with_the_length(request: CompletionRequest) -> str | MockReply:
    """Two root turns: code measuring ``len(context)``, then ``FINAL_VAR``; a query with
    ``FAIL`` in it is refused (HTTP 400, which is not retried)."""
    if mentions(request, "FAIL"):
        return MockReply(
            status=400, body={"error": {"message": "refused", "type": "invalid_request_error"}}
        )
    if not any(message.role == "assistant" for message in request.messages):
        return "```repl\nresult = len(context)\nprint(result)\n```"
    return "FINAL_VAR(result)"


def settings_for(server: MockLLMServer) -> Settings:
    return Settings(openai_compatible_base_url=server.base_url, prices=PRICES)


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_requests(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path
