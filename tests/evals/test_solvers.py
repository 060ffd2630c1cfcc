"""Every task end to end offline: the scripted solvers through the RLM and the real REPL
child. The right solver scores 1.0 (proving generator, scorer and harness agree), the wrong
one less (proving the scorer can fail). The solvers get the example with its gold blanked
out, so what they answer comes from reading ``context``."""

from __future__ import annotations

import dataclasses

import pytest

from rlm_async import RLM, ConfigurationError
from rlm_async._types import Message
from rlm_async.evals import SOLVERS, TASKS, Example, get_solvers
from rlm_async.providers._base import CompletionRequest
from rlm_async.testing import ScriptedModel


def blind(example: Example) -> Example:
    return dataclasses.replace(example, gold=None)


async def run_rlm(example: Example, *, wrong: bool = False) -> tuple[str, int]:
    """The answer and the number of sub-calls of an RLM run with the scripted models."""
    solvers = SOLVERS[example.task]
    root = (solvers.wrong_solver if wrong else solvers.solver)(blind(example))
    sub = ScriptedModel(solvers.sub_solver(blind(example)), name="sub")
    async with RLM(model=ScriptedModel(root, name="root"), sub_model=sub) as rlm:
        result = await rlm.completion(example.context, example.query)
    return result.answer, len(sub.requests)


def examples() -> list[Example]:
    """One 8k example of each kind of question of each task (a number or a uuid for
    S-NIAH, six OOLONG questions, two pair conditions)."""
    kinds = {"sniah": 2, "oolong": 6, "oolong-pairs": 2, "multidoc": 1}
    found: dict[str, Example] = {}
    for name in SOLVERS:
        task = TASKS[name]
        for seed in range(60):
            example = task.generate(seed, 8_000)
            found.setdefault(f"{name}:{example.meta.get('kind', '')}", example)
            if sum(key.startswith(f"{name}:") for key in found) == kinds[name]:
                break
    assert len(found) == sum(kinds.values())
    return [found[key] for key in sorted(found)]


@pytest.mark.parametrize(
    "example", examples(), ids=lambda e: f"{e.task}-{e.meta.get('kind', '')}".rstrip("-")
)
async def test_the_right_solver_scores_one_and_the_wrong_one_less(example: Example) -> None:
    task = TASKS[example.task]
    answer, subcalls = await run_rlm(example)
    assert task.score(answer, example) == 1.0, answer
    assert subcalls >= 1  # the strategy reads with sub-calls, as the paper's RLM does
    wrong, _ = await run_rlm(example, wrong=True)
    assert task.score(wrong, example) < 1.0, wrong


async def test_one_scripted_model_can_be_root_and_sub_model() -> None:
    example = TASKS["oolong"].generate(3, 16_000)
    solvers = get_solvers("oolong")
    model = ScriptedModel(solvers.solver(blind(example)))
    async with RLM(model=model) as rlm:
        result = await rlm.completion(example.context, example.query)
    assert TASKS["oolong"].score(result.answer, example) == 1.0
    assert any(request.system is None for request in model.requests)  # it read sub-calls


def direct_request(example: Example, fraction: float = 1.0) -> CompletionRequest:
    """The direct call's request: the context (cut to ``fraction``) and the query."""
    text = example.context if isinstance(example.context, str) else "\n\n".join(example.context)
    text = text[: int(len(text) * fraction)]
    return CompletionRequest(
        model="direct", messages=[Message(role="user", content=f"{text}\n\n{example.query}")]
    )


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_the_direct_solver_reads_what_the_prompt_shows(name: str) -> None:
    task, solvers = TASKS[name], SOLVERS[name]
    example = task.generate(4, 32_000)
    read = solvers.direct_solver(blind(example))
    assert task.score(read(direct_request(example)), example) == 1.0


def test_a_truncated_direct_prompt_loses_what_was_cut() -> None:
    # The paper's base rows: a context cut to the window answers from what is left.
    task, solvers = TASKS["oolong"], SOLVERS["oolong"]
    scores = []
    for seed in range(5):
        example = task.generate(seed, 32_000)
        read = solvers.direct_solver(blind(example))
        scores.append(task.score(read(direct_request(example, fraction=0.25)), example))
    assert sum(scores) / len(scores) < 0.5


def test_get_solvers_knows_every_generated_task() -> None:
    assert set(SOLVERS) == set(TASKS) - {"oolong-synth"}
    assert get_solvers("sniah") is SOLVERS["sniah"]
    with pytest.raises(ConfigurationError, match="cannot run offline"):
        get_solvers("oolong-synth")
