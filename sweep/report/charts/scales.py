"""Scales: value to pixel, value to colour, and the ticks of an axis.

Example:
    >>> ticks(0.0, 1.0, 5)
    ([0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0], 0.2)
    >>> tick_label(0.6000000000000001, 0.2), tick_label(0.25, 0.05, pct=True)
    ('0.6', '25%')
    >>> Linear(0.0, 10.0, 100.0, 0.0)(2.5)
    75.0
    >>> ColorScale.fit([-1.0, 2.0], "sharpe").diverging
    True
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from engine.metrics import LOWER_IS_BETTER

__all__ = [
    "DIVERGING",
    "MAX_LINE_POINTS",
    "PALETTE",
    "SEQUENTIAL",
    "ColorScale",
    "Linear",
    "epoch_ms",
    "is_dark",
    "ms_datetime",
    "pad",
    "ramp",
    "thin",
    "tick_label",
    "ticks",
    "time_ticks",
]

# Colour ramps: diverging (red = bad, green = good) and sequential (light = worse).
DIVERGING = ("#b2182b", "#e7745b", "#f7c6a9", "#f5f5f0", "#c2e3b8", "#5fae6a", "#1b7837")
SEQUENTIAL = ("#f5f5f0", "#d7ecc9", "#9dd39a", "#4fa968", "#1b7837", "#0b4a22")
PALETTE = ("#1f5fbf", "#e08a1e", "#2a9d55", "#b2182b", "#7b4fb3", "#8c564b", "#d45fa3",
           "#17a2b8", "#5f6b7a", "#bcbd22")
"""Colours of the lines of a multi-line chart, in order."""
MAX_LINE_POINTS = 1500
"""Line charts are thinned to about this many points."""


@dataclass(frozen=True)
class Linear:
    """The linear map from the domain [d0, d1] to the range [r0, r1] (numbers or arrays)."""

    d0: float
    d1: float
    r0: float
    r1: float

    def __call__(self, v: Any) -> Any:
        k = (self.r1 - self.r0) / ((self.d1 - self.d0) or 1.0)
        if isinstance(v, np.ndarray):
            return self.r0 + (v.astype(float) - self.d0) * k
        return self.r0 + (float(v) - self.d0) * k


def _mix(c1: str, c2: str, t: float) -> str:
    a = [int(c1[i:i + 2], 16) for i in (1, 3, 5)]
    b = [int(c2[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(a, b, strict=True))


def ramp(stops: Sequence[str], t: float) -> str:
    """The colour at ``t`` in [0, 1] along evenly spaced colour stops."""
    t = min(1.0, max(0.0, t))
    pos = t * (len(stops) - 1)
    i = min(int(pos), len(stops) - 2)
    return _mix(stops[i], stops[i + 1], pos - i)


def is_dark(color: str) -> bool:
    """Does text on ``color`` need to be white?"""
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return 0.299 * r + 0.587 * g + 0.114 * b < 140


@dataclass(frozen=True)
class ColorScale:
    """Value -> colour: diverging around 0 when the values have both signs, else
    sequential; ``flip`` for lower-is-better metrics (then small values are green)."""

    lo: float
    hi: float
    diverging: bool
    flip: bool

    @classmethod
    def fit(cls, values: Iterable[float | None], metric: str) -> ColorScale:
        vals = [v for v in values if v is not None and math.isfinite(v)]
        lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
        flip = metric in LOWER_IS_BETTER
        if lo < 0 < hi:
            m = max(-lo, hi)
            return cls(-m, m, True, flip)
        if hi == lo:
            hi = lo + (abs(lo) or 1.0) * 1e-9
        return cls(lo, hi, False, flip)

    def color(self, v: float) -> str:
        t = (v - self.lo) / (self.hi - self.lo)
        return ramp(DIVERGING if self.diverging else SEQUENTIAL, 1 - t if self.flip else t)


def _nice_step(span: float, n: int) -> float:
    raw = span / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * mag >= raw * 0.999:
            return m * mag
    return 10 * mag


def ticks(lo: float, hi: float, n: int = 5) -> tuple[list[float], float]:
    """About ``n`` round tick values in [lo, hi] and their step."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo], 1.0
    step = _nice_step(hi - lo, n)
    k0, k1 = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    return [k * step for k in range(k0, k1 + 1)], step


def tick_label(v: float, step: float, pct: bool = False) -> str:
    """A tick's label with as many decimals as the step needs (``pct``: as a percentage)."""
    if pct:
        v, step = v * 100, step * 100
    decimals = 0  # as many as the step has
    while decimals < 6 and abs(step * 10**decimals - round(step * 10**decimals)) > 1e-6:
        decimals += 1
    text = f"{v:,.{decimals}f}" if abs(v) >= 10000 else f"{v:.{decimals}f}"
    if text.lstrip("-").strip("0.") == "":
        text = "0"
    return text + ("%" if pct else "")


def pad(lo: float, hi: float, frac: float = 0.05) -> tuple[float, float]:
    """[lo, hi] widened by ``frac`` of its span on each side (a point gets some room)."""
    if hi <= lo:
        d = abs(lo) * 0.05 or 1.0
        return lo - d, hi + d
    d = (hi - lo) * frac
    return lo - d, hi + d


def epoch_ms(timestamps: Any) -> np.ndarray:
    """Timestamps (numpy datetime64, a polars Date/Datetime series, datetimes, or numbers
    already in epoch milliseconds) as float epoch milliseconds (time zones: UTC)."""
    if isinstance(timestamps, pl.Series):
        s = timestamps
        if s.dtype == pl.Date:
            s = s.cast(pl.Datetime("ms"))
        if isinstance(s.dtype, pl.Datetime):
            return s.dt.epoch("ms").cast(pl.Float64).to_numpy()
        return s.cast(pl.Float64).to_numpy()
    a = np.asarray(timestamps)
    if a.dtype.kind == "O":
        a = a.astype("datetime64[ms]")
    if a.dtype.kind == "M":
        return a.astype("datetime64[ms]").astype(np.int64).astype(float)
    return a.astype(float)


def ms_datetime(ms: float) -> datetime:
    """Epoch milliseconds as a naive (UTC) datetime."""
    return datetime(1970, 1, 1) + timedelta(milliseconds=float(ms))


def time_ticks(t0_ms: float, t1_ms: float, max_ticks: int = 8) -> list[tuple[float, str]]:
    """Calendar ticks (years, months, days or hours) between two epoch-ms instants."""
    epoch = datetime(1970, 1, 1)
    d0, d1 = ms_datetime(t0_ms), ms_datetime(t1_ms)

    def ms(d: datetime) -> float:
        return (d - epoch).total_seconds() * 1000

    span_days = (d1 - d0).total_seconds() / 86400
    if span_days > 62:
        m0 = d0.year * 12 + d0.month - 1 + (0 if (d0.day, d0.hour) == (1, 0) else 1)
        m1 = d1.year * 12 + d1.month - 1
        for step in (1, 2, 3, 6, 12, 24, 36, 60, 120, 240):
            months = [m for m in range(m0, m1 + 1) if m % step == 0]
            if len(months) <= max_ticks:
                fmt = "%Y" if step >= 12 else "%Y-%m"
                return [(ms(d), d.strftime(fmt))
                        for d in (datetime(m // 12, m % 12 + 1, 1) for m in months)]
    if span_days < 3:
        hours = span_days * 24
        step = next((h for h in (1, 2, 3, 6, 12, 24) if hours / h <= max_ticks), 24)
        d = datetime(d0.year, d0.month, d0.day, d0.hour)
        if d < d0:
            d += timedelta(hours=1)
        while d.hour % step:
            d += timedelta(hours=1)
        out = []
        while d <= d1 and len(out) < 50:
            out.append((ms(d), d.strftime("%m-%d %H:%M")))
            d += timedelta(hours=step)
        return out
    day_step = max(1, math.ceil(span_days / max_ticks))
    d = datetime(d0.year, d0.month, d0.day)
    if d < d0:
        d += timedelta(days=1)
    out = []
    while d <= d1 and len(out) < 50:
        out.append((ms(d), d.strftime("%Y-%m-%d")))
        d += timedelta(days=day_step)
    return out


def thin(n: int, limit: int = MAX_LINE_POINTS) -> np.ndarray:
    """At most about ``limit`` evenly spread indices of ``n`` points (first and last kept)."""
    if n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))
