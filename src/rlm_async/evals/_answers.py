"""Reading what a model meant from the way models write answers.

Models rarely answer with the bare value: they wrap it in prose ("There are **1,234**
instances labelled location."), quote it, bold it, or end with "Final answer: ...". The
scorers take the value out of such text with these helpers, so a right answer in any usual
shape scores as right, and a hedge that names several values does not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = [
    "answer_part",
    "extract_number",
    "extract_pairs",
    "f1",
    "first_match",
    "normalise",
]

# "Final answer: 42", "**Answer:** 42", "The answer is 42": what follows the last such marker
# is the answer; the reasoning before it may name other values.
_MARKER = re.compile(
    r"(?i)(?:final answer|answer|result)\s*(?:\(.*?\))?\s*(?:is|:|=|->)\s*:?", re.DOTALL
)
_BOLD = re.compile(r"\*\*(.+?)\*\*", re.DOTALL)
_FINAL_CALL = re.compile(r"FINAL\((.*)\)\s*$", re.DOTALL)
# A number as models write it: 1234, 1,234, 1 234 is left alone (two numbers), -3, 12.0.
_NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w])")
_WORDS = {
    "zero": 0,
    "none": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
}
_WORD_NUMBER = re.compile(r"(?i)\b(" + "|".join(_WORDS) + r")\b")
_USER_ID = r"\d{5}"
# A bracketed pair: (12345, 23456), [12345, 23456], {"a": ...} is not one, <12345 - 23456>.
_BRACKETED_PAIR = re.compile(
    r"[(\[{<]\s*[\"']?(" + _USER_ID + r")[\"']?\s*(?:,|;|:|/|&|-|–|\band\b|\s)\s*"
    r"[\"']?(" + _USER_ID + r")[\"']?\s*[)\]}>]"
)


def normalise(text: str) -> str:
    """Lower case, no surrounding quotes, markdown or final punctuation, single spaces."""
    text = text.strip().strip("`*_\"'“”‘’ \t\n")
    text = re.sub(r"\s+", " ", text).lower()
    return text.rstrip(".!;:,").strip("`*_\"'“”‘’ ")


def answer_part(answer: str) -> str:
    """The part of ``answer`` that states the answer: a ``FINAL(...)`` call's argument, else
    what follows the last "answer:"-style marker, else the whole text."""
    text = answer.strip()
    call = _FINAL_CALL.search(text)
    if call is not None:
        text = call.group(1)
    markers = list(_MARKER.finditer(text))
    if markers and text[markers[-1].end() :].strip():
        return text[markers[-1].end() :].strip()
    return text


def _numbers(text: str) -> list[float]:
    return [float(match.group(0).replace(",", "")) for match in _NUMBER.finditer(text)]


def extract_number(answer: str, *, ignore: Iterable[float] = ()) -> float | None:
    """The number ``answer`` gives, or ``None`` if it gives none.

    Looks, in order, at bold text, at what follows an "answer:" marker, then at the whole
    text. Numbers in ``ignore`` (those the question itself names: a user id, a year) are
    passed over when others are present. Of several numbers the last one counts: prose puts
    the result after the setting ("Out of 5000 records, 1234 are ..."). Small numbers written
    as words ("three") count too.
    """
    skip = set(ignore)
    part = answer_part(answer)
    for text in (*(m.group(1) for m in _BOLD.finditer(part)), part):
        found = _numbers(text)
        kept = [n for n in found if n not in skip] or found
        if kept:
            return kept[-1] if text is part else kept[0]
    words = _WORD_NUMBER.findall(part)
    return float(_WORDS[words[-1].lower()]) if words else None


def first_match(answer: str, patterns: dict[str, re.Pattern[str]]) -> str | None:
    """Which of ``patterns`` (name -> pattern) ``answer`` states: the first one mentioned in
    its answer part (bold text first), or ``None``."""
    part = answer_part(answer)
    for text in (*(m.group(1) for m in _BOLD.finditer(part)), part):
        found = [
            (match.start(), name)
            for name, pattern in patterns.items()
            if (match := pattern.search(text)) is not None
        ]
        if found:
            return min(found)[1]
    return None


def extract_pairs(answer: str) -> set[tuple[str, str]]:
    """The unordered pairs of 5-digit ids ``answer`` lists, each as ``(smaller, larger)``.

    Takes bracketed pairs (``(a, b)``, ``[a, b]``, JSON ``[[a, b], ...]``) when there are
    any; otherwise each line or ``;``-separated piece naming exactly two ids
    (``a - b``, ``a and b``, ``| a | b |``, ``User a & User b``) is a pair.
    """
    found = [(a, b) for a, b in _BRACKETED_PAIR.findall(answer)]
    if not found:
        for piece in re.split(r"[\n;]", answer):
            ids = re.findall(r"(?<!\d)" + _USER_ID + r"(?!\d)", piece)
            if len(ids) == 2:
                found.append((ids[0], ids[1]))
    return {(min(a, b, key=int), max(a, b, key=int)) for a, b in found if a != b}


def f1(predicted: set[tuple[str, str]], gold: set[tuple[str, str]]) -> float:
    """The F1 score of ``predicted`` against ``gold`` (1.0 when both are empty)."""
    if not predicted and not gold:
        return 1.0
    hits = len(predicted & gold)
    if hits == 0:
        return 0.0
    precision = hits / len(predicted)
    recall = hits / len(gold)
    return 2 * precision * recall / (precision + recall)
