"""Helpers shared by the built-in weights kernels."""

import numpy as np
from numba import njit

__all__ = ["equal_weight_row", "top_bottom_row"]


@njit(nogil=True, cache=True)
def equal_weight_row(state, changed, close_row, out_row):
    """Weights for one bar from per-asset position states in {-1, 0, +1}.

    On a bar where some state changed, every held asset gets state / k (k = assets held) and
    every flat asset with a bar gets 0 (close). Otherwise the row is NaN: no instruction, so
    positions drift instead of being re-traded every bar. Assets without a bar get NaN.
    """
    out_row[:] = np.nan
    if not changed:
        return
    k = 0
    for s in state:
        if s != 0:
            k += 1
    for n in range(state.shape[0]):
        if np.isnan(close_row[n]):
            continue
        out_row[n] = state[n] / k if state[n] != 0 else 0.0


@njit(nogil=True, cache=True)
def top_bottom_row(score_row, close_row, n_pick, long_short, score_weighted, out_row):
    """Hold the ``n_pick`` highest scores (and short the lowest if ``long_short``).

    Only assets with a bar and a finite score are eligible; other listed assets get 0 and
    assets without a bar NaN. Equal weights sum to 1 (0.5 a side when long-short). Score
    weights are proportional to score minus the eligible mean, selected names only.
    """
    N = score_row.shape[0]
    eligible = np.empty(N, dtype=np.int64)
    m = 0
    for n in range(N):
        out_row[n] = np.nan
        if not np.isnan(close_row[n]):
            out_row[n] = 0.0
            if not np.isnan(score_row[n]):
                eligible[m] = n
                m += 1
    if m == 0:
        return
    scores = np.empty(m)
    for i in range(m):
        scores[i] = -score_row[eligible[i]]
    order = eligible[np.argsort(scores, kind="mergesort")]  # best first, ties by asset order
    n_long = min(n_pick, m // 2) if long_short else min(n_pick, m)
    side = 0.5 if long_short else 1.0
    mean = -scores.sum() / m
    _assign(order[:n_long], score_row, mean, side, score_weighted, out_row)
    if long_short:
        _assign(order[m - n_long:], score_row, mean, -side, score_weighted, out_row)


@njit(nogil=True, cache=True)
def _assign(picked, score_row, mean, side, score_weighted, out_row):
    k = picked.shape[0]
    if k == 0:
        return
    total = 0.0
    if score_weighted:
        for n in picked:
            total += max((score_row[n] - mean) * np.sign(side), 0.0)
    for n in picked:
        if total > 0.0:
            out_row[n] = side * max((score_row[n] - mean) * np.sign(side), 0.0) / total
        else:
            out_row[n] = side / k
