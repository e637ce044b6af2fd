"""Bar charts: a histogram of a metric across runs, and grouped bars (in-sample vs
out-of-sample per fold, a parameter's neighbours around the best point).

Example:
    >>> import numpy as np
    >>> c = histogram(np.array([0.1, 0.2, 0.2, 0.9]), "sharpe", bins=4)
    >>> c.svg().count('class="hist-bar"')
    4
    >>> g = grouped_bars(["F0", "F1"], ["in sample", "out of sample"],
    ...                  [[1.0, 0.5], [1.2, None]], metric="sharpe")
    >>> g.svg().count('class="bar ')
    3
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from engine.metrics import LOWER_IS_BETTER
from sweep.report.charts.scales import PALETTE, Linear, pad, tick_label, ticks
from sweep.report.charts.svg import AXIS, GRID, MUTED, Chart, line, rect, text, title
from sweep.report.format import PERCENT_METRICS, fmt_metric, num

__all__ = ["BAR", "BAR_NEGATIVE", "fold_bars", "grouped_bars", "histogram"]

BAR = "#4f7fc4"  # histogram bars
BAR_NEGATIVE = "#d07a6c"  # histogram bars of negative values of a higher-is-better metric
IS_COLOR, OOS_COLOR = "#e08a1e", "#1f5fbf"


def histogram(values: np.ndarray, metric: str, *, bins: int | None = None,
              n_total: int | None = None, chart_title: str | None = None,
              id: str | None = None) -> Chart:
    """The distribution of ``values`` (NaN and ±inf left out): ``bins`` equal bins
    (default: about the square root of the count, 5 to 40), each bar as tall as its
    count, and a dashed line at the median. ``n_total``: the number of runs the values
    came from, to note how many had no value."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    width, height, ml, mr, mt, mb = 350.0, 230.0, 44.0, 12.0, 26.0, 38.0
    pw, ph = width - ml - mr, height - mt - mb
    pct = metric in PERCENT_METRICS
    out = [title(ml, 15, metric if chart_title is None else chart_title)]
    label = f"histogram of {metric}"
    if v.size == 0:
        out.append(text(width / 2, height / 2, "no values"))
        return Chart("histogram", width, height, "".join(out), label=label, id=id)
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        lo, hi = pad(lo, hi)
    if bins is None:
        bins = int(min(40, max(5, math.ceil(math.sqrt(v.size))))) if v.size > 4 else v.size
    counts, edges = np.histogram(v, bins=max(int(bins), 1), range=(lo, hi))
    fx = Linear(lo, hi, ml, ml + pw)
    fy = Linear(0.0, max(int(counts.max()), 1) * 1.08, mt + ph, mt)  # headroom on top
    yt, _ = ticks(0, fy.d1, 4)
    for c in yt:
        if c == int(c):
            out.append(line(ml, fy(c), width - mr, fy(c), stroke=GRID, cls="grid"))
            out.append(text(ml - 5, fy(c) + 4, f"{c:.0f}", anchor="end", cls="lbl tick-y"))
    for i, c in enumerate(counts):
        x0, x1 = fx(edges[i]), fx(edges[i + 1])
        tip = (f"{metric} {fmt_metric(metric, edges[i])} to {fmt_metric(metric, edges[i + 1])}"
               f": {int(c)} run{'' if c == 1 else 's'}")
        good = metric in LOWER_IS_BETTER or (edges[i] + edges[i + 1]) / 2 >= 0
        out.append(rect(x0 + 0.5, fy(c), max(x1 - x0 - 1, 0.8), fy(0) - fy(c),
                        fill=BAR if good else BAR_NEGATIVE,
                        cls="hist-bar" if good else "hist-bar neg", tip=tip))
    xt, xstep = ticks(lo, hi, 5)
    for x in xt:
        out.append(line(fx(x), mt + ph, fx(x), mt + ph + 4))
        out.append(text(fx(x), mt + ph + 16, tick_label(x, xstep, pct), cls="lbl tick-x"))
    out.append(line(ml, mt + ph, width - mr, mt + ph))
    med = float(np.median(v))
    out.append(line(fx(med), mt, fx(med), mt + ph, stroke="#1d2330", width=1.5, dash="4 3",
                    cls="hist-median", tip=f"median {fmt_metric(metric, med)}"))
    out.append(text(width - mr, 15, f"median {fmt_metric(metric, med)}", anchor="end",
                    size=10, fill=MUTED, cls="lbl small"))
    missing = (n_total - v.size) if n_total is not None else 0
    note = f"{v.size} runs" + (f"; {missing} without a value" if missing > 0 else "")
    out.append(text(ml + pw / 2, height - 4, note, size=10, fill=MUTED, cls="lbl small"))
    return Chart("histogram", width, height, "".join(out), label=label, id=id)


def grouped_bars(groups: Sequence[str], series: Sequence[str],
                 values: Sequence[Sequence[float | None]], *, metric: str,
                 colors: Sequence[str] | None = None, classes: Sequence[str] | None = None,
                 chart_title: str = "", id: str | None = None, caption: str = "",
                 tips: Sequence[Sequence[str]] | None = None) -> Chart:
    """Bars from zero, one group a label of ``groups`` and in each one bar a ``series``
    (``values[g][s]``; None or NaN: no bar), a legend of the series on top.

    Each bar has the classes ``bar s<s>`` plus ``classes[s]`` and the hover text
    ``tips[g][s]`` (default: "<group> <series> <metric> <value>")."""
    colors = list(colors or PALETTE)
    vals = [[num(v) for v in row] for row in values]
    finite = [v for row in vals for v in row if v is not None]
    lo, hi = pad(min(0.0, *finite), max(0.0, *finite), 0.08) if finite else (0.0, 1.0)
    ns = len(series)
    width = max(360.0, min(1100.0, 90.0 + (28.0 + 20.0 * ns) * len(groups)))
    top = 24.0 + (20.0 if chart_title else 0.0)
    height, ml, mb = 200.0 + top, 56.0, 30.0
    pw = width - ml - 12
    fy = Linear(lo, hi, height - mb, top)
    body = [title(4, 15, chart_title)] if chart_title else []
    yt, step = ticks(lo, hi, 5)
    for v in yt:
        body.append(line(ml, fy(v), width - 12, fy(v), stroke="#9aa3ad" if v == 0 else GRID,
                         cls="grid zero" if v == 0 else "grid"))
        body.append(text(ml - 6, fy(v) + 4, tick_label(v, step, metric in PERCENT_METRICS),
                         anchor="end", cls="lbl tick-y"))
    slot = pw / max(len(groups), 1)
    bw = min(22.0, slot * 0.76 / max(ns, 1))
    for g, group in enumerate(groups):
        cx = ml + slot * (g + 0.5)
        for s, name in enumerate(series):
            v = vals[g][s] if s < len(vals[g]) else None
            if v is None:
                continue
            y0, y1 = sorted((fy(0.0), fy(v)))
            tip = tips[g][s] if tips else f"{group} {name} {metric} {fmt_metric(metric, v)}"
            extra = f" {classes[s]}" if classes else ""
            body.append(rect(cx - ns * bw / 2 + s * bw, y0, bw - 1, max(y1 - y0, 0.5),
                             fill=colors[s % len(colors)], cls=f"bar s{s}{extra}", tip=tip))
        body.append(text(cx, height - mb + 16, group, cls="lbl tick-x"))
    x = ml + 8
    for s, name in enumerate(series):
        extra = f" {classes[s]}" if classes else ""
        body.append(rect(x, top - 18, 10, 10, fill=colors[s % len(colors)],
                         cls=f"legend-key{extra}"))
        body.append(text(x + 14, top - 9, name, anchor="start"))
        x += 30 + 6.2 * len(name)
    body.append(line(ml, height - mb, width - 12, height - mb, stroke=AXIS))
    return Chart("bars", width, height, "".join(body), id=id, caption=caption,
                 label=f"{metric} by {', '.join(series)}")


def fold_bars(folds: Sequence[object], in_sample: Sequence[float | None],
              out_of_sample: Sequence[float | None], *, metric: str = "sharpe",
              id: str | None = "fold-sharpe-chart") -> Chart:
    """The chosen parameters' ``metric`` per walk-forward fold: in sample (the train
    window) next to out of sample (the test window that follows)."""
    tips = [[f"fold {f} {where} {metric} {fmt_metric(metric, v)}"
             for where, v in (("in sample", a), ("out of sample", b))]
            for f, a, b in zip(folds, in_sample, out_of_sample, strict=True)]
    return grouped_bars([f"F{f}" for f in folds], ["in sample", "out of sample"],
                        list(zip(in_sample, out_of_sample, strict=True)), metric=metric,
                        colors=[IS_COLOR, OOS_COLOR], classes=["fold-bar is", "fold-bar oos"],
                        id=id, tips=tips,
                        caption=f"{metric.capitalize()} of the chosen parameters per fold: "
                                "in sample (training) vs out of sample (the following test "
                                "period).")
