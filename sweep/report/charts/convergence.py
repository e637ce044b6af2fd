"""An adaptive search's convergence: each trial's value (dots) and the best value so far
(a step line) against the trial number, one series a study (a walk-forward's folds).

Example:
    >>> import numpy as np
    >>> s = Convergence("tpe", np.arange(5), np.array([0.1, 0.5, np.nan, 0.3, 0.7]))
    >>> s.best.tolist()
    [0.1, 0.5, 0.5, 0.5, 0.7]
    >>> c = convergence_chart([s], metric="sharpe")
    >>> c.svg().count('class="trial-dot"'), c.svg().count('class="best-line')
    (4, 1)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from engine.metrics import LOWER_IS_BETTER
from sweep.report.charts.scales import PALETTE, Linear, pad, tick_label, ticks
from sweep.report.charts.svg import AXIS, GRID, MUTED, Chart, line, points, text, title
from sweep.report.format import PERCENT_METRICS, esc, fmt_metric

__all__ = ["Convergence", "convergence_chart"]

WIDTH, HEIGHT = 720.0, 300.0
_ML, _MR, _MT, _MB = 62.0, 16.0, 30.0, 40.0


@dataclass(frozen=True)
class Convergence:
    """One study's trials: their numbers (0-based), values (NaN: pruned or failed, no
    dot) and the metric's direction; ``best`` is the best value up to each trial."""

    label: str
    trials: np.ndarray
    values: np.ndarray
    lower_is_better: bool = False
    best: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        v = np.asarray(self.values, dtype=float)
        worst = np.inf if self.lower_is_better else -np.inf
        keyed = np.where(np.isnan(v), worst, v)
        best = np.minimum.accumulate(keyed) if self.lower_is_better \
            else np.maximum.accumulate(keyed)
        object.__setattr__(self, "best", np.where(best == worst, np.nan, best))


def convergence_chart(series: Sequence[Convergence], *, metric: str, chart_title: str = "",
                      id: str | None = "convergence-chart", caption: str = "") -> Chart:
    """Dots for each trial's value, a step line for the best so far (one colour a
    series); x: trials run (1-based), y: ``metric``."""
    pct = metric in PERCENT_METRICS
    label = f"convergence of {metric}"
    head = [title(_ML, 16, chart_title)] if chart_title else []
    vals = np.concatenate([s.values[np.isfinite(s.values)] for s in series]) if series \
        else np.zeros(0)
    n = max((int(s.trials.max()) + 1 for s in series if s.trials.size), default=0)
    if vals.size == 0 or n == 0:
        head.append(text(WIDTH / 2, HEIGHT / 2, "no completed trials"))
        return Chart("convergence", WIDTH, HEIGHT, "".join(head), id=id, caption=caption,
                     label=label)
    lo, hi = pad(float(vals.min()), float(vals.max()))
    fx = Linear(0.5, max(n, 1) + 0.5, _ML, WIDTH - _MR)
    fy = Linear(lo, hi, HEIGHT - _MB, _MT)
    body = head
    yt, ystep = ticks(lo, hi, 5)
    for v in yt:
        body.append(line(_ML, fy(v), WIDTH - _MR, fy(v), stroke=GRID, cls="grid"))
        body.append(text(_ML - 6, fy(v) + 4, tick_label(v, ystep, pct), anchor="end",
                         cls="lbl tick-y"))
    xt, xstep = ticks(1, n, 6)
    for x in xt:
        if x >= 1:
            body.append(line(fx(x), HEIGHT - _MB, fx(x), HEIGHT - _MB + 4))
            body.append(text(fx(x), HEIGHT - _MB + 16, tick_label(x, xstep), cls="lbl tick-x"))
    body.append(line(_ML, HEIGHT - _MB, WIDTH - _MR, HEIGHT - _MB, stroke=AXIS))
    body.append(text((_ML + WIDTH - _MR) / 2, HEIGHT - 6, "trials run", size=10, fill=MUTED,
                     cls="lbl small"))
    several = len(series) > 1
    for i, s in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        x = s.trials.astype(float) + 1
        ok = np.isfinite(s.values)
        for xi, yi, t in zip(x[ok], s.values[ok], s.trials[ok], strict=True):
            body.append(f'<circle class="trial-dot" cx="{fx(xi):.1f}" cy="{fy(yi):.1f}" '
                        f'r="2.2" fill="{color}" fill-opacity="0.35">'
                        f"<title>{esc(s.label)} trial {int(t)}: {metric} "
                        f"{esc(fmt_metric(metric, yi))}</title></circle>")
        have = np.isfinite(s.best)
        if have.any():
            bx, by = x[have], s.best[have]
            # a step line: flat until the next improvement
            sx = np.repeat(bx, 2)[1:]
            sy = np.repeat(by, 2)[:-1]
            sx, sy = np.append(sx, bx[-1]), np.append(sy, by[-1])
            body.append(f'<polyline class="best-line{" s" + str(i) if several else ""}" '
                        f'fill="none" stroke="{color}" stroke-width="2" '
                        f'points="{points(fx(sx), fy(sy))}"><title>{esc(s.label)}: best '
                        f"{metric} {esc(fmt_metric(metric, float(by[-1])))} after "
                        f"{int(bx[-1])} trials</title></polyline>")
    if several:
        x0 = _ML + 8
        for i, s in enumerate(series):
            color = PALETTE[i % len(PALETTE)]
            body.append(line(x0, _MT - 14, x0 + 16, _MT - 14, stroke=color, width=2,
                             cls="legend-key"))
            body.append(text(x0 + 20, _MT - 10, s.label, anchor="start"))
            x0 += 40 + 6.2 * len(s.label)
    direction = "lower" if metric in LOWER_IS_BETTER else "higher"
    return Chart("convergence", WIDTH, HEIGHT, "".join(body), id=id,
                 caption=caption or f"Best {metric} so far ({direction} is better) against "
                 "the trials run; dots: each trial's value.", label=label)
