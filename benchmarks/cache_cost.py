"""A 10-turn run's root-model cost with and without provider prompt caching (issue 16).

``python benchmarks/cache_cost.py [--turns 10] [--system 750] [--first 250] [--reply 400]
[--output 1200]``: no network, no key. A run's root conversation grows by one turn at a time
(the model's reply, then its cells' output), so turn ``t``'s prompt is turn ``t-1``'s plus
``reply + output`` tokens. Each turn's usage is written into a *recorded* reply body of each
provider (the shapes in ``tests/providers/fixtures/recorded/``: where each reports cache reads
and writes), read back by the adapter's own parser and priced by the default price table,
exactly as a real run's turns are. What each provider caches:

- Anthropic (``cache_control`` on the system prompt and the latest turns): turn 1 writes the
  whole prompt (1.25x input); turn ``t`` reads what is stored (0.1x) and writes the rest.
- OpenAI and xAI (automatic; ``prompt_cache_key`` / ``x-grok-conv-id`` keep a run on one
  cache), Gemini (implicit): turn ``t`` reads turn ``t-1``'s prompt, counted in 128-token
  blocks (OpenAI's granularity); writes are free.

Nothing is cached below a model's minimum prompt (1,024 tokens; 4,096 for Claude Haiku 4.5
and Gemini 2.5 Pro).

Hits are the best case: a provider may evict a cache (OpenAI and Gemini after minutes idle,
Anthropic after 5 minutes unused), so a slow run pays somewhere between the two columns.
"""

from __future__ import annotations

import argparse
import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlm_async._types import Completion
from rlm_async.providers import PriceTable, anthropic, gemini
from rlm_async.providers import openai as openai_wire

RECORDED = Path(__file__).resolve().parent.parent / "tests" / "providers" / "fixtures"
BLOCK = 128


@dataclass(frozen=True)
class Turn:
    prompt: int  # input tokens of the turn's request
    read: int  # of which read from the cache
    written: int  # of which written to it
    output: int


def turns(n: int, system: int, first: int, reply: int, output: int) -> list[int]:
    """Each turn's prompt size: the conversation grows by a reply and its output per turn."""
    return [system + first + t * (reply + output) for t in range(n)]


def anthropic_turns(prompts: list[int], output: int, minimum: int, cached: bool) -> list[Turn]:
    out, stored = [], 0  # the longest prefix in the cache
    for prompt in prompts:
        if not cached or prompt < minimum:  # below the model's minimum nothing is cached
            out.append(Turn(prompt, 0, 0, output))
            continue
        # The breakpoint on the latest turn covers the whole prompt: read what is stored,
        # write the rest.
        out.append(Turn(prompt, stored, prompt - stored, output))
        stored = prompt
    return out


def automatic_turns(prompts: list[int], output: int, minimum: int, cached: bool) -> list[Turn]:
    out, previous = [], 0
    for prompt in prompts:
        read = previous // BLOCK * BLOCK if cached and previous >= minimum else 0
        out.append(Turn(prompt, read, 0, output))
        previous = prompt
    return out


# ---- a turn's usage in each provider's recorded reply body ----------------------------------


def _recorded(name: str) -> dict[str, Any]:
    """A reply body from the fixtures: an exchange file's ``body``, or a bare body."""
    raw = json.loads((RECORDED / f"{name}.json").read_text())
    body: dict[str, Any] = json.loads(raw["body"]) if "expect" in raw else raw
    return body


def _anthropic(body: dict[str, Any], turn: Turn) -> Completion:
    body = copy.deepcopy(body)
    body["usage"].update(
        input_tokens=turn.prompt - turn.read - turn.written,
        cache_read_input_tokens=turn.read,
        cache_creation_input_tokens=turn.written,
        output_tokens=turn.output,
    )
    return anthropic.from_wire(body)


def _openai_shaped(body: dict[str, Any], turn: Turn) -> Completion:
    body = copy.deepcopy(body)
    usage = body["usage"]
    usage.update(prompt_tokens=turn.prompt, completion_tokens=turn.output)
    usage["total_tokens"] = turn.prompt + turn.output
    usage["prompt_tokens_details"]["cached_tokens"] = turn.read
    usage["completion_tokens_details"]["reasoning_tokens"] = 0
    return openai_wire.from_wire(body)


def _gemini(body: dict[str, Any], turn: Turn) -> Completion:
    body = copy.deepcopy(body)
    body["usageMetadata"] = {
        "promptTokenCount": turn.prompt,
        "candidatesTokenCount": turn.output,
        "totalTokenCount": turn.prompt + turn.output,
        **({"cachedContentTokenCount": turn.read} if turn.read else {}),
    }
    return gemini.from_wire(body)


@dataclass(frozen=True)
class Case:
    provider: str
    model: str
    body: str  # the recorded reply whose shape carries the usage (under the fixtures)
    parse: Callable[[dict[str, Any], Turn], Completion]
    plan: Callable[[list[int], int, int, bool], list[Turn]]
    minimum: int  # the shortest prompt the provider caches for this model


CASES = [
    Case(
        "anthropic",
        "claude-sonnet-4-5",
        "recorded/anthropic_cache_read_nonstream",
        _anthropic,
        anthropic_turns,
        1024,
    ),
    Case(
        "anthropic",
        "claude-haiku-4-5",
        "recorded/anthropic_cache_read_nonstream",
        _anthropic,
        anthropic_turns,
        4096,
    ),
    Case(
        "openai",
        "gpt-5",
        "recorded/openai_cached_prompt_tokens",
        _openai_shaped,
        automatic_turns,
        1024,
    ),
    Case(
        "openai",
        "gpt-4.1-mini",
        "recorded/openai_cached_prompt_tokens",
        _openai_shaped,
        automatic_turns,
        1024,
    ),
    # No recorded Gemini cache hit: its documented cachedContentTokenCount in a recorded reply.
    Case("gemini", "gemini-2.5-flash", "gemini_ok", _gemini, automatic_turns, 1024),
    Case("gemini", "gemini-2.5-pro", "gemini_ok", _gemini, automatic_turns, 4096),
    Case(
        "xai", "grok-4", "recorded/xai_cached_tokens_grok3", _openai_shaped, automatic_turns, 1024
    ),
]


def run_cost(case: Case, prompts: list[int], output: int, cached: bool) -> tuple[float, int]:
    """The run's cost in USD and the input tokens read from the cache."""
    prices = PriceTable()
    body = _recorded(case.body)
    total, read = 0.0, 0
    for turn in case.plan(prompts, output, case.minimum, cached):
        usage = case.parse(body, turn).usage
        assert usage.input_tokens == turn.prompt and usage.cached_tokens == turn.read
        cost = prices.cost(case.provider, case.model, usage)
        assert cost is not None, case.model
        total += cost
        read += usage.cached_tokens
    return total, read


def table(args: argparse.Namespace) -> str:
    prompts = turns(args.turns, args.system, args.first, args.reply, args.output)
    lines = [
        f"{args.turns} root turns; prompt {prompts[0]:,} -> {prompts[-1]:,} tokens "
        f"({sum(prompts):,} input in all), {args.reply} output tokens a turn",
        "",
        "| provider | model | without caching | with caching | saved | on input alone "
        "| input read from cache |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for case in CASES:
        plain, _ = run_cost(case, prompts, args.reply, cached=False)
        cached, read = run_cost(case, prompts, args.reply, cached=True)
        price = PriceTable().price(case.provider, case.model)
        assert price is not None
        output = args.turns * args.reply * price.output / 1e6  # the same with or without
        lines.append(
            f"| {case.provider} | {case.model} | ${plain:.4f} | ${cached:.4f} | "
            f"{1 - cached / plain:.0%} | {1 - (cached - output) / (plain - output):.0%} | "
            f"{read / sum(prompts):.0%} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=10)
    # Measured: the engine's system prompt is ~2,900 characters, the first message (query
    # and context metadata) ~200 plus the query.
    parser.add_argument("--system", type=int, default=750, help="system prompt tokens")
    parser.add_argument("--first", type=int, default=250, help="first user message tokens")
    parser.add_argument("--reply", type=int, default=400, help="reply (output) tokens a turn")
    parser.add_argument("--output", type=int, default=1200, help="cell output tokens a turn")
    print(table(parser.parse_args()))


if __name__ == "__main__":
    main()
