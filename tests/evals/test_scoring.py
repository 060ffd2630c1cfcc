"""The scorers read answers the way models write them: a corpus of answer shapes, each with
the score it must get (right answers in any usual shape score 1, wrong ones 0 or partial)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rlm_async.evals import TASKS, Example
from rlm_async.evals._answers import extract_number, extract_pairs, f1, normalise

CASES: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "data" / "answer_shapes.json").read_text(encoding="utf-8")
)["cases"]


def example_for(case: dict[str, Any]) -> Example:
    return Example(
        id="case",
        task=case["task"],
        size=8_000,
        seed=0,
        context="",
        query=case.get("query", ""),
        gold=case["gold"],
        meta=case.get("meta", {}),
    )


@pytest.mark.parametrize("case", CASES, ids=[f"{c['task']}-{n}" for n, c in enumerate(CASES)])
def test_each_answer_shape_gets_its_score(case: dict[str, Any]) -> None:
    task = TASKS[case["task"]]
    assert task.score(case["answer"], example_for(case)) == pytest.approx(case["score"])


def test_the_corpus_has_right_and_wrong_answers_for_every_task() -> None:
    for name in TASKS:
        scores = {c["score"] for c in CASES if c["task"] == name}
        assert 1.0 in scores and 0.0 in scores, name


def test_oolong_counts_earn_the_papers_partial_credit() -> None:
    # OOLONG scores a count as 0.75 ** |answer - gold|: off by one 0.75, by ten ~0.056.
    task = TASKS["oolong"]
    example = example_for({"task": "oolong", "gold": 100, "meta": {"query_numbers": []}})
    assert task.score("101", example) == pytest.approx(0.75)
    assert task.score("90", example) == pytest.approx(0.75**10)
    assert task.score("100", example) == 1.0


def test_extract_number_skips_the_numbers_the_question_names() -> None:
    assert extract_number("User 48213 has 12 of them.", ignore=[48213]) == 12
    assert extract_number("48213", ignore=[48213]) == 48213  # the only number is the answer
    assert extract_number("no idea") is None


def test_extract_pairs_orders_and_deduplicates() -> None:
    assert extract_pairs("(22222, 11111)\n(11111, 22222)\n(33333, 33333)") == {("11111", "22222")}


def test_f1_edges() -> None:
    assert f1(set(), set()) == 1.0
    assert f1({("1", "2")}, set()) == 0.0
    assert f1(set(), {("1", "2")}) == 0.0


def test_normalise_strips_quotes_markdown_and_case() -> None:
    assert normalise('  **"Location".**  ') == "location"
