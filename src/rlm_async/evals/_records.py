"""OOLONG-style records: dated user messages, each a question of one TREC coarse class.

As in OOLONG-synth's ``trec_coarse`` split, a line reads
``Date: Mar 14, 2023 || User: 48213 || Instance: Where is Tolovi located?`` and the label
(the question's class) is not written: answering needs every record classified. The
instances come from a few templates per class, so that each is unambiguous to a reader (and
to :func:`classify`, which stands in for the sub-model's reading in the scripted runs).
"""

from __future__ import annotations

import datetime
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from rlm_async.evals._filler import made_up_words
from rlm_async.evals._scripting import Responder, prompt_text
from rlm_async.evals._sizes import CHARS_PER_TOKEN
from rlm_async.evals._task import Example
from rlm_async.providers._base import CompletionRequest

__all__ = [
    "LABELS",
    "LABEL_PATTERNS",
    "RECORDS_INTRO",
    "RECORD_FORMAT",
    "Record",
    "classify",
    "classify_code",
    "classify_responder",
    "draw_records",
    "make_records",
    "parse_records",
    "user_ids",
]

#: The six TREC coarse classes, named as OOLONG-synth names them.
LABELS = (
    "abbreviation",
    "entity",
    "description and abstract concept",
    "human being",
    "location",
    "numeric value",
)
#: How an answer names each label ("numeric" for "numeric value", "human" for "human being").
LABEL_PATTERNS = {
    "abbreviation": re.compile(r"(?i)\babbreviations?\b"),
    "entity": re.compile(r"(?i)\bentit(?:y|ies)\b"),
    "description and abstract concept": re.compile(r"(?i)\bdescriptions?\b"),
    "human being": re.compile(r"(?i)\bhumans?\b"),
    "location": re.compile(r"(?i)\blocations?\b"),
    "numeric value": re.compile(r"(?i)\bnumeric\b"),
}
RECORD_FORMAT = "Date: <Mon DD, YYYY> || User: <5-digit id> || Instance: <a question>"
#: How a question about the records begins: their format, the categories, and that each
#: record's category is to be read from its text.
RECORDS_INTRO = (
    f"The context is a list of records, one per line: {RECORD_FORMAT}. Each instance is a "
    "question that belongs to exactly one of these categories (the coarse question "
    f"classes of TREC): {', '.join(LABELS)}. The categories are not written in the data: "
    "decide each instance's category from its text."
)

_TEMPLATES = {
    "abbreviation": (
        "What does the abbreviation {U} stand for?",
        "What is the full form of {U}?",
        "Expand the acronym {U}.",
    ),
    "entity": (
        "What breed of dog is a {w}?",
        "Which instrument does {P} play?",
        "What color is the flag of {C}?",
        "Name a fruit that grows in {C}.",
    ),
    "description and abstract concept": (
        "Why do people in {C} celebrate {w}?",
        "How does a {w} work?",
        "What is the meaning of the word {w}?",
        "Describe the rules of {w}.",
    ),
    "human being": (
        "Who invented the {w}?",
        "Who was the first mayor of {C}?",
        "Which author wrote the novel {T}?",
        "Who painted the portrait of {P}?",
    ),
    "location": (
        "Where is {C} located?",
        "In which country is the city of {C}?",
        "What river runs through {C}?",
        "Where can you buy a {w}?",
    ),
    "numeric value": (
        "How many {w}s are sold in {C} each year?",
        "When was {C} founded?",
        "How far is {C} from {C}?",
        "What is the population of {C}?",
    ),
}
_SLOTS = {
    "U": "[A-Z]{2,5}",
    "w": "[a-z]+",
    "C": "[A-Z][a-z]+",
    "T": "[A-Z][a-z]+",
    "P": "[A-Z][a-z]+ [A-Z][a-z]+",
}
_CLASSIFIERS = [
    (re.compile(re.sub(r"\\\{(\w)\\\}", lambda m: _SLOTS[m.group(1)], re.escape(t))), label)
    for label, templates in _TEMPLATES.items()
    for t in templates
]
_FIRST = datetime.date(2022, 1, 1)
_DAYS = [_FIRST + datetime.timedelta(days=n) for n in range(3 * 365 + 1)]
_DATES = [day.strftime("%b %d, %Y") for day in _DAYS]
_LINE = re.compile(r"Date: (\w{3} \d{2}, \d{4}) \|\| User: (\d{5}) \|\| Instance: (.*)")


@dataclass(frozen=True)
class Record:
    """One record: its date, user and instance, and the label the text does not show."""

    date: datetime.date
    user: str
    text: str
    label: str

    @property
    def line(self) -> str:
        return f"Date: {self.date:%b %d, %Y} || User: {self.user} || Instance: {self.text}"


def user_ids(rng: random.Random, count: int) -> list[str]:
    """``count`` distinct 5-digit user ids."""
    return [str(n) for n in rng.sample(range(10_000, 100_000), count)]


def make_records(
    rng: random.Random, chars: int, users: Sequence[str], weights: Sequence[float]
) -> list[Record]:
    """Records totalling about ``chars`` characters as lines (newlines counted); labels drawn
    with ``weights`` (in the order of :data:`LABELS`), users uniformly."""
    fillers = {
        "w": made_up_words(rng, 400),
        "C": [w.capitalize() for w in made_up_words(rng, 300)],
        "T": [w.capitalize() for w in made_up_words(rng, 200, (3, 5))],
        "P": [
            f"{a.capitalize()} {b.capitalize()}"
            for a, b in zip(made_up_words(rng, 200), made_up_words(rng, 200, (3, 4)), strict=True)
        ],
    }
    records: list[Record] = []
    total = 0
    while total < chars:
        label = rng.choices(LABELS, weights)[0]
        template = rng.choice(_TEMPLATES[label])
        text = re.sub(
            r"\{(\w)\}",
            lambda m: (
                "".join(rng.choices("ABCDEFGHIJKLMNOPRSTUVW", k=rng.randint(2, 4)))
                if m.group(1) == "U"
                else rng.choice(fillers[m.group(1)])
            ),
            template,
        )
        day = rng.randrange(len(_DAYS))
        record = Record(_DAYS[day], rng.choice(users), text, label)
        records.append(record)
        total += len(_DATES[day]) + len(record.user) + len(text) + 31
    return records


def draw_records(
    rng: random.Random, size: int, *, records_per_user: int, users: tuple[int, int]
) -> tuple[list[Record], int]:
    """Records totalling about ``size`` tokens, and how many users wrote them: a user for
    about every ``records_per_user`` records, within the bounds ``users`` (least, most);
    labels weighted at random."""
    chars = size * CHARS_PER_TOKEN
    least, most = users
    # A record's line is about 85 characters.
    ids = user_ids(rng, min(max(chars // 85 // records_per_user, least), most))
    weights = [rng.uniform(0.3, 1.0) for _ in LABELS]
    return make_records(rng, chars, ids, weights), len(ids)


def parse_records(text: str) -> list[tuple[str, str, str]]:
    """``(date, user, instance)`` of every record line in ``text``."""
    return [
        (m.group(1), m.group(2), m.group(3))
        for line in text.splitlines()
        if (m := _LINE.search(line)) is not None
    ]


def classify(instance: str) -> str | None:
    """The label of an instance written by the generator's templates (``None`` for other
    text): the scripted sub-model's reading comprehension."""
    for pattern, label in _CLASSIFIERS:
        if pattern.fullmatch(instance.strip()):
            return label
    return None


def classify_responder(example: Example) -> Responder:
    """A scripted sub-model for classification prompts: for each line ``N. <instance>`` of
    the prompt, answers a line ``N: <label>``."""
    del example  # the prompt holds everything a reader needs

    def read(request: CompletionRequest) -> str:
        lines = re.findall(r"(?m)^(\d+)\. (.+)$", prompt_text(request))
        return "\n".join(f"{n}: {classify(text) or 'unknown'}" for n, text in lines)

    return read


_CLASSIFY_CODE = """
records = [
    m.groups()
    for line in context.splitlines()
    if (m := re.match(r"Date: (.+?) \\|\\| User: (\\d+) \\|\\| Instance: (.*)", line))
]
print(f"{len(records):,} records")
LABELS = {labels!r}
{part}batches = [records[i:i + 400] for i in range(0, len(records), 400)]
prompts = [
    "Classify each question below into exactly one of these categories: "
    + ", ".join(LABELS)
    + ". Answer with one line per question, as '<number>: <category>'.\\n\\n"
    + "\\n".join(f"{n + 1}. {r[2]}" for n, r in enumerate(batch))
    for batch in batches
]
replies = llm_query_batched(prompts)
labels = []
for batch, reply in zip(batches, replies):
    got = {int(n): lab.strip() for n, lab in re.findall(r"(?m)^(\\d+): (.+)$", reply)}
    labels += [got.get(n + 1, "unknown") for n in range(len(batch))]
records = records[: len(labels)]
print("labels:", {lab: labels.count(lab) for lab in LABELS})
""".replace("{labels!r}", repr(list(LABELS)))


def classify_code(*, half: bool = False) -> str:
    """The REPL code (for the scripted root models) that reads every record and has
    sub-models classify them in batches: leaves ``records`` (date, user, instance) and
    ``labels`` in the REPL. With ``half``, the mistake of classifying only the first half."""
    half_only = "records = records[: len(records) // 2]  # (only the first half is read)\n"
    return _CLASSIFY_CODE.replace("{part}", half_only if half else "")
