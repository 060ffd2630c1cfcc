"""Multi-document QA over N synthetic documents, BrowseComp-Plus-like: a chain of facts.

BrowseComp-Plus (the RLM paper's 1K-document setting) asks questions whose answer takes
facts from several documents of a fixed corpus. Here the context is a list of made-up
encyclopedia entries (organisations, people, towns) and the question is a two-hop chain:
the organisation founded in year Y with its headquarters in town C (one document; another
organisation in C, founded another year, comes first to catch a careless reader) names its
founder, whose own entry gives the town they were born in (a second document). Scored by
exact match of the town the answer names (towns named in the question do not count).
"""

from __future__ import annotations

import random
import re

from rlm_async.evals._answers import answer_part, normalise
from rlm_async.evals._filler import made_up_words, sentence_pool
from rlm_async.evals._scripting import Responder, prompt_text, root_responder
from rlm_async.evals._sizes import CHARS_PER_TOKEN, check_size, task_rng
from rlm_async.evals._task import Example, Solvers, example_id
from rlm_async.providers._base import CompletionRequest

__all__ = ["MULTIDOC_SOLVERS", "MultiDocTask"]

# Made-up words end in a vowel: a town's consonant suffix marks it in any text.
_TOWN_SUFFIXES = ("holm", "wick", "stead", "vik", "burg", "dorf")
_TOWN = re.compile(r"\b[A-Z][a-z]*(?:" + "|".join(_TOWN_SUFFIXES) + r")\b")
_KINDS = ("Foundry", "Labs", "Works", "Institute", "Trading", "Mills", "Press", "Textiles")
_SECTORS = ("shipbuilding", "publishing", "textile", "instrument-making", "brewing", "printing")
_JOBS = ("engineer", "merchant", "painter", "chemist", "cartographer", "weaver", "printer")
_RIVERS = ("Ola", "Mera", "Tisa", "Vela", "Runa", "Desa")


def _doc_org(rng: random.Random, name: str, year: int, founder: str, hq: str) -> str:
    return (
        f"Title: {name}\n{name} is a {rng.choice(_SECTORS)} company. It was founded in {year} "
        f"by {founder}. Its headquarters are in {hq}. It employs {rng.randint(20, 9_000):,} "
        "people."
    )


def _doc_person(rng: random.Random, name: str, town: str, elsewhere: str) -> str:
    return (
        f"Title: {name}\n{name} is a {rng.choice(_JOBS)}. {name.split()[0]} was born in {town} "
        f"in {rng.randint(1890, 1990)} and later moved to {elsewhere}."
    )


def _doc_town(rng: random.Random, name: str) -> str:
    return (
        f"Title: {name}\n{name} is a town on the {rng.choice(_RIVERS)} river with "
        f"{rng.randint(800, 90_000):,} inhabitants."
    )


class MultiDocTask:
    """Two-hop questions over many documents (BrowseComp-Plus-like); see the module
    docstring."""

    name = "multidoc"
    metric = "exact match of the town named (normalised)"

    def generate(self, seed: int, size: int) -> Example:
        """Documents totalling about ``size`` tokens and one two-hop question."""
        check_size(size)
        rng = task_rng(self.name, seed, size)
        chars = size * CHARS_PER_TOKEN
        estimate = max(chars // 900 // 2, 8)
        towns = [w.capitalize() + rng.choice(_TOWN_SUFFIXES) for w in made_up_words(rng, estimate)]
        first, last = made_up_words(rng, estimate), made_up_words(rng, estimate, (3, 4))
        people = [f"{a.capitalize()} {b.capitalize()}" for a, b in zip(first, last, strict=True)]
        orgs = [f"{w.capitalize()} {rng.choice(_KINDS)}" for w in made_up_words(rng, estimate)]
        hq, founder, decoy_founder = towns[0], people[0], people[1]
        year, decoy_year = rng.sample(range(1850, 2015), 2)
        birthplace, decoy_birthplace = towns[1], towns[2]
        docs = [
            _doc_org(rng, orgs[1], decoy_year, decoy_founder, hq),
            _doc_org(rng, orgs[0], year, founder, hq),
            _doc_person(rng, founder, birthplace, rng.choice(towns[3:])),
            _doc_person(rng, decoy_founder, decoy_birthplace, rng.choice(towns)),
        ]
        pool = sentence_pool(rng, 1_000)
        docs = [_pad(rng, doc, pool) for doc in docs]
        total = sum(len(d) for d in docs)
        made = 2  # entities 0 and 1 of each kind are the chain's
        while total < chars:  # padded entries are at most 1,500 characters: a small overshoot
            n = made // 3 % (estimate - 2) + 2
            kind = made % 3
            made += 1
            if kind == 0:
                other = rng.choice(towns[3:])  # only the chain's two organisations are in hq
                doc = _doc_org(rng, orgs[n], rng.randint(1850, 2015), people[n], other)
            elif kind == 1:
                doc = _doc_person(rng, people[n], rng.choice(towns), rng.choice(towns))
            else:
                doc = _doc_town(rng, towns[n])
            docs.append(_pad(rng, doc, pool))
            total += len(docs[-1])
        order = rng.sample(range(len(docs)), len(docs))
        # The decoy organisation (docs[0]) comes before the right one (docs[1]).
        a, b = order.index(0), order.index(1)
        if a > b:
            order[a], order[b] = order[b], order[a]
        docs = [docs[i] for i in order]
        return Example(
            id=example_id(self.name, size, seed),
            task=self.name,
            size=size,
            seed=seed,
            context=docs,
            query=(
                f"Among the documents, find the organisation that was founded in {year} and "
                f"has its headquarters in {hq}. In which town was its founder born? Answer "
                "with the town's name only."
            ),
            gold=birthplace,
            meta={
                "documents": len(docs),
                "year": year,
                "headquarters": hq,
                "organisation": orgs[0],
                "founder": founder,
                "chain": [order.index(1), order.index(2)],
                "decoy": {"organisation": orgs[1], "founder": decoy_founder},
            },
        )

    def score(self, answer: str, example: Example) -> float:
        """1.0 when the answer names the gold town and no other town (those in the question
        aside; of several, the one it says the founder was born in)."""
        named_in_query = {t.lower() for t in _TOWN.findall(example.query)}
        for text in (answer_part(answer), answer):
            towns = {t.lower() for t in _TOWN.findall(text)} - named_in_query
            if len(towns) > 1:
                # "born in X and later moved to Y" names X as the answer; "X or Y" hedges.
                born = {t.lower() for t in re.findall(rf"born in ({_TOWN.pattern})", text)}
                towns = born if len(born) == 1 else towns
            if towns:
                return 1.0 if towns == {str(example.gold).lower()} else 0.0
        # A bare name in lower case ("tolowick."): the capitalised pattern misses it.
        return 1.0 if normalise(answer_part(answer)) == str(example.gold).lower() else 0.0


def _pad(rng: random.Random, doc: str, pool: list[str]) -> str:
    """The entry's facts followed by filler sentences, to 300-1,500 characters."""
    target = rng.randint(300, 1_500)
    sentences = [doc]
    length = len(doc)
    while length < target:
        sentence = rng.choice(pool)
        sentences.append(sentence)
        length += len(sentence) + 1
    return " ".join(sentences)


_CODE = """
year, hq = {year!r}, {hq!r}
print(len(context), "documents")
orgs = [
    d for d in context if f"founded in {{year}} by" in d and f"headquarters are in {{hq}}." in d
]
print(len(orgs), "organisation(s) match:", [d[:80] for d in orgs])
founder = re.search(r"by ([A-Z][a-z]+ [A-Z][a-z]+)\\.", orgs[0]).group(1)
entry = [d for d in context if d.startswith("Title: " + founder + "\\n")][0]
answer = llm_query(
    "In which town was " + founder + " born? Answer with the town only.\\n\\n" + entry
).strip()
print(founder, "->", answer)
"""

_WRONG_CODE = """
hq = {hq!r}
# The mistake: the year is ignored, so the first organisation in hq is taken.
orgs = [d for d in context if f"headquarters are in {{hq}}." in d]
founder = re.search(r"by ([A-Z][a-z]+ [A-Z][a-z]+)\\.", orgs[0]).group(1)
entry = [d for d in context if d.startswith("Title: " + founder + "\\n")][0]
answer = llm_query(
    "In which town was " + founder + " born? Answer with the town only.\\n\\n" + entry
).strip()
"""


def _born_in(text: str, person: str) -> str | None:
    found = re.search(
        rf"Title: {re.escape(person)}\n.*?{re.escape(person.split()[0])} was born in (\w+)",
        text,
        re.DOTALL,
    )
    return found.group(1) if found else None


def _sub(example: Example) -> Responder:
    del example  # the prompt holds the entry to read

    def read(request: CompletionRequest) -> str:
        text = prompt_text(request)
        asked = re.search(r"In which town was ([A-Z][a-z]+ [A-Z][a-z]+) born", text)
        found = _born_in(text, asked.group(1)) if asked else None
        return found or "The text does not say."

    return read


def _solver(example: Example) -> Responder:
    meta = example.meta
    code = _CODE.format(year=meta["year"], hq=meta["headquarters"])
    plan = (
        "I'll find the organisation's entry by its year and headquarters, take its founder, "
        "and have a sub-model read the founder's own entry."
    )
    return root_responder(plan, code, _sub(example))


def _wrong_solver(example: Example) -> Responder:
    code = _WRONG_CODE.format(hq=example.meta["headquarters"])
    return root_responder("I'll look for the organisation in that town.", code, _sub(example))


def _direct(example: Example) -> Responder:
    year, hq = example.meta["year"], example.meta["headquarters"]

    def read(request: CompletionRequest) -> str:
        text = prompt_text(request)
        org = re.search(
            rf"founded in {year} by ([A-Z][a-z]+ [A-Z][a-z]+)\. Its headquarters are in {hq}\.",
            text,
        )
        town = _born_in(text, org.group(1)) if org else None
        return f"The founder was born in {town}." if town else "I cannot tell from the text."

    return read


MULTIDOC_SOLVERS = Solvers(
    solver=_solver, sub_solver=_sub, wrong_solver=_wrong_solver, direct_solver=_direct
)
