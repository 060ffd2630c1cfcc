"""S-NIAH: one needle (a key -> value fact) in a haystack of filler, from 8K to 1M tokens.

As the RLM paper's S-NIAH (after RULER's single-needle task): the context is filler text
with one line "The special magic number for <key> is: <value>." and the query asks for the
value of that key. A few distractor needles with other keys make a grep for "magic number"
alone not enough: the key must match. Scored by exact match of the value the answer gives.
"""

from __future__ import annotations

import random
import re

from rlm_async.evals._answers import answer_part
from rlm_async.evals._filler import filler_lines
from rlm_async.evals._scripting import Responder, prompt_text, root_responder
from rlm_async.evals._sizes import CHARS_PER_TOKEN, check_size, task_rng
from rlm_async.evals._task import Example, Solvers, example_id
from rlm_async.providers._base import CompletionRequest

__all__ = ["SNIAH_SOLVERS", "SNiahTask"]

_ADJECTIVES = (
    "amber", "brisk", "cobalt", "dusky", "eager", "frosty", "gilded", "hollow", "ivory",
    "jade", "keen", "lunar", "mossy", "nimble", "onyx", "placid", "quiet", "russet", "silver",
    "tawny", "umber", "velvet", "wistful", "young", "zesty",
)  # fmt: skip
_NOUNS = (
    "falcon", "harbor", "lantern", "meadow", "otter", "pebble", "quarry", "raven", "saddle",
    "thicket", "umbrella", "violin", "walrus", "yarrow", "zephyr", "anchor", "bramble",
    "candle", "dolphin", "ember", "fjord", "glacier", "heron", "island", "juniper",
)  # fmt: skip
_NEEDLE = "The special magic {kind} for {key} is: {value}."
_DISTRACTORS = 3
_SHAPES = {
    # The values are 7-digit numbers (thousands separators allowed): other numbers an answer
    # mentions (a line number, a year) are not values it gives.
    "number": re.compile(r"(?<!\d)(?<!\d,)(?:\d{7}|\d,\d{3},\d{3})(?!\d|,\d)"),
    "uuid": re.compile(
        r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    ),
}


def _value(kind: str, rng: random.Random) -> str:
    if kind == "number":
        return str(rng.randint(1_000_000, 9_999_999))
    hexes = f"{rng.getrandbits(128):032x}"
    return f"{hexes[:8]}-{hexes[8:12]}-{hexes[12:16]}-{hexes[16:20]}-{hexes[20:]}"


class SNiahTask:
    """Single needle in a haystack (the paper's S-NIAH); see the module docstring."""

    name = "sniah"
    metric = "exact match of the needle's value (normalised)"

    def generate(self, seed: int, size: int) -> Example:
        """A haystack of about ``size`` tokens with one needle and a few distractors."""
        check_size(size)
        rng = task_rng(self.name, seed, size)
        kind = rng.choice(("number", "uuid"))
        keys = rng.sample([f"{a}-{n}" for a in _ADJECTIVES for n in _NOUNS], 1 + _DISTRACTORS)
        needles = [_NEEDLE.format(kind=kind, key=key, value=_value(kind, rng)) for key in keys]
        budget = size * CHARS_PER_TOKEN - sum(len(n) + 1 for n in needles)
        lines = filler_lines(rng, budget)
        positions = sorted(rng.sample(range(len(lines) + 1), len(needles)), reverse=True)
        order = rng.sample(range(len(needles)), len(needles))
        placed = {}
        for position, index in zip(positions, order, strict=True):
            lines.insert(position, needles[index])
            placed[index] = position
        # Insertions from the back keep earlier positions valid; the needle's own line is
        # then ahead of exactly the needles placed before it.
        needle_line = placed[0] + sum(1 for i, p in placed.items() if i != 0 and p < placed[0])
        key = keys[0]
        value = needles[0].rsplit(": ", 1)[1].rstrip(".")
        return Example(
            id=example_id(self.name, size, seed),
            task=self.name,
            size=size,
            seed=seed,
            context="\n".join(lines),
            query=(
                f"What is the special magic {kind} for {key} mentioned in the provided text? "
                f"Answer with the {kind} only."
            ),
            gold=value,
            meta={
                "key": key,
                "kind": kind,
                "line": needle_line,
                "depth": round(needle_line / max(len(lines) - 1, 1), 4),
                "distractor_keys": keys[1:],
            },
        )

    def score(self, answer: str, example: Example) -> float:
        """1.0 when the answer gives the needle's value and no other value of its shape."""
        return 1.0 if _values_given(answer, example) == {str(example.gold).lower()} else 0.0


def _values_given(answer: str, example: Example) -> set[str]:
    shape = _SHAPES[example.meta["kind"]]
    for text in (answer_part(answer), answer):
        found = {m.group(0).replace(",", "").lower() for m in shape.finditer(text)}
        if found:
            return found
    return set()


def _needle_pattern(kind: str, key: str) -> str:
    return rf"special magic {kind} for {re.escape(key)} is: ([0-9A-Za-z-]+)"


_CODE = """
key = {key!r}
lines = [line for line in context.splitlines() if "magic" in line]
print(f"{{len(context):,}} characters; {{len(lines)}} lines mention a magic {kind}")
mine = [line for line in lines if key in line]
answer = llm_query(
    "What is the special magic {kind} for " + key + "? Reply with the {kind} only.\\n\\n"
    + "\\n".join(mine)
).strip()
print("the sub-model read", mine, "and answered", answer)
"""

_WRONG_CODE = """
lines = [line for line in context.splitlines() if "magic" in line]
print(lines)
# The mistake: the first magic line that is NOT the asked key's (a model confusing keys).
other = [line for line in lines if {key!r} not in line][0]
answer = re.search(r"is: ([0-9A-Za-z-]+)", other).group(1)
"""


def _sub(example: Example) -> Responder:
    def read(request: CompletionRequest) -> str:
        found = re.search(
            _needle_pattern(example.meta["kind"], example.meta["key"]), prompt_text(request)
        )
        return found.group(1) if found else "NONE"

    return read


def _solver(example: Example) -> Responder:
    code = _CODE.format(key=example.meta["key"], kind=example.meta["kind"])
    plan = "I'll find the lines that mention a magic value, keep the one for the key, and "
    plan += "have a sub-model read it."
    return root_responder(plan, code, _sub(example))


def _wrong_solver(example: Example) -> Responder:
    code = _WRONG_CODE.format(key=example.meta["key"])
    return root_responder("I'll grep for the magic line.", code, _sub(example))


SNIAH_SOLVERS = Solvers(
    solver=_solver, sub_solver=_sub, wrong_solver=_wrong_solver, direct_solver=_sub
)
