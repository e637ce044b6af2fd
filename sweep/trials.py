"""Overfitting statistics over the trials (runs) of one window of a sweep: the deflated
Sharpe ratio of the window's best run and PBO over all of them.

A window's trials are its successful runs with a Sharpe ratio. Stored Sharpe ratios are
annualised with the window's ``bars_per_year`` (sweep.windows.Window); the DSR formula
needs per-bar ratios, so they are divided by the square root of the same number: the DSR
does not depend on how (or whether) the Sharpe ratios were annualised.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from engine import METRIC_NAMES
from sweep.record import WindowVerdict, finite_or_none
from sweep.schema import BLOCK_COLUMNS, ERROR
from sweep.select import Selection, select_best
from sweep.windows import Window

__all__ = ["PBO_MAX_TRIALS", "window_verdict"]

# PBO holds every trial's block stats in memory at once: beyond this many trials in a
# window it is skipped (the sweep itself still scales; DSR needs only metric columns).
PBO_MAX_TRIALS = 200_000


def window_verdict(runs: pl.LazyFrame, window: Window, selection: Selection | None = None
                   ) -> WindowVerdict:
    """DSR of the window's best run by ``selection`` (its per-bar Sharpe deflated for the
    number and spread of the trials' Sharpe ratios) and PBO by CSCV over the trials'
    per-block return statistics, when stored."""
    from sweep.overfit import deflated_sharpe_ratio, pbo_from_block_stats

    selection = selection or Selection()
    names = runs.collect_schema().names()
    lf = runs.filter((pl.col("window") == window.index) & pl.col(ERROR).is_null()
                     & pl.col("sharpe").is_not_nan())
    n_trials = int(lf.select(pl.len()).collect().item())
    out = WindowVerdict(window=window.index, n_trials=n_trials)
    if n_trials < 2:
        return out
    with_blocks = all(c in names for c in BLOCK_COLUMNS)
    if with_blocks and n_trials > PBO_MAX_TRIALS:
        out.pbo_note = f"skipped: more than {PBO_MAX_TRIALS:,} trials"
    elif with_blocks:  # PBO judges the whole set of trials, whatever the selection filters
        blocks = lf.select(BLOCK_COLUMNS).collect()
        stats = [np.stack(blocks[c].to_numpy()) for c in BLOCK_COLUMNS]
        out.pbo = finite_or_none(pbo_from_block_stats(*stats).pbo)
    cols = [c for c in dict.fromkeys(["run_id", "combo", *METRIC_NAMES]) if c in names]
    trials = lf.select(cols).collect()
    best = select_best(trials, selection)
    if best.height == 0:
        return out
    b = best.row(0, named=True)
    scale = math.sqrt(window.bars_per_year)
    dsr = deflated_sharpe_ratio(b["sharpe"] / scale, b["n_bars"], b["skew"], b["kurtosis"],
                                trial_srs=trials["sharpe"].to_numpy() / scale)
    out.dsr = finite_or_none(dsr)
    out.best_run_id = b.get("run_id")
    return out
