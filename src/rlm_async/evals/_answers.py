"""Reading what a model meant from the way models write answers.

Models rarely answer with the bare value: they wrap it in prose ("There are **1,234**
instances labelled location."), quote it, bold it, or end with "Final answer: ...". The
scorers take the value out of such text with these helpers, so a right answer in any usual
shape scores as right, and a hedge that names several values does not.
"""

from __future__ import annotations

import itertools
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
# "There are no such instances", "no records match": a count of zero said in words.
_NONE = re.compile(
    r"(?i)\bno\s+(?:such\s+|matching\s+)?(?:instances?|records?|questions?|entries|matches)\b"
)
_WORD_NUMBER = re.compile(r"(?i)\b(" + "|".join(_WORDS) + r")\b")
_USER_ID = r"\d{5}"
# A bracketed pair: (12345, 23456), [12345, 23456], {"a": ...} is not one, <12345 - 23456>.
_BRACKETED_PAIR = re.compile(
    r"[(\[{<]\s*[\"']?(" + _USER_ID + r")[\"']?\s*(?:,|;|:|/|&|-|–|\band\b|\s)\s*"
    r"[\"']?(" + _USER_ID + r")[\"']?\s*[)\]}>]"
)

_BARE_ID = r"(?<!\d)" + _USER_ID + r"(?!\d)"
# Two ids joined by a sign (not "and" or a comma: "11111, 22222 and 33333" lists users).
_JOINED_PAIR = re.compile(
    r"(?<![\d\-–—&/])(" + _USER_ID + r")\s*(?:-|–|—|&|/)\s*(" + _USER_ID + r")(?![\d\-–—&/])"
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


# Numbers that state the setting, not the count asked for: "among the 6 categories",
# "out of 1,000", "3.5%", "in 13 batches". Counts of records are the setting more often than
# not ("of the 1200 records"), yet sometimes the answer ("42 records are ..."): weaker.
_SETTING_AFTER = re.compile(
    r"(?i)\s*(?:%|percent\b|categor(?:y|ies)\b|class(?:es)?\b|labels?\b|batch(?:es)?\b"
    r"|chunks?\b|sub-?calls?\b)"
)
_WEAK_SETTING_AFTER = re.compile(r"(?i)\s*(?:records?|lines?|rows?|entries|documents?)\b")
_SETTING_BEFORE = re.compile(r"(?i)(?:\bout of|\bof all|\bfrom all)\s*$")


def _numbers(text: str) -> list[float]:
    """The numbers in ``text``, those stating the setting left out while others remain."""
    found = [(m, float(m.group(0).replace(",", ""))) for m in _NUMBER.finditer(text)]

    def setting(match: re.Match[str], after: re.Pattern[str]) -> bool:
        return bool(
            after.match(text, match.end()) or _SETTING_BEFORE.search(text, 0, match.start())
        )

    for after in (_SETTING_AFTER, _WEAK_SETTING_AFTER):
        answers = [(m, n) for m, n in found if not setting(m, after)]
        found = answers or found
    return [n for _, n in found]


def extract_number(answer: str, *, ignore: Iterable[float] = ()) -> float | None:
    """The number ``answer`` gives, or ``None`` if it gives none.

    Looks, in order, at bold text, at what follows an "answer:" marker, then at the whole
    text. Numbers in ``ignore`` (those the question itself names: a user id, a year) are
    passed over when others are present. Of several numbers the last one counts: prose puts
    the result after the setting ("Out of 5000 records, 1234 are ..."). Small numbers written
    as words ("three") count too, and "no such instances" is 0.
    """
    skip = set(ignore)
    part = answer_part(answer)
    for text in (*(m.group(1) for m in _BOLD.finditer(part)), part):
        found = _numbers(text)
        kept = [n for n in found if n not in skip]
        if not kept and _NONE.search(text):  # "no such instances in March 2023": zero
            return 0.0
        kept = kept or found
        if kept:
            return kept[-1] if text is part else kept[0]
    words = _WORD_NUMBER.findall(part)
    return float(_WORDS[words[-1].lower()]) if words else None


# Between two names, what makes them a hedge ("location or entity", "numeric value / human"):
# the rest of the first name, then "or" or a slash.
_EITHER = re.compile(r"(?i)[\w ]{0,25}?[\"'*`’]*\s*(?:or|/|and/or)\s*[\"'*`‘]*\s*")
_PARENTHESES = re.compile(r"\([^()]*\)")


def first_match(answer: str, patterns: dict[str, re.Pattern[str]]) -> str | None:
    """Which of ``patterns`` (name -> pattern) ``answer`` states: the first one mentioned in
    its answer part (bold text first), or ``None``. A list in parentheses naming several
    ("among the six (abbreviation, entity, ...)") is passed over; two names joined by "or"
    or a slash are a hedge, which states none."""

    def mentions(text: str) -> list[tuple[int, int, str]]:
        return sorted(
            (match.start(), match.end(), name)
            for name, pattern in patterns.items()
            for match in pattern.finditer(text)
        )

    def unlisted(text: str) -> str:
        return _PARENTHESES.sub(
            lambda m: "" if len({name for *_, name in mentions(m.group(0))}) > 1 else m.group(0),
            text,
        )

    part = answer_part(answer)
    for text in (*(m.group(1) for m in _BOLD.finditer(part)), part):
        text = unlisted(text)
        found = mentions(text)
        if not found:
            continue
        # The first name is the answer, unless the next one is offered as its alternative.
        for (_, end, name), (start, _, other) in itertools.pairwise(found[:2]):
            if name != other and _EITHER.fullmatch(text, end, start):
                return None
        return found[0][2]
    return None


def extract_pairs(answer: str) -> set[tuple[str, str]]:
    """The unordered pairs of 5-digit ids ``answer`` lists, each as ``(smaller, larger)``.

    Takes bracketed pairs (``(a, b)``, ``[a, b]``, JSON ``[[a, b], ...]``) when there are
    any; otherwise each line or ``;``-separated piece naming exactly two ids
    (``a - b``, ``a and b``, ``| a | b |``, ``User a & User b``) is a pair, and a piece
    naming more gives the ids joined by a sign (``a-b, c-d``, ``a & b, c & d``).
    """
    found = [(a, b) for a, b in _BRACKETED_PAIR.findall(answer)]
    if not found:
        for piece in re.split(r"[\n;]", answer):
            ids = re.findall(_BARE_ID, piece)
            if len(ids) == 2:
                found.append((ids[0], ids[1]))
            elif len(ids) > 2:  # "a-b, c-d, e-f": pairs joined by a sign, on one line
                found.extend(_JOINED_PAIR.findall(piece))
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
