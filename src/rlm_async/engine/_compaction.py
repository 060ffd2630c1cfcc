"""Compaction: a root conversation that outgrows its model's window is folded into a summary.

Before each root turn, :class:`Compactor` sizes the run's conversation (the system prompt
and every message, in tokens estimated as budgets estimate them: 4 characters a token).
Past the threshold (``RLMOptions.compact_at``: by default 0.75 of what the root model's
window holds for a prompt), the root model is asked, in one call counted like a root turn,
to summarise its earlier turns; they are replaced by that summary, which is added to the
first message with a note that every variable is still in the REPL, and a
:class:`~rlm_async.events.Compacted` event records it. A conversation that would not fit
its window even then (or with compaction off) raises :class:`ContextWindowExceeded`
rather than being sent to a provider that cuts it or refuses it.

Why 0.75: the estimate counts 4 characters a token, right for English prose; code, JSON
and numbers run nearer 3 (the rule ``providers._windows`` sizes sub-call prompts with). A
conversation at 0.75 of the room by the first rule still fits by the second.

A run being resumed (``RLM.resume``) compacts where the recorded run did, with the
recorded summary and no model call: its conversation is then the recorded one, turn for
turn, and nothing is paid twice.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rlm_async import events as ev
from rlm_async._exceptions import ContextWindowExceeded
from rlm_async._text import cap_middle
from rlm_async._tokens import CHARS_PER_TOKEN, estimate_tokens, request_chars
from rlm_async._types import Message
from rlm_async.engine._model_calls import usage_fields
from rlm_async.providers._base import CompletionRequest

if TYPE_CHECKING:
    from rlm_async.engine._run_steps import RunSteps

__all__ = ["KEEP_TURNS", "Compactor", "conversation_tokens", "prompt_room"]

# The latest turns kept word for word: the model's next step builds on its last code and
# that code's output (exact variable names, an error message, the numbers it is about to
# use), which a summary would paraphrase; two keep a failed attempt and its retry whole.
# Fewer (one) when two would leave the compacted conversation over half the threshold.
KEEP_TURNS = 2
# The reply's room when max_tokens is not set, as providers._windows.prompt_chars_for keeps.
_REPLY_RESERVE = 4_096
# The summary is at most an eighth of the threshold, and never more than this.
_SUMMARY_CHARS_MAX = 8_000
_SUMMARY_CHARS_MIN = 400
_NOTE_OPEN = "[Earlier turns were compacted: "

_ASK = """\
This conversation is about to outgrow your context window, so your turns so far (all but \
the first message) will be replaced by a summary that you write now, for yourself, to \
carry on from. Say what you have found out about the context and the query, which REPL \
variables you made and what each one holds (exact names: they all stay in the REPL), what \
failed and why, and what is left to do. Reply with the summary only: no code, no FINAL. At \
most {words} words."""

_NOTE = """

{open}{summary}]
(Turns 1-{last} were folded into the summary above, which you wrote, to keep this \
conversation inside your context window. Every variable you made is still in the REPL: \
inspect it there rather than computing it again.)"""


def conversation_tokens(system: str, messages: Sequence[Message]) -> int:
    """Tokens of a root conversation: its system prompt and messages, estimated."""
    return estimate_tokens(len(system) + sum(len(m.content) for m in messages))


def prompt_room(window: int, reply_tokens: int | None) -> int:
    """Tokens of prompt a window of ``window`` tokens holds with room for the reply."""
    reserve = reply_tokens if reply_tokens is not None else min(_REPLY_RESERVE, window // 4)
    return max(window - reserve, window // 4)


class Compactor:
    """One run's compaction: sizes its conversation before each root turn, and folds it."""

    def __init__(self, run: RunSteps) -> None:
        self.run = run
        options = run.options
        window = run.shared.resources.window_of(run.root)
        # What the window holds for a prompt; None when the window is a guess: a run over
        # a model the table does not know is neither compacted nor refused on a guess.
        self.room = prompt_room(window.tokens, options.max_tokens) if window.known else None
        self.window = window.tokens
        compact_at = options.compact_at
        if isinstance(compact_at, int):  # tokens, set by the user: holds for any window
            self.threshold: int | None = compact_at
        elif compact_at is None or self.room is None:
            self.threshold = None
        else:
            self.threshold = int(compact_at * self.room)
        basis = self.threshold or self.room or 0
        self.summary_chars = max(
            _SUMMARY_CHARS_MIN, min(_SUMMARY_CHARS_MAX, basis * CHARS_PER_TOKEN // 8)
        )
        self.first: str | None = None  # the first message as it was before any compaction

    async def before_turn(self, system: str, messages: list[Message]) -> None:
        """Compact ``messages`` in place when they are over the threshold.

        Raises:
            ContextWindowExceeded: the conversation would not fit the root model's window,
                even compacted.
        """
        run = self.run
        replay = run.replay
        if replay is not None:
            recorded = replay.compaction(run.turn.number)
            if recorded is not None:
                self._replayed(system, messages, recorded)
                return
            if run.turn.number in replay.replies:
                return  # a recorded reply: no request is sent, its size does not matter
        tokens = conversation_tokens(system, messages)
        compacted = False
        if self.threshold is not None and tokens > self.threshold:
            compacted = await self._compact(system, messages, tokens)
            tokens = conversation_tokens(system, messages)
        if self.room is not None and tokens > self.room:
            raise self._too_big(tokens, compacted)

    # ---- inside -------------------------------------------------------------------------

    async def _compact(self, system: str, messages: list[Message], tokens: int) -> bool:
        keep = self._keep(system, messages)
        if keep is None:
            return False  # nothing older than the kept turns: nothing to fold
        run = self.run
        if self.first is None:
            self.first = messages[0].content
        cut = _turn_start(messages, keep)
        request = self._request(system, messages[0], messages[1:cut])
        run.shared.budget.check_root_turn(request_chars(request))
        started = time.perf_counter()
        completion = await run.call_model(run.root, request)
        run.shared.usage.record(run.root.label, completion.usage, depth=run.depth)
        summary = cap_middle(completion.text.strip(), self.summary_chars)
        before = len(messages)
        self._fold(messages, summary, keep)
        run.event(
            ev.Compacted,
            turn=run.turn.number,
            model=run.root.label,
            kept_turns=keep,
            messages_before=before,
            messages_after=len(messages),
            tokens_before=tokens,
            tokens_after=conversation_tokens(system, messages),
            summary=summary,
            **usage_fields(completion.usage),
            latency=round(time.perf_counter() - started, 6),
        )
        run.check_budgets()
        return True

    def _replayed(self, system: str, messages: list[Message], recorded: ev.Compacted) -> None:
        """The recorded compaction of this turn, done again with its summary (no call)."""
        if self.first is None:
            self.first = messages[0].content
        before = len(messages)
        tokens = conversation_tokens(system, messages)
        self._fold(messages, recorded.summary, recorded.kept_turns)
        self.run.event(
            ev.Compacted,
            turn=self.run.turn.number,
            model=recorded.model,
            kept_turns=recorded.kept_turns,
            messages_before=before,
            messages_after=len(messages),
            tokens_before=tokens,
            tokens_after=conversation_tokens(system, messages),
            summary=recorded.summary,
            replayed=True,
        )

    def _keep(self, system: str, messages: list[Message]) -> int | None:
        """How many latest turns to keep word for word, or ``None``: nothing to fold.

        ``KEEP_TURNS``, or one when that many would leave the compacted conversation over
        half the threshold: compacting again at the very next turn would pay for a summary
        a turn.
        """
        turns = sum(1 for m in messages if m.role == "assistant")
        choices = [k for k in range(KEEP_TURNS, 0, -1) if k < turns]
        if not choices:
            return None
        target = (self.threshold or 0) // 2
        fixed = len(system) + len(self.first or messages[0].content) + self.summary_chars
        for keep in choices:
            kept = sum(len(m.content) for m in messages[_turn_start(messages, keep) :])
            if estimate_tokens(fixed + kept) <= target:
                return keep
        return choices[-1]

    def _request(self, system: str, first: Message, folded: list[Message]) -> CompletionRequest:
        """The summary call: the conversation up to the kept turns, and the ask.

        The system prompt and the messages are the ones earlier turns sent, so a provider
        that caches prompt prefixes reads them from its cache.
        """
        words = self.summary_chars // 7  # ~6 characters a word, with room to spare
        ask = _ASK.format(words=words)
        shown = [first, *folded]
        if self.room is not None:
            # Over the window already (a last turn that added more than the room left):
            # the folded turns are cut in their middles, each to an equal share.
            free = self.room - estimate_tokens(len(system) + len(first.content) + len(ask))
            free_chars = max(free, 0) * CHARS_PER_TOKEN
            if folded and sum(len(m.content) for m in folded) > free_chars:
                share = max(free_chars // len(folded), 200)
                shown = [first]
                shown += (
                    Message(role=m.role, content=cap_middle(m.content, share)) for m in folded
                )
        last = shown[-1]
        if last.role == "user" and len(shown) > 1:
            # One user message, not two in a row (some chat templates reject that).
            shown[-1] = Message(role="user", content=f"{last.content}\n\n{ask}")
        else:
            shown.append(Message(role="user", content=ask))
        options = self.run.options
        return CompletionRequest(
            model=self.run.root.model,
            messages=shown,
            system=system,
            max_tokens=options.max_tokens,
            temperature=options.temperature,
            cache_key=self.run.run_id,  # the prefix of the turns before: read from the cache
        )

    def _fold(self, messages: list[Message], summary: str, keep: int) -> None:
        """Replace every turn but the last ``keep`` by ``summary``, in the first message.

        The summary joins the first message rather than following it: two user messages
        in a row are rejected or merged by some chat templates.
        """
        cut = _turn_start(messages, keep)
        last = self.run.turn.number - 1 - keep  # the newest turn folded
        note = _NOTE.format(open=_NOTE_OPEN, summary=summary, last=max(last, 1))
        first = Message(role="user", content=(self.first or messages[0].content) + note)
        messages[:] = [first, *messages[cut:]]

    def _too_big(self, tokens: int, compacted: bool) -> ContextWindowExceeded:
        run = self.run
        model, room = run.root.label, self.room or 0
        if compacted:
            why = "even after its earlier turns were compacted"
        elif self.threshold is None:
            # 0 turns it off everywhere; None only in RLMOptions (on RLM(...) it is the default).
            why = (
                "and compaction is off (compact_at=0): give compact_at a fraction of the window "
                "(e.g. 0.75) or a number of tokens to fold earlier turns"
            )
        else:
            why = "and it has no earlier turns to compact"
        return ContextWindowExceeded(
            f"the root conversation of {model} (turn {run.turn.number}) is about {tokens:,} "
            f"tokens, more than the {room:,} its context window of {self.window:,} tokens "
            f"holds with room for the reply, {why}. Use a root model with a bigger window; "
            f"if {model}'s real window is larger, say so with "
            f"RLM(context_windows={{{model!r}: <tokens>}}); or make turns smaller: a lower "
            "max_output_chars (the cell output fed back each turn) or max_tokens, a shorter "
            "query",
            model=model,
            tokens=tokens,
            limit=room,
        )


def _turn_start(messages: Sequence[Message], keep: int) -> int:
    """The index of the first message of the last ``keep`` turns (their first reply)."""
    seen = 0
    for index in range(len(messages) - 1, 0, -1):
        if messages[index].role == "assistant":
            seen += 1
            if seen == keep:
                return index
    return 1
