"""Prompts that fit the models and the settings (issue 12, items 5-8 and 13).

Each test runs the real REPL child with scripted models replaying what a small model
(Qwen2.5-Coder-1.5B) really replied, and reads what reached the models.
"""

from __future__ import annotations

import pytest

from rlm_async import RLM, ConfigurationError
from rlm_async.engine._parsing import find_code_blocks
from rlm_async.providers._windows import UNKNOWN_WINDOW, ContextWindows
from rlm_async.testing import ScriptedModel
from tests.helpers import repl

# What the model sent back when the first user message said "Your reply should contain
# ```repl code; do not answer yet." (issue 12, item 5): the instruction, pasted as code.
COPIED_INSTRUCTION = "```repl\nrepl code; do not answer yet.\n```"
COPIED_FENCE = "```repl code\nprint(len(context))\n```"


def _prompt_text(model: ScriptedModel) -> str:
    """Every prompt the library wrote, without the REPL output it quotes."""
    parts: list[str] = []
    for request in model.requests:
        parts.append(request.system or "")
        for message in request.messages:
            if message.role == "user":
                parts.append(message.content.rpartition("\n\nTurn ")[2])
    return "\n".join(parts)


async def test_no_prompt_holds_a_phrase_a_model_can_paste_back_as_code() -> None:
    root = ScriptedModel([COPIED_INSTRUCTION, "no code here", COPIED_FENCE, "FINAL(x)"])
    async with RLM(model=root, max_iterations=3) as rlm:
        await rlm.completion("some text", "How long is it?")
    text = _prompt_text(root)
    assert "repl code" not in text
    assert "do not answer yet" not in text


async def test_the_first_message_shows_a_real_block_that_runs_as_it_is() -> None:
    """A model that copies the example it was shown gets a useful first look, not an error."""
    first = ScriptedModel(["FINAL(x)"])
    async with RLM(model=first) as rlm:
        await rlm.completion("line one\nline two\n", "How many lines?")
    example = find_code_blocks(first.requests[0].messages[0].content)
    assert len(example) == 1
    # Replayed as the model's reply: it runs in the real child without an error.
    root = ScriptedModel([f"```repl\n{example[0]}```", "FINAL(2)"])
    async with RLM(model=root) as rlm:
        result = await rlm.completion("line one\nline two\n", "How many lines?")
    feedback = root.requests[1].messages[-1].content
    assert "Error" not in feedback and "Traceback" not in feedback
    assert "line one" in feedback
    assert result.answer == "2"


async def test_the_system_prompt_gives_the_sub_models_real_window() -> None:
    root = ScriptedModel(["FINAL(x)"], name="root")
    sub = ScriptedModel([], name="qwen-16k")
    async with RLM(model=root, sub_model=sub, context_windows={"qwen-16k": 16_384}) as rlm:
        await rlm.completion("text", "q")
    system = root.requests[0].system or ""
    assert "400,000" not in system
    assert "16,384 tokens" in system
    # Room for the prompt is the window less the reply, at ~3 characters a token.
    assert f"{(16_384 - 4_096) * 3:,} characters" in system


async def test_an_unknown_sub_model_is_assumed_small_and_the_prompt_says_so() -> None:
    root = ScriptedModel(["FINAL(x)"], name="root")
    async with RLM(model=root) as rlm:
        await rlm.completion("text", "q")
    system = root.requests[0].system or ""
    assert f"{UNKNOWN_WINDOW:,} tokens" in system
    assert "not known" in system


async def test_with_one_sub_call_at_a_time_the_prompt_does_not_promise_concurrency() -> None:
    root = ScriptedModel(["FINAL(x)"])
    async with RLM(model=root, max_concurrency=1, cell_timeout=60) as rlm:
        await rlm.completion("text", "q")
    system = root.requests[0].system or ""
    assert "concurrently" not in system
    assert "one at a time" in system
    assert "60 s" in system  # the cell limit a long batch runs into


async def test_with_many_sub_calls_at_once_the_prompt_says_how_many() -> None:
    root = ScriptedModel(["FINAL(x)"])
    async with RLM(model=root, max_concurrency=8) as rlm:
        await rlm.completion("text", "q")
    system = root.requests[0].system or ""
    assert "up to 8 at a time" in system


async def test_re_named_in_the_prompt_is_already_imported_in_the_repl() -> None:
    # Issue 12, item 7: the model used `re` without importing it, as the prompt suggested.
    code = "print(re.findall(r'\\d+', context))"
    root = ScriptedModel([repl(code), "FINAL(x)"])
    async with RLM(model=root) as rlm:
        await rlm.completion("a 12 b 345", "numbers?")
    assert "already imported" in (root.requests[0].system or "")
    feedback = root.requests[1].messages[-1].content
    assert "NameError" not in feedback
    assert "['12', '345']" in feedback


def test_known_windows_come_from_the_table_and_can_be_overridden() -> None:
    table = ContextWindows()
    assert table.window("openai", "gpt-5") == 400_000
    assert table.window("anthropic", "claude-sonnet-4-5-20250929") == 200_000
    assert table.window("gemini", "gemini-2.5-pro") == 1_048_576
    assert table.window("openai-compatible", "qwen2.5-coder") is None
    custom = ContextWindows({"openai-compatible:qwen2.5-coder": 16_384, "gpt-5": 272_000})
    assert custom.window("openai-compatible", "qwen2.5-coder") == 16_384
    assert custom.window("openai", "gpt-5") == 272_000


@pytest.mark.parametrize("windows", [{"m": 0}, {"m": "big"}, {"": 8_000}, ["m"]])
def test_a_bad_context_window_is_a_configuration_error(windows: object) -> None:
    with pytest.raises(ConfigurationError, match="context_windows"):
        RLM(model=ScriptedModel([]), context_windows=windows)  # type: ignore[arg-type]


def test_the_default_cell_output_cap_follows_the_root_models_window() -> None:
    # Issue 12, item 8: 20,000 characters became a 5,300-token prompt for a 16K model.
    small = RLM(model=ScriptedModel([], name="root"), context_windows={"root": 16_384})
    big = RLM(model=ScriptedModel([], name="root"), context_windows={"root": 400_000})
    chosen = RLM(
        model=ScriptedModel([], name="root"),
        context_windows={"root": 16_384},
        max_output_chars=12_000,
    )
    assert small.max_output_chars <= 16_384 * 4 // 8  # at most ~1/8 of the window
    assert big.max_output_chars == 20_000
    assert chosen.max_output_chars == 12_000


async def test_a_small_root_model_reads_a_cell_output_sized_for_it() -> None:
    root = ScriptedModel([repl("print('x' * 20_000)"), "FINAL(done)"], name="root")
    async with RLM(model=root, context_windows={"root": 16_384}) as rlm:
        await rlm.completion("text", "q")
    feedback = root.requests[1].messages[-1].content
    assert rlm.max_output_chars < 10_000
    assert "x" * rlm.max_output_chars not in feedback
    assert "truncated" in feedback


async def test_sub_calls_get_the_temperature_and_max_tokens_of_the_rlm() -> None:
    # Issue 12, item 13: every sub-call request went out without a temperature.
    root = ScriptedModel([repl("print(llm_query('hi'))"), "FINAL(x)"], name="root")
    sub = ScriptedModel(["hello"], name="sub")
    async with RLM(model=root, sub_model=sub, temperature=0.2, max_tokens=300) as rlm:
        await rlm.completion("text", "q")
    assert [(r.temperature, r.max_tokens) for r in sub.requests] == [(0.2, 300)]


async def test_sub_temperature_and_sub_max_tokens_win_over_the_root_settings() -> None:
    root = ScriptedModel([repl("print(llm_query('hi'))"), "FINAL(x)"], name="root")
    sub = ScriptedModel(["hello"], name="sub")
    async with RLM(
        model=root,
        sub_model=sub,
        temperature=0.2,
        sub_temperature=0.0,
        max_tokens=300,
        sub_max_tokens=50,
    ) as rlm:
        await rlm.completion("text", "q")
    assert [(r.temperature, r.max_tokens) for r in sub.requests] == [(0.0, 50)]
    assert root.requests[0].temperature == 0.2


def test_a_bad_sub_temperature_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="sub_temperature"):
        RLM(model=ScriptedModel([]), sub_temperature="hot")  # type: ignore[arg-type]
