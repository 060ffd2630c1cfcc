"""Trajectories: JSON Lines written by TrajectoryWriter, read back, arranged as a run tree."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from rlm_async import RLM, ProviderResponseError, RLMResult
from rlm_async import events as ev
from rlm_async.providers import CompletionRequest
from rlm_async.testing import ScriptedModel
from rlm_async.trajectory import (
    REDACTED,
    TrajectoryError,
    TrajectoryWriter,
    build_tree,
    read_trajectory,
    scrub_secrets,
    write_trajectory,
)
from rlm_async.trajectory._writer_thread import BackgroundTrajectory
from tests.helpers import repl
from tests.loop_meter import loop_meter

SUB_LATENCY = 0.05


def root_script(request: CompletionRequest) -> str:
    """Turn 1 fans out three plain calls, turn 2 starts a sub-RLM, turn 3 answers."""
    turns = sum(m.role == "assistant" for m in request.messages)
    if turns == 0:
        return repl(
            'answers = llm_query_batched(["first <b>question</b>", "second", "third"])\n'
            "print(answers)"
        )
    if turns == 1:
        return repl('sub = rlm_query("count the items", ["a", "b", "c"])\nprint(sub)')
    return FINAL_TEXT


FINAL_TEXT = "All three answers are in, and the sub-RLM counted.\nFINAL(done)"


def sub_script(request: CompletionRequest) -> str:
    """The sub-model: a sub-RLM's root turns (with a system prompt) or plain answers."""
    if request.system:
        turns = sum(m.role == "assistant" for m in request.messages)
        if turns == 0:
            return repl('n = len(context)\nprint(llm_query(f"say {n}"))')
        return "FINAL_VAR(n)"
    return "answer to " + request.messages[-1].content


async def record_scripted_run(path: Path, root: ScriptedModel | None = None) -> RLMResult:
    """A real run (concurrent sub-calls, one sub-RLM at depth 1) written to ``path``."""
    with TrajectoryWriter(path) as writer:
        async with RLM(
            model=root or ScriptedModel(root_script, name="root"),
            sub_model=ScriptedModel(sub_script, name="sub", latency=SUB_LATENCY),
            max_depth=2,
            on_event=writer,
        ) as rlm:
            return await rlm.completion("some context", "What is going on?")


def as_json(events: list[ev.Event]) -> list[dict[str, object]]:
    return [e.model_dump(mode="json") for e in events]


async def test_a_run_round_trips_through_the_file(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    result = await record_scripted_run(path)
    trajectory = read_trajectory(path)
    assert result.answer == "done"
    assert as_json(trajectory.events) == as_json(result.trajectory)
    assert all(
        type(a) is type(b) for a, b in zip(trajectory.events, result.trajectory, strict=True)
    )
    header = trajectory.header
    assert header.schema_version == ev.TRAJECTORY_SCHEMA_VERSION
    assert header.run_id == result.metadata["run_id"]
    assert (header.model, header.sub_model) == ("root", "sub")
    assert header.query == "What is going on?"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", header.created)
    assert not trajectory.truncated


async def test_every_line_is_one_json_object_with_the_header_first(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    result = await record_scripted_run(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    objects = [json.loads(line) for line in lines]
    assert objects[0]["type"] == "trajectory"
    assert [o["type"] for o in objects[1:]] == [e.type for e in result.trajectory]
    assert all(next(iter(o)) == "type" for o in objects)


async def test_the_tree_nests_turns_cells_subcalls_and_the_sub_rlm(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    result = await record_scripted_run(path)
    [root] = read_trajectory(path).tree()
    assert root.run_id == result.metadata["run_id"] and root.status == "finished"
    assert [t.turn for t in root.turns] == [1, 2, 3]
    assert root.answer == "done" and root.answer_source == "text"

    fan_out = root.turns[0].cells[0]
    assert [s.prompt for s in fan_out.subcalls] == ["first <b>question</b>", "second", "third"]
    assert all(s.kind == "llm" and s.ok and s.run is None for s in fan_out.subcalls)
    # Concurrent: every call started before the first one finished.
    assert max(s.start for s in fan_out.subcalls) < min(s.end or 0 for s in fan_out.subcalls)

    [call] = root.turns[1].cells[0].subcalls
    assert call.kind == "rlm" and call.answer == "3"
    sub = call.run
    assert sub is not None
    assert sub.depth == 1 and sub.parent_run_id == root.run_id
    assert sub.parent_subcall == call.subcall
    assert sub.query == "count the items" and sub.answer == "3"
    assert len(sub.turns) == 2
    [inner] = sub.turns[0].cells[0].subcalls
    assert inner.prompt == "say 3" and inner.answer == "answer to say 3"
    assert call.start <= sub.start and (sub.end or 0) <= (call.end or 0)
    assert [r.depth for r in root.walk()] == [0, 1]


async def test_tree_totals_match_the_usage_of_the_run(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    result = await record_scripted_run(path)
    [root] = read_trajectory(path).tree()
    totals = root.totals()
    assert totals.calls == result.usage.calls == 9  # 3 + 2 root turns, 3 + 1 plain calls
    assert totals.input_tokens == result.usage.input_tokens
    assert totals.output_tokens == result.usage.output_tokens
    rlm_call = root.turns[1].cells[0].subcalls[0]
    assert rlm_call.totals().calls == 3  # the sub-RLM's two turns and its one call


async def test_a_partial_trajectory_builds_a_tree_with_open_nodes(tmp_path: Path) -> None:
    result = await record_scripted_run(tmp_path / "run.jsonl")
    events = result.trajectory
    cut = next(i for i, e in enumerate(events) if isinstance(e, ev.SubCallFinished))
    [root] = build_tree(events[:cut])
    assert root.status == "running" and root.end is None
    cell = root.turns[0].cells[0]
    assert cell.end is None and len(cell.subcalls) == 3
    assert all(s.end is None for s in cell.subcalls)


async def test_a_sub_rlm_is_found_by_order_when_several_rlm_calls_are_open() -> None:
    started: list[ev.Event] = [
        ev.RunStarted(
            run_id="root",
            seq=1,
            model="m",
            sub_model="s",
            query="q",
            context="c",
            max_iterations=3,
            max_depth=2,
        ),
        ev.TurnStarted(run_id="root", seq=2, turn=1),
        ev.CellStarted(run_id="root", seq=3, turn=1, cell=1, code="x"),
    ]
    calls: list[ev.Event] = []
    for n, name in enumerate(("a", "b")):
        calls += [
            ev.SubCallStarted(
                run_id="root",
                seq=10 + 2 * n,
                subcall=name,
                turn=1,
                cell=1,
                kind="rlm",
                model="s",
                prompt=name,
            ),
            ev.RunStarted(
                run_id=f"sub-{name}",
                parent_run_id="root",
                depth=1,
                seq=11 + 2 * n,
                model="s",
                sub_model="s",
                query=name,
                context="c",
                max_iterations=3,
                max_depth=2,
            ),
        ]
    [root] = build_tree([*started, *calls])
    subs = root.turns[0].cells[0].subcalls
    assert [s.run.run_id if s.run else None for s in subs] == ["sub-a", "sub-b"]


# ---- scrubbing ----------------------------------------------------------------------


KEYS = [
    "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789",
    "sk-abcdefghijklmnopqrstuv012345",
    "sk-ant-api03-abcdefghijklmnopqrstuvwxyz-0123456789_ABCDEF",
    "xai-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
    "AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW",
]


@pytest.mark.parametrize("key", KEYS)
def test_scrub_secrets_redacts_each_provider_key_format(key: str) -> None:
    text = f'client = Client(api_key="{key}")  # {key}'
    scrubbed = scrub_secrets(text)
    assert key not in scrubbed
    assert scrubbed == f'client = Client(api_key="{REDACTED}")  # {REDACTED}'


def test_scrub_secrets_leaves_ordinary_words_alone() -> None:
    text = "task-oriented risk-free disk-based sk-short AIza xai- ask-me-anything-today-please"
    assert scrub_secrets(text) == text


def test_scrub_secrets_redacts_bearer_tokens_and_given_secrets() -> None:
    text = "Authorization: Bearer abc.def-ghi_jkl.mnopqrstuv and my-own-key-123"
    scrubbed = scrub_secrets(text, ["my-own-key-123"])
    assert "abc.def" not in scrubbed and "my-own-key-123" not in scrubbed


async def test_keys_never_reach_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    custom = "custom-secret-value-77"  # no known shape: found because it is in the env
    monkeypatch.setenv("MY_SERVICE_API_KEY", custom)
    leaky = f"Use {KEYS[0]} or {KEYS[2]} or {custom}.\nFINAL(done)"

    def root(request: CompletionRequest) -> str:
        turns = sum(m.role == "assistant" for m in request.messages)
        if turns == 0:
            return repl(f'print("{KEYS[3]}")\nx = llm_query("{KEYS[4]}")')
        return leaky

    path = tmp_path / "run.jsonl"
    await record_scripted_run(path, root=ScriptedModel(root, name="root"))
    text = path.read_text(encoding="utf-8")
    for secret in [*KEYS, custom]:
        assert secret not in text
    assert text.count(REDACTED) >= 6
    assert read_trajectory(path).events  # still a valid trajectory


# ---- the writer -----------------------------------------------------------------------


async def test_in_directory_names_the_file_by_time_and_run_id(tmp_path: Path) -> None:
    writer = TrajectoryWriter.in_directory(tmp_path / "trajectories")
    async with RLM(model=ScriptedModel(["FINAL(1)"]), on_event=writer) as rlm:
        result = await rlm.completion("ctx", "q")
    writer.close()
    assert writer.path is not None and writer.path.parent == tmp_path / "trajectories"
    run_id = result.metadata["run_id"]
    assert re.fullmatch(rf"\d{{8}}T\d{{6}}\.\d{{6}}Z-{run_id}\.jsonl", writer.path.name)
    assert read_trajectory(writer.path).header.run_id == run_id


def test_in_directory_writes_nothing_when_no_run_started(tmp_path: Path) -> None:
    writer = TrajectoryWriter.in_directory(tmp_path)
    writer.close()
    assert writer.path is None and list(tmp_path.iterdir()) == []


def test_a_writer_given_a_path_leaves_a_header_only_file_without_events(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "empty.jsonl"
    TrajectoryWriter(path, metadata={"note": "never ran"}).close()
    trajectory = read_trajectory(path)
    assert trajectory.events == [] and trajectory.header.metadata == {"note": "never ran"}
    assert trajectory.tree() == []


def test_a_closed_writer_refuses_events(tmp_path: Path) -> None:
    writer = TrajectoryWriter(tmp_path / "t.jsonl")
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(TrajectoryError, match="closed"):
        writer(ev.TurnStarted(run_id="r", turn=1))


async def test_each_line_is_flushed_as_it_is_written(tmp_path: Path) -> None:
    path = tmp_path / "live.jsonl"
    seen_on_disk: list[int] = []
    writer = TrajectoryWriter(path)

    def listener(event: ev.Event) -> None:
        writer(event)
        seen_on_disk.append(len(path.read_text(encoding="utf-8").splitlines()))

    async with RLM(model=ScriptedModel(["FINAL(1)"]), on_event=listener) as rlm:
        await rlm.completion("ctx", "q")
    assert seen_on_disk == list(range(2, len(seen_on_disk) + 2))  # header + n events
    writer.close()


async def test_streamed_deltas_are_left_out_unless_asked_for(tmp_path: Path) -> None:
    for include, path in ((False, tmp_path / "a.jsonl"), (True, tmp_path / "b.jsonl")):
        with TrajectoryWriter(path, include_deltas=include) as writer:
            async with RLM(model=ScriptedModel(["x" * 40 + "\nFINAL(1)"])) as rlm:
                async for event in rlm.stream("ctx", "q"):
                    writer(event)
        deltas = [e for e in read_trajectory(path).events if isinstance(e, ev.ModelDelta)]
        assert bool(deltas) is include


async def test_write_trajectory_saves_a_finished_result(tmp_path: Path) -> None:
    result = await record_scripted_run(tmp_path / "a.jsonl")
    path = write_trajectory(tmp_path / "b.jsonl", result.trajectory, metadata={"k": 1})
    again = read_trajectory(path)
    assert as_json(again.events) == as_json(result.trajectory)
    assert again.header.metadata == {"k": 1}


# ---- reading errors -------------------------------------------------------------------


def header_line(**changes: object) -> str:
    header = {"type": "trajectory", "schema_version": ev.TRAJECTORY_SCHEMA_VERSION, **changes}
    return json.dumps(header) + "\n"


EVENT = json.dumps({"type": "turn_started", "run_id": "r", "turn": 1}) + "\n"


def test_another_schema_version_is_refused_naming_line_1(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(header_line(schema_version=99) + EVENT, encoding="utf-8")
    with pytest.raises(TrajectoryError, match=r"line 1: trajectory schema version 99.*upgrade"):
        read_trajectory(path)


def test_a_file_that_is_not_a_trajectory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(EVENT, encoding="utf-8")
    with pytest.raises(TrajectoryError, match="line 1: not a trajectory"):
        read_trajectory(path)
    path.write_text("", encoding="utf-8")
    with pytest.raises(TrajectoryError, match="empty file"):
        read_trajectory(path)


def test_a_malformed_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(header_line() + EVENT + "{not json\n" + EVENT, encoding="utf-8")
    with pytest.raises(TrajectoryError, match=r"t\.jsonl, line 3: not JSON"):
        read_trajectory(path)


def test_an_invalid_event_is_named_with_its_field(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    bad = json.dumps({"type": "turn_finished", "run_id": "r", "turn": 1}) + "\n"
    path.write_text(header_line() + EVENT + EVENT + bad, encoding="utf-8")
    with pytest.raises(TrajectoryError, match=r"line 4: invalid turn_finished event: .*model"):
        read_trajectory(path)
    path.write_text(header_line() + json.dumps({"type": "nope", "run_id": "r"}) + "\n")
    with pytest.raises(TrajectoryError, match="line 2"):
        read_trajectory(path)


def test_a_last_line_cut_short_by_a_crash_is_dropped_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(header_line() + EVENT + EVENT[:20], encoding="utf-8")
    trajectory = read_trajectory(path)
    assert trajectory.truncated and len(trajectory.events) == 1


# ---- the engine's trajectory: written off the event loop (review of issue 11 item 6) ----


def test_a_users_writer_has_each_line_on_disk_when_the_call_returns(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    with TrajectoryWriter(path) as writer:
        writer(ev.TurnStarted(run_id="r", turn=1))
        assert len(path.read_text(encoding="utf-8").splitlines()) == 2  # header + event


def replace_by_a_file(directory: Path) -> None:
    """Make ``directory`` unusable for the trajectory: a regular file of that name."""
    directory.rmdir()
    directory.write_text("not a directory", encoding="utf-8")


async def test_a_trajectory_write_failure_does_not_replace_the_result(tmp_path: Path) -> None:
    directory = tmp_path / "trajectories"
    async with RLM(model=ScriptedModel(["FINAL(1)"]), trajectory_dir=directory) as rlm:
        replace_by_a_file(directory)  # made by RLM(); the writer's mkdir now fails
        result = await rlm.completion("ctx", "q")
    assert result.answer == "1" and result.finished
    assert "FileExistsError" in result.metadata["trajectory_error"]


async def test_a_trajectory_write_failure_does_not_replace_the_runs_own_error(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "trajectories"
    # One reply for a run that needs two: the second turn fails in the provider.
    model = ScriptedModel(["```repl\nprint(1)\n```"])
    async with RLM(model=model, trajectory_dir=directory) as rlm:
        replace_by_a_file(directory)
        with pytest.raises(ProviderResponseError):
            await rlm.completion("ctx", "q")


def emit_from_a_thread(call: Callable[[], None]) -> bool:
    """Run ``call`` in a thread; whether it returned within 10 s (it must not block)."""
    returned = threading.Event()

    def run() -> None:
        call()
        returned.set()

    threading.Thread(target=run, daemon=True).start()
    return returned.wait(timeout=10)


RUN_STARTED = {
    "run_id": "r", "model": "m", "sub_model": "s", "query": "q", "context": "c",
    "max_iterations": 1, "max_depth": 1,
}  # fmt: skip


def big_event(n: int) -> ev.Event:
    return ev.TurnFinished(run_id="r", turn=n, model="m", text="x" * 10_000)


async def test_the_engines_trajectory_never_blocks_the_loop_on_a_stuck_disk(
    tmp_path: Path,
) -> None:
    # A FIFO with no reader: the writer thread blocks opening it, as on a hung disk.
    path = tmp_path / "trajectory.jsonl"
    os.mkfifo(path)
    background = BackgroundTrajectory(TrajectoryWriter(path), max_pending_bytes=100_000)

    def emit_many() -> None:
        background(ev.RunStarted(**RUN_STARTED))
        for n in range(1, 40):  # 390 KB: past the 100 KB bound
            background(big_event(n))

    if not emit_from_a_thread(emit_many):
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))  # let the writer go
        pytest.fail("handing an event to the writer blocked on the disk")
    lines: list[str] = []
    release = threading.Event()

    def drain() -> None:
        release.wait(timeout=5)  # a close that blocks the loop is let go after 5 s
        with path.open(encoding="utf-8") as reader:
            lines.extend(reader.read().splitlines())

    drainer = threading.Thread(target=drain, daemon=True)
    drainer.start()
    problem_box: list[str | None] = []

    async def close() -> None:
        problem_box.append(await background.aclose())

    async with loop_meter() as meter, anyio.create_task_group() as tg:
        tg.start_soon(close)
        # A window in which the close waits on the stuck writer: the loop must keep
        # running through it (a join on the loop stalled it until the 5 s release).
        await anyio.sleep(0.3)
        release.set()
    drainer.join(timeout=10)
    assert meter.longest_stall < 0.2
    # The events that fitted in the bound, then nothing: a prefix of the run, as if the
    # process had died there; the result says so.
    written = [json.loads(line) for line in lines]
    assert written[0]["type"] == "trajectory" and 2 <= len(written) <= 12
    assert [w.get("turn") for w in written[2:]] == list(range(1, len(written) - 1))
    (problem,) = problem_box
    assert problem is not None and "fell behind" in problem
