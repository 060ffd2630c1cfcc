from __future__ import annotations

from rlm_async._parsing import FinalDirective, find_code_blocks, find_final


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
