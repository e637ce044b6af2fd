"""Overfitting statistics over the trials (runs) of one window of a sweep: the deflated
Sharpe ratio of the window's best run and PBO over all of them.

A window's trials are its successful runs with a Sharpe ratio. Stored Sharpe ratios are
annualised with the window's ``bars_per_year`` (sweep.windows.Window); the DSR formula
needs per-bar ratios, so they are divided by the square root of the same number: the DSR
does not depend on how (or whether) the Sharpe ratios were annualised.
"""

from __future__ import annotations

import math

import polars as pl

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
        stats = [blocks[c].to_numpy() for c in BLOCK_COLUMNS]  # Array columns: (n, S)
        out.pbo = finite_or_none(pbo_from_block_stats(*stats).pbo)
    # Only the columns each step needs, so that a window of millions of trials fits in
    # memory: the best by the selection from (row, combo, the columns it ranks and
    # filters on), then that one row's DSR inputs, and every trial's Sharpe ratio in
    # the table's order (the variance is the same computation on the same numbers).
    numbered = lf.with_row_index(_ROW)
    used = {"combo", selection.objective, *_filter_columns(selection)}
    ranked = numbered.select([_ROW, *(c for c in names if c in used)])
    best = select_best(ranked, selection)
    if best.height == 0:
        return out
    want = [c for c in ("run_id", "sharpe", "n_bars", "skew", "kurtosis") if c in names]
    b = (numbered.filter(pl.col(_ROW) == best[_ROW][0]).select(want).collect()
         .row(0, named=True))
    srs = lf.select("sharpe").collect()["sharpe"].to_numpy()
    scale = math.sqrt(window.bars_per_year)
    dsr = deflated_sharpe_ratio(b["sharpe"] / scale, b["n_bars"], b["skew"], b["kurtosis"],
                                trial_srs=srs / scale)
    out.dsr = finite_or_none(dsr)
    out.best_run_id = b.get("run_id")
    return out


_ROW = "__backsweep_row"


def _filter_columns(selection: Selection) -> set[str]:
    """The columns the selection's filters read."""
    return {name for f in selection.filters for name in pl.sql_expr(f).meta.root_names()}
