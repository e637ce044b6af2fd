"""Heatmaps: a metric over a grid of two parameters (or any two labelled axes), and the
colour legend they share.

Example:
    >>> import numpy as np
    >>> c = heatmap(np.array([[1.0, 2.0], [np.nan, 3.0]]), ["5", "10"], ["20", "40"],
    ...             metric="sharpe", x_name="fast", y_name="slow")
    >>> c.svg().count('class="heatmap-cell"'), c.svg().count('class="heatmap-empty"')
    (3, 1)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sweep.report.charts.scales import ColorScale, Linear, is_dark, tick_label, ticks
from sweep.report.charts.svg import AXIS, INK, Chart, line, rect, text, title
from sweep.report.format import PERCENT_METRICS, esc, fmt_metric

__all__ = ["EMPTY", "HeatmapLayout", "colour_legend", "heatmap"]

EMPTY = "#e4e6ea"  # the fill of a cell without runs
_CHAR = 6.5  # px per character of an 11 px label (estimate)
_LEGEND_H = 40.0
_SWATCHES, _SWATCH_W = 48, 6.0


class HeatmapLayout:
    """Where the cells of an ``nx`` x ``ny`` heatmap go: cell (xi, yi) is the rectangle
    at (``x0 + xi * cw``, ``y0 + (ny - 1 - yi) * ch``), ``cw - 1`` by ``ch - 1`` (1 px
    gap); the first y value is at the bottom."""

    def __init__(self, x_labels: Sequence[str], y_labels: Sequence[str], y_name: str,
                 title_h: float) -> None:
        nx, ny = len(x_labels), len(y_labels)
        self.nx, self.ny = nx, ny
        self.cw = max(14.0, min(52.0, 400.0 / nx))
        self.ch = max(12.0, min(36.0, 300.0 / ny))
        longest_x = max((len(s) for s in x_labels), default=1)
        self.rotate = longest_x * _CHAR > self.cw - 2
        self.xlab_h = longest_x * 5.0 + 10 if self.rotate else 16.0
        ylab_w = max((len(s) for s in y_labels), default=1) * _CHAR + 10
        self.x0 = (22.0 if y_name else 4.0) + ylab_w
        self.y0 = 4.0 + title_h

    def cell(self, xi: int, yi: int) -> tuple[float, float]:
        return self.x0 + xi * self.cw, self.y0 + (self.ny - 1 - yi) * self.ch

    @property
    def bottom(self) -> float:
        return self.y0 + self.ny * self.ch


def heatmap(values: np.ndarray, x_labels: Sequence[str], y_labels: Sequence[str], *,
            metric: str, x_name: str, y_name: str = "", counts: np.ndarray | None = None,
            mins: np.ndarray | None = None, maxs: np.ndarray | None = None,
            scale: ColorScale | None = None, what: str = "mean", chart_title: str = "",
            id: str | None = None, key: str = "", legend: bool = True,
            caption: str = "") -> Chart:
    """A heatmap of ``values`` (shape ``(len(y_labels), len(x_labels))``, NaN = no runs):
    one coloured cell a value, grey where there is none, the first y value at the bottom.

    ``counts`` / ``mins`` / ``maxs`` (same shape), when given, go into each cell's hover
    text ("fast=10, slow=40: mean sharpe 0.512 over 4 runs (min ..., max ...)"). ``scale``:
    a colour scale shared with other heatmaps (default: fitted to ``values``); ``legend``
    draws its colour bar under the cells (a page of small multiples draws one
    :func:`colour_legend` instead); ``key`` is written on each cell as ``data-panel``.
    """
    values = np.asarray(values, dtype=float)
    ny, nx = len(y_labels), len(x_labels)
    if values.shape != (ny, nx):
        raise ValueError(f"values have shape {values.shape}, the labels ({ny}, {nx})")
    if scale is None:
        scale = ColorScale.fit(values[np.isfinite(values)].tolist(), metric)
    lay = HeatmapLayout(x_labels, y_labels, y_name, 20.0 if chart_title else 0.0)
    cw, ch = lay.cw, lay.ch
    out = [title(4, 15, chart_title)] if chart_title else []
    show_values = cw >= 34 and ch >= 18
    for yi in range(ny):
        for xi in range(nx):
            x, y = lay.cell(xi, yi)
            where = (f"{x_name}={x_labels[xi]}, {y_name}={y_labels[yi]}" if y_name else
                     f"{y_labels[yi]}, {x_name}={x_labels[xi]}" if y_labels[yi] else
                     f"{x_name}={x_labels[xi]}")
            v = values[yi, xi]
            if not np.isfinite(v):
                out.append(rect(x, y, cw - 1, ch - 1, fill=EMPTY, cls="heatmap-empty",
                                tip=f"{where}: no runs"))
                continue
            tip = f"{where}: {what} {metric} {fmt_metric(metric, v)}"
            if counts is not None:
                n = int(counts[yi, xi])
                tip += f" over {n} run{'' if n == 1 else 's'}"
                if n > 1 and mins is not None and maxs is not None:
                    tip += (f" (min {fmt_metric(metric, mins[yi, xi])}, max "
                            f"{fmt_metric(metric, maxs[yi, xi])})")
            fill = scale.color(float(v))
            out.append(rect(x, y, cw - 1, ch - 1, fill=fill, cls="heatmap-cell", tip=tip,
                            extra=f' data-panel="{esc(key)}" data-x="{xi}" data-y="{yi}"'))
            if show_values:
                out.append(text(x + cw / 2 - 0.5, y + ch / 2 + 3.5, fmt_metric(metric, v),
                                size=10, fill="#ffffff" if is_dark(fill) else INK,
                                cls="cellv"))
    for yi, label in enumerate(y_labels):
        out.append(text(lay.x0 - 5, lay.cell(0, yi)[1] + ch / 2 + 3.5, label, anchor="end",
                        cls="lbl tick-y"))
    base = lay.bottom
    for xi, label in enumerate(x_labels):
        x = lay.x0 + xi * cw + cw / 2
        if lay.rotate:
            out.append(text(x + 3, base + 8, label, anchor="end", cls="lbl tick-x",
                            extra=f' transform="rotate(-45 {x + 3:.1f} {base + 8:.1f})"'))
        else:
            out.append(text(x, base + 13, label, cls="lbl tick-x"))
    width = max(lay.x0 + nx * cw + 10, len(chart_title) * 7.0 + 10)
    height = base + lay.xlab_h + 22
    out.append(text(lay.x0 + nx * cw / 2, height - 5, x_name, size=12, weight="600",
                    cls="lbl axis"))
    if y_name:
        yc = lay.y0 + ny * ch / 2
        out.append(text(12, yc, y_name, size=12, weight="600", cls="lbl axis",
                        extra=f' transform="rotate(-90 12 {yc:.1f})"'))
    if legend:
        out.append(_legend_body(scale, metric, what, 10.0, height))
        height += _LEGEND_H
        width = max(width, _legend_width(metric))
    return Chart("heatmap", width, height, "".join(out), id=id, caption=caption,
                 label=f"heatmap of {what} {metric} by {x_name}"
                       + (f" and {y_name}" if y_name else ""))


def _legend_width(metric: str) -> float:
    return 10 + _SWATCHES * _SWATCH_W + 200 + len(metric) * _CHAR


def _legend_body(scale: ColorScale, metric: str, what: str, x0: float, y0: float) -> str:
    to_x = Linear(scale.lo, scale.hi, x0, x0 + _SWATCHES * _SWATCH_W)
    parts = []
    for i in range(_SWATCHES):
        v = scale.lo + (scale.hi - scale.lo) * (i + 0.5) / _SWATCHES
        parts.append(rect(x0 + i * _SWATCH_W, y0 + 4, _SWATCH_W + 0.3, 12,
                          fill=scale.color(v), cls="legend-swatch"))
    vals, step = ticks(scale.lo, scale.hi, 4)
    for v in vals:
        x = to_x(v)
        parts.append(line(x, y0 + 16, x, y0 + 20, stroke=AXIS))
        parts.append(text(x, y0 + 31, tick_label(v, step, metric in PERCENT_METRICS),
                          cls="lbl tick"))
    parts.append(text(x0 + _SWATCHES * _SWATCH_W + 12, y0 + 14,
                      f"{what} {metric}" + (" (lower is better)" if scale.flip else ""),
                      anchor="start"))
    return "".join(parts)


def colour_legend(scale: ColorScale, metric: str, *, what: str = "mean",
                  id: str | None = "heatmap-legend") -> Chart:
    """The colour bar of ``scale``, with round ticks and the metric's name."""
    return Chart("legend", _legend_width(metric), 36.0,
                 _legend_body(scale, metric, what, 10.0, 0.0), label="colour legend", id=id)
