"""Date windows: explicit ranges, or rolling / expanding windows in bars or calendar time.

A length is an integer number of bars or a string with a unit: "2Y", "6M", "3W", "30D".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from engine import Panel

__all__ = ["advance", "parse_length", "resolve_window_spec"]

_UNITS = {"Y": "y", "M": "mo", "W": "w", "D": "d"}
_LENGTH = re.compile(r"^\s*(\d+)\s*([YMWD])\s*$", re.IGNORECASE)
_WINDOW_KEYS = {"ranges", "length", "step", "anchored", "start", "end"}


def parse_length(value: Any, name: str) -> int | str:
    """An int (bars) or a polars duration string ("2y", "6mo", ...) from a config value."""
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected bars (an integer) or a length like '2Y', got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"{name}: must be at least 1 bar, got {value}")
        return value
    if isinstance(value, str):
        m = _LENGTH.match(value)
        if m and int(m.group(1)) > 0:
            return f"{int(m.group(1))}{_UNITS[m.group(2).upper()]}"
    raise ValueError(
        f"{name}: expected bars (an integer) or a length like '2Y', '6M', '3W', '30D', "
        f"got {value!r}"
    )


def advance(panel: Panel, i: int, length: int | str) -> int:
    """The bar index ``length`` after bar ``i`` (bars, or the first bar at or after the
    calendar date ``timestamp[i] + length``); may be past the end."""
    if isinstance(length, int):
        return i + length
    if i >= panel.n_bars:
        return panel.n_bars + 1
    target = pl.Series(panel.timestamps[i:i + 1]).dt.offset_by(length).to_numpy()[0]
    if target > panel.timestamps[-1]:
        return panel.n_bars + 1  # the calendar span runs past the data: not complete
    return int(np.searchsorted(panel.timestamps, target, side="left"))


def _times(length: int | str, k: int) -> int | str:
    """``k`` times a length: bars multiply, "6mo" -> "18mo" for k = 3."""
    if isinstance(length, int):
        return length * k
    n, unit = re.match(r"^(\d+)(\D+)$", length).groups()
    return f"{int(n) * k}{unit}"


def resolve_window_spec(panel: Panel, spec: Mapping[str, Any] | None) -> list[tuple[int, int]]:
    """Bar bounds ``[(i0, i1), ...]`` (i1 exclusive) of a [windows] table.

    ``ranges = [[start, end], ...]`` (inclusive dates), or generated windows:
    ``length`` (bars or "2Y"), ``step`` (default: length), ``anchored`` (expanding: every
    window starts at the first bar), optional ``start``/``end`` dates bounding them.
    """
    from sweep.evaluate import resolve_windows

    if spec is None:
        return [(0, panel.n_bars)]
    unknown = sorted(set(spec) - _WINDOW_KEYS)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown}; known: {sorted(_WINDOW_KEYS)}")
    if "ranges" in spec:
        if set(spec) != {"ranges"}:
            raise ValueError("give either 'ranges' or generated windows (length/step), not both")
        ranges = spec["ranges"]
        if not isinstance(ranges, list):
            raise ValueError(f"'ranges' must be a list of [start, end] pairs, got {ranges!r}")
        return resolve_windows(panel, [tuple(r) if isinstance(r, list) else r for r in ranges])
    if "length" not in spec:
        raise ValueError("give 'ranges' or a window 'length' (bars or e.g. '2Y')")
    length = parse_length(spec["length"], "length")
    step = parse_length(spec.get("step", spec["length"]), "step")
    anchored = spec.get("anchored", False)
    if not isinstance(anchored, bool):
        raise ValueError(f"'anchored' must be true or false, got {anchored!r}")
    lo, hi = panel.index_range(spec.get("start"), spec.get("end"))
    out = []
    k = 0
    while True:
        # Window k spans [first + k * step, first + k * step + length), both counted from
        # the first bar (not from the previous window's weekend-rolled bar: no drift).
        offset = _times(step, k)
        start = advance(panel, lo, offset) if k else lo
        if isinstance(length, str) and isinstance(offset, str):
            end = advance(panel, lo, offset + length if k else length)
        else:
            end = advance(panel, start, length)
        if end > hi:
            break
        # Expanding windows end where the rolling ones do but all start at the first bar.
        out.append((lo if anchored else start, end))
        k += 1
    if not out:
        raise ValueError(
            f"a window of {spec['length']!r} does not fit in the data "
            f"({panel.timestamps[lo]!s:.10} .. {panel.timestamps[hi - 1]!s:.10}, {hi - lo} bars)"
        )
    return out
