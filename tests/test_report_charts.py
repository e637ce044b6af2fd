"""sweep.report.charts: the geometry of each chart kind, read back from its SVG.

Every chart is parsed as the standalone SVG document Jupyter gets (``_repr_svg_``), so
these tests also check that it is well-formed XML in the SVG namespace.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from typing import Any

import numpy as np
import polars as pl
import pytest

from engine.metrics import max_drawdown
from sweep.report import charts
from sweep.report.charts.scales import (
    DIVERGING,
    MAX_LINE_POINTS,
    ColorScale,
    Linear,
    epoch_ms,
    tick_label,
    ticks,
    time_ticks,
)
from sweep.report.format import fmt_metric

NS = "{http://www.w3.org/2000/svg}"


# ------------------------------------------------------------------ helpers
def parse(chart: charts.Chart) -> ET.Element:
    root = ET.fromstring(chart._repr_svg_())
    assert root.tag == f"{NS}svg"
    assert root.get("viewBox") == f"0 0 {chart.width:.0f} {chart.height:.0f}"
    return root


def by_class(root: ET.Element, tag: str, cls: str) -> list[ET.Element]:
    return [e for e in root.iter(f"{NS}{tag}") if cls in (e.get("class") or "").split()]


def tip(e: ET.Element) -> str:
    t = e.find(f"{NS}title")
    return "" if t is None else t.text or ""


def f(e: ET.Element, attr: str) -> float:
    return float(e.get(attr))


def polyline_points(e: ET.Element) -> np.ndarray:
    return np.array([[float(v) for v in p.split(",")] for p in e.get("points").split()])


def tick_map(root: ET.Element, cls: str = "tick-y") -> list[tuple[float, str]]:
    """(pixel y of the label's baseline, label text) of an axis' tick labels."""
    return [(f(t, "y"), t.text or "") for t in by_class(root, "text", cls)]


def plot_area(root: ET.Element) -> tuple[float, float, float, float]:
    bg = by_class(root, "rect", "plot-bg")[0]
    x, y = f(bg, "x"), f(bg, "y")
    return x, y, x + f(bg, "width"), y + f(bg, "height")


# ------------------------------------------------------------------ scales
def test_ticks_are_round_and_cover_the_range() -> None:
    vals, step = ticks(-0.37, 1.42, 5)
    assert step == 0.5 and vals == [0.0, 0.5, 1.0]
    assert [tick_label(v, step) for v in vals] == ["0", "0.5", "1.0"]
    vals, step = ticks(0.0, 0.3, 4)
    assert [tick_label(v, step, pct=True) for v in vals] == ["0%", "10%", "20%", "30%"]
    vals, step = ticks(900_000, 1_250_000, 8)
    assert step == 50_000 and tick_label(vals[0], step) == "900,000"
    assert ticks(1.0, 1.0) == ([1.0], 1.0)


def test_time_ticks_pick_a_calendar_unit() -> None:
    def ms(s: str) -> float:
        return float(epoch_ms(np.array([s], dtype="datetime64[ms]"))[0])

    years = time_ticks(ms("2010-03-05"), ms("2019-11-20"))
    assert [label for _, label in years] == ["2012", "2014", "2016", "2018"]
    months = time_ticks(ms("2020-01-15"), ms("2020-09-01"))
    assert months[0][1] == "2020-02" and len(months) == 8
    hours = time_ticks(ms("2020-01-02T09:30"), ms("2020-01-02T16:00"))
    assert [label for _, label in hours] == [f"01-02 {h:02d}:00" for h in range(10, 17)]
    assert all(ms("2020-01-02T09:30") <= t <= ms("2020-01-02T16:00") for t, _ in hours)


def test_colour_scales() -> None:
    s = ColorScale.fit([-1.0, 0.5, 2.0], "sharpe")
    assert s.diverging and (s.lo, s.hi) == (-2.0, 2.0)
    assert s.color(2.0) == DIVERGING[-1] and s.color(-2.0) == DIVERGING[0]
    dd = ColorScale.fit([0.05, 0.4], "max_drawdown")  # lower is better: small = green
    assert dd.flip and not dd.diverging and dd.color(0.05) == "#0b4a22"
    assert Linear(0, 10, 100, 0)(np.array([0.0, 10.0])).tolist() == [100.0, 0.0]


def test_epoch_ms_reads_numpy_polars_and_dates() -> None:
    want = 1262563200000.0  # 2010-01-04
    assert epoch_ms(np.array(["2010-01-04"], dtype="datetime64[D]"))[0] == want
    ns = pl.Series(np.array(["2010-01-04"], dtype="datetime64[ns]"))
    assert epoch_ms(ns)[0] == want
    s = pl.Series(["2010-01-04"]).str.to_date()
    assert epoch_ms(s)[0] == want
    utc = ns.dt.replace_time_zone("UTC")
    assert epoch_ms(utc.dt.convert_time_zone("America/New_York"))[0] == want


# ------------------------------------------------------------------ heatmap
def test_heatmap_cells_positions_colours_and_labels() -> None:
    values = np.array([[1.0, -0.5, np.nan], [2.0, 0.25, 0.5]])  # 2 rows (y) x 3 cols (x)
    counts = np.array([[4, 2, 0], [1, 3, 5]])
    c = charts.heatmap(values, ["5", "10", "20"], ["50", "100"], metric="sharpe",
                       x_name="fast", y_name="slow", counts=counts, mins=values - 1,
                       maxs=values + 1, chart_title="demo", id="hm")
    root = parse(c)
    assert root.get("id") == "hm"
    cells = by_class(root, "rect", "heatmap-cell")
    empty = by_class(root, "rect", "heatmap-empty")
    assert (len(cells), len(empty)) == (5, 1)
    pos = {(int(e.get("data-x")), int(e.get("data-y"))): e for e in cells}
    assert set(pos) == {(0, 0), (1, 0), (0, 1), (1, 1), (2, 1)}
    # A regular grid: x grows with the column, y shrinks with the row (first y at the bottom).
    cw = f(pos[1, 0], "x") - f(pos[0, 0], "x")
    ch = f(pos[0, 0], "y") - f(pos[0, 1], "y")
    assert cw > 0 and ch > 0
    for (xi, yi), e in pos.items():
        assert f(e, "x") == pytest.approx(f(pos[0, 0], "x") + xi * cw, abs=0.11)
        assert f(e, "y") == pytest.approx(f(pos[0, 0], "y") - yi * ch, abs=0.11)
        assert f(e, "width") == pytest.approx(cw - 1, abs=0.11)
    assert f(empty[0], "x") == pytest.approx(f(pos[0, 0], "x") + 2 * cw, abs=0.11)
    # Colours: the scale is diverging and symmetric (|max| = 2): 2 is the greenest end.
    assert pos[0, 1].get("fill") == DIVERGING[-1]
    assert pos[1, 0].get("fill") != pos[1, 1].get("fill")
    # Hover text: where, value, count, range.
    assert tip(pos[0, 0]) == "fast=5, slow=50: mean sharpe 1.000 over 4 runs (min 0.000, max 2.000)"
    assert tip(pos[0, 1]).endswith("over 1 run")
    assert tip(empty[0]) == "fast=20, slow=50: no runs"
    # Tick labels: centred under their column / beside their row.
    xlabels = {t.text: f(t, "x") for t in by_class(root, "text", "tick-x")}
    for xi, label in enumerate(["5", "10", "20"]):
        assert xlabels[label] == pytest.approx(f(pos[0, 0], "x") + xi * cw + cw / 2, abs=0.11)
    ylabels = {t.text: f(t, "y") for t in by_class(root, "text", "tick-y")}
    assert ylabels["100"] < ylabels["50"]
    # The legend: swatches and its own round ticks.
    assert len(by_class(root, "rect", "legend-swatch")) == 48
    assert [t.text for t in by_class(root, "text", "tick")] == ["-2", "-1", "0", "1", "2"]


def test_heatmap_rejects_mismatched_labels_and_legend_alone() -> None:
    with pytest.raises(ValueError, match="shape"):
        charts.heatmap(np.zeros((2, 2)), ["a"], ["b", "c"], metric="sharpe", x_name="x")
    leg = parse(charts.colour_legend(ColorScale.fit([0.1, 0.3], "max_drawdown"),
                                     "max_drawdown"))
    texts = [t.text for t in leg.iter(f"{NS}text")]
    assert "mean max_drawdown (lower is better)" in texts
    assert "10%" in texts and "30%" in texts


# ------------------------------------------------------------------ histogram
def test_histogram_bars_are_proportional_to_counts() -> None:
    v = np.random.default_rng(3).normal(0.5, 1.0, 500)
    values = np.concatenate([v, [np.nan, np.inf]])
    root = parse(charts.histogram(values, "sharpe", bins=12, n_total=510, id="h"))
    bars = by_class(root, "rect", "hist-bar")
    assert len(bars) == 12
    counts = [int(re.search(r": (\d+) runs?$", tip(b)).group(1)) for b in bars]
    want, edges = np.histogram(v, bins=12, range=(v.min(), v.max()))
    assert counts == want.tolist() and sum(counts) == 500
    # Heights proportional to the counts, all standing on the same baseline.
    per_run = max(f(b, "height") for b in bars) / max(counts)
    for b, c in zip(bars, counts, strict=True):
        assert f(b, "height") == pytest.approx(c * per_run, abs=0.11)  # rounded to 0.1 px
    bottoms = {round(f(b, "y") + f(b, "height"), 1) for b in bars}
    assert len(bottoms) == 1
    # Bars side by side, left to right, equal widths.
    xs = [f(b, "x") for b in bars]
    assert xs == sorted(xs) and np.ptp([f(b, "width") for b in bars]) < 0.15
    # Negative bins (higher-is-better metric) in the warning colour.
    neg = [b for b, lo, hi in zip(bars, edges[:-1], edges[1:], strict=True) if lo + hi < 0]
    assert neg and all("neg" in b.get("class") for b in neg)
    # The median line at the median's x, interpolated between the bar edges.
    med = by_class(root, "line", "hist-median")[0]
    x_of = Linear(edges[0], edges[-1], xs[0] - 0.5, xs[-1] - 0.5 + f(bars[-1], "width") + 1)
    assert f(med, "x1") == pytest.approx(x_of(float(np.median(v))), abs=0.2)
    assert "500 runs; 10 without a value" in "".join(t.text or "" for t in root.iter())


def test_histogram_of_nothing_and_of_a_constant() -> None:
    root = parse(charts.histogram(np.array([np.nan]), "sharpe"))
    assert not by_class(root, "rect", "hist-bar")
    root = parse(charts.histogram(np.full(7, 0.3), "total_return"))
    assert sum(int(re.search(r": (\d+) runs?$", tip(b)).group(1))
               for b in by_class(root, "rect", "hist-bar")) == 7


# ------------------------------------------------------------------ bars
def test_grouped_bars_heights_signs_and_gaps() -> None:
    values = [[1.5, -0.5], [None, 0.75], [2.0, float("nan")]]
    root = parse(charts.grouped_bars(["a", "b", "c"], ["is", "oos"], values, metric="sharpe"))
    bars = by_class(root, "rect", "bar")
    assert len(bars) == 4  # None and NaN draw nothing
    zero = next(e for e in by_class(root, "line", "grid") if "zero" in e.get("class"))
    y0 = f(zero, "y1")
    drawn = [v for row in values for v in row if v is not None and not math.isnan(v)]
    per_unit = [f(b, "height") / abs(v) for b, v in zip(bars, drawn, strict=True)]
    assert max(per_unit) - min(per_unit) < 0.1
    for b, v in zip(bars, drawn, strict=True):
        if v > 0:
            assert f(b, "y") + f(b, "height") == pytest.approx(y0, abs=0.11)
        else:
            assert f(b, "y") == pytest.approx(y0, abs=0.11)
    groups = {t.text: f(t, "x") for t in by_class(root, "text", "tick-x")}
    assert groups["a"] < groups["b"] < groups["c"]
    series1 = [b for b in bars if "s1" in b.get("class").split()]
    assert len(series1) == 2 and all(f(b, "x") > groups["a"] - 30 for b in series1)


def test_fold_bars() -> None:
    root = parse(charts.fold_bars([0, 1, 2], [1.2, 0.8, 1.5], [0.3, -0.2, None]))
    assert root.get("id") == "fold-sharpe-chart"
    bars = by_class(root, "rect", "fold-bar")
    assert len([b for b in bars if "bar" in b.get("class").split()]) == 5
    assert tip(bars[1]) == "fold 0 out of sample sharpe 0.300"
    assert {t.text for t in by_class(root, "text", "tick-x")} == {"F0", "F1", "F2"}


# ------------------------------------------------------------------ lines
def _days(n: int, start: str = "2015-01-01") -> np.ndarray:
    return np.arange(np.datetime64(start), np.datetime64(start) + n)


def test_line_chart_points_ticks_and_bands() -> None:
    t = _days(800)
    rng = np.random.default_rng(0)
    a = 1e6 * np.cumprod(1 + rng.normal(0.0005, 0.01, t.size))
    b = np.linspace(1e6, 1.3e6, t.size)
    b[100:110] = np.nan  # gaps are left out
    bands = [charts.Band(t[0], t[300], "F0", "fold 0"),
             charts.Band(t[300], t[-1], "F1", "fold 1")]
    c = charts.line_chart([charts.Line("a", t, a, id="la"),
                           charts.Line("b", t, b, dash="6 3", color="#e08a1e")],
                          bands=bands, chart_title="demo", id="lc")
    assert c.fluid and 'width="100%"' in c.svg() and 'width="100%"' not in c._repr_svg_()
    root = parse(c)
    x0, y0, x1, y1 = plot_area(root)
    lines = list(root.iter(f"{NS}polyline"))
    assert [e.get("id") for e in lines] == ["la", None]
    pa, pb = polyline_points(lines[0]), polyline_points(lines[1])
    assert len(pa) == t.size and len(pb) == t.size - 10
    assert lines[1].get("stroke") == "#e08a1e" and lines[1].get("stroke-dasharray") == "6 3"
    for pts in (pa, pb):
        assert np.all(np.diff(pts[:, 0]) > 0)
        assert pts[:, 0].min() >= x0 - 0.05 and pts[:, 0].max() <= x1 + 0.05
        assert pts[:, 1].min() >= y0 - 0.05 and pts[:, 1].max() <= y1 + 0.05
    assert pa[0, 0] == pytest.approx(x0, abs=0.06) and pa[-1, 0] == pytest.approx(x1, abs=0.06)
    # The y tick labels and the points use one linear scale.
    tk = [(y, float(label.replace(",", ""))) for y, label in tick_map(root)]
    assert len(tk) >= 3
    (ya, va), (yb, vb) = tk[0], tk[-1]
    to_y = Linear(va, vb, ya - 4, yb - 4)  # labels sit 4 px under their grid line
    np.testing.assert_allclose(pa[:, 1], to_y(a), atol=0.15)  # both rounded to 0.1 px
    # Calendar ticks inside the plot, in order.
    xt = [(f(e, "x"), e.text) for e in by_class(root, "text", "tick-x")]
    assert [label for _, label in xt] == ["2015-01", "2015-07", "2016-01", "2016-07",
                                          "2017-01"]
    assert xt[0][0] == pytest.approx(x0, abs=0.06)  # the first bar is on 2015-01-01
    assert all(x0 <= x <= x1 for x, _ in xt)
    # Fold bands: one shaded rect and one dashed boundary each, at the band's start.
    rects = by_class(root, "rect", "fold-band")
    bounds = by_class(root, "line", "fold-boundary")
    assert len(rects) == len(bounds) == 2
    assert f(bounds[0], "x1") == pytest.approx(x0, abs=0.06)
    assert f(bounds[1], "x1") == pytest.approx(pa[300, 0], abs=0.06)
    assert tip(rects[1]) == "fold 1"
    # The legend names both lines.
    assert [e.text for e in root.iter(f"{NS}text") if e.text in ("a", "b")] == ["a", "b"]


def test_line_chart_thins_long_series_and_wraps_its_legend() -> None:
    t = np.arange(np.datetime64("2020-01-01T00:00"), np.datetime64("2020-01-01T00:00") + 20_000)
    y = np.sin(np.arange(t.size) / 500.0)
    labels = [f"a rather long label for curve number {i}" for i in range(8)]
    c = charts.line_chart([charts.Line(s, t, y + i) for i, s in enumerate(labels)])
    root = parse(c)
    for e in root.iter(f"{NS}polyline"):
        pts = polyline_points(e)
        assert MAX_LINE_POINTS - 5 <= len(pts) <= MAX_LINE_POINTS
    keys = by_class(root, "line", "legend-key")
    rows = sorted({f(k, "y1") for k in keys})
    assert len(keys) == 8 and len(rows) >= 2
    assert all(f(k, "x2") <= c.width for k in keys)
    assert plot_area(root)[1] > rows[-1]  # the plot starts under the legend


def test_drawdown_chart_marks_the_max_drawdown() -> None:
    t = _days(500)
    rng = np.random.default_rng(7)
    eq = 1e6 * np.cumprod(1 + rng.normal(0.0002, 0.015, t.size))
    want = float(max_drawdown(eq, 1e6))
    root = parse(charts.drawdown_chart(t, eq, start=1e6, area_id="dd"))
    x0, _, x1, y1 = plot_area(root)
    area = root.find(f".//{NS}polygon[@id='dd']")
    pts = polyline_points(area)
    zero_y = pts[0, 1]
    assert pts[-1, 1] == zero_y and np.all(pts[:, 1] >= zero_y - 0.05)
    assert np.all((pts[:, 1] <= y1 + 0.05) & (pts[:, 0] >= x0 - 0.05) & (pts[:, 0] <= x1 + 0.05))
    label = by_class(root, "text", "dd-label")[0].text
    assert label == f"max drawdown {fmt_metric('max_drawdown', want)}"
    dot = by_class(root, "circle", "dd-worst")[0]
    assert f(dot, "cy") == pytest.approx(pts[:, 1].max(), abs=0.06)  # the deepest point
    assert [e.text for e in by_class(root, "text", "tick-y")][-1] == "0%"


@pytest.mark.parametrize("seed", range(5))
def test_drawdown_series_agrees_with_the_metric(seed: int) -> None:
    rng = np.random.default_rng(seed)
    eq = 100 * np.cumprod(1 + rng.normal(0, 0.03, 300))
    for start in (None, 100.0, 150.0):
        dd = charts.drawdown_series(eq, start)
        assert np.all(dd <= 0)
        init = eq[0] if start is None else start
        assert -dd.min() == pytest.approx(max_drawdown(eq, init), abs=1e-12)


# ------------------------------------------------------------------ Jupyter
def test_charts_render_inline_and_save(tmp_path: Any) -> None:
    c = charts.histogram(np.arange(10.0), "sharpe", id="h")
    html = c._repr_html_()
    assert html.startswith('<figure class="chart histogram"') and "<svg" in html
    assert "xmlns" not in html  # inline in HTML: no namespace needed
    assert 'xmlns="http://www.w3.org/2000/svg"' in c._repr_svg_()
    path = c.save(tmp_path / "h.svg")
    assert ET.parse(path).getroot().tag == f"{NS}svg"
    assert repr(c) == "<Chart histogram: histogram of sharpe>"
