from __future__ import annotations

import time
import warnings

import pytest

from rlm_async.engine._parsing import (
    FinalDirective,
    LastReply,
    find_code_blocks,
    find_final,
    read_last_reply,
)


def test_repl_and_python_blocks_are_found_in_order() -> None:
    text = "look\n```repl\nx = 1\n```\nthen\n```python\nprint(x)\n```\n"
    assert find_code_blocks(text) == ["x = 1\n", "print(x)\n"]


def test_blocks_in_other_languages_are_not_run() -> None:
    text = "```bash\nrm -rf /\n```\n```json\n{}\n```"
    assert find_code_blocks(text) == []


def test_an_unclosed_block_runs_to_the_end_of_the_reply() -> None:
    assert find_code_blocks("```repl\nprint(1)\nprint(2)") == ["print(1)\nprint(2)"]


def test_empty_blocks_are_skipped() -> None:
    assert find_code_blocks("```repl\n\n```") == []


def test_a_four_backtick_fence_may_contain_three_backticks() -> None:
    text = "````repl\ns = '```'\n````"
    assert find_code_blocks(text) == ["s = '```'\n"]


def test_final_line_gives_the_answer() -> None:
    assert find_final("I found it.\nFINAL(42)") == FinalDirective("answer", "42")


def test_final_answer_may_span_lines_and_hold_parentheses() -> None:
    text = "FINAL(The answer (in short) is:\ntwo lines)"
    assert find_final(text) == FinalDirective("answer", "The answer (in short) is:\ntwo lines")


def test_quotes_around_a_final_answer_are_removed() -> None:
    assert find_final('FINAL("Paris")') == FinalDirective("answer", "Paris")


def test_final_var_names_a_variable_with_or_without_quotes() -> None:
    assert find_final("FINAL_VAR(result)") == FinalDirective("variable", "result")
    assert find_final("FINAL_VAR('result')") == FinalDirective("variable", "result")


def test_final_inside_a_code_block_is_code_not_an_answer() -> None:
    text = "```repl\nFINAL(x)\n```"
    assert find_final(text) is None


def test_final_mentioned_mid_sentence_is_not_an_answer() -> None:
    assert find_final("When done I will call FINAL(answer) for you.") is None


def test_no_final_gives_none() -> None:
    assert find_final("Let me look at the context first.") is None


# ---- case variants, code on the fence line (issue 12 items 2 and 3) ---------------------


def test_final_is_recognised_in_the_case_variants_models_write() -> None:
    assert find_final("Final('Ostrava Minor')") == FinalDirective("answer", "Ostrava Minor")
    assert find_final("final(42)") == FinalDirective("answer", "42")
    assert find_final("Final_Var(result)") == FinalDirective("variable", "result")
    assert find_final("final_var('result')") == FinalDirective("variable", "result")


def test_code_written_on_the_fence_line_is_the_first_line_of_the_block() -> None:
    text = '```repl (llm_query_batched(["a", "b"]))\n```'
    assert find_code_blocks(text) == ['(llm_query_batched(["a", "b"]))\n']
    text = "```python x = 1\nprint(x)\n```"
    assert find_code_blocks(text) == ["x = 1\nprint(x)\n"]
    assert find_code_blocks("```repl import re\nre.escape('a')\n```") == [
        "import re\nre.escape('a')\n"
    ]


def test_plain_words_after_the_tag_are_not_code() -> None:
    assert find_code_blocks("```repl code\nprint(1)\n```") == ["print(1)\n"]
    assert find_code_blocks("```python title\nprint(1)\n```") == ["print(1)\n"]


def test_a_longer_closing_fence_closes_the_block() -> None:
    assert find_code_blocks("```repl\nx = 1\n`````\nprose") == ["x = 1\n"]


# ---- the last turn (issue 12 item 1) ------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ('```repl\nFINAL("Tokyo")\n```', LastReply(FinalDirective("answer", "Tokyo"), "forced")),
        (
            "```repl\nFINAL(Tokyo, Japan)\n```",
            LastReply(FinalDirective("answer", "Tokyo, Japan"), "forced"),
        ),
        ("FINAL(Paris)", LastReply(FinalDirective("answer", "Paris"), "forced")),
        (
            "```\nTokyo, Japan\n```",
            LastReply(FinalDirective("answer", "Tokyo, Japan"), "last_reply"),
        ),
        ("```repl\n7\n```", LastReply(FinalDirective("answer", "7"), "last_reply")),
        ("'10'", LastReply(FinalDirective("answer", "10"), "last_reply")),
        ("`10`", LastReply(FinalDirective("answer", "10"), "last_reply")),
        (
            "The answer is 12.",
            LastReply(FinalDirective("answer", "The answer is 12."), "last_reply"),
        ),
        (
            "Here it is:\n```\nOstrava Minor\n```",
            LastReply(FinalDirective("answer", "Ostrava Minor"), "last_reply"),
        ),
        (
            "```repl\nFINAL(answer)\n```",
            LastReply(FinalDirective("variable", "answer", fallback="answer"), "forced"),
        ),
        (
            "```repl\ncity\n```",
            LastReply(FinalDirective("variable", "city", fallback="city"), "last_reply"),
        ),
        ("FINAL_VAR(best)", LastReply(FinalDirective("variable", "best"), "forced")),
    ],
)
def test_the_last_reply_is_read_for_the_answer_the_model_meant(
    reply: str, expected: LastReply
) -> None:
    assert read_last_reply(reply) == expected


@pytest.mark.parametrize(
    "reply",
    [
        '```repl\nllm_query("...")\n```',
        "```repl\nx = len(context)\nprint(x)\n```",
        "```repl\n```",
        "",
        # the first user prompt pasted back (issue 12 item 5): a repl fence of broken code
        "```repl\nrepl code; do not answer yet.\n```",
        # a FINAL inside a loop: which value it meant needs the loop to run
        "```repl\nfor c in cities:\n    final(c)\n```",
        "```\nprint(len(context))\n```",
        "```\nllm_query('more')\n```",
        "```\nx = 3\n```",
    ],
)
def test_a_last_reply_that_is_code_or_nothing_is_not_an_answer(reply: str) -> None:
    assert read_last_reply(reply) is None


# ---- review fixes: prose with example code, fenced expressions, fenced text --------------


def test_a_last_reply_with_prose_and_example_code_is_the_prose() -> None:
    reply = "The answer is 7. I computed it with:\n```python\nn = sum(...)\n```"
    expected = FinalDirective("answer", "The answer is 7. I computed it with:")
    assert read_last_reply(reply) == LastReply(expected, "last_reply", beside_code=True)
    reply = "I need one more look:\n```python\nprint(context[:100])\n```\nBut it is 7."
    assert read_last_reply(reply) == LastReply(
        FinalDirective("answer", "I need one more look:\nBut it is 7."),
        "last_reply",
        beside_code=True,
    )


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ('```repl\nFINAL("Tokyo")\n```', FinalDirective("answer", "Tokyo")),
        ("```repl\nFINAL(7.50)\n```", FinalDirective("answer", "7.50")),
        ("```repl\nFINAL(answer.upper())\n```", FinalDirective("expression", "answer.upper()")),
        ("```repl\nFINAL(len(cities))\n```", FinalDirective("expression", "len(cities)")),
        ("```repl\nFINAL(Ostrava Minor)\n```", FinalDirective("answer", "Ostrava Minor")),
        (
            "```repl\nFINAL(Tokyo, Japan)\n```",
            FinalDirective("answer", "Tokyo, Japan"),
        ),
    ],
)
def test_a_fenced_final_on_the_last_turn_is_a_literal_or_an_expression_to_evaluate(
    reply: str, expected: FinalDirective
) -> None:
    assert read_last_reply(reply) == LastReply(expected, "forced")


@pytest.mark.parametrize(
    ("reply", "value"),
    [
        ("```\nParis (France)\n```", "Paris (France)"),
        ("```\n3 + 4\n```", "3 + 4"),
        ("```text\n3 + 4\n```", "3 + 4"),
        ("```plain\nParis (France)\n```", "Paris (France)"),
        ("```markdown\n**Paris** (France)\n```", "**Paris** (France)"),
        ("```\nParis\nLondon\n```", "Paris\nLondon"),
    ],
)
def test_fenced_plain_text_with_parentheses_or_arithmetic_is_a_value(
    reply: str, value: str
) -> None:
    assert read_last_reply(reply) == LastReply(FinalDirective("answer", value), "last_reply")


@pytest.mark.parametrize(
    "text",
    [
        "final(ly), I think it is Paris.",
        "Final(ly) it is Paris.",
        "final_var(x) is what I would call",
    ],
)
def test_prose_starting_with_final_in_another_case_is_not_a_directive(text: str) -> None:
    assert find_final(text) is None
    assert read_last_reply(text) == LastReply(FinalDirective("answer", text), "last_reply")


def test_a_case_variant_counts_where_its_line_is_a_call() -> None:
    assert find_final("final(Paris)  \n") == FinalDirective("answer", "Paris")
    assert find_final("Final(The answer\nspans lines)") == FinalDirective(
        "answer", "The answer\nspans lines"
    )
    assert find_final("So:\nfinal_var(best)\n") == FinalDirective("variable", "best")
    # The upper-case directive is what the prompt asks for: it counts as before.
    assert find_final("FINAL(42) is my answer") == FinalDirective("answer", "42")


# ---- linear time (issue 11 item 5) --------------------------------------------------------

PATHOLOGICAL = {
    "backticks": "`" * 240_000,
    "backticks after a fence": "```repl\n" + "`" * 240_000,
    "fence lines": "```repl\n" * 60_000,
    "unclosed finals": "FINAL(" * 60_000,
    "open parens": "FINAL(" + "(" * 240_000,
    "spaces": " " * 240_000 + "FINAL",
    "final var noise": "FINAL_VAR(" + "a" * 240_000,
    "quotes": "'" * 240_000,
}


@pytest.mark.parametrize("name", sorted(PATHOLOGICAL))
def test_reading_a_reply_takes_linear_time(name: str) -> None:
    text = PATHOLOGICAL[name]
    started = time.perf_counter()
    find_code_blocks(text)
    find_final(text)
    read_last_reply(text)
    # Quadratic parsing took 4-5 s for 120,000 backticks (some 18 s for these 240,000);
    # linear takes well under a second even on a loaded 2-core machine.
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize("body", ["0x1for", '"\\d+"', "1 is 1"])
def test_reading_a_reply_prints_no_python_warnings(body: str) -> None:
    # ``ast.parse`` of a model's text warns (SyntaxWarning: invalid hexadecimal literal...),
    # which Python prints on the host application's stderr by default.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_last_reply(f"The answer:\n```\n{body}\n```")
        read_last_reply(f"Done.\n```python\n{body}\n```")
    assert [str(w.message) for w in caught] == []
