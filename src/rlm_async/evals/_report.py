"""The report of an evaluation, from its JSONL file: a table in the paper's shape and charts.

One line per method and size: mean score (in %, as the paper writes it), mean cost, p50 and
p95 latency, rows and failed rows. ``report.md`` has the tables; ``report.html`` has them
too, with score and cost drawn against the input length, in one file that loads nothing.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from rlm_async.evals._report_svg import line_chart, size_label
from rlm_async.evals._results import percentile, read_rows

__all__ = ["Summary", "html_report", "markdown_report", "summarize", "write_report"]

# The built-in methods first, in the paper's order; others after them by name.
_METHOD_ORDER = {"rlm": 0, "direct": 1}


@dataclass(frozen=True)
class Summary:
    """One line of the table: a method at a size.

    Attributes:
        task: The task.
        method: The method.
        model: The model(s) the method ran.
        size: The context size in tokens.
        n: Rows.
        errors: Rows that failed (scored 0).
        score: Mean score, 0 to 1.
        cost: Mean cost in USD of the rows that were priced (``None``: none was).
        latency_p50: Median seconds per row.
        latency_p95: 95th percentile seconds per row.
        input_tokens: Mean input tokens per row.
    """

    task: str
    method: str
    model: str
    size: int
    n: int
    errors: int
    score: float
    cost: float | None
    latency_p50: float
    latency_p95: float
    input_tokens: float


def summarize(rows: Sequence[dict[str, Any]]) -> list[Summary]:
    """The table's lines, by task, method (``rlm``, ``direct``, then others) and size."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((str(row["task"]), str(row["method"]), int(row["size"])), []).append(row)
    lines = []
    for (task, method, size), members in groups.items():
        costs = [float(r["cost"]) for r in members if r.get("cost") is not None]
        latencies = [float(r.get("latency_s") or 0.0) for r in members]
        lines.append(
            Summary(
                task=task,
                method=method,
                model=str(members[-1].get("model") or ""),
                size=size,
                n=len(members),
                errors=sum(1 for r in members if r.get("error")),
                score=sum(float(r.get("score") or 0.0) for r in members) / len(members),
                cost=sum(costs) / len(costs) if costs else None,
                latency_p50=percentile(latencies, 0.5),
                latency_p95=percentile(latencies, 0.95),
                input_tokens=sum(int(r.get("input_tokens") or 0) for r in members) / len(members),
            )
        )
    return sorted(
        lines,
        key=lambda s: (s.task, _METHOD_ORDER.get(s.method, len(_METHOD_ORDER)), s.method, s.size),
    )


def _cost(value: float | None) -> str:
    return "—" if value is None else f"${value:.4f}"


def _seconds(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.2f} s"


_HEADER = ("method", "size", "score (%)", "mean cost", "p50 latency", "p95 latency", "n", "errors")


def _cells(line: Summary) -> tuple[str, ...]:
    return (
        line.method,
        size_label(line.size),
        f"{line.score * 100:.1f}",
        _cost(line.cost),
        _seconds(line.latency_p50),
        _seconds(line.latency_p95),
        str(line.n),
        str(line.errors),
    )


def _by_task(lines: list[Summary]) -> dict[str, list[Summary]]:
    tasks: dict[str, list[Summary]] = {}
    for line in lines:
        tasks.setdefault(line.task, []).append(line)
    return tasks


def _models(lines: list[Summary]) -> str:
    models = {line.method: line.model for line in lines}
    return "; ".join(f"{method}: {model}" for method, model in models.items())


def markdown_report(rows: Sequence[dict[str, Any]]) -> str:
    """The tables as Markdown, one per task, with the models each method ran."""
    out = []
    for task, lines in _by_task(summarize(rows)).items():
        out += [f"### {task}", "", f"Models: {_models(lines)}", ""]
        out.append("| " + " | ".join(_HEADER) + " |")
        out.append("|" + "|".join(["---", "---", *["---:"] * (len(_HEADER) - 2)]) + "|")
        out += ["| " + " | ".join(_cells(line)) + " |" for line in lines]
        out.append("")
    return "\n".join(out)


_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #1d1d1f; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { padding: 0.3em 0.8em; border-bottom: 1px solid #ddd; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; }
svg { font: 12px system-ui, sans-serif; background: #fafafa; border: 1px solid #eee; }
svg .title { font-weight: 600; font-size: 13px; }
svg .grid { stroke: #e3e3e3; }
svg polyline { stroke-width: 2; }
.muted { color: #666; }
"""


def _html_table(lines: list[Summary]) -> str:
    head = "".join(
        f'<th class="{"" if i < 2 else "num"}">{escape(h)}</th>' for i, h in enumerate(_HEADER)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="{"" if i < 2 else "num"}">{escape(cell)}</td>'
            for i, cell in enumerate(_cells(line))
        )
        + "</tr>"
        for line in lines
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _series(lines: list[Summary], value: str) -> dict[str, dict[int, float]]:
    series: dict[str, dict[int, float]] = {}
    for line in lines:
        number = getattr(line, value)
        points = series.setdefault(line.method, {})
        if number is not None:
            points[line.size] = number * 100 if value == "score" else number
    return series


def html_report(rows: Sequence[dict[str, Any]], *, title: str = "rlm-async eval") -> str:
    """A self-contained HTML page: per task, the table and charts of score and cost against
    the input length (inline SVG; no script, no link, nothing fetched)."""
    sections = []
    for task, lines in _by_task(summarize(rows)).items():
        charts = line_chart("score (%)", _series(lines, "score"), y_max=100.0)
        if any(line.cost is not None for line in lines):
            charts += line_chart(
                "mean cost per example (USD)",
                _series(lines, "cost"),
                y_format=lambda v: f"${v:.3g}",
            )
        else:
            charts += '<p class="muted">No cost: these models have no prices.</p>'
        sections.append(
            f"<section><h2>{escape(task)}</h2>"
            f'<p class="muted">Models: {escape(_models(lines))}</p>'
            f'{_html_table(lines)}<div class="charts">{charts}</div></section>'
        )
    body = "".join(sections) or "<p>No rows yet.</p>"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>\n"
    )


def write_report(results: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` beside the results file.

    Args:
        results: The JSONL file :func:`~rlm_async.evals.run_eval` wrote.

    Returns:
        The paths of the Markdown and the HTML report.
    """
    path = Path(results)
    rows = read_rows(path)
    markdown = path.with_name("report.md")
    page = path.with_name("report.html")
    markdown.write_text(markdown_report(rows), encoding="utf-8")
    page.write_text(html_report(rows, title=f"rlm-async eval: {path.name}"), encoding="utf-8")
    return markdown, page
