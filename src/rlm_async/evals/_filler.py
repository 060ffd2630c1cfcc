"""Filler text and made-up names, fast enough for a million tokens in well under a second.

Made-up words are built from open syllables, so every one ends in a vowel: a name with a
consonant ending (the towns of the multi-document task) can never be filler by accident.
"""

from __future__ import annotations

import random

__all__ = ["filler_lines", "made_up_word", "made_up_words", "sentence_pool"]

_SYLLABLES = (
    "ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "pe", "da", "gu", "fo", "ze", "bi", "ma",
    "no", "ta", "le", "ri", "so",
)  # fmt: skip
_GLUE = (
    "the", "of", "and", "a", "in", "to", "was", "for", "with", "on", "by", "from", "near",
    "after", "before", "under", "over", "some", "many", "each",
)  # fmt: skip


def made_up_word(rng: random.Random, syllables: tuple[int, int] = (2, 4)) -> str:
    """One made-up lower-case word (ends in a vowel)."""
    return "".join(rng.choices(_SYLLABLES, k=rng.randint(*syllables)))


def made_up_words(rng: random.Random, count: int, syllables: tuple[int, int] = (2, 4)) -> list[str]:
    """``count`` distinct made-up words, in a seeded order."""
    words: dict[str, None] = {}
    while len(words) < count:
        words[made_up_word(rng, syllables)] = None
    return list(words)


def sentence_pool(rng: random.Random, size: int = 3_000) -> list[str]:
    """``size`` filler sentences: made-up words with English glue, capitalised, full stop."""
    words = made_up_words(rng, 1_500)
    pool = []
    for _ in range(size):
        tokens = [
            rng.choice(_GLUE) if rng.random() < 0.3 else rng.choice(words)
            for _ in range(rng.randint(6, 14))
        ]
        pool.append(" ".join(tokens).capitalize() + ".")
    return pool


def filler_lines(rng: random.Random, chars: int, pool: list[str] | None = None) -> list[str]:
    """Lines of one to three filler sentences, about ``chars`` characters in all (newlines
    counted)."""
    pool = pool if pool is not None else sentence_pool(rng)
    lines: list[str] = []
    total = 0
    while total < chars:
        # Sampling in batches keeps four million characters to a few hundred milliseconds.
        for line in (
            " ".join(rng.choices(pool, k=rng.randint(1, 3)))
            for _ in range(1 + (chars - total) // 150)
        ):
            lines.append(line)
            total += len(line) + 1
            if total >= chars:
                break
    return lines
