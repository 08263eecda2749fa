"""The console's SVG charts: well-formed, escaped, scaled, and honest about missing data."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from aayu_accounts.console.charts import (
    Frame,
    Series,
    bar_chart,
    goal_chart,
    line_chart,
    nice_ceiling,
    percent,
    plain,
)

SVG = "{http://www.w3.org/2000/svg}"


def parse(markup: str) -> ET.Element:
    return ET.fromstring(markup)  # noqa: S314 - our own output, parsed to prove it is well-formed


def test_line_chart_is_an_accessible_svg_with_one_path_per_series() -> None:
    chart = line_chart(
        [Series("errors", [(0, 0.01), (60, 0.02), (120, 0.04)]), Series("p95", [(0, 0.5)])],
        title="Error rate",
        y_format=percent,
        y_max=1.0,
    )
    root = parse(chart)
    assert root.get("role") == "img"
    assert root.get("aria-label") == "Error rate"
    assert root.findtext(f"{SVG}title") == "Error rate"
    desc = root.findtext(f"{SVG}desc") or ""
    assert "errors: last 4.0 %, min 1.0 %, max 4.0 %" in desc
    assert len(root.findall(f"{SVG}path")) == 1  # the second series is a single point
    assert len(root.findall(f"{SVG}circle")) == 1
    assert "style=" not in chart  # CSP: presentation attributes only


def test_points_are_scaled_into_the_plot_area() -> None:
    frame = Frame(width=200, height=100, left=0, right=0, top=0, bottom=0)
    chart = line_chart([Series("s", [(0, 0), (10, 5), (20, 10)])], title="t", frame=frame)
    path = parse(chart).find(f"{SVG}path")
    assert path is not None
    # y max 10 (nice), x spans 0..20: (0,0) is bottom left, (20,10) top right.
    assert path.get("d") == "M0,100 L100,50 L200,0"


def test_a_gap_splits_the_line() -> None:
    chart = line_chart([Series("s", [(0, 1), (1, 2), (2, None), (3, 1), (4, 2)])], title="t")
    assert len(parse(chart).findall(f"{SVG}path")) == 2


def test_no_data_says_so() -> None:
    chart = line_chart([Series("s", [(0, None)])], title="Sign-ins")
    root = parse(chart)
    assert "No data yet" in "".join(root.itertext())
    assert root.findall(f"{SVG}path") == []
    assert "s: no data" in (root.findtext(f"{SVG}desc") or "")


def test_text_is_escaped() -> None:
    hostile = '<script>alert("x")</script>'
    chart = line_chart([Series(hostile, [(0, 1), (1, 2)]), Series("b", [])], title=hostile)
    assert "<script>" not in chart
    assert "&lt;script&gt;" in chart
    parse(chart)
    bars = bar_chart([(hostile, 1.0)], title=hostile)
    assert "<script>" not in bars
    parse(bars)


def test_threshold_line_and_its_scale() -> None:
    chart = line_chart(
        [Series("p95", [(0, 0.2), (1, 0.4)])], title="Latency", threshold=3.0, threshold_label="3 s"
    )
    root = parse(chart)
    lines = [el for el in root.findall(f"{SVG}line") if el.get("class") == "threshold"]
    assert len(lines) == 1
    # The scale grows to show the threshold (3 -> nice 5), so the line is inside the plot.
    labels = [el.text for el in root.findall(f"{SVG}text")]
    assert "5" in labels
    assert "3 s" in labels


def test_bar_chart_marks_bars_over_the_limit() -> None:
    chart = bar_chart([("Mon", 3), ("Tue", 12)], title="Notes", limit=10, limit_label="quota")
    root = parse(chart)
    rects = root.findall(f"{SVG}rect")
    assert [r.findtext(f"{SVG}title") for r in rects] == ["Mon: 3", "Tue: 12"]
    assert rects[0].get("fill") != rects[1].get("fill")
    assert "quota: 10" in (root.findtext(f"{SVG}desc") or "")


def test_bar_chart_without_bars() -> None:
    root = parse(bar_chart([], title="Nothing"))
    assert "No data yet" in "".join(root.itertext())


def test_goal_chart_caps_at_the_goal() -> None:
    half = parse(goal_chart(2500, 5000, title="MRR", value_format=plain, width=200))
    assert half.findtext(f"{SVG}desc") == "2,500 of 5,000 (50 %)"
    widths = [r.get("width") for r in half.findall(f"{SVG}rect")]
    assert widths == ["200", "100"]
    over = parse(goal_chart(9000, 5000, title="MRR", width=200))
    assert [r.get("width") for r in over.findall(f"{SVG}rect")] == ["200", "200"]
    assert parse(goal_chart(1, 0, title="x")).findtext(f"{SVG}desc") == "1 of 0 (0 %)"


def test_nice_ceiling_and_formatters() -> None:
    assert [nice_ceiling(v) for v in (0, 0.03, 1, 3, 7, 11, 240)] == [1, 0.05, 1, 5, 10, 20, 250]
    assert plain(1234.0) == "1,234"
    assert plain(0.25) == "0.25"
    assert percent(0.051) == "5.1 %"
    assert re.fullmatch(r"[\d.]+ %", percent(1.0))
