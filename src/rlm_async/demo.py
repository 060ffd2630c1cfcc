"""The needle-in-a-haystack demo: a number hidden in ~1,000,000 lines of random words.

With a provider key configured (environment or ``.env``) the demo uses a real model. With
none, it runs the **offline demo model**: a scripted model served over loopback HTTP by
``rlm_async.testing.MockLLMServer`` with a realistic per-call latency. Its root turns do what
a good root model does (look at the context, chunk it, fan out with ``llm_query_batched``,
answer from the evidence) and its sub-model reads each chunk for real (a regular expression
stands in for reading comprehension). Everything else, the REPL child, the protocol, the
engine, the HTTP adapter, is the production code path.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rlm_async import events as ev
from rlm_async.providers._base import CompletionRequest

__all__ = ["DemoReport", "demo_responder", "make_haystack", "run_demo"]

_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "pe", "da", "gu", "fo", "ze")
_NEEDLE = "The magic number is {number}."
ROOT_LATENCY = 1.0
SUB_LATENCY = 0.6

# Models the demo uses when a key is configured: (env var, root, sub).
_REAL_MODELS = (
    ("OPENAI_API_KEY", "openai:gpt-5", "openai:gpt-5-mini"),
    ("ANTHROPIC_API_KEY", "anthropic:claude-sonnet-4-5", "anthropic:claude-haiku-4-5"),
    ("GOOGLE_API_KEY", "gemini:gemini-2.5-pro", "gemini:gemini-2.5-flash"),
    ("GEMINI_API_KEY", "gemini:gemini-2.5-pro", "gemini:gemini-2.5-flash"),
    ("XAI_API_KEY", "xai:grok-4", "xai:grok-3-mini"),
)


def make_haystack(lines: int = 1_000_000, *, seed: int | None = None) -> tuple[str, int]:
    """``lines`` lines of random words with one line stating a random 7-digit number.

    Returns:
        The text and the hidden number.
    """
    rng = random.Random(seed)
    words = ["".join(rng.choices(_SYLLABLES, k=rng.randint(2, 4))) for _ in range(2_000)]
    # Sampling from a pool of distinct lines keeps a million lines fast to build.
    pool = [" ".join(rng.choices(words, k=rng.randint(4, 9))) for _ in range(20_000)]
    body = rng.choices(pool, k=max(lines - 1, 0))
    number = rng.randint(1_000_000, 9_999_999)
    body.insert(rng.randint(0, len(body)), _NEEDLE.format(number=number))
    return "\n".join(body), number


_PEEK = """I'll start by looking at the size and shape of the context.

```repl
lines = context.splitlines()
print(f"{len(context):,} characters, {len(lines):,} lines")
print("first lines:", lines[:3])
```"""

_FAN_OUT = """The context is {lines} lines of what looks like filler text, far too much to read \
in one call. I'll split it into chunks of {chunk:,} lines and ask a sub-model to read every \
chunk at once with `llm_query_batched`.

```repl
import re
chunk_size = {chunk}
chunks = ["\\n".join(lines[i:i + chunk_size]) for i in range(0, len(lines), chunk_size)]
prompts = [
    "Below is part of a long text. If it states a magic number, reply with just that "
    "number. Otherwise reply NONE.\\n\\n" + chunk
    for chunk in chunks
]
answers = llm_query_batched(prompts)
found = [m.group(0) for a in answers if (m := re.search(r"\\d{{4,}}", a))]
print(f"{{len(chunks)}} chunks read; numbers found: {{found}}")
answer = found[0] if len(found) == 1 else None
```"""

_ANSWER = """Exactly one chunk stated a magic number, and it is stored in `answer`.

FINAL_VAR(answer)"""

_RETRY = """The chunks did not give exactly one number; I'll look for the sentence directly.

```repl
hits = [line for line in lines if "magic number" in line]
print(hits[:5])
answer = re.search(r"\\d{4,}", hits[0]).group(0) if hits else "not found"
```"""


def demo_responder(request: CompletionRequest) -> str:
    """The offline demo model: root turns script an RLM strategy; sub-calls read chunks."""
    if request.system is None:  # a sub-call: read the chunk
        match = re.search(r"magic number is (\d+)", request.messages[-1].content)
        return match.group(1) if match else "NONE"
    last = request.messages[-1].content
    turns = sum(1 for m in request.messages if m.role == "assistant")
    if turns == 0:
        return _PEEK
    numbers = re.search(r"numbers found: \[(.*?)\]", last)
    if numbers is not None:
        return _ANSWER if numbers.group(1).count("'") == 2 else _RETRY
    lines = re.search(r"([\d,]+) lines", last)
    if turns == 1 and lines is not None:
        total = int(lines.group(1).replace(",", ""))
        chunk = max(1_000, -(-total // 100))  # about 100 sub-calls
        return _FAN_OUT.format(lines=lines.group(1), chunk=chunk)
    return "FINAL_VAR(answer)"


@dataclass
class DemoReport:
    """What the demo measured."""

    answer: str
    expected: int
    correct: bool
    offline: bool
    model: str
    sub_model: str
    elapsed: float
    subcalls: int
    subcall_seconds_sequential: float
    root_seconds: float
    context_lines: int
    context_chars: int
    iterations: int
    usage: str

    def render(self) -> str:
        mode = (
            "OFFLINE DEMO MODEL (scripted, served over loopback HTTP; set a provider key to use "
            "a real model)"
            if self.offline
            else "real models"
        )
        sequential = self.root_seconds + self.subcall_seconds_sequential
        speedup = sequential / self.elapsed if self.elapsed else 0.0
        return "\n".join(
            [
                f"Model:       {mode}",
                f"             root {self.model}, sub-calls {self.sub_model}",
                f"Context:     {self.context_lines:,} lines, {self.context_chars:,} characters",
                f"Answer:      {self.answer}",
                f"Expected:    {self.expected}  ->  {'CORRECT' if self.correct else 'WRONG'}",
                f"Time:        {self.elapsed:.2f} s with {self.iterations} root turns",
                f"Sub-calls:   {self.subcalls}",
                f"Sequential:  {sequential:.2f} s if the same calls ran one after another "
                f"({self.subcall_seconds_sequential:.2f} s of sub-calls + "
                f"{self.root_seconds:.2f} s "
                f"of root turns): {speedup:.1f}x faster concurrently",
                f"Usage:       {self.usage}",
            ]
        )


def _real_models(env: dict[str, str]) -> tuple[str, str] | None:
    for variable, root, sub in _REAL_MODELS:
        if env.get(variable):
            return root, sub
    return None


async def run_demo(
    *,
    lines: int = 1_000_000,
    seed: int | None = None,
    model: str | None = None,
    sub_model: str | None = None,
    offline: bool | None = None,
    load_dotenv: bool = True,
    enable_logging: bool = False,
    max_concurrency: int = 32,
    root_latency: float = ROOT_LATENCY,
    sub_latency: float = SUB_LATENCY,
    on_event: Callable[[ev.Event], None] | None = None,
) -> DemoReport:
    """Build the haystack, run the RLM on it, and measure.

    Args:
        lines: Lines of the haystack.
        seed: Random seed for a reproducible haystack.
        model: Root model; default: picked from the configured key, else the offline model.
        sub_model: Sub-call model.
        offline: Force (True) or forbid (False) the offline demo model; default: offline
            when no model is given and no provider key is configured.
        load_dotenv: Read a ``.env`` file for keys.
        enable_logging: Print the run as it happens.
        max_concurrency: Sub-calls in flight at once.
        root_latency: Seconds the offline model takes per root turn.
        sub_latency: Seconds the offline model takes per sub-call.
        on_event: Also call this with every event of the run (e.g. a
            ``rlm_async.trajectory.TrajectoryWriter``).
    """
    from rlm_async.engine._rlm import RLM
    from rlm_async.providers._settings import Settings
    from rlm_async.testing import MockLLMServer

    env: dict[str, str] = dict(os.environ)
    if load_dotenv:
        from dotenv import dotenv_values

        env.update({k: v for k, v in dotenv_values().items() if v is not None and k not in env})
    if offline is None:
        offline = model is None and _real_models(env) is None
    text, number = make_haystack(lines, seed=seed)
    subcall_seconds = 0.0
    root_seconds = 0.0

    def measure(event: Any) -> None:
        nonlocal subcall_seconds, root_seconds
        if isinstance(event, ev.SubCallFinished):
            subcall_seconds += event.latency
        elif isinstance(event, ev.TurnFinished):
            root_seconds += event.latency
        if on_event is not None:
            on_event(event)

    server: MockLLMServer | None = None
    try:
        if offline:
            server = MockLLMServer(
                demo_responder,
                latency=lambda r: root_latency if r.system is not None else sub_latency,
            )
            await server.start()
            settings = Settings(openai_compatible_base_url=server.base_url)
            model = "openai-compatible:rlm-demo-root"
            sub_model = "openai-compatible:rlm-demo-sub"
        else:
            settings = Settings.from_env(load_dotenv=load_dotenv)
            if model is None:
                picked = _real_models(env)
                assert picked is not None
                model, default_sub = picked
                sub_model = sub_model or default_sub
        started = time.perf_counter()
        async with RLM(
            model=model,
            sub_model=sub_model,
            settings=settings,
            max_concurrency=max_concurrency,
            max_iterations=10,
            enable_logging=enable_logging,
            on_event=measure,
        ) as rlm:
            result = await rlm.completion(
                text, "What is the magic number hidden in the text? Answer with the number only."
            )
        elapsed = time.perf_counter() - started
    finally:
        if server is not None:
            await server.aclose()
    found = re.search(r"\d{7}", result.answer)
    return DemoReport(
        answer=result.answer,
        expected=number,
        correct=found is not None and int(found.group(0)) == number,
        offline=offline,
        model=rlm.model,
        sub_model=rlm.sub_model,
        elapsed=elapsed,
        subcalls=int(result.metadata.get("subcalls", 0)),
        subcall_seconds_sequential=subcall_seconds,
        root_seconds=root_seconds,
        context_lines=text.count("\n") + 1,
        context_chars=len(text),
        iterations=result.iterations,
        usage=str(result.usage),
    )
