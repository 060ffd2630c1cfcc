"""The HTML viewer: one self-contained page, checked as data and in a real headless Chromium.

The browser tests need Chromium (Debian: ``apt-get install -y chromium``); without it they
fail, they are never skipped. ``RLM_ASYNC_CHROMIUM`` may name another binary.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import anyio
import pytest

from rlm_async import RLM
from rlm_async.demo import run_demo
from rlm_async.providers import CompletionRequest
from rlm_async.testing import MockReply, ScriptedModel
from rlm_async.trajectory import TrajectoryWriter, read_trajectory
from rlm_async.trajectory._viewer import render_html, viewer_data, write_html
from tests.test_trajectory import record_scripted_run

XSS = (
    "<script>document.body.dataset.pwned='1'</script>"
    "<img src=x onerror=\"document.body.dataset.pwned='2'\">"
    "</script><script>document.body.dataset.pwned='3'</script>"
)


def xss_root(request: CompletionRequest) -> str:
    turns = sum(m.role == "assistant" for m in request.messages)
    if turns == 0:
        return f"Look: {XSS}\n```repl\nprint({XSS!r})\nx = llm_query({XSS!r})\n```"
    return f"{XSS}\nFINAL(done)"


def embedded_data(page: str) -> dict[str, object]:
    match = re.search(r'<script type="application/json" id="rlm-data">(.*?)</script>', page, re.S)
    assert match is not None
    data: dict[str, object] = json.loads(match.group(1))
    return data


# ---- the page as text -------------------------------------------------------------------


async def test_the_page_embeds_the_tree_as_json_and_needs_no_network(tmp_path: Path) -> None:
    await record_scripted_run(tmp_path / "run.jsonl")
    trajectory = read_trajectory(tmp_path / "run.jsonl")
    page = render_html(trajectory)
    assert embedded_data(page) == json.loads(json.dumps(viewer_data(trajectory)))
    assert not re.search(r"(src|href)=[\"']?https?:", page)
    assert "@import" not in page and "<link" not in page
    # The CSP allows the one inline script by hash, and nothing from the network.
    script = page.rsplit("<script>", 1)[1].split("</script>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in page
    assert "default-src 'none'" in page


async def test_model_text_cannot_close_the_data_element(tmp_path: Path) -> None:
    await record_scripted_run(tmp_path / "run.jsonl", root=ScriptedModel(xss_root))
    page = render_html(read_trajectory(tmp_path / "run.jsonl"))
    assert "dataset.pwned" in page  # the text is there...
    assert page.count("</script>") == 2  # ...but only our two elements end a script
    assert "<img" not in page and "<script>document" not in page
    runs = embedded_data(page)["runs"]
    assert isinstance(runs, list)
    assert runs[0]["turns"][-1]["text"] == f"{XSS}\nFINAL(done)"  # and reads back unchanged


async def test_write_html_defaults_to_the_trajectory_path_with_html(tmp_path: Path) -> None:
    await record_scripted_run(tmp_path / "run.jsonl")
    out = write_html(tmp_path / "run.jsonl")
    assert out == tmp_path / "run.html"
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


# ---- the page in a real browser -------------------------------------------------------


def chromium() -> str:
    for name in (os.environ.get("RLM_ASYNC_CHROMIUM"), "chromium", "chromium-browser"):
        if name and (found := shutil.which(name)):
            return found
    pytest.fail(
        "the viewer tests need a headless Chromium: install it with "
        "`apt-get install -y chromium` (Debian/Ubuntu), or set RLM_ASYNC_CHROMIUM"
    )


async def dump_dom(page: Path) -> str:
    """The DOM after the page's scripts ran, from headless Chromium."""
    with tempfile.TemporaryDirectory() as profile:
        command = [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--window-size=1400,1000",
            "--dump-dom",
            page.resolve().as_uri(),
        ]
        with anyio.fail_after(120):
            done = await anyio.run_process(command, check=False)
    dom = done.stdout.decode("utf-8")
    assert done.returncode == 0 and "<body" in dom, done.stderr.decode(errors="replace")[-2000:]
    return dom


def body_attributes(dom: str) -> dict[str, str]:
    match = re.search(r"<body([^>]*)>", dom)
    assert match is not None
    return dict(re.findall(r'([\w-]+)="([^"]*)"', match.group(1)))


def assert_rendered(dom: str) -> dict[str, str]:
    body = body_attributes(dom)
    error = re.search(r'<div id="error"[^>]*>(.*?)</div>', dom, re.S)
    assert "data-error" not in body, error.group(1) if error else dom[:2000]
    assert body.get("data-ready") == "1", dom[:2000]
    return body


async def test_the_demo_run_renders_in_chromium_with_every_turn_and_sub_call(
    tmp_path: Path,
) -> None:
    path = tmp_path / "demo.jsonl"
    with TrajectoryWriter(path) as writer:
        report = await run_demo(
            lines=20_000, offline=True, root_latency=0.01, sub_latency=0.01, on_event=writer
        )
    assert report.correct and report.subcalls == 20
    dom = await dump_dom(write_html(path))
    body = assert_rendered(dom)
    assert body["data-turns"] == "3" and body["data-subcalls"] == "20"
    assert int(body["data-peak"]) > 1  # the sub-calls overlapped
    assert dom.count('data-node="turn"') == 3
    assert dom.count('data-node="cell"') == 3
    assert dom.count('data-node="subcall"') == 20
    # The timeline drew a bar for each of them.
    assert dom.count('data-bar="turn"') == 3
    assert dom.count('data-bar="sub"') == 20
    assert report.answer in dom


async def test_a_nested_run_renders_with_its_sub_rlm(tmp_path: Path) -> None:
    await record_scripted_run(tmp_path / "run.jsonl")
    body = assert_rendered(await dump_dom(write_html(tmp_path / "run.jsonl")))
    assert body["data-runs"] == "2"  # the root and the sub-RLM
    assert body["data-turns"] == "5" and body["data-subcalls"] == "5"


async def test_script_in_model_text_stays_inert_in_chromium(tmp_path: Path) -> None:
    await record_scripted_run(tmp_path / "run.jsonl", root=ScriptedModel(xss_root))
    dom = await dump_dom(write_html(tmp_path / "run.jsonl"))
    body = assert_rendered(dom)
    assert "data-pwned" not in body
    assert "<img" not in dom  # shown as text, never parsed as an element
    assert "&lt;img src=x onerror=" in dom


async def test_failed_sub_calls_and_a_failed_run_render(tmp_path: Path) -> None:
    from rlm_async import ProviderError

    def sub(request: CompletionRequest) -> str | MockReply:
        return MockReply(status=500) if "bad" in request.messages[-1].content else "fine"

    code = 'print(llm_query_batched(["good", "bad one", "bad two"]))'
    root = ScriptedModel([f"```repl\n{code}\n```"])  # its second turn raises: out of replies
    path = tmp_path / "failed.jsonl"
    with TrajectoryWriter(path) as writer, pytest.raises(ProviderError):
        async with RLM(model=root, sub_model=ScriptedModel(sub), on_event=writer) as rlm:
            await rlm.completion("ctx", "q")
    dom = await dump_dom(write_html(path))
    body = assert_rendered(dom)
    assert body["data-subcalls"] == "3"
    assert dom.count('data-kind="error"') == 2  # two red bars on the timeline
    assert "✕ ProviderResponseError" in dom and "ran out of replies" in dom


async def test_a_crashed_runs_partial_trajectory_renders(tmp_path: Path) -> None:
    await record_scripted_run(tmp_path / "run.jsonl")
    lines = (tmp_path / "run.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if '"subcall_finished"' in line)
    partial = tmp_path / "partial.jsonl"
    partial.write_text("".join(lines[:cut]) + lines[cut][:25], encoding="utf-8")
    trajectory = read_trajectory(partial)
    assert trajectory.truncated
    dom = await dump_dom(write_html(trajectory, tmp_path / "partial.html"))
    body = assert_rendered(dom)
    assert body["data-subcalls"] == "3" and "unfinished" in dom
