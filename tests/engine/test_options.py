"""Options as one value: ``RLMOptions``, per-call overrides and ``with_options`` views."""

from __future__ import annotations

import pydantic
import pytest

from rlm_async import RLM, Budget, ConfigurationError, RLMOptions
from rlm_async.testing import ScriptedModel
from tests.helpers import repl


def turns(model: ScriptedModel) -> int:
    return len(model.requests)


async def test_per_call_options_apply_to_that_call_only() -> None:
    root = ScriptedModel([repl("x = 1"), "FINAL(a)", repl("x = 1"), repl("x = 2"), "FINAL(b)"])
    async with RLM(model=root, max_iterations=5) as rlm:
        first = await rlm.completion("ctx", "q", options={"max_iterations": 1})
        second = await rlm.completion("ctx", "q")
    # One iteration, then the last turn: the answer came from the final-turn prompt.
    assert (first.answer, first.iterations) == ("a", 2)
    assert "final" in root.requests[1].messages[-1].content.lower()
    assert (second.answer, second.iterations) == ("b", 3)
    assert rlm.max_iterations == 5


async def test_an_options_value_can_be_passed_whole() -> None:
    root = ScriptedModel([repl("print(1)"), "FINAL(a)"])
    async with RLM(model=root) as rlm:
        result = await rlm.completion("ctx", "q", options=RLMOptions(max_output_chars=100))
    assert result.answer == "a"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_iteratons": 3}, "unknown option.*'max_iteratons'.*max_iterations"),
        ({"max_iterations": 0}, "max_iterations"),
        ({"budget": {"max_seconds": 1}}, "budget must be a rlm_async.Budget"),
        (["max_iterations"], "RLMOptions or a dict"),
    ],
)
async def test_bad_per_call_options_are_configuration_errors_naming_the_field(
    options: object, message: str
) -> None:
    async with RLM(model=ScriptedModel(["FINAL(x)"])) as rlm:
        with pytest.raises(ConfigurationError, match=message):
            await rlm.completion("ctx", "q", options=options)  # type: ignore[arg-type]


async def test_with_options_is_a_view_sharing_the_rlms_resources() -> None:
    root = ScriptedModel([repl("x = 1"), "FINAL(a)"])
    rlm = RLM(model=root, max_iterations=5)
    quick = rlm.with_options(max_iterations=1, budget=Budget(max_subcalls=3))
    assert (quick.max_iterations, quick.budget.max_subcalls) == (1, 3)
    assert (rlm.max_iterations, rlm.budget.max_subcalls) == (5, None)
    assert quick.model == rlm.model
    async with rlm:
        result = await quick.completion("ctx", "q")
    assert result.iterations == 2  # one iteration and the last turn
    assert quick.closed  # closing the RLM closed its view: they share clients and REPLs
    with pytest.raises(ConfigurationError, match="closed"):
        await quick.completion("ctx", "q")


def test_keyword_arguments_win_over_an_options_value() -> None:
    rlm = RLM(
        model=ScriptedModel(["x"]),
        options=RLMOptions(max_iterations=3, max_depth=2),
        max_iterations=7,
    )
    assert (rlm.max_iterations, rlm.max_depth) == (7, 2)
    assert rlm.options.max_iterations == 7


def test_an_options_value_is_immutable() -> None:
    options = RLMOptions()
    with pytest.raises(pydantic.ValidationError):
        options.max_iterations = 3  # type: ignore[misc]
    assert options.merged({"max_iterations": 3}).max_iterations == 3
    assert options.max_iterations == 20
