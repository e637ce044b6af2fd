"""What a panel holds, in numbers a person checks after an import: span, bar spacing and
the bars each asset is missing inside its own life.

Example:
    >>> import numpy as np
    >>> from engine.panel import Panel
    >>> ts = np.array(["2024-01-02", "2024-01-03", "2024-01-04"], "datetime64[ns]")
    >>> p = Panel.from_arrays(ts, ["A", "B"], close=np.array([[1.0, 5.0], [np.nan, 5.0],
    ...                                                         [1.0, np.nan]]))
    >>> format_spacing(bar_spacing(p.timestamps))
    '1d'
    >>> missing_bars(p).rows()
    [('A', 3, 1), ('B', 2, 0)]
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from engine.panel import Panel

__all__ = ["bar_spacing", "format_spacing", "format_span", "missing_bars"]

# polars duration units, largest first: the text is valid wherever a polars duration is.
_UNITS = (("d", 86_400_000_000), ("h", 3_600_000_000), ("m", 60_000_000), ("s", 1_000_000),
          ("ms", 1_000), ("us", 1))


def bar_spacing(timestamps: np.ndarray) -> dt.timedelta | None:
    """Median gap between consecutive timestamps (None with fewer than two).

    The median, not the smallest gap: weekends and holidays leave daily bars "1d", and one
    early close does not make a daily panel intraday.

    Example:
        >>> bar_spacing(np.array(["2024-01-05", "2024-01-08", "2024-01-09"], "datetime64[ns]"))
        datetime.timedelta(days=2)
    """
    ts = np.asarray(timestamps, dtype="datetime64[ns]")
    if ts.size < 2:
        return None
    gap_ns = int(np.median(np.diff(ts).astype(np.int64)))
    return dt.timedelta(microseconds=gap_ns / 1_000)


def format_spacing(spacing: dt.timedelta | None) -> str:
    """A gap as a polars duration string: ``1d``, ``4h``, ``1d12h``, ``30m``, ``500ms``.

    Example:
        >>> format_spacing(dt.timedelta(days=1, hours=12)), format_spacing(None)
        ('1d12h', 'n/a')
    """
    if spacing is None:
        return "n/a"
    left = round(spacing / dt.timedelta(microseconds=1))
    if left <= 0:
        return "0s"
    parts = []
    for unit, size in _UNITS:
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    return "".join(parts)


def format_span(timestamps: np.ndarray) -> str:
    """``first .. last``: dates alone for daily data, minutes too when any bar has a time.

    Example:
        >>> format_span(np.array(["2024-01-02T09:00", "2024-01-02T10:00"], "datetime64[ns]"))
        '2024-01-02 09:00 .. 2024-01-02 10:00'
    """
    ts = np.asarray(timestamps, dtype="datetime64[ns]")
    if ts.size == 0:
        return "no bars"
    intraday = bool((ts != ts.astype("datetime64[D]")).any())
    unit = "m" if intraday else "D"
    first, last = (str(np.datetime_as_string(t, unit=unit)).replace("T", " ")
                   for t in (ts[0], ts[-1]))
    return f"{first} .. {last}"


def missing_bars(panel: Panel) -> pl.DataFrame:
    """Per asset: ``span`` (bars from its first to its last close) and ``missing`` (those of
    them without a close), worst first, then by asset.

    Bars before an asset lists or after it delists are not missing; a halt inside is.
    """
    has = np.isfinite(panel.close)
    any_bar = has.any(axis=0)
    first = has.argmax(axis=0)
    last = panel.n_bars - 1 - has[::-1].argmax(axis=0)
    span = np.where(any_bar, last - first + 1, 0)
    missing = span - has.sum(axis=0)
    return pl.DataFrame(
        {"asset": list(panel.assets), "span": span, "missing": missing},
        schema={"asset": pl.String, "span": pl.Int64, "missing": pl.Int64},
    ).sort(["missing", "asset"], descending=[True, False])
