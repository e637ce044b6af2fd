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
    "LOWER_IS_BETTER",
    "METRIC_NAMES",
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
    {"max_drawdown", "max_drawdown_duration", "volatility", "fees", "turnover"}
)
"""Metrics where a smaller value is better; every other metric ranks best-first descending."""

_DAYS_PER_YEAR = 365.25
_DEFAULT_PERIODS = 252.0


def periods_per_year(timestamps: np.ndarray) -> float:
    """Bars per year implied by the timestamps: (T - 1) / years spanned (252 if undefined)."""
    ts = np.asarray(timestamps, dtype="datetime64[ns]")
    if ts.shape[0] < 2:
        return _DEFAULT_PERIODS
    days = (ts[-1] - ts[0]) / np.timedelta64(1, "D")
    if days <= 0:
        return _DEFAULT_PERIODS
    return float((ts.shape[0] - 1) / (days / _DAYS_PER_YEAR))
