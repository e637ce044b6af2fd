"""Time series: equity lines (with walk-forward fold bands) and the underwater curve.

Example:
    >>> import numpy as np
    >>> t = np.arange("2020-01-01", "2020-03-01", dtype="datetime64[D]")
    >>> eq = 100 * np.cumprod(np.full(t.size, 1.001))
    >>> c = line_chart([Line("demo", t, eq, id="demo-line")])
    >>> c.svg().count("<polyline")
    1
    >>> float(drawdown_series(np.array([100.0, 120.0, 90.0, 130.0]), 100.0).min())
    -0.25
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.metrics import max_drawdown
from sweep.report.charts.scales import (
    PALETTE,
    Linear,
    epoch_ms,
    ms_datetime,
    pad,
    thin,
    tick_label,
    ticks,
    time_ticks,
)
from sweep.report.charts.svg import GRID, Chart, line, points, rect, text, title
from sweep.report.format import esc, fmt_date, fmt_metric

__all__ = ["BAD", "Band", "Line", "TimeFrame", "drawdown_chart", "drawdown_series",
           "line_chart"]

BAD = "#b2182b"
WIDTH = 1100.0
_ML, _MR, _MB = 78.0, 20.0, 36.0


@dataclass(frozen=True)
class Line:
    """One series of a line chart: its legend ``label``, times ``x`` (datetime64, a polars
    datetime series, or epoch ms), values ``y``; ``color`` (default: the palette's next),
    ``dash`` (an SVG dash array), the ``<polyline>``'s ``id`` and extra ``cls``, and its
    hover ``tip`` (default: label, first and last value)."""

    label: str
    x: Any
    y: Any
    color: str | None = None
    dash: str | None = None
    id: str | None = None
    cls: str = ""
    tip: str | None = None


@dataclass(frozen=True)
class Band:
    """A shaded span of time (a walk-forward fold's test period): from ``start`` to
    ``end`` (epoch ms, or anything :func:`epoch_ms` reads), ``label`` written at its
    start, a hover ``tip``."""

    start: Any
    end: Any
    label: str
    tip: str = ""


@dataclass
class TimeFrame:
    """The axes of a time-series chart: ``fx`` maps epoch ms, ``fy`` values to pixels;
    ``top`` and ``bottom`` are the plot area's edges (pixels)."""

    fx: Linear
    fy: Linear
    top: float
    bottom: float
    body: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, t0: float, t1: float, lo: float, hi: float, *, top: float,
              height: float, pct: bool = False, width: float = WIDTH) -> TimeFrame:
        if t1 <= t0:
            t1 = t0 + 86_400_000
        bottom = height - _MB
        frame = cls(Linear(t0, t1, _ML, width - _MR), Linear(lo, hi, bottom, top), top, bottom)
        out = frame.body
        out.append(rect(_ML, top, width - _ML - _MR, bottom - top, fill="#fbfcfd",
                        cls="plot-bg", extra=' stroke="#d9dee5"'))
        vals, step = ticks(lo, hi, 6)
        for v in vals:
            y = frame.fy(v)
            out.append(line(_ML, y, width - _MR, y, stroke=GRID, cls="grid"))
            out.append(text(_ML - 6, y + 4, tick_label(v, step, pct), anchor="end",
                            cls="lbl tick-y"))
        for ms, label in time_ticks(t0, t1):
            x = frame.fx(ms)
            out.append(line(x, top, x, bottom, stroke=GRID, cls="grid"))
            out.append(text(x, bottom + 18, label, cls="lbl tick-x"))
        return frame

    def bands(self, bands: Sequence[Band], *, shade: bool = True) -> None:
        """Fold bands: a dashed line at each start, the label above, alternate shading."""
        for i, b in enumerate(bands):
            x0 = self.fx(float(epoch_ms([b.start])[0]))
            x1 = self.fx(float(epoch_ms([b.end])[0]))
            if shade:
                self.body.append(rect(
                    x0, self.top, max(x1 - x0, 0.5), self.bottom - self.top,
                    fill="#000000", cls="fold-band alt" if i % 2 else "fold-band",
                    tip=b.tip or None,
                    extra=f' fill-opacity="{0.035 if i % 2 else 0}"'))
            self.body.append(line(x0, self.top, x0, self.bottom, stroke="#7b8591",
                                  dash="3 3", cls="fold-boundary", tip=b.label))
            self.body.append(text(x0 + 3, self.top - 6, b.label, anchor="start", size=10,
                                  cls="lbl small"))


def _legend(items: Sequence[tuple[str, str, str | None]], top: float, width: float
            ) -> tuple[list[str], float]:
    """Legend entries (label, colour, dash) in rows from ``top``; returns the elements
    and the y under the last row."""
    out, x, y = [], _ML, top + 12
    for label, color, dash in items:
        w = 40 + 6.2 * len(label)
        if x + w > width - _MR and x > _ML:
            x, y = _ML, y + 18
        d = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<line class="legend-key" x1="{x:.1f}" x2="{x + 22:.1f}" y1="{y - 4:.1f}" '
                   f'y2="{y - 4:.1f}" stroke="{color}" stroke-width="2"{d}/>')
        out.append(text(x + 28, y, label, anchor="start"))
        x += w
    return out, y + 8


def line_chart(lines: Sequence[Line], *, bands: Sequence[Band] = (), chart_title: str = "",
               pct: bool = False, height: float = 330.0, id: str | None = None,
               caption: str = "", legend: bool = True, kind: str = "line") -> Chart:
    """Lines over time on one value axis, with optional fold ``bands`` behind them.

    Each line is thinned to about :data:`MAX_LINE_POINTS` points (evenly spread, first
    and last kept) and its non-finite values are left out. ``pct``: the axis shows
    fractions as percentages."""
    xs = [epoch_ms(ln.x) for ln in lines]
    ys = [np.asarray(ln.y, dtype=float) for ln in lines]
    finite = [(x[np.isfinite(y)], y[np.isfinite(y)]) for x, y in zip(xs, ys, strict=True)]
    allx = np.concatenate([x for x, _ in finite]) if finite else np.zeros(0)
    ally = np.concatenate([y for _, y in finite]) if finite else np.zeros(0)
    head = [title(_ML, 16, chart_title)] if chart_title else []
    top = 26.0 if chart_title else 8.0
    colors = [ln.color or PALETTE[i % len(PALETTE)] for i, ln in enumerate(lines)]
    if legend and lines:
        keys, top = _legend([(ln.label, c, ln.dash) for ln, c in zip(lines, colors,
                                                                       strict=True)],
                            top, WIDTH)
        head += keys
    top += 10
    height = max(height, top + 140)
    if ally.size == 0:
        head.append(text(WIDTH / 2, height / 2, "no values"))
        return Chart(kind, WIDTH, height, "".join(head), id=id, caption=caption, fluid=True,
                     label=chart_title or "line chart")
    lo, hi = pad(float(ally.min()), float(ally.max()))
    frame = TimeFrame.build(float(allx.min()), float(allx.max()), lo, hi, top=top,
                            height=height, pct=pct)
    frame.bands(bands)
    body = frame.body
    for ln, color, (x, y) in zip(lines, colors, finite, strict=True):
        if x.size == 0:
            continue
        idx = thin(x.size)
        tip = ln.tip or f"{ln.label}: {fmt_metric('', y[0])} to {fmt_metric('', y[-1])}"
        ident = f' id="{esc(ln.id)}"' if ln.id else ""
        dash = f' stroke-dasharray="{ln.dash}"' if ln.dash else ""
        body.append(f'<polyline{ident} class="line {esc(ln.cls)}" fill="none" '
                    f'stroke="{color}" stroke-width="1.8" stroke-linejoin="round"{dash} '
                    f'points="{points(frame.fx(x[idx]), frame.fy(y[idx]))}">'
                    f"<title>{esc(tip)}</title></polyline>")
    return Chart(kind, WIDTH, height, "".join(head + body), id=id, caption=caption,
                 fluid=True, label=chart_title or "line chart")


def drawdown_series(equity: np.ndarray, start: float | None = None) -> np.ndarray:
    """The fall of ``equity`` from its running peak, as a fraction <= 0, for drawing.

    The peak starts at ``start`` (default: the first value), as in
    ``engine.metrics.max_drawdown``, whose value is minus this series' minimum (tested);
    the metric itself is only a number, the chart needs the whole series."""
    eq = np.asarray(equity, dtype=float)
    if eq.size == 0:
        return eq
    first = float(eq[0]) if start is None else float(start)
    peak = np.maximum.accumulate(np.concatenate([[first], np.where(np.isfinite(eq), eq,
                                                                   -np.inf)]))[1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(peak > 0, eq / peak - 1.0, 0.0)
    return np.where(np.isfinite(dd), np.minimum(dd, 0.0), 0.0)


def drawdown_chart(timestamps: Any, equity: np.ndarray, *, start: float | None = None,
                   bands: Sequence[Band] = (), id: str | None = "drawdown-chart",
                   area_id: str | None = None, chart_title: str = "",
                   caption: str = "") -> Chart:
    """The underwater curve of ``equity``: its fall from the running peak (see
    :func:`drawdown_series`), the deepest point marked with the max drawdown
    (``engine.metrics.max_drawdown``); fold boundaries at the ``bands``' starts."""
    t = epoch_ms(timestamps)
    eq = np.asarray(equity, dtype=float)
    dd = drawdown_series(eq, start)
    height = 220.0
    top = 26.0 if chart_title else 16.0
    head = [title(_ML, 16, chart_title)] if chart_title else []
    if dd.size == 0:
        head.append(text(WIDTH / 2, height / 2, "no values"))
        return Chart("drawdown", WIDTH, height, "".join(head), id=id, caption=caption,
                     fluid=True, label="drawdown")
    first = float(eq[0]) if start is None else float(start)
    worst = -float(max_drawdown(np.where(np.isfinite(eq), eq, first), first))
    frame = TimeFrame.build(float(t[0]), float(t[-1]), min(worst * 1.1, -0.01), 0.0,
                            top=top, height=height, pct=True)
    frame.bands(bands, shade=False)
    # Thin by buckets keeping each bucket's deepest point, so the max drawdown shows.
    edges = thin(t.size)
    tt, yy = (t[edges], np.minimum.reduceat(dd, edges)) if t.size > edges.size else (t, dd)
    xs, ys = frame.fx(tt), frame.fy(yy)
    base = frame.fy(0.0)
    area = f"{xs[0]:.1f},{base:.1f} " + points(xs, ys) + f" {xs[-1]:.1f},{base:.1f}"
    i = int(np.argmin(dd))
    ident = f' id="{esc(area_id)}"' if area_id else ""
    body = frame.body
    body.append(f'<polygon{ident} class="dd-area" fill="{BAD}" fill-opacity="0.22" '
                f'points="{area}"><title>drawdown; worst '
                f"{esc(fmt_metric('max_drawdown', -worst))} on {esc(fmt_date(ms_datetime(t[i])))}"
                "</title></polygon>")
    body.append(f'<polyline class="dd-line" fill="none" stroke="{BAD}" stroke-width="1.2" '
                f'points="{points(xs, ys)}"/>')
    if worst < 0:
        x, y = frame.fx(float(t[i])), frame.fy(worst)
        body.append(f'<circle class="dd-worst" cx="{x:.1f}" cy="{y:.1f}" r="3.5" '
                    f'fill="{BAD}"/>')
        anchor = "end" if x > WIDTH * 0.7 else "start"
        body.append(text(x + (-6 if anchor == "end" else 6), y + 4,
                         f"max drawdown {fmt_metric('max_drawdown', -worst)}", anchor=anchor,
                         cls="lbl dd-label"))
    return Chart("drawdown", WIDTH, height, "".join(head + body), id=id, caption=caption,
                 fluid=True, label="drawdown")
