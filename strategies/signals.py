"""Helpers shared by the built-in weights kernels."""

import numpy as np
from numba import njit

__all__ = ["states_to_weights", "top_bottom_row"]


@njit(nogil=True, cache=True)
def states_to_weights(out, close):
    """Turn per-bar position states into weights, in place.

    On entry ``out[t, n]`` is asset n's position state after bar t: +1 long, -1 short,
    0 flat. On exit, a bar where some state changed gets state / k for every held asset
    (k = assets held) and 0 for flat assets with a bar; any other bar is NaN: no
    instruction, so positions drift instead of being re-traded every bar. Assets without a
    bar get NaN. (One call per run: a helper called per bar costs reference counting.)
    """
    T, N = out.shape
    prev = np.zeros(N)
    for t in range(T):
        changed = False
        held = 0
        for n in range(N):
            s = out[t, n]
            if s != prev[n]:
                changed = True
            if s != 0.0:
                held += 1
        for n in range(N):
            s = out[t, n]
            prev[n] = s
            if not changed or np.isnan(close[t, n]):
                out[t, n] = np.nan
            else:
                out[t, n] = s / held if s != 0.0 else 0.0


@njit(nogil=True, cache=True)
def top_bottom_row(score, close, t, n_pick, long_short, score_weighted, out):
    """Row t: hold the ``n_pick`` highest scores (and short the lowest if ``long_short``).

    Only assets with a bar and a finite score are eligible; other listed assets get 0 and
    assets without a bar NaN. Equal weights sum to 1 (0.5 a side when long-short). Score
    weights are proportional to score minus the eligible mean, selected names only.
    """
    N = score.shape[1]
    eligible = np.empty(N, dtype=np.int64)
    m = 0
    for n in range(N):
        out[t, n] = np.nan
        if not np.isnan(close[t, n]):
            out[t, n] = 0.0
            if not np.isnan(score[t, n]):
                eligible[m] = n
                m += 1
    if m == 0:
        return
    scores = np.empty(m)
    for i in range(m):
        scores[i] = -score[t, eligible[i]]
    order = eligible[np.argsort(scores, kind="mergesort")]  # best first, ties by asset order
    n_long = min(n_pick, m // 2) if long_short else min(n_pick, m)
    side = 0.5 if long_short else 1.0
    mean = -scores.sum() / m
    _assign(order[:n_long], score, t, mean, side, score_weighted, out)
    if long_short:
        _assign(order[m - n_long:], score, t, mean, -side, score_weighted, out)


@njit(nogil=True, cache=True)
def _assign(picked, score, t, mean, side, score_weighted, out):
    k = picked.shape[0]
    if k == 0:
        return
    total = 0.0
    if score_weighted:
        for n in picked:
            total += max((score[t, n] - mean) * np.sign(side), 0.0)
    for n in picked:
        if total > 0.0:
            out[t, n] = side * max((score[t, n] - mean) * np.sign(side), 0.0) / total
        else:
            out[t, n] = side / k
