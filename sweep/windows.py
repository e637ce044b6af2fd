"""Date windows: one model for explicit ranges, generated rolling / expanding windows and
walk-forward folds.

Every window a sweep runs on is a :class:`Window`: its bar bounds, its dates and the bars
per year its metrics are annualised with, built by :func:`make_window` whichever way it was
described. Consumers (the engine's annualisation, the deflated Sharpe ratio, walk-forward
summaries, the report) read what they need from it, never re-derive it.

A length is an integer number of bars or a duration: any polars duration (``"4h"``,
``"30m"``, ``"1y6mo"``, ``"2w"``; units ns, us, ms, s, m = minute, h, d, w, mo, q, y) or
one of the upper-case calendar forms ``"2Y"``, ``"6M"`` (months), ``"3W"``, ``"30D"``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from engine import Panel
from engine.metrics import bars_per_year

__all__ = [
    "Fold",
    "Length",
    "Schedule",
    "Window",
    "WindowError",
    "advance",
    "make_folds",
    "make_window",
    "parse_length",
    "windows_from_spec",
]

Length = int | str  # bars, or a polars duration string

# The calendar forms this project accepted before any polars duration: upper case only,
# since polars reads "6m" as six minutes.
_CALENDAR = re.compile(r"^\s*(\d+)\s*([YMWD])\s*$")
_CALENDAR_UNITS = {"Y": "y", "M": "mo", "W": "w", "D": "d"}
_DURATION = re.compile(r"^(?:\d+(?:ns|us|ms|mo|s|m|h|d|w|q|y))+$")
_PART = re.compile(r"(\d+)(ns|us|ms|mo|s|m|h|d|w|q|y)")
_WINDOW_KEYS = {"ranges", "length", "step", "anchored", "start", "end"}
MIN_BARS = 2  # a window needs two bars for a return's standard deviation


class WindowError(ValueError):
    """A window or length that cannot be built; the message names the key and value."""


@dataclass(frozen=True)
class Window:
    """Bars ``start_bar .. end_bar - 1`` of the data, from ``start`` to ``end`` (the first
    and last bars' timestamps), annualised with ``bars_per_year``.

    Example:
        >>> from engine.data import synthetic_panel
        >>> p = synthetic_panel(n_assets=2, n_bars=600, seed=1)
        >>> w = make_window(p, 0, 100, 352)
        >>> w.bars, str(w.start)[:10], w.bounds
        (252, '2010-05-24', (100, 352))
    """

    index: int
    start_bar: int
    end_bar: int
    start: np.datetime64
    end: np.datetime64
    bars_per_year: float

    @property
    def bars(self) -> int:
        return self.end_bar - self.start_bar

    @property
    def bounds(self) -> tuple[int, int]:
        """``(start_bar, end_bar)``, end exclusive: what the compiled loop takes."""
        return self.start_bar, self.end_bar

    def label(self) -> str:
        """``"2010-01-04 .. 2014-12-31"`` (with the time of day when it is not midnight)."""
        return f"{_day(self.start)} .. {_day(self.end)}"


def _day(ts: np.datetime64) -> str:
    text = str(np.datetime64(ts, "s")).replace("T", " ")
    return text[:10] if text.endswith("00:00:00") else text[:16]


def make_window(panel: Panel, index: int, start_bar: int, end_bar: int,
                rate: float | None = None) -> Window:
    """The window of bars ``start_bar .. end_bar - 1``; ``rate`` = bars per year
    (default: the data's, :func:`engine.metrics.bars_per_year`)."""
    if rate is None:
        rate = bars_per_year(panel.timestamps)
    return Window(index, int(start_bar), int(end_bar), panel.timestamps[start_bar],
                  panel.timestamps[end_bar - 1], float(rate))


# ----------------------------------------------------------------------- lengths
def parse_length(value: Any, name: str, *, minimum: int = 1) -> Length:
    """An int (bars, at least ``minimum``) or a polars duration string from a config value.

    Example:
        >>> parse_length("6M", "test"), parse_length("4h", "test"), parse_length(250, "test")
        ('6mo', '4h', 250)
        >>> parse_length("1y6mo", "train")
        '1y6mo'
    """
    if isinstance(value, bool):
        raise WindowError(_length_help(name, value))
    if isinstance(value, int):
        if value < minimum:
            raise WindowError(f"{name}: must be at least {minimum} bar(s), got {value}")
        return value
    if isinstance(value, str):
        text = value.strip()
        m = _CALENDAR.match(text)
        if m:
            text = f"{int(m.group(1))}{_CALENDAR_UNITS[m.group(2)]}"
        if _DURATION.match(text) and any(int(n) for n, _ in _PART.findall(text)):
            return text
    raise WindowError(_length_help(name, value))


def _length_help(name: str, value: Any) -> str:
    return (f"{name}: expected bars (an integer) or a duration such as '2Y', '6M', '30D', "
            f"'1y6mo', '4h', '30m' (m = minutes, mo = months), got {value!r}")


def _times(length: Length, k: int) -> Length:
    """``k`` times a length: bars multiply, "1y6mo" -> "3y18mo" for k = 2."""
    if isinstance(length, int):
        return length * k
    return "".join(f"{int(n) * k}{unit}" for n, unit in _PART.findall(length))


def advance(panel: Panel, i: int, length: Length) -> int:
    """The bar index ``length`` after bar ``i`` (bars, or the first bar at or after the
    time ``timestamp[i] + length``); past the end (``n_bars + 1``) when the data ends
    first."""
    if isinstance(length, int):
        return i + length
    if i >= panel.n_bars:
        return panel.n_bars + 1
    target = pl.Series(panel.timestamps[i:i + 1]).dt.offset_by(length).to_numpy()[0]
    if target > panel.timestamps[-1]:
        return panel.n_bars + 1  # the span runs past the data: not complete
    return int(np.searchsorted(panel.timestamps, target, side="left"))


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise WindowError(f"'{name}' must be true or false, got {value!r}")
    return value


# ----------------------------------------------------------------------- windows
@dataclass(frozen=True)
class Schedule:
    """Windows generated along the data: ``length`` long, every ``step``; ``anchored``
    windows all start at the first bar (expanding), the others roll."""

    length: Length
    step: Length
    anchored: bool = False

    @classmethod
    def parse(cls, length: Any, step: Any, anchored: Any, names: tuple[str, str]
              ) -> Schedule:
        return cls(parse_length(length, names[0]), parse_length(step, names[1]),
                   _flag(anchored, "anchored"))

    def bounds(self, panel: Panel, lo: int, hi: int) -> list[tuple[int, int]]:
        """Bar bounds of every window that fits in bars ``lo .. hi - 1``. Window k spans
        ``[lo + k * step, lo + k * step + length)``, both counted from ``lo`` (not from
        the previous window's weekend-rolled bar: no drift)."""
        out = []
        for k in itertools.count():
            offset = _times(self.step, k)
            start = advance(panel, lo, offset) if k else lo
            if isinstance(self.length, str) and isinstance(offset, str):
                end = advance(panel, lo, offset + self.length if k else self.length)
            else:
                end = advance(panel, start, self.length)
            if end > hi:
                return out
            out.append((lo if self.anchored else start, end))


def windows_from_spec(panel: Panel, spec: Mapping[str, Any] | None,
                      rate: float | None = None) -> list[Window]:
    """The windows of a ``[windows]`` table (None: the whole panel).

    ``ranges = [[start, end], ...]`` (inclusive dates, an empty end = open), or generated
    windows: ``length``, ``step`` (default: length), ``anchored`` (expanding), optional
    ``start``/``end`` dates bounding them. ``rate``: bars per year (default: the data's).

    Example:
        >>> from engine.data import synthetic_panel
        >>> p = synthetic_panel(n_assets=2, n_bars=1000, seed=1)
        >>> [w.label() for w in windows_from_spec(p, {"length": "1Y", "step": "1Y"})][:2]
        ['2010-01-04 .. 2011-01-03', '2011-01-04 .. 2012-01-03']
    """
    if spec is None:
        return [make_window(panel, 0, 0, panel.n_bars, rate)]
    unknown = sorted(set(spec) - _WINDOW_KEYS)
    if unknown:
        raise WindowError(f"unknown key(s) {unknown}; known: {sorted(_WINDOW_KEYS)}")
    if "ranges" in spec:
        if set(spec) != {"ranges"}:
            raise WindowError("give either 'ranges' or generated windows (length/step), "
                              "not both")
        bounds = _ranges(panel, spec["ranges"])
    else:
        if "length" not in spec:
            raise WindowError("give 'ranges' or a window 'length' (bars or e.g. '2Y')")
        schedule = Schedule.parse(spec["length"], spec.get("step", spec["length"]),
                                  spec.get("anchored", False), ("length", "step"))
        lo, hi = panel.index_range(spec.get("start"), spec.get("end"))
        bounds = schedule.bounds(panel, lo, hi)
        if not bounds:
            raise WindowError(
                f"a window of {spec['length']!r} does not fit in the data "
                f"({_day(panel.timestamps[lo])} .. {_day(panel.timestamps[hi - 1])}, "
                f"{hi - lo} bars)")
    return [make_window(panel, k, i0, i1, rate) for k, (i0, i1) in enumerate(bounds)]


def _ranges(panel: Panel, ranges: Any) -> list[tuple[int, int]]:
    if not isinstance(ranges, list | tuple):
        raise WindowError(f"'ranges' must be a list of [start, end] pairs, got {ranges!r}")
    if not ranges:
        raise WindowError("'ranges' is empty (leave [windows] out to use the whole data)")
    out = []
    for k, win in enumerate(ranges):
        if not isinstance(win, list | tuple) or len(win) != 2:
            raise WindowError(f"window {k}: expected [start, end], got {win!r}")
        start, end = (v if v not in ("", None) else None for v in win)
        try:
            i0, i1 = panel.index_range(start, end)
        except ValueError as exc:
            raise WindowError(f"window {k}: {exc}") from None
        if i1 - i0 < MIN_BARS:
            raise WindowError(
                f"window {k} ({win[0]} .. {win[1]}) holds {i1 - i0} bar(s) of the data "
                f"({_day(panel.timestamps[0])} .. {_day(panel.timestamps[-1])}); a window "
                f"needs at least {MIN_BARS}")
        out.append((i0, i1))
    return out


# ------------------------------------------------------------------ walk-forward
@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: optimise on ``train``, trade the winner on ``test``."""

    index: int
    train: Window
    test: Window


def make_folds(panel: Panel, schedule: Schedule, test: Length, purge: Length = 0,
               rate: float | None = None) -> list[Fold]:
    """Train windows roll (or expand, if anchored) by ``schedule.step``; each test window
    starts ``purge`` after its train window ends and lasts ``test``. When the step equals
    the test length, each test window ends where the next begins, so the tests tile the
    data (calendar lengths do not add up exactly: weekends, month ends).

    Example:
        >>> from engine.data import synthetic_panel
        >>> p = synthetic_panel(3, 1000, seed=1)
        >>> [f.test.bounds for f in make_folds(p, Schedule(500, 100), 100)][:2]
        [(500, 600), (600, 700)]
    """
    pairs: list[tuple[tuple[int, int], tuple[int, int]]] = []
    start, end = 0, advance(panel, 0, schedule.length)
    while end <= panel.n_bars:
        t0 = advance(panel, end, purge) if end < panel.n_bars else panel.n_bars + 1
        t1 = advance(panel, t0, test) if t0 < panel.n_bars else panel.n_bars + 1
        if t1 > panel.n_bars:
            break
        pairs.append(((0 if schedule.anchored else start, end), (t0, t1)))
        start = advance(panel, start, schedule.step)
        end = advance(panel, start, schedule.length)
    if schedule.step == test:
        pairs = [(tr, (te[0], nxt[1][0])) for (tr, te), nxt in itertools.pairwise(pairs)] \
            + pairs[-1:]
    return [Fold(k, make_window(panel, k, *tr, rate), make_window(panel, k, *te, rate))
            for k, (tr, te) in enumerate(pairs)]

