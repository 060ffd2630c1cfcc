"""OOLONG-style aggregation: questions about every record of a long list.

After OOLONG-synth's ``trec_coarse`` split (Bertsch et al., 2025, arXiv:2511.02817), the task
the RLM paper reports as OOLONG: dated user messages whose class is not written (see
:mod:`rlm_async.evals._records`), and a question only the whole list answers: how many
instances have a label, which label is the most or least common, and the same per user or
per month. Scored as OOLONG scores: a label by exact match, a count with partial credit
``0.75 ** |answer - gold|`` (the released OOLONG-synth scorer, ``synth_process_response``
in github.com/abertsch72/oolong, ``src/eval``), so an answer off by one still earns 0.75.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from typing import Any

from rlm_async.evals._answers import extract_number, first_match
from rlm_async.evals._records import (
    LABEL_PATTERNS,
    LABELS,
    RECORDS_INTRO,
    classify,
    classify_code,
    classify_responder,
    draw_records,
    parse_records,
)
from rlm_async.evals._scripting import Responder, prompt_text, root_responder
from rlm_async.evals._sizes import check_size, task_rng
from rlm_async.evals._task import Example, Solvers, example_id
from rlm_async.providers._base import CompletionRequest

__all__ = ["OOLONG_SOLVERS", "OolongTask", "aggregate"]

_KINDS = (
    "label_count",
    "most_common",
    "least_common",
    "user_count",
    "month_count",
    "user_most_common",
)
_MONTHS = {
    "Jan": "January", "Feb": "February", "Mar": "March", "Apr": "April", "May": "May",
    "Jun": "June", "Jul": "July", "Aug": "August", "Sep": "September", "Oct": "October",
    "Nov": "November", "Dec": "December",
}  # fmt: skip


def _counts(rows: Iterable[tuple[str, str, str]], meta: dict[str, Any]) -> Counter[str]:
    """Label counts of the rows ``(date, user, label)`` the question is about."""
    kind = meta["kind"]
    if kind.startswith("user_"):
        rows = [r for r in rows if r[1] == meta["user"]]
    elif kind == "month_count":
        month, year = meta["month"].split()
        rows = [r for r in rows if r[0].startswith(month) and r[0].endswith(year)]
    return Counter(r[2] for r in rows)


def aggregate(rows: Iterable[tuple[str, str, str]], meta: dict[str, Any]) -> int | str:
    """The answer to the question ``meta`` describes over rows ``(date, user, label)``."""
    counts = _counts(rows, meta)
    if meta["kind"] in ("most_common", "user_most_common"):
        return max(LABELS, key=lambda label: counts[label])
    if meta["kind"] == "least_common":
        return min(LABELS, key=lambda label: counts[label])
    return counts[meta["label"]]


def _unique_extreme(counts: Counter[str], kind: str) -> bool:
    values = sorted((counts[label] for label in LABELS), reverse=kind != "least_common")
    return values[0] != values[1]


class OolongTask:
    """OOLONG-style aggregation over every record; see the module docstring."""

    name = "oolong"
    metric = "labels: exact match; counts: 0.75 ** |answer - gold| (OOLONG's partial credit)"

    def generate(self, seed: int, size: int) -> Example:
        """Records totalling about ``size`` tokens and one aggregation question."""
        check_size(size)
        rng = task_rng(self.name, seed, size)
        records, users = draw_records(rng, size, records_per_user=30, users=(10, 2_000))
        rows = [(f"{r.date:%b %d, %Y}", r.user, r.label) for r in records]
        meta: dict[str, Any] = {"records": len(records), "users": users}
        meta.update(_question(rng, rows))
        gold = aggregate(rows, meta)
        return Example(
            id=example_id(self.name, size, seed),
            task=self.name,
            size=size,
            seed=seed,
            context="\n".join(r.line for r in records),
            query=_query(meta),
            gold=gold,
            meta=meta,
        )

    def score(self, answer: str, example: Example) -> float:
        """A label: 1.0 or 0.0. A count: ``0.75 ** |answer - gold|`` (0.0 when none given)."""
        if isinstance(example.gold, str):
            return 1.0 if first_match(answer, LABEL_PATTERNS) == example.gold else 0.0
        ignore = [float(n) for n in example.meta.get("query_numbers", [])]
        number = extract_number(answer, ignore=ignore)
        if number is None:
            return 0.0
        return float(0.75 ** abs(number - example.gold))


def _question(rng: random.Random, rows: list[tuple[str, str, str]]) -> dict[str, Any]:
    """A question with a unique answer: a kind and its parameters."""
    for kind in rng.sample(_KINDS, len(_KINDS)):
        meta: dict[str, Any] = {"kind": kind, "label": rng.choice(LABELS)}
        if kind.startswith("user_"):
            meta["user"] = rng.choice(rows)[1]
        if kind == "month_count":
            date = rng.choice(rows)[0]
            meta["month"] = f"{date[:3]} {date[-4:]}"
        if kind.endswith("count") or _unique_extreme(_counts(rows, meta), kind):
            if not kind.endswith("count"):
                del meta["label"]
            return meta
    return {"kind": "label_count", "label": LABELS[0]}


def _query(meta: dict[str, Any]) -> str:
    kind = meta["kind"]
    label = meta.get("label")
    if kind == "label_count":
        question = f"How many instances should be classified as '{label}'?"
    elif kind == "most_common":
        question = "Which category is the most common among the instances?"
    elif kind == "least_common":
        question = "Which category is the least common among the instances?"
    elif kind == "user_count":
        question = f"How many instances from user {meta['user']} should be classified as '{label}'?"
    elif kind == "month_count":
        month, year = meta["month"].split()
        question = (
            f"How many instances dated in {_MONTHS[month]} {year} should be classified as "
            f"'{label}'?"
        )
    else:
        question = f"Which category is the most common among the instances of user {meta['user']}?"
    numbers = [meta["user"]] if "user" in meta else []
    numbers += [meta["month"].split()[1]] if "month" in meta else []
    meta["query_numbers"] = numbers
    shape = (
        "Give your final answer as a single number."
        if kind.endswith("count")
        else "Give your final answer as the category only, e.g. 'location'."
    )
    return f"{RECORDS_INTRO} {question} {shape}"


def _aggregate_code(meta: dict[str, Any], *, wrong: bool) -> str:
    """REPL code computing ``answer`` from ``records`` and ``labels``."""
    kind = meta["kind"]
    lines = ["from collections import Counter", "rows = list(zip(records, labels))"]
    if kind.startswith("user_"):
        lines.append(f"rows = [(r, l) for r, l in rows if r[1] == {meta['user']!r}]")
    if kind == "month_count":
        month, year = meta["month"].split()
        lines.append(
            f"rows = [(r, l) for r, l in rows if r[0].startswith({month!r}) "
            f"and r[0].endswith({year!r})]"
        )
    lines.append("counts = Counter(l for r, l in rows)")
    if kind.endswith("count"):
        lines.append(f"answer = str(counts[{meta['label']!r}])")
    else:
        descending = "" if kind == "least_common" else "-"
        # The wrong solver's mistake: an off-by-one in the ranking (the runner-up).
        lines.append(
            f"ranking = sorted(LABELS, key=lambda lab: {descending}counts[lab])\n"
            f"answer = ranking[{1 if wrong else 0}]"
        )
    lines.append("print(dict(counts), '->', answer)")
    return "\n".join(lines)


def _solver(example: Example, *, wrong: bool = False) -> Responder:
    code = classify_code(half=wrong) + "\n" + _aggregate_code(example.meta, wrong=wrong)
    plan = (
        "The categories are not in the data, so every record needs reading. I'll parse the "
        "records, have sub-models classify them in batches, then count in code."
    )
    return root_responder(plan, code, classify_responder(example))


def _wrong_solver(example: Example) -> Responder:
    return _solver(example, wrong=True)


def _direct(example: Example) -> Responder:
    def read(request: CompletionRequest) -> str:
        rows = [
            (date, user, classify(text) or "")
            for date, user, text in parse_records(prompt_text(request))
        ]
        return f"Answer: {aggregate(rows, example.meta)}"

    return read


OOLONG_SOLVERS = Solvers(
    solver=_solver,
    sub_solver=classify_responder,
    wrong_solver=_wrong_solver,
    direct_solver=_direct,
)
