"""Performance metrics: pure functions of a returns or equity array.

Example:
    >>> import numpy as np
    >>> from engine.metrics import max_drawdown, sharpe, simple_returns
    >>> equity = np.array([100.0, 110.0, 99.0, 120.0])
    >>> round(max_drawdown(equity, 100.0), 3)
    0.1
    >>> r = simple_returns(equity, 100.0)
    >>> bool(sharpe(r, 252.0) > 0)
    True
"""

from __future__ import annotations

import numpy as np

from engine.nb.metrics import (
    METRIC_NAMES,
    cagr,
    kurtosis,
    max_drawdown,
    max_drawdown_duration,
    metrics_vector,
    sharpe,
    simple_returns,
    skew,
    sortino,
    volatility,
)

__all__ = [
    "INTEGER_METRICS",
    "LOWER_IS_BETTER",
    "METRIC_NAMES",
    "bars_per_year",
    "cagr",
    "kurtosis",
    "max_drawdown",
    "max_drawdown_duration",
    "metrics_vector",
    "periods_per_year",
    "sharpe",
    "simple_returns",
    "skew",
    "sortino",
    "volatility",
]

LOWER_IS_BETTER = frozenset(
    {"max_drawdown", "max_drawdown_duration", "volatility", "fees", "turnover",
     "tracking_error"}
)
"""Metrics where a smaller value is better; every other metric ranks best-first descending."""

INTEGER_METRICS = frozenset({"n_trades", "n_bars", "max_drawdown_duration"})
"""Metrics that count things: stored as floats (NaN where undefined), shown as integers."""

_DAYS_PER_YEAR = 365.25
_DEFAULT_PERIODS = 252.0


def bars_per_year(timestamps: np.ndarray, configured: float | None = None) -> float:
    """The one rule for annualising: ``configured`` (``EngineConfig.periods_per_year``)
    when set, else :func:`periods_per_year` of the WHOLE data's timestamps. A date window
    or walk-forward fold uses its data's rate, not an estimate from its own few bars
    (which weekends, holidays and overnight gaps would skew), so the same returns get the
    same Sharpe in every window, and whatever de-annualises a stored Sharpe (the deflated
    Sharpe ratio) uses the factor that annualised it.

    Example:
        >>> import numpy as np
        >>> days = np.arange("2020-01-01", "2022-01-01", dtype="datetime64[D]")
        >>> round(bars_per_year(days), 2), bars_per_year(days, 52.0)
        (365.25, 52.0)
    """
    if configured is not None:
        return float(configured)
    return periods_per_year(timestamps)


def periods_per_year(timestamps: np.ndarray) -> float:
    """Bars per year implied by the timestamps: (T - 1) / years spanned (252 if undefined).
    Intraday bars need no setting: 6.5 trading hours a day give ~1,640 hourly bars a year,
    24-hour markets ~6,200 (FX, five days a week) or ~8,760 (crypto)."""
    ts = np.asarray(timestamps, dtype="datetime64[ns]")
    if ts.shape[0] < 2:
        return _DEFAULT_PERIODS
    days = (ts[-1] - ts[0]) / np.timedelta64(1, "D")
    if days <= 0:
        return _DEFAULT_PERIODS
    return float((ts.shape[0] - 1) / (days / _DAYS_PER_YEAR))
