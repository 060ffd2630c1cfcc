"""What a run has spent, added up from its events: for a run that raised, with no result.

``RLMResult.usage`` adds up every model call from its response; a run that fails has no result
to say what it spent, but its events say the same, call by call. :class:`Spend` is the
listener that adds them up, as ``result.usage`` does: every paid model call once (root and
sub-RLM turns, compaction summaries, ``llm_query`` sub-calls). An ``rlm_query`` that ran as a
sub-RLM is its turns and sub-calls, already counted, so its own ``SubCallFinished`` is not
(one past the depth limit, a plain call, is). Calls ``RLM.resume`` replayed from a trajectory
or the sub-call cache answered were not paid for, and are not counted.
"""

from __future__ import annotations

from rlm_async import events as ev

__all__ = ["Spend"]


class Spend:
    """An ``on_event`` listener adding up the paid model calls of a run, sub-RLMs included.

    Attributes:
        calls: Paid model calls.
        input_tokens: Their prompts' tokens.
        output_tokens: Their completions' tokens.
        cached_tokens: Of ``input_tokens``, read from the providers' prompt caches.
        cost_usd: Their known cost in USD; ``None`` when no call was priced (as
            ``UsageSummary.cost_usd``).
        unpriced: Whether some paid call has no known price (``cost_usd`` falls short then).
    """

    def __init__(self) -> None:
        self.calls = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cached_tokens = 0
        self.cost_usd: float | None = None
        self.unpriced = False
        self._nested: set[str] = set()  # rlm_query calls that ran as a sub-RLM

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.RunStarted) and event.parent_subcall is not None:
            self._nested.add(event.parent_subcall)
        elif isinstance(event, ev.TurnFinished | ev.Compacted | ev.SubCallFinished):
            if isinstance(event, ev.SubCallFinished):
                if event.kind == "rlm" and event.subcall in self._nested:
                    return  # a sub-RLM's own call: its turns and sub-calls are counted
                if event.cached:
                    return  # the sub-call cache answered it: not paid
            if event.replayed:
                return  # RLM.resume answered it from the trajectory: paid earlier
            self.calls += 1
            self.input_tokens += event.input_tokens
            self.output_tokens += event.output_tokens
            self.cached_tokens += event.cached_tokens
            if event.cost_usd is None:
                self.unpriced = True
            else:
                self.cost_usd = (self.cost_usd or 0.0) + event.cost_usd
