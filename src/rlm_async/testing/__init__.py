"""Test helpers for users' own tests: a scripted model and a loopback mock LLM server.

``ScriptedModel`` is a ``Provider`` that answers from a list of replies or a function, with
no network at all. ``MockLLMServer`` is a real HTTP server on 127.0.0.1 speaking the OpenAI
Chat Completions API (``POST /v1/chat/completions``, streaming too) with a configurable
latency, so the whole stack, HTTP adapter included, runs as it would in production.

Example:
    from rlm_async import RLM
    from rlm_async.testing import ScriptedModel

    root = ScriptedModel(["```repl\\nprint(len(context))\\n```", "FINAL(5)"])
    async with RLM(model=root) as rlm:
        assert (await rlm.completion("hello", "How long?")).answer == "5"
"""

from rlm_async.testing._mock_server import MockLLMServer
from rlm_async.testing._replies import MockReply, Responder, estimate_tokens
from rlm_async.testing._scripted import ScriptedModel

__all__ = ["MockLLMServer", "MockReply", "Responder", "ScriptedModel", "estimate_tokens"]
