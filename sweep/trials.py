"""Overfitting statistics over the trials (runs) of one window of a stored sweep."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from engine import METRIC_NAMES
from engine.metrics import LOWER_IS_BETTER, periods_per_year
from sweep.evaluate import BLOCK_COLUMNS

__all__ = ["finite_or_none", "window_overfit_stats"]



def window_overfit_stats(runs: pl.LazyFrame, window: int, objective: str = "sharpe",
                         filters: tuple[str, ...] = ()) -> dict[str, Any]:
    """DSR of the window's best run by ``objective`` (its Sharpe deflated for the number
    and spread of trials), and PBO by CSCV over the per-block return stats, if stored.

    Sharpe ratios are per bar here (the annualised ones divided by sqrt(bars per year)):
    the DSR formula needs the same frequency as its n_obs, skew and kurtosis.
    """
    from sweep.overfit import deflated_sharpe_ratio, pbo_from_block_stats

    names = runs.collect_schema().names()
    has_blocks = all(c in names for c in BLOCK_COLUMNS)
    lf = runs.filter((pl.col("window") == window) & pl.col("error").is_null()
                     & pl.col("sharpe").is_not_nan())
    cols = ["combo", "window_start", "window_end", *METRIC_NAMES,
            *(BLOCK_COLUMNS if has_blocks else ())]
    trials = lf.select(list(dict.fromkeys(cols))).collect()
    out: dict[str, Any] = {"window": window, "n_trials": trials.height, "dsr": None,
                           "pbo": None, "best_combo": None}
    if trials.height < 2:
        return out
    if has_blocks:  # PBO judges the whole set of trials, whatever the selection filters
        stats = [np.stack(trials[c].to_numpy()) for c in BLOCK_COLUMNS]
        out["pbo"] = finite_or_none(pbo_from_block_stats(*stats).pbo)
    candidates = trials
    for f in filters:
        candidates = candidates.filter(pl.sql_expr(f))
    best = candidates.sort([objective, "combo"],
                           descending=[objective not in LOWER_IS_BETTER, False]).head(1)
    if best.height == 0:
        return out
    b = best.row(0, named=True)
    n_bars = int(b["n_bars"])
    span = np.array([b["window_start"], b["window_end"]], dtype="datetime64[ns]")
    ppy = periods_per_year(np.linspace(span[0].astype(np.int64), span[1].astype(np.int64),
                                       n_bars).astype("datetime64[ns]"))
    scale = math.sqrt(ppy)
    srs = trials["sharpe"].to_numpy() / scale
    dsr = deflated_sharpe_ratio(b["sharpe"] / scale, n_bars, b["skew"], b["kurtosis"],
                                trial_srs=srs)
    out.update(best_combo=b["combo"], dsr=finite_or_none(dsr))
    return out


def finite_or_none(x: Any) -> float | None:
    """A float for JSON, or None for missing, NaN and infinite values."""
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else x
