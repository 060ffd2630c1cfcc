"""A completion's trace: the span tree from the in-memory exporter, over the real REPL child."""

from __future__ import annotations

import time

import pytest

pytest.importorskip(
    "opentelemetry.sdk", reason='the tracing tests need the extra: pip install "rlm-async[otel]"'
)

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from rlm_async import RLM, ConfigurationError, ProviderError, RLMResult
from rlm_async.providers import CompletionRequest
from rlm_async.testing import MockReply, ScriptedModel
from tests.engine.test_depth import recursive_script  # rlm_query_batched at every level
from tests.helpers import repl
from tests.tracing.support import SpanTree, attr, memory_provider, span_id


def lookup(key: str) -> str:
    """Look a key up."""
    return key.upper()


def broken(key: str) -> str:
    """A tool that fails."""
    raise KeyError(key)


def root_script(request: CompletionRequest) -> str:
    """Root: a cell with a sub-call, a tool call and a sub-RLM; then the answer."""
    if not any(m.role == "assistant" for m in request.messages):
        return repl(
            "a = llm_query('say hi')\n"
            "b = lookup('k')\n"
            "c = rlm_query('inner task', 'inner context')\n"
            "print(a, b, c)"
        )
    return "FINAL(done)"


def sub_script(request: CompletionRequest) -> str:
    """The sub-model: a sub-RLM's root (one cell with a sub-call, then its answer), or a
    plain sub-call."""
    if request.system:
        if not any(m.role == "assistant" for m in request.messages):
            return repl("x = llm_query('leaf')")
        return "FINAL(inner)"
    return "leaf answer"


async def traced_run() -> tuple[SpanTree, RLMResult, int, int]:
    provider, exporter = memory_provider()
    before = time.time_ns()
    async with RLM(
        model=ScriptedModel(root_script),
        sub_model=ScriptedModel(sub_script, name="sub"),
        max_depth=2,
        tools=[lookup],
        tracer_provider=provider,
    ) as rlm:
        result = await rlm.completion("hello", "q")
    return SpanTree(exporter.get_finished_spans()), result, before, time.time_ns()


async def test_a_completion_is_one_trace_run_turns_cells_calls_and_a_sub_rlm() -> None:
    tree, result, before, after = await traced_run()
    (run,) = tree.roots()
    assert run.name == "invoke_agent rlm" and run.parent is None
    assert attr(run, "gen_ai.operation.name") == "invoke_agent"
    assert attr(run, "rlm.depth") == 0 and attr(run, "rlm.answer_source") == "text"
    assert attr(run, "rlm.run_id") == result.metadata["run_id"]
    assert len({s.context.trace_id for s in tree.spans if s.context}) == 1

    first, second = tree.children(run)
    assert [first.name, second.name] == ["rlm.turn", "rlm.turn"]
    assert [attr(first, "rlm.turn"), attr(second, "rlm.turn")] == [1, 2]
    assert tree.names(first) == ["chat scripted", "rlm.cell"]
    assert tree.names(second) == ["chat scripted"]
    cell = tree.children(first)[1]
    assert (attr(cell, "rlm.turn"), attr(cell, "rlm.cell")) == (1, 1)
    assert tree.names(cell) == ["chat sub", "execute_tool lookup", "rlm_query sub"]

    sub_call, tool, rlm_query = tree.children(cell)
    assert sub_call.kind == SpanKind.CLIENT
    assert attr(sub_call, "gen_ai.operation.name") == "chat"
    assert attr(sub_call, "gen_ai.request.model") == "sub"
    assert attr(sub_call, "gen_ai.response.model") == "sub"
    assert attr(sub_call, "gen_ai.provider.name") == "sub"
    assert attr(sub_call, "rlm.depth") == 1
    assert attr(tool, "gen_ai.operation.name") == "execute_tool"
    assert attr(tool, "gen_ai.tool.name") == "lookup"
    assert tool.status.status_code == StatusCode.UNSET

    # The sub-RLM: its own run under the rlm_query call, with its own turns and cells.
    (inner,) = tree.children(rlm_query)
    assert inner.name == "invoke_agent rlm"
    assert attr(inner, "rlm.depth") == 1
    assert attr(inner, "rlm.parent_run_id") == attr(run, "rlm.run_id")
    assert attr(rlm_query, "gen_ai.usage.input_tokens") is None  # its run's calls hold them
    inner_first, _ = tree.children(inner)
    assert tree.names(inner_first) == ["chat sub", "rlm.cell"]
    assert tree.names(tree.children(inner_first)[1]) == ["chat sub"]

    # Every model call is a chat span whose usage is the call's: they sum to the result's.
    chats = [s for s in tree.spans if attr(s, "gen_ai.operation.name") == "chat"]
    usage = result.usage
    assert len(chats) == usage.calls == 6
    assert sum(int(attr(s, "gen_ai.usage.input_tokens")) for s in chats) == usage.input_tokens
    assert sum(int(attr(s, "gen_ai.usage.output_tokens")) for s in chats) == usage.output_tokens
    assert attr(run, "gen_ai.usage.input_tokens") == usage.input_tokens
    assert attr(run, "rlm.calls") == usage.calls

    # Times are the events' own, on the wall clock, and each child lies within its parent.
    assert before <= (run.start_time or 0) and (run.end_time or 0) <= after
    for span in tree.spans:
        parent = tree.parent_of(span)
        if parent is not None:
            assert _within(span, parent), f"{span.name} outside {parent.name}"


def _within(child: ReadableSpan, parent: ReadableSpan) -> bool:
    assert child.start_time and child.end_time and parent.start_time and parent.end_time
    return parent.start_time <= child.start_time <= child.end_time <= parent.end_time


async def test_the_callers_span_is_the_parent_of_the_run() -> None:
    provider, exporter = memory_provider()
    tracer = provider.get_tracer("app")
    script = ["FINAL(1)", "FINAL(2)"]
    async with RLM(model=ScriptedModel(script), tracer_provider=provider) as rlm:
        with tracer.start_as_current_span("GET /answer") as request:
            await rlm.completion("c", "q")
            async for _ in rlm.stream("c", "q"):
                pass
    tree = SpanTree(exporter.get_finished_spans())
    (caller,) = tree.roots()
    assert caller.name == "GET /answer"
    assert tree.names(caller) == ["invoke_agent rlm", "invoke_agent rlm"]
    assert all(
        s.context and s.context.trace_id == request.get_span_context().trace_id for s in tree.spans
    )


async def test_a_failed_run_is_an_error_span_with_the_exception_type() -> None:
    provider, exporter = memory_provider()
    root = ScriptedModel([MockReply("", status=400)])
    async with RLM(model=root, tracer_provider=provider) as rlm:
        with pytest.raises(ProviderError):
            await rlm.completion("c", "q")
    tree = SpanTree(exporter.get_finished_spans())
    (run,) = tree.roots()
    assert run.status.status_code == StatusCode.ERROR
    assert attr(run, "error.type") == "ProviderResponseError"
    assert [e.name for e in run.events] == ["exception"]
    # The model call that failed ended with the run, failed too.
    (turn,) = tree.children(run)
    (chat,) = tree.children(turn)
    assert chat.status.status_code == StatusCode.ERROR
    assert attr(chat, "gen_ai.usage.input_tokens") is None


async def test_a_failed_tool_call_is_an_error_span_and_the_run_goes_on() -> None:
    provider, exporter = memory_provider()
    root = ScriptedModel([repl("try:\n    broken('k')\nexcept Exception:\n    pass"), "FINAL(x)"])
    async with RLM(model=root, tools=[broken], tracer_provider=provider) as rlm:
        await rlm.completion("c", "q")
    tree = SpanTree(exporter.get_finished_spans())
    (tool,) = tree.named("execute_tool broken")
    assert tool.status.status_code == StatusCode.ERROR
    assert attr(tool, "error.type") == "KeyError"
    (run,) = tree.roots()
    assert run.status.status_code == StatusCode.UNSET


async def test_tracer_provider_false_and_bad_values() -> None:
    provider, exporter = memory_provider()
    async with RLM(model=ScriptedModel(["FINAL(1)", "FINAL(2)"]), tracer_provider=provider) as rlm:
        await rlm.completion("c", "q", options={"tracer_provider": False})
        assert exporter.get_finished_spans() == ()
        await rlm.completion("c", "q")
        assert len(exporter.get_finished_spans()) == 3  # run, turn, chat
    with pytest.raises(ConfigurationError, match="tracer_provider must be"):
        RLM(model=ScriptedModel([]), tracer_provider="yes")


def test_span_ids_are_distinct() -> None:
    # A guard on the helper the assertions above lean on.
    provider, exporter = memory_provider()
    with provider.get_tracer("t").start_as_current_span("a"):
        pass
    (span,) = exporter.get_finished_spans()
    assert span_id(span) != 0


async def test_a_sessions_completions_are_runs_under_their_callers_with_its_id() -> None:
    provider, exporter = memory_provider()
    tracer = provider.get_tracer("app")
    root = ScriptedModel([repl("x = 1"), "FINAL(1)", "FINAL(2)"])
    async with RLM(model=root, tracer_provider=provider) as rlm, rlm.session("c") as chat:
        with tracer.start_as_current_span("first request"):
            await chat.completion("q1")
        with tracer.start_as_current_span("second request"):
            await chat.completion("q2")
    tree = SpanTree(exporter.get_finished_spans())
    first, second = sorted(tree.roots(), key=lambda s: s.start_time or 0)
    runs = [tree.children(first)[0], tree.children(second)[0]]
    assert [r.name for r in runs] == ["invoke_agent rlm", "invoke_agent rlm"]
    assert [attr(r, "gen_ai.conversation.id") for r in runs] == [chat.session_id] * 2
    assert [attr(r, "rlm.session_turn") for r in runs] == [1, 2]


async def test_a_compaction_is_a_chat_span_of_the_run_counted_in_the_usage() -> None:
    turns = iter([repl("print('o' * 1200)")] * 4 + ["FINAL(1)"])

    def reply(request: CompletionRequest) -> str:
        if "will be replaced by a summary" in request.messages[-1].content:
            return "SUMMARY: only padding was printed."
        return next(turns)

    provider, exporter = memory_provider()
    async with RLM(model=ScriptedModel(reply), compact_at=1400, tracer_provider=provider) as rlm:
        result = await rlm.completion("c", "q")
    tree = SpanTree(exporter.get_finished_spans())
    (run,) = tree.roots()
    compactions = [s for s in tree.children(run) if attr(s, "rlm.compaction")]
    compacted = [e for e in result.trajectory if e.type == "compacted"]
    assert compacted and len(compactions) == len(compacted)
    assert all(s.name == "chat scripted" for s in compactions)
    assert [attr(s, "rlm.turn") for s in compactions] == [e.turn for e in compacted]
    chats = [s for s in tree.spans if attr(s, "gen_ai.operation.name") == "chat"]
    assert len(chats) == result.usage.calls
    assert sum(int(attr(s, "gen_ai.usage.input_tokens")) for s in chats) == (
        result.usage.input_tokens
    )


class _BrokenTracer:
    def start_span(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError("exporter misconfigured")


class _BrokenProvider:
    """A provider whose tracer fails: tracing must not take the run down with it."""

    def get_tracer(self, *args: object, **kwargs: object) -> _BrokenTracer:
        return _BrokenTracer()


async def test_a_failing_tracer_stops_alone_the_run_and_listeners_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[object] = []
    root = ScriptedModel([repl("print(llm_query('hi'))"), "FINAL(ok)"])
    sub = ScriptedModel(["hello"], name="sub")
    broken = _BrokenProvider()
    async with RLM(model=root, sub_model=sub, tracer_provider=broken, on_event=seen.append) as rlm:
        result = await rlm.completion("c", "q")
    assert result.answer == "ok"
    assert len(seen) == len(result.trajectory)  # the listener after the tracer saw them all
    warnings = [r for r in caplog.records if "rlm_async.tracing_failed" in r.getMessage()]
    assert len(warnings) == 1 and "exporter misconfigured" in warnings[0].getMessage()


async def test_concurrent_sub_rlms_each_hang_under_the_call_that_started_them() -> None:
    provider, exporter = memory_provider()
    model = ScriptedModel(recursive_script)
    async with RLM(model=model, max_depth=3, tracer_provider=provider) as rlm:
        result = await rlm.completion(["a", "b", "c", "d"], "join the items in upper case")
    assert result.answer == "A+B+C+D"
    started = {e.run_id: e for e in result.trajectory if e.type == "run_started"}
    tree = SpanTree(exporter.get_finished_spans())
    runs = tree.named("invoke_agent rlm")
    assert sorted(attr(r, "rlm.depth") for r in runs) == [0, 1, 1, 2, 2, 2, 2]
    for run in runs:
        event = started[str(attr(run, "rlm.run_id"))]
        if event.parent_subcall is None:
            continue
        call = tree.parent_of(run)
        assert call is not None and call.name == "rlm_query scripted"
        assert attr(call, "rlm.subcall.id") == event.parent_subcall
        cell = tree.parent_of(call)
        assert cell is not None and cell.name == "rlm.cell"
    # Every model call of every level is one chat span; their usage sums to the result's.
    chats = [s for s in tree.spans if attr(s, "gen_ai.operation.name") == "chat"]
    assert len(chats) == result.usage.calls
    assert sum(int(attr(s, "gen_ai.usage.output_tokens")) for s in chats) == (
        result.usage.output_tokens
    )
