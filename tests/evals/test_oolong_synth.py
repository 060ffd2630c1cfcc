"""The published OOLONG-synth rows behind the task interface: rows to examples, OOLONG's
scoring rules, and clear errors (no ``datasets`` package, a seed past the rows).

The rows are written here in the published schema (the dataset card's fields), passed as the
task's ``loader``: the hub is never reached in the tests.
"""

from __future__ import annotations

import contextlib
import importlib.util
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from rlm_async import ConfigurationError
from rlm_async.evals import TASKS, OolongSynthTask

CONTEXT = "Date: Jan 03, 2023 || User: 76544 || Instance: Where is Lima?\n"


def row(row_id: int, context_len: int, answer: str, answer_type: str, **extra: Any) -> Any:
    return {
        "id": row_id,
        "context_len": context_len,
        "dataset": extra.get("dataset", "trec_coarse"),
        "context_window_text": CONTEXT * (context_len // 16),
        "question": f"Question {row_id}?",
        "task_group": "counting",
        "task": "TASK_TYPE.MOST_FREQ",
        "answer": answer,
        "answer_type": f"ANSWER_TYPE.{answer_type}",
        "input_subset": "False",
        "num_labels": 6,
        "context_window_id": row_id // 10,
    }


ROWS = [
    row(12, 8192, "[7]", "NUMERIC"),
    row(11, 8192, "['location']", "LABEL"),
    row(20, 16384, "[datetime.date(2023, 5, 1)]", "DATE"),
    row(30, 16384, "['more common than']", "COMPARISON"),
    row(40, 8192, "['spam']", "LABEL", dataset="spam"),
]


def loader(split: str) -> Sequence[Any]:
    assert split == "validation"
    return ROWS


def test_rows_become_examples_in_id_order_at_the_nearest_published_length() -> None:
    task = OolongSynthTask(loader=loader)
    first, second = task.generate(0, 8_000), task.generate(1, 8_000)
    assert (first.meta["row_id"], first.gold, first.meta["answer_type"]) == (
        11,
        "location",
        "LABEL",
    )
    assert (second.meta["row_id"], second.gold) == (12, 7)
    assert first.context == ROWS[1]["context_window_text"] and first.query == "Question 11?"
    assert first.id == "oolong-synth-8k-s0"
    dated = task.generate(0, 16_000)
    assert dated.gold == "2023-05-01"
    assert task.score("Answer: May 1, 2023", dated) == 1.0
    assert task.score("The answer is 9", second) == pytest.approx(0.75**2)


def test_a_seed_past_the_rows_says_how_many_there_are() -> None:
    with pytest.raises(ConfigurationError, match="seeds 0 to 1"):
        OolongSynthTask(loader=loader).generate(2, 8_000)


def test_another_source_data_set_is_chosen_by_name() -> None:
    assert OolongSynthTask("spam", loader=loader).generate(0, 8_000).gold == "spam"
    with pytest.raises(ConfigurationError, match="no rows of the data set 'yahoo'"):
        OolongSynthTask("yahoo", loader=loader).generate(0, 8_000)


@pytest.mark.skipif(
    importlib.util.find_spec("datasets") is not None, reason="datasets is installed"
)
def test_without_the_datasets_package_the_error_says_what_to_install() -> None:
    with pytest.raises(ConfigurationError, match="pip install datasets"):
        TASKS["oolong-synth"].generate(0, 8_000)


def test_examples_generated_at_once_load_the_rows_once() -> None:
    # run_eval generates examples in worker threads, several at once: the published split
    # (gigabytes of contexts) must be loaded once, not once a thread. The barrier lets two
    # loads meet; a second thread kept out of the loader leaves the first to time out.
    calls: list[str] = []
    meet = threading.Barrier(2, timeout=0.5)

    def slow_loader(split: str) -> Sequence[Any]:
        calls.append(split)
        with contextlib.suppress(threading.BrokenBarrierError):
            meet.wait()
        return ROWS

    task = OolongSynthTask(loader=slow_loader)
    threads = [threading.Thread(target=task.generate, args=(0, 8_000)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert calls == ["validation"]
