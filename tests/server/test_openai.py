"""POST /v1/chat/completions: an RLM behind the OpenAI Chat Completions API."""

from __future__ import annotations

from typing import Any

import pytest

from rlm_async import RLM, Budget
from rlm_async.providers import CompletionRequest
from rlm_async.server import create_app
from rlm_async.server._errors import ApiError
from rlm_async.server._openai import ChatCompletionRequest, context_and_query
from rlm_async.testing import MockReply, ScriptedModel
from tests.helpers import repl
from tests.server.support import asgi_client, parse_sse, two_turns


def chat(*messages: tuple[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "model": "my-rlm",
        "messages": [{"role": r, "content": c} for r, c in messages],
        **extra,
    }


async def test_the_answer_is_the_assistant_message_with_usage_of_the_whole_tree() -> None:
    root = ScriptedModel(two_turns)
    async with RLM(model=root) as rlm, asgi_client(create_app(rlm)) as client:
        response = await client.post(
            "/v1/chat/completions",
            json=chat(("system", "be brief"), ("user", "a long document"), ("user", "len?")),
        )
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "my-rlm"
    assert body["id"].startswith("chatcmpl-")
    (choice,) = body["choices"]
    assert choice["message"] == {"role": "assistant", "content": "2", "refusal": None}
    assert choice["finish_reason"] == "stop"
    # The context is the two earlier messages; usage is the sum of both root turns.
    calls = root.requests
    assert len(calls) == 2
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert body["rlm"]["iterations"] == 2 and body["rlm"]["run_id"]


async def test_earlier_messages_are_the_context_as_a_list_of_chat_messages() -> None:
    def script(request: CompletionRequest) -> str:
        if not any(m.role == "assistant" for m in request.messages):
            return repl("FINAL(f\"{context[0]['role']}|{context[1]['content']}|{len(context)}\")")
        raise AssertionError("one turn is enough")

    async with RLM(model=ScriptedModel(script)) as rlm, asgi_client(create_app(rlm)) as client:
        response = await client.post(
            "/v1/chat/completions",
            json=chat(("system", "S"), ("user", "doc"), ("assistant", "ok"), ("user", "q")),
        )
    assert response.json()["choices"][0]["message"]["content"] == "system|doc|3"


async def test_a_context_field_is_the_context_and_system_messages_join_the_query() -> None:
    seen: list[str] = []

    def script(request: CompletionRequest) -> str:
        seen.append(request.messages[0].content)
        return repl("FINAL(str(sorted(context)))")

    async with RLM(model=ScriptedModel(script)) as rlm, asgi_client(create_app(rlm)) as client:
        response = await client.post(
            "/v1/chat/completions",
            json=chat(
                ("system", "Answer in French."),
                ("user", "Which keys?"),
                context={"b": 1, "a": 2},
            ),
        )
    assert response.json()["choices"][0]["message"]["content"] == "['a', 'b']"
    assert "Answer in French.\n\nWhich keys?" in seen[0]


async def test_streaming_sends_openai_chunks_a_usage_chunk_and_done() -> None:
    async with (
        RLM(model=ScriptedModel(two_turns)) as rlm,
        asgi_client(create_app(rlm)) as client,
    ):
        response = await client.post(
            "/v1/chat/completions",
            json=chat(
                ("user", "doc"),
                ("user", "q"),
                stream=True,
                stream_options={"include_usage": True},
            ),
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    messages = parse_sse(response.text)
    assert messages[-1].data == "[DONE]"
    chunks = [m.json() for m in messages[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "1"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    *others, last = chunks
    assert last["choices"] == [] and last["usage"]["total_tokens"] > 0
    assert all(c["usage"] is None for c in others)


async def test_streaming_without_include_usage_has_no_usage_field() -> None:
    async with (
        RLM(model=ScriptedModel(["FINAL(x)"])) as rlm,
        asgi_client(create_app(rlm)) as client,
    ):
        response = await client.post("/v1/chat/completions", json=chat(("user", "q"), stream=True))
    chunks = [m.json() for m in parse_sse(response.text)[:-1]]
    assert chunks and all("usage" not in c for c in chunks)


async def test_a_budget_that_stops_the_run_gives_finish_reason_length() -> None:
    root = ScriptedModel(lambda r: repl("print(1)"))
    async with (
        RLM(model=root, budget=Budget(max_tokens=800)) as rlm,
        asgi_client(create_app(rlm)) as client,
    ):
        response = await client.post("/v1/chat/completions", json=chat(("user", "q")))
    assert response.status_code == 200
    body = response.json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["rlm"]["finished"] is False
    assert 0 < body["usage"]["total_tokens"] <= 800


async def test_an_upstream_provider_failure_is_a_502_in_the_openai_error_shape() -> None:
    root = ScriptedModel(lambda r: MockReply(status=500))
    async with RLM(model=root) as rlm, asgi_client(create_app(rlm)) as client:
        response = await client.post("/v1/chat/completions", json=chat(("user", "q")))
        streamed = await client.post("/v1/chat/completions", json=chat(("user", "q"), stream=True))
    assert response.status_code == 502
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "upstream_error"
    # In a stream the status is already sent: the error arrives as a data chunk.
    messages = parse_sse(streamed.text)
    assert messages[-1].data == "[DONE]"
    assert messages[-2].json()["error"]["type"] == "upstream_error"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"", None),
        (b"[1, 2]", None),
        (b'{"messages": []}', "messages"),
        (b'{"messages": [{"role": "system", "content": "only a system message"}]}', "messages"),
        (b'{"messages": [{"role": "user", "content": "q"}], "n": 2}', "n"),
        (b'{"messages": [{"role": "user", "content": "q"}], "context": 42}', "context"),
        (
            b'{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}',
            "messages.0.content",
        ),
    ],
)
async def test_a_bad_body_is_a_400_in_the_openai_error_shape(
    body: bytes, param: str | None
) -> None:
    root = ScriptedModel(["FINAL(never)"])
    async with RLM(model=root) as rlm, asgi_client(create_app(rlm)) as client:
        response = await client.post(
            "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] is not None and error["param"].startswith(param)
    assert root.requests == []


def test_the_last_user_message_is_the_query_even_before_an_assistant_message() -> None:
    request = ChatCompletionRequest.model_validate(
        chat(("user", "first"), ("user", "the question"), ("assistant", "prefill"))
    )
    context, query = context_and_query(request)
    assert query == "the question"
    assert context == [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "prefill"},
    ]


def test_text_content_parts_are_joined_into_the_query() -> None:
    request = ChatCompletionRequest.model_validate(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                }
            ]
        }
    )
    assert context_and_query(request) == ([], "ab")


def test_an_empty_query_is_refused() -> None:
    request = ChatCompletionRequest.model_validate(chat(("user", "  ")))
    with pytest.raises(ApiError) as caught:
        context_and_query(request)
    assert caught.value.status == 400


async def test_models_lists_the_one_model_served() -> None:
    async with (
        RLM(model=ScriptedModel(["FINAL(x)"])) as rlm,
        asgi_client(create_app(rlm, model_name="haystack-rlm")) as client,
    ):
        response = await client.get("/v1/models")
    assert [m["id"] for m in response.json()["data"]] == ["haystack-rlm"]


async def test_unknown_routes_and_methods_answer_in_the_openai_error_shape() -> None:
    async with (
        RLM(model=ScriptedModel(["FINAL(x)"])) as rlm,
        asgi_client(create_app(rlm)) as client,
    ):
        missing = await client.get("/v1/nothing")
        wrong = await client.get("/v1/chat/completions")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert wrong.status_code == 405 and "error" in wrong.json()
