"""The generators: seeded, the size asked for, and a gold that the context really implies.

The gold is recomputed here from the generated context alone, with parsers and a classifier
of the test's own (keyword rules, not the generator's templates), so a generator that wrote
a gold its context does not support fails.
"""

from __future__ import annotations

import itertools
import re
import time
from collections import Counter

import pytest

from rlm_async import ConfigurationError
from rlm_async.evals import SOLVERS, TASKS, Example, Task, format_size, get_task, parse_size

SIZES = [8_000, 32_000, 128_000]
GENERATED = sorted(SOLVERS)  # the tasks generated here (oolong-synth loads published rows)


def context_chars(example: Example) -> int:
    if isinstance(example.context, str):
        return len(example.context)
    return sum(len(doc) for doc in example.context)


@pytest.mark.parametrize("name", GENERATED)
def test_the_same_seed_makes_the_same_example_and_another_seed_another(name: str) -> None:
    task = TASKS[name]
    first, again, other = task.generate(1, 8_000), task.generate(1, 8_000), task.generate(2, 8_000)
    assert first == again
    assert first.context != other.context
    assert first.id == f"{name}-8k-s1"
    assert isinstance(task, Task)


@pytest.mark.parametrize("name", GENERATED)
@pytest.mark.parametrize("size", SIZES)
def test_the_context_is_the_size_asked_for_within_ten_percent(name: str, size: int) -> None:
    example = TASKS[name].generate(0, size)
    assert 0.9 <= context_chars(example) / 4 / size <= 1.1
    assert example.size == size


@pytest.mark.parametrize("name", GENERATED)
def test_a_million_tokens_is_generated_in_a_few_seconds(name: str) -> None:
    # CPU time of this thread, not wall time: other processes on a busy machine (a CI
    # runner, the tests in parallel) stretch the wall clock, never this.
    started = time.thread_time()
    example = TASKS[name].generate(0, 1_000_000)
    elapsed = time.thread_time() - started
    assert 0.9 <= context_chars(example) / 4_000_000 <= 1.1
    # Under a second here (0.05 to 0.7 s); the bound leaves room for a slow machine.
    assert elapsed < 5


# --- S-NIAH -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_sniah_gold_is_the_asked_keys_value(seed: int) -> None:
    example = TASKS["sniah"].generate(seed, 16_000)
    assert isinstance(example.context, str)
    needles = re.findall(r"The special magic (\w+) for ([\w-]+) is: ([\w-]+)\.", example.context)
    values = {key: value for _, key, value in needles}
    asked = re.search(r"magic \w+ for ([\w-]+) mentioned", example.query)
    assert asked is not None
    assert len(needles) == 4 and len(values) == 4  # the needle and three distractors
    assert values[asked.group(1)] == example.gold
    assert example.context.splitlines()[example.meta["line"]].endswith(f"{example.gold}.")


# --- OOLONG --------------------------------------------------------------------------------

LINE = re.compile(r"Date: (\w+) (\d+), (\d{4}) \|\| User: (\d+) \|\| Instance: (.+)")


def label_of(text: str) -> str:
    """The test's own reading of an instance: keyword rules."""
    lowered = text.lower()
    if "abbreviation" in lowered or "full form" in lowered or "acronym" in lowered:
        return "abbreviation"
    if any(k in lowered for k in ("breed of dog", "instrument", "color", "fruit")):
        return "entity"
    if lowered.startswith(("why", "how does", "what is the meaning", "describe")):
        return "description and abstract concept"
    if lowered.startswith(("who", "which author")):
        return "human being"
    if lowered.startswith(("where", "in which country", "what river")):
        return "location"
    if lowered.startswith(("how many", "when was", "how far")) or "population" in lowered:
        return "numeric value"
    raise AssertionError(f"no rule reads {text!r}")


def rows_of(example: Example) -> list[tuple[str, str, str, str]]:
    """(month, year, user, label) of every record line."""
    assert isinstance(example.context, str)
    rows = []
    for line in example.context.splitlines():
        match = LINE.fullmatch(line)
        assert match is not None, line
        month, _, year, user, text = match.groups()
        rows.append((month, year, user, label_of(text)))
    return rows


def oolong_examples() -> list[Example]:
    """Examples covering every kind of question."""
    found: dict[str, Example] = {}
    for seed in range(60):
        example = TASKS["oolong"].generate(seed, 8_000)
        found.setdefault(example.meta["kind"], example)
    assert len(found) == 6, sorted(found)
    return list(found.values())


@pytest.mark.parametrize("example", oolong_examples(), ids=lambda e: e.meta["kind"])
def test_oolong_gold_is_what_every_record_says(example: Example) -> None:
    rows = rows_of(example)
    kind, query = example.meta["kind"], example.query
    user = re.search(r"user (\d{5})", query)
    month = re.search(r"dated in (\w+) (\d{4})", query)
    label = re.search(r"classified as '([a-z ]+)'", query)
    if user:
        rows = [r for r in rows if r[2] == user.group(1)]
    if month:
        rows = [r for r in rows if r[0] == month.group(1)[:3] and r[1] == month.group(2)]
    counts = Counter(r[3] for r in rows)
    if "most common" in query:
        top, top_count = counts.most_common(1)[0]
        assert list(counts.values()).count(top_count) == 1  # no tie
        expected: str | int = top
    elif "least common" in query:
        labels = ["abbreviation", "entity", "description and abstract concept"]
        labels += ["human being", "location", "numeric value"]
        expected = min(labels, key=lambda lab: counts[lab])
    else:
        assert label is not None
        expected = counts[label.group(1)]
    assert example.gold == expected, kind


# --- OOLONG-Pairs ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_oolong_pairs_gold_is_every_pair_meeting_the_condition(seed: int) -> None:
    example = TASKS["oolong-pairs"].generate(seed, 16_000)
    per_user: dict[str, Counter[str]] = {}
    for _, _, user, label in rows_of(example):
        per_user.setdefault(user, Counter())[label] += 1
    conditions = re.findall(
        r"at least (\d+) instances that should be classified as '([a-z ]+)'", example.query
    )
    if "both users" in example.query:
        ((t, label),) = conditions
        group = [u for u, c in per_user.items() if c[label] >= int(t)]
        expected = {tuple(sorted(p, key=int)) for p in itertools.combinations(group, 2)}
    else:
        (t1, l1), (t2, l2) = conditions
        one = {u for u, c in per_user.items() if c[l1] >= int(t1)}
        two = {u for u, c in per_user.items() if c[l2] >= int(t2)}
        expected = {tuple(sorted((a, b), key=int)) for a in one for b in two if a != b}
    assert expected
    assert {tuple(pair) for pair in example.gold} == expected
    assert len(example.gold) == len(expected)  # no duplicate


# --- Multi-document -------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_multidoc_gold_is_the_founders_birthplace(seed: int) -> None:
    example = TASKS["multidoc"].generate(seed, 32_000)
    docs = example.context
    assert isinstance(docs, list)
    titles = [doc.split("\n", 1)[0].removeprefix("Title: ") for doc in docs]
    assert len(set(titles)) == len(titles)
    asked = re.search(r"founded in (\d{4}) and has its headquarters in (\w+)\.", example.query)
    assert asked is not None
    year, town = asked.groups()
    in_town = [n for n, doc in enumerate(docs) if f"Its headquarters are in {town}." in doc]
    right = [n for n in in_town if f"founded in {year} by" in docs[n]]
    assert len(right) == 1 and len(in_town) == 2
    assert in_town[0] != right[0]  # the decoy comes first
    founder = re.search(r"by (\w+ \w+)\.", docs[right[0]])
    assert founder is not None
    entry = docs[titles.index(founder.group(1))]
    born = re.search(r"was born in (\w+)", entry)
    assert born is not None and born.group(1) == example.gold


# --- Registry and sizes ---------------------------------------------------------------------


def test_get_task_names_the_tasks_when_one_is_unknown() -> None:
    assert get_task("oolong") is TASKS["oolong"]
    with pytest.raises(ConfigurationError, match="sniah, oolong, oolong-pairs, multidoc"):
        get_task("browsecomp")


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("8k", 8_000),
        ("128K", 128_000),
        ("1m", 1_000_000),
        ("1.5m", 1_500_000),
        ("131072", 131_072),
        (" 32k ", 32_000),
    ],
)
def test_parse_size_reads_the_usual_forms(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "big", "12q", "k", "10"])
def test_parse_size_refuses_what_is_not_a_size(text: str) -> None:
    with pytest.raises(ConfigurationError, match="k"):
        parse_size(text)


def test_format_size_is_parse_sizes_inverse() -> None:
    for size in (8_000, 128_000, 1_000_000, 131_072):
        assert parse_size(format_size(size)) == size


@pytest.mark.parametrize("name", GENERATED)
def test_a_size_below_1k_is_a_configuration_error(name: str) -> None:
    # From Python, run_eval takes sizes in tokens: one too small for the task is said as
    # such, not a ValueError from inside the generator (S-NIAH's needles need room).
    with pytest.raises(ConfigurationError, match="at least 1k"):
        TASKS[name].generate(0, 100)
