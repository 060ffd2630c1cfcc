"""The trajectory viewer: one self-contained HTML page per run (``rlm-async view``).

The page has no external resources and needs no build step: CSS and JavaScript
(``_viewer_assets/``) are inlined, and the run tree is embedded as JSON in a
``<script type="application/json">`` element that the inline script renders.

Model text is untrusted, so the page is built to be inert whatever it contains:

* the JSON is serialised with ``<``, ``>`` and ``&`` as ``\\u003c``-style escapes, so no
  string can close the data element;
* the script only ever puts text into the page with ``textContent`` / text nodes;
* a Content-Security-Policy allows exactly the one inline script (by its SHA-256 hash)
  and no network at all, so even markup that got in could neither run nor phone home.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import json
import os
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from rlm_async.trajectory._files import _env_secrets, _scrub
from rlm_async.trajectory._nodes import RunNode
from rlm_async.trajectory._reader import Trajectory, read_trajectory

__all__ = ["render_html", "viewer_data", "write_html"]

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="generator" content="rlm-async {version}">
<title>{title}</title>
<style>
{css}
</style>
</head>
<body>
<div id="error" role="alert" hidden></div>
<main id="app"></main>
<script type="application/json" id="rlm-data">{data}</script>
<script>{js}</script>
</body>
</html>
"""


@cache
def _asset(name: str) -> str:
    assets = resources.files("rlm_async.trajectory") / "_viewer_assets"
    return (assets / name).read_text(encoding="utf-8")


def _node(obj: Any) -> Any:
    """A tree node as plain JSON data, with its ``totals`` (calls, tokens, cost)."""
    if isinstance(obj, list | tuple):
        return [_node(item) for item in obj]
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        return obj
    out = {f.name: _node(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    totals = getattr(obj, "totals", None)
    if callable(totals):
        out["totals"] = dataclasses.asdict(totals())
    return out


def _end(runs: list[RunNode], trajectory: Trajectory) -> float:
    last = max((e.t for e in trajectory.events), default=0.0)
    return max([last, *(r.end or 0.0 for r in runs)])


def viewer_data(trajectory: Trajectory) -> dict[str, Any]:
    """What the page embeds: the header, the run tree with per-node totals, the end time.

    Strings are scrubbed of API keys again (see ``trajectory.scrub_secrets``), so a
    trajectory that was not written by ``TrajectoryWriter`` is safe to share too.
    """
    runs = trajectory.tree()
    data = {
        "header": trajectory.header.model_dump(mode="json"),
        "source": trajectory.path.name if trajectory.path else None,
        "truncated": trajectory.truncated,
        "event_count": len(trajectory.events),
        "end": _end(runs, trajectory),
        "runs": _node(runs),
    }
    scrubbed: dict[str, Any] = _scrub(data, _env_secrets())
    return scrubbed


def _json_for_script(data: Any) -> str:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    # Inside <script> only "</" can end the element; escaping every <, > and & (and the
    # two JavaScript line separators) leaves nothing to interpret, and JSON.parse reads
    # the escapes back as the same characters.
    return (
        text.replace("&", "\\u0026")
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def render_html(trajectory: Trajectory, *, title: str | None = None) -> str:
    """The viewer page for ``trajectory``, as one self-contained HTML string.

    Args:
        trajectory: A trajectory (see ``read_trajectory``).
        title: The page title (default: from the query).
    """
    from rlm_async._version import __version__

    js = _asset("viewer.js")
    digest = base64.b64encode(hashlib.sha256(js.encode("utf-8")).digest()).decode("ascii")
    csp = (
        "default-src 'none'; "
        f"script-src 'sha256-{digest}'; "
        "style-src 'unsafe-inline'; img-src data:; "
        "base-uri 'none'; form-action 'none'"
    )
    query = trajectory.header.query or ""
    if title is None:
        short = " ".join(query.split())
        title = "rlm-async trajectory" + (f" · {short[:80]}" if short else "")
    return _TEMPLATE.format(
        csp=csp,
        version=html.escape(__version__),
        title=html.escape(title),
        css=_asset("viewer.css"),
        data=_json_for_script(viewer_data(trajectory)),
        js=js,
    )


def write_html(
    trajectory: Trajectory | str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
) -> Path:
    """Write the viewer page for a trajectory (or a trajectory file).

    Args:
        trajectory: A ``Trajectory`` or the path of a ``.jsonl`` trajectory file.
        out: The HTML file to write (default: the trajectory's path with ``.html``).

    Returns:
        The path written.

    Raises:
        TrajectoryError: the trajectory file is malformed.
        ValueError: no ``out`` was given for an in-memory trajectory.
    """
    if not isinstance(trajectory, Trajectory):
        trajectory = read_trajectory(trajectory)
    if out is None:
        if trajectory.path is None:
            raise ValueError(
                "write_html needs `out` for a trajectory that was not read from a file"
            )
        out = trajectory.path.with_suffix(".html")
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_html(trajectory), encoding="utf-8")
    return target
