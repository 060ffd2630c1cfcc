"""``oolong-synth``: the published OOLONG-synth examples behind the task interface.

Loads ``oolongbench/oolong-synth`` from the Hugging Face hub with the ``datasets`` package
(not a dependency: ``pip install datasets``; the hub must be reachable, or the set in the
local cache), keeps one source data set (``trec_coarse`` by default: the split the RLM paper
reports as OOLONG) and one context length (the published one closest to the size asked
for: 1024, 2048, ... 131072 tokens and up), and gives its rows, in id order, as examples:
seed ``n`` is the ``n``-th row. Scored with OOLONG's rules: numbers ``0.75 ** |error|``,
labels, dates and comparisons ("more common", ...) by exact match of what the answer states.
"""

from __future__ import annotations

import ast
import datetime
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

from rlm_async._exceptions import ConfigurationError
from rlm_async.evals._answers import answer_part, extract_number, normalise
from rlm_async.evals._task import Example, example_id

__all__ = ["OolongSynthTask", "example_from_row"]

DATASET = "oolongbench/oolong-synth"
_COMPARISONS = ("more common", "less common", "same frequency")
_DATE_FORMATS = ("%Y-%m-%d", "%B %d, %Y", "%b %d, %Y", "%d %B %Y", "%m/%d/%Y")
_DATE_TEXT = re.compile(
    r"\d{4}-\d{2}-\d{2}|[A-Z][a-z]+\.? \d{1,2}, \d{4}|\d{1,2} [A-Z][a-z]+ \d{4}"
    r"|\d{1,2}/\d{1,2}/\d{4}"
)

Row = dict[str, Any]


def _gold(answer: str) -> Any:
    """The gold value of a row's ``answer`` field (``"[12]"``, ``"['location']"``,
    ``"[datetime.date(2023, 5, 1)]"``): an int, a str, or an ISO date str."""
    date = re.fullmatch(r"\[datetime\.date\((\d+), (\d+), (\d+)\)\]", answer.strip())
    if date is not None:
        return datetime.date(*(int(part) for part in date.groups())).isoformat()
    value = ast.literal_eval(answer)
    return value[0] if isinstance(value, list) and value else value


def example_from_row(row: Row, *, seed: int, size: int, name: str = "oolong-synth") -> Example:
    """The example for one OOLONG-synth row (its published fields as they are)."""
    return Example(
        id=example_id(name, size, seed),
        task=name,
        size=size,
        seed=seed,
        context=row["context_window_text"],
        query=row["question"],
        gold=_gold(row["answer"]),
        meta={
            "row_id": row.get("id"),
            "dataset": row.get("dataset"),
            "context_len": row.get("context_len"),
            "answer_type": str(row.get("answer_type", "")).removeprefix("ANSWER_TYPE."),
            "task": row.get("task"),
        },
    )


def _load(split: str) -> Sequence[Row]:
    try:
        import datasets  # type: ignore[import-not-found]  # optional, not in the dependencies
    except ImportError:
        raise ConfigurationError(
            "the oolong-synth task loads the published data set with the 'datasets' package, "
            "which is not installed: pip install datasets (or use the generated task 'oolong')"
        ) from None
    rows: Sequence[Row] = datasets.load_dataset(DATASET, split=split)
    return rows


class OolongSynthTask:
    """The published OOLONG-synth rows as a task; see the module docstring.

    Args:
        dataset: The source data set to keep (``trec_coarse``, ``spam``, ``agnews``...).
        split: ``validation`` or ``test``.
        loader: Returns the split's rows (default: ``datasets.load_dataset``); rows are
            dicts with OOLONG-synth's fields.
    """

    name = "oolong-synth"
    metric = "OOLONG's: numbers 0.75 ** |answer - gold|, labels/dates/comparisons exact"

    def __init__(
        self,
        dataset: str = "trec_coarse",
        split: str = "validation",
        loader: Callable[[str], Sequence[Row]] = _load,
    ) -> None:
        self.dataset = dataset
        self.split = split
        self._loader = loader
        self._by_length: dict[int, list[Row]] | None = None
        # run_eval generates examples in worker threads, several at once: one loads the
        # split (large), the others wait for it.
        self._loading = threading.Lock()

    def _rows(self) -> dict[int, list[Row]]:
        with self._loading:
            return self._load_rows()

    def _load_rows(self) -> dict[int, list[Row]]:
        if self._by_length is None:
            by_length: dict[int, list[Row]] = {}
            for row in self._loader(self.split):
                if row.get("dataset") == self.dataset:
                    by_length.setdefault(int(row["context_len"]), []).append(row)
            if not by_length:
                raise ConfigurationError(
                    f"{DATASET} ({self.split}) has no rows of the data set {self.dataset!r}: "
                    "choose another one (e.g. trec_coarse, spam, agnews)"
                )
            for rows in by_length.values():
                rows.sort(key=lambda row: row.get("id", 0))
            self._by_length = by_length
        return self._by_length

    def generate(self, seed: int, size: int) -> Example:
        """The ``seed``-th row among those of the published context length closest to
        ``size``.

        Raises:
            ConfigurationError: ``datasets`` is missing, or there are not ``seed + 1`` rows.
        """
        by_length = self._rows()
        length = min(by_length, key=lambda n: (abs(n - size), n))
        rows = by_length[length]
        if not 0 <= seed < len(rows):
            raise ConfigurationError(
                f"{DATASET} has {len(rows)} {self.dataset} rows of {length} tokens: use seeds "
                f"0 to {len(rows) - 1} (--n {len(rows)} at most)"
            )
        return example_from_row(rows[seed], seed=seed, size=size, name=self.name)

    def score(self, answer: str, example: Example) -> float:
        """OOLONG's rules on what the answer states (see :func:`score_oolong_synth`)."""
        return score_oolong_synth(answer, example.gold, example.meta.get("answer_type", ""))


def score_oolong_synth(answer: str, gold: Any, answer_type: str) -> float:
    """A number ``0.75 ** |answer - gold|``; a date, a comparison or a label by exact match
    of what the answer states (its answer part, bold text, or the text after its last
    colon: OOLONG's own parser reads that)."""
    if answer_type == "NUMERIC" or isinstance(gold, int):
        number = extract_number(answer)
        return 0.0 if number is None else float(0.75 ** abs(number - int(gold)))
    part = answer_part(answer)
    if answer_type == "DATE":
        return 1.0 if _date(part) == gold else 0.0
    if answer_type == "COMPARISON":
        said = [c for c in _COMPARISONS if c in part.lower()]
        return 1.0 if len(said) == 1 and said[0] in str(gold).lower() else 0.0
    candidates = {normalise(part), normalise(part.rsplit(":", 1)[-1])}
    candidates.update(normalise(m) for m in re.findall(r"\*\*(.+?)\*\*", part))
    return 1.0 if normalise(str(gold)) in candidates else 0.0


def _date(text: str) -> str | None:
    for found in _DATE_TEXT.findall(text):
        for pattern in _DATE_FORMATS:
            try:
                return (
                    datetime.datetime.strptime(found.replace(".", ""), pattern).date().isoformat()
                )
            except ValueError:
                continue
    return None
