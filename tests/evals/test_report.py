"""The report from a hand-made results file: the table's numbers, and a page that loads nothing."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from rlm_async._exceptions import ConfigurationError
from rlm_async.evals._report import html_report, markdown_report, summarize, write_report
from rlm_async.evals._report_svg import size_label
from rlm_async.evals._results import percentile, read_rows


def row(method: str, size: int, seed: int, score: float, cost: float | None, latency: float,
        error: str | None = None) -> dict[str, Any]:  # fmt: skip
    model = "gpt-5 + gpt-5-mini" if method == "rlm" else "gpt-5"
    return {
        "id": f"count-{size}-s{seed}", "task": "count", "size": size, "seed": seed,
        "method": method, "model": model, "answer": "x", "gold": "x", "score": score,
        "input_tokens": 1_000 * (seed + 1), "output_tokens": 10, "cached_tokens": 0,
        "cost": cost, "latency_s": latency, "turns": 1, "subcalls": 0, "context_chars": size * 4,
        "truncated": None, "trajectory": None, "error": error,
    }  # fmt: skip


ROWS = [
    row("direct", 8_000, 0, 0.0, 0.001, 10.0),
    row("rlm", 8_000, 0, 1.0, 0.01, 3.0),
    row("rlm", 16_000, 0, 0.5, None, 4.0),
    row("rlm", 8_000, 1, 1.0, 0.02, 1.0),
    row("direct", 8_000, 1, 1.0, None, 20.0),
    row("rlm", 8_000, 2, 0.0, 0.03, 2.0, error="ProviderResponseError: scripted error 500"),
]

TABLE = """\
### count

Models: rlm: gpt-5 + gpt-5-mini; direct: gpt-5

| method | size | score (%) | mean cost | p50 latency | p95 latency | n | errors |
|---|---|---:|---:|---:|---:|---:|---:|
| rlm | 8k | 66.7 | $0.0200 | 2.00 s | 2.90 s | 3 | 1 |
| rlm | 16k | 50.0 | — | 4.00 s | 4.00 s | 1 | 0 |
| direct | 8k | 50.0 | $0.0010 | 15.00 s | 19.50 s | 2 | 0 |
"""


@pytest.fixture
def results(tmp_path: Path) -> Path:
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def test_the_table_from_the_rows(results: Path) -> None:
    rlm8, rlm16, direct8 = summarize(read_rows(results))
    assert (rlm8.method, rlm8.size, rlm8.n, rlm8.errors) == ("rlm", 8_000, 3, 1)
    assert rlm8.score == pytest.approx(2 / 3) and rlm8.cost == pytest.approx(0.02)
    assert (rlm8.latency_p50, rlm8.latency_p95) == pytest.approx((2.0, 2.9))
    assert rlm8.input_tokens == pytest.approx(2_000)
    assert rlm16.cost is None and rlm16.latency_p95 == 4.0
    assert direct8.cost == pytest.approx(0.001)  # the priced row's cost: the other had none
    assert (direct8.latency_p50, direct8.latency_p95) == pytest.approx((15.0, 19.5))
    assert markdown_report(read_rows(results)) == TABLE


def test_percentiles() -> None:
    assert math.isnan(percentile([], 0.5))
    assert percentile([7.0], 0.95) == 7.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.5
    assert percentile([float(i) for i in range(101)], 0.95) == pytest.approx(95.0)


def test_size_labels() -> None:
    assert [size_label(s) for s in (8_000, 128_000, 1_000_000, 1_500_000, 4_096, 900)] == [
        "8k", "128k", "1M", "1.5M", "4096", "900",
    ]  # fmt: skip


def test_the_page_is_self_contained(results: Path) -> None:
    markdown, page = write_report(results)
    assert markdown == results.with_name("report.md") and markdown.read_text() == TABLE
    html = page.read_text()
    assert page == results.with_name("report.html")
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"<(script|link|img|iframe)\b", html)
    assert not re.search(r"\b(src|href)\s*=", html)
    # The two charts, a line per method, and the table's numbers.
    assert html.count("<svg") == 2 and "score (%)" in html and "mean cost per example" in html
    # A line joins two sizes: rlm's score only (its cost is priced at 8k alone; direct has 8k).
    assert html.count("<polyline") == 1 and html.count("<circle") == 2 + 1 + 1 + 1
    assert '<td class="num">66.7</td>' in html and "$0.0200" in html


def test_names_in_the_page_are_escaped() -> None:
    rows = [{**ROWS[0], "task": "<b>x</b>", "method": "a&b"}]
    html = html_report(rows)
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html and "a&amp;b" in html


def test_a_page_with_no_prices_says_so_and_no_rows_is_a_page() -> None:
    rows = [{**r, "cost": None} for r in ROWS]
    html = html_report(rows)
    assert html.count("<svg") == 1 and "No cost" in html
    assert "No rows yet" in html_report([])


def test_a_file_that_is_not_results(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text('{"hello": 1}\n{"id": "x"}\n')
    with pytest.raises(ConfigurationError, match=r"results\.jsonl:1 is not a results row"):
        read_rows(path)
