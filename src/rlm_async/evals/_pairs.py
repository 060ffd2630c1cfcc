"""OOLONG-Pairs-style questions: which pairs of users meet a condition together.

The RLM paper's OOLONG-Pairs asks, over OOLONG's ``trec_coarse`` records, for every pair of
user ids whose records meet a joint condition: work quadratic in the users, where a single
pass that answers "how many" is not enough. Here, over the same records as ``oolong`` (see
:mod:`rlm_async.evals._records`), a question is either "both users have at least T instances
of label X" or "one user has at least T1 of X and the other at least T2 of Y"; thresholds are
picked so a few to a dozen users qualify. Scored as the paper scores it: F1 of the pairs the
answer lists against the gold pairs.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from typing import Any

from rlm_async.evals._answers import extract_pairs, f1
from rlm_async.evals._records import (
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

__all__ = ["PAIRS_SOLVERS", "OolongPairsTask", "pairs_meeting"]


def pairs_meeting(rows: Iterable[tuple[str, str]], meta: dict[str, Any]) -> list[list[str]]:
    """The pairs ``[smaller, larger]`` of users meeting the condition in ``meta``, over rows
    ``(user, label)``, sorted."""
    per_user: dict[str, Counter[str]] = {}
    for user, label in rows:
        per_user.setdefault(user, Counter())[label] += 1
    (first, second), (t1, t2) = meta["labels"], meta["thresholds"]
    group1 = {u for u, c in per_user.items() if c[first] >= t1}
    group2 = {u for u, c in per_user.items() if c[second] >= t2}
    pairs = {tuple(sorted((a, b), key=int)) for a in group1 for b in group2 if a != b}
    return [list(pair) for pair in sorted(pairs)]


class OolongPairsTask:
    """Pairs of users meeting a joint condition (OOLONG-Pairs); see the module docstring."""

    name = "oolong-pairs"
    metric = "F1 of the listed pairs against the gold pairs"

    def generate(self, seed: int, size: int) -> Example:
        """Records totalling about ``size`` tokens and one question about pairs of users."""
        check_size(size)
        rng = task_rng(self.name, seed, size)
        records, users = draw_records(rng, size, records_per_user=40, users=(12, 150))
        rows = [(r.user, r.label) for r in records]
        meta: dict[str, Any] = {"records": len(records), "users": users}
        meta.update(_condition(rng, rows))
        gold = pairs_meeting(rows, meta)
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
        """F1 of the pairs in the answer (any usual shape) against the gold pairs."""
        gold = {(a, b) for a, b in example.gold}
        return f1(extract_pairs(answer), gold)


def _threshold(rng: random.Random, counts: list[int], most: int) -> int | None:
    """A threshold that between 2 and ``most`` of ``counts`` reach (``None`` if none does)."""
    ranked = sorted(counts, reverse=True)
    most = min(most, len(ranked))
    for k in rng.sample(range(2, most + 1), most - 1):
        threshold = ranked[k - 1]
        if threshold >= 1 and sum(c >= threshold for c in counts) <= most:
            return threshold
    return None


def _condition(rng: random.Random, rows: list[tuple[str, str]]) -> dict[str, Any]:
    per_user: dict[str, Counter[str]] = {}
    for user, label in rows:
        per_user.setdefault(user, Counter())[label] += 1
    both = rng.random() < 0.5
    for _ in range(50):
        labels = [rng.choice(LABELS)] * 2 if both else rng.sample(LABELS, 2)
        most = 14 if both else 9
        thresholds = [_threshold(rng, [c[lab] for c in per_user.values()], most) for lab in labels]
        if both:
            thresholds[1] = thresholds[0]
        if None not in thresholds:
            meta: dict[str, Any] = {"kind": "both" if both else "cross", "labels": labels}
            meta["thresholds"] = thresholds
            if pairs_meeting(rows, meta):
                return meta
    return {"kind": "both", "labels": [LABELS[0]] * 2, "thresholds": [1, 1]}


def _query(meta: dict[str, Any]) -> str:
    (first, second), (t1, t2) = meta["labels"], meta["thresholds"]
    if meta["kind"] == "both":
        condition = (
            f"both users have at least {t1} instances that should be classified as '{first}'"
        )
    else:
        condition = (
            f"one of the two users has at least {t1} instances that should be classified as "
            f"'{first}' and the other has at least {t2} instances that should be classified as "
            f"'{second}'"
        )
    return (
        f"{RECORDS_INTRO} List every pair of user ids such that "
        f"{condition}. List each pair once, the smaller id first, one pair per line as "
        "(id1, id2)."
    )


def _pairs_code(meta: dict[str, Any], *, wrong: bool) -> str:
    (first, second), (t1, t2) = meta["labels"], meta["thresholds"]
    # The wrong solver's mistake: "more than T" for "at least T" (an off-by-one).
    at_least = ">" if wrong else ">="
    return f"""
from collections import Counter
per_user = {{}}
for r, lab in zip(records, labels):
    per_user.setdefault(r[1], Counter())[lab] += 1
group1 = {{u for u, c in per_user.items() if c[{first!r}] {at_least} {t1}}}
group2 = {{u for u, c in per_user.items() if c[{second!r}] {at_least} {t2}}}
pairs = sorted({{tuple(sorted((a, b), key=int)) for a in group1 for b in group2 if a != b}})
print(len(group1), len(group2), len(pairs), "pairs")
answer = "\\n".join(f"({{a}}, {{b}})" for a, b in pairs)
"""


def _solver(example: Example, *, wrong: bool = False) -> Responder:
    code = classify_code() + _pairs_code(example.meta, wrong=wrong)
    plan = (
        "Every record needs its category, so I'll have sub-models classify them in batches, "
        "count per user in code, and list the pairs."
    )
    return root_responder(plan, code, classify_responder(example))


def _wrong_solver(example: Example) -> Responder:
    return _solver(example, wrong=True)


def _direct(example: Example) -> Responder:
    def read(request: CompletionRequest) -> str:
        rows = [
            (user, classify(text) or "") for _, user, text in parse_records(prompt_text(request))
        ]
        pairs = pairs_meeting(rows, example.meta)
        return "\n".join(f"({a}, {b})" for a, b in pairs) or "No pair meets the condition."

    return read


PAIRS_SOLVERS = Solvers(
    solver=_solver,
    sub_solver=classify_responder,
    wrong_solver=_wrong_solver,
    direct_solver=_direct,
)
