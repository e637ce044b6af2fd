"""Market series beside a panel: a benchmark and a risk-free rate, aligned to its bars.

The kernels take them as two per-bar arrays (a :class:`MarketSeries`), shared by every run
over the panel and sliced like the panel for a date window:

* ``benchmark_returns`` (T,): the benchmark's close-to-close returns. Its prices are
  carried forward over bars without one (a halt, a holiday of the benchmark's market),
  so such a bar's return is 0. The first bar of a run counts as 0 whatever the array
  holds there: the benchmark is bought at the run's first close, as the run starts.
* ``risk_free`` (T,): per-bar risk-free rates, from annual rates carried forward to each
  bar and converted with the run's bars per year ``P`` (``engine.metrics.bars_per_year``):
  ``(1 + annual) ** (1 / P) - 1``, the rate that compounds to the annual one over a year
  of bars.

Either may be empty: no benchmark (its metrics are NaN), and the constant
``EngineConfig.risk_free`` (0 by default). See docs/engine.md "Benchmark and risk-free
rate".

Example:
    >>> import numpy as np
    >>> from engine import EngineConfig, Panel, market_series
    >>> days = np.arange("2024-01-01", "2024-01-05", dtype="datetime64[D]")
    >>> p = Panel.from_arrays(days, ["A", "SPY"], close=np.array(
    ...     [[10.0, 100.0], [11.0, 101.0], [12.0, np.nan], [12.0, 99.0]]))
    >>> m = market_series(p, EngineConfig(benchmark="SPY"))
    >>> np.round(m.benchmark_returns, 4).tolist()
    [0.0, 0.01, 0.0, -0.0198]
    >>> m.risk_free.shape  # no series: the kernels use the constant EngineConfig.risk_free
    (0,)
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from engine.config import EngineConfig
from engine.metrics import bars_per_year
from engine.nb.metrics import per_bar_rates
from engine.panel import Panel, parse_timestamps

__all__ = ["MarketSeries", "align_series", "load_series", "market_series"]

_NONE = np.empty(0)
_DATE_NAMES = ("date", "datetime", "time", "timestamp")
_VALUE_NAMES = ("adj close", "adj_close", "adjclose", "close", "price", "rate", "value")
MAX_ANNUAL_RATE = 1.0
"""Annual risk-free rates above this (100 %) are refused: they are percentages (5.25 for
5.25 %); give fractions, e.g. ``load_series(path, ts, scale=0.01)``."""

SeriesLike = np.ndarray | tuple[Any, Any]
"""A series for :func:`market_series`: an array aligned to the panel's bars, or a pair
``(dates, values)`` aligned by :func:`align_series`."""


@dataclass(frozen=True, eq=False)
class MarketSeries:
    """The per-bar benchmark returns and risk-free rates of a panel's bars, for the
    kernels (float64, C-contiguous; empty = none), and the bars per year the rates were
    converted at. See the module docstring."""

    benchmark_returns: np.ndarray
    risk_free: np.ndarray
    periods_per_year: float = float("nan")
    benchmark_asset: str | None = None

    @property
    def has_benchmark(self) -> bool:
        return self.benchmark_returns.shape[0] > 0

    def take(self, i0: int, i1: int) -> MarketSeries:
        """Bars i0..i1-1 (as ``Panel.take``); empty series stay empty."""
        return MarketSeries(self.benchmark_returns[i0:i1], self.risk_free[i0:i1],
                            self.periods_per_year, self.benchmark_asset)

    def kernel_arrays(self, periods_per_year: float | np.ndarray,
                      configs: Sequence[EngineConfig] = ()) -> tuple[np.ndarray, np.ndarray]:
        """``(benchmark_returns, risk_free)`` for runs annualised at ``periods_per_year``
        (one rate or one a window) with ``configs``, checked first: the per-bar rates must
        be of the same bars per year as the annualisation, and no config may ask for
        another benchmark or a constant rate besides the series (a grid axis over
        ``benchmark``, or over ``risk_free`` with a rate series, would be ignored)."""
        rates = np.asarray(periods_per_year, dtype=np.float64)
        if self.risk_free.shape[0] and not (rates == self.periods_per_year).all():
            raise ValueError(
                f"the risk-free series is per bar at {self.periods_per_year:g} bars a year "
                f"but the runs are annualised at {sorted(set(rates.ravel().tolist()))}; "
                "build it with the same EngineConfig.periods_per_year")
        for c in configs:
            if c.benchmark != self.benchmark_asset:
                raise ValueError(
                    f"a run asks for benchmark {c.benchmark!r} but the market series hold "
                    + (f"{self.benchmark_asset!r}" if self.benchmark_asset else
                       "a benchmark price series" if self.has_benchmark else "none")
                    + "; the benchmark is one for all the runs (not a grid axis)")
            if self.risk_free.shape[0] and c.risk_free != 0.0:
                raise ValueError(f"a run has risk_free={c.risk_free!r} besides the "
                                 "risk-free series; give one")
        return self.benchmark_returns, self.risk_free



def market_series(panel: Panel, config: EngineConfig | None = None, *,
                  benchmark_prices: SeriesLike | None = None,
                  risk_free: SeriesLike | None = None) -> MarketSeries:
    """The benchmark returns and per-bar risk-free rates of the panel's bars.

    The benchmark is ``benchmark_prices`` (prices, NaN = none that bar) or else the closes
    of the asset ``config.benchmark``. ``risk_free`` is a series of ANNUAL rates
    (fractions: 0.05 for 5 %), converted to per-bar rates at
    ``bars_per_year(panel.timestamps, config.periods_per_year)``; without it the kernels
    apply the constant ``config.risk_free``. Both series are carried forward over bars
    without a value; bars before a series' first value stay NaN (metrics that need them
    are NaN for a run that includes such a bar).

    Example:
        >>> import numpy as np
        >>> from engine.data import synthetic_panel
        >>> p = synthetic_panel(n_assets=3, n_bars=300, seed=1, listing_fraction=0)
        >>> rf = np.full(p.n_bars, 0.03)                      # 3 % a year, every bar
        >>> m = market_series(p, EngineConfig(periods_per_year=252.0), risk_free=rf)
        >>> bool(np.allclose((1 + m.risk_free) ** 252, 1.03))
        True
    """
    cfg = config if config is not None else EngineConfig()
    T = panel.n_bars
    if benchmark_prices is not None:
        if cfg.benchmark is not None:
            raise ValueError(f"two benchmarks: config.benchmark={cfg.benchmark!r} and "
                             "benchmark_prices; give one")
        prices = _aligned(benchmark_prices, panel, "benchmark_prices")
    elif cfg.benchmark is not None:
        prices = panel.close[:, _asset_index(panel, cfg.benchmark)]
    else:
        prices = None
    bench = _NONE if prices is None else _returns(_carried(prices), "benchmark")
    ppy = float("nan")
    if risk_free is None:
        rates = _NONE
    else:
        if cfg.risk_free != 0.0:
            raise ValueError(f"two risk-free rates: config.risk_free={cfg.risk_free!r} and "
                             "a risk_free series; give one")
        annual = _carried(_aligned(risk_free, panel, "risk_free"))
        _check_rates(annual)
        ppy = bars_per_year(panel.timestamps, cfg.periods_per_year)
        rates = per_bar_rates(annual, ppy)
    assert bench.shape[0] in (0, T) and rates.shape[0] in (0, T)
    return MarketSeries(np.ascontiguousarray(bench), np.ascontiguousarray(rates), ppy,
                        cfg.benchmark)


def align_series(dates: Any, values: Any, timestamps: np.ndarray) -> np.ndarray:
    """``values`` observed at ``dates``, as of each timestamp: the last value dated at or
    before it (NaN before the first). NaN values are no observation. A date-only value
    applies to every bar of that day and after.

    Example:
        >>> import numpy as np
        >>> ts = np.array(["2024-01-01T10", "2024-01-02T10", "2024-01-04T10"],
        ...               dtype="datetime64[ns]")
        >>> align_series(np.array(["2024-01-02", "2024-01-03"], dtype="datetime64[D]"),
        ...              [0.05, 0.04], ts).tolist()
        [nan, 0.05, 0.04]
    """
    d = np.asarray(dates).astype("datetime64[ns]")
    v = np.asarray(values, dtype=np.float64)
    if d.ndim != 1 or d.shape != v.shape:
        raise ValueError(f"dates {d.shape} and values {v.shape} must be two 1-d arrays "
                         "of the same length")
    keep = ~np.isnan(v) & ~np.isnat(d)
    d, v = d[keep], v[keep]
    order = np.argsort(d, kind="stable")
    d, v = d[order], v[order]
    dup = np.flatnonzero(d[1:] == d[:-1])
    if dup.size:
        raise ValueError(f"the series has two values dated {d[dup[0]]!s:.19}")
    at = np.searchsorted(d, np.asarray(timestamps, dtype="datetime64[ns]"), side="right") - 1
    return np.where(at >= 0, v[np.maximum(at, 0)] if v.size else np.nan, np.nan)


def load_series(path: str | os.PathLike[str], timestamps: np.ndarray, *,
                column: str | None = None, scale: float = 1.0) -> np.ndarray:
    """A dated series from a CSV (or .csv.gz) or Parquet file, aligned to ``timestamps``
    by :func:`align_series` (as of each bar, carried forward), times ``scale``.

    The date column is the one named date/datetime/time/timestamp (any case), else the
    first column. The value column is ``column``, else the only other numeric column,
    else the first of adj close/close/price/rate/value. Values that are not numbers (e.g.
    FRED's ".") are missing. Prices are read as they are; rates must be annual fractions:
    ``scale=0.01`` reads percentages (FRED's DGS3MO, 5.25 = 5.25 %).

    Example:
        >>> import tempfile, numpy as np
        >>> from pathlib import Path
        >>> f = Path(tempfile.mkdtemp()) / "rf.csv"
        >>> _ = f.write_text("DATE,DGS3MO\\n2024-01-01,5.25\\n2024-01-03,.\\n2024-01-04,5.2\\n")
        >>> ts = np.arange("2024-01-02", "2024-01-06", dtype="datetime64[D]")
        >>> load_series(f, ts, scale=0.01).round(4).tolist()
        [0.0525, 0.0525, 0.052, 0.052]
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        df = pl.read_parquet(path)
    elif name.endswith((".csv", ".csv.gz", ".txt")):
        df = pl.read_csv(path, infer_schema_length=10_000)
    else:
        raise ValueError(f"{path}: a series file is .csv, .csv.gz or .parquet")
    if df.width < 2 or df.height == 0:
        raise ValueError(f"{path}: expected a date column and a value column, got "
                         f"{df.width} column(s) and {df.height} row(s)")
    lower = {c.lower().strip(): c for c in df.columns}
    date_col = next((lower[n] for n in _DATE_NAMES if n in lower), df.columns[0])
    others = [c for c in df.columns if c != date_col]
    if column is not None:
        match = [c for c in others if c.lower().strip() == column.lower().strip()]
        if not match:
            raise ValueError(f"{path}: no column {column!r}; it has {others}")
        value_col = match[0]
    else:
        numeric = [c for c in others if df[c].dtype.is_numeric()]
        named = [lower[n] for n in _VALUE_NAMES if n in lower and lower[n] != date_col]
        if len(numeric) == 1:
            value_col = numeric[0]
        elif named:
            value_col = named[0]
        elif len(others) == 1:
            value_col = others[0]
        else:
            raise ValueError(f"{path}: which column is the series? it has {others}; "
                             "pass column=...")
    dates = parse_timestamps(df[date_col], where=f"{path}: ")
    values = df[value_col].cast(pl.Float64, strict=False).to_numpy()
    if np.isnan(values).all():
        raise ValueError(f"{path}: column {value_col!r} holds no number")
    return align_series(dates.to_numpy(), values * scale, timestamps)


# ------------------------------------------------------------------ helpers
def _aligned(series: SeriesLike, panel: Panel, what: str) -> np.ndarray:
    if isinstance(series, tuple):
        if len(series) != 2:
            raise ValueError(f"{what}: expected an array of {panel.n_bars} values or a "
                             "pair (dates, values)")
        return align_series(series[0], series[1], panel.timestamps)
    arr = np.asarray(series, dtype=np.float64)
    if arr.shape != (panel.n_bars,):
        raise ValueError(f"{what} has shape {arr.shape}; it must hold one value per bar of "
                         f"the panel ({panel.n_bars},), or be a pair (dates, values)")
    return arr


def _carried(values: np.ndarray) -> np.ndarray:
    """NaN replaced by the last value before it (leading NaN stay)."""
    idx = np.where(np.isnan(values), 0, np.arange(values.shape[0]))
    np.maximum.accumulate(idx, out=idx)
    return values[idx]  # before the first value idx is 0: values[0], NaN


def _returns(prices: np.ndarray, what: str) -> np.ndarray:
    if np.isnan(prices).all():
        raise ValueError(f"the {what} has no price on any bar of the panel")
    if (prices[~np.isnan(prices)] <= 0).any() or np.isinf(prices).any():
        raise ValueError(f"the {what} has a price that is not a positive finite number")
    out = np.empty(prices.shape[0])
    out[0] = 0.0  # the kernels take a run's first benchmark return as 0 anyway
    out[1:] = prices[1:] / prices[:-1] - 1.0
    return out


def _check_rates(annual: np.ndarray) -> None:
    finite = annual[~np.isnan(annual)]
    if finite.size == 0:
        raise ValueError("the risk-free series has no value on any bar of the panel")
    if np.isinf(finite).any() or (finite <= -1).any():
        raise ValueError("the risk-free series has a rate that is infinite or <= -1")
    if finite.max() > MAX_ANNUAL_RATE:
        raise ValueError(
            f"the risk-free series reaches {finite.max():g}: annual rates are fractions "
            "(0.05 for 5 %); percentages need scale=0.01 (engine.series.load_series)")


def _asset_index(panel: Panel, name: str) -> int:
    try:
        return panel.assets.index(name)
    except ValueError:
        close = difflib.get_close_matches(name, panel.assets, n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"benchmark {name!r} is not an asset of the panel{hint} (a "
                         "separate price series goes to benchmark_prices=)") from None
