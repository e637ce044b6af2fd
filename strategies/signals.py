"""Helpers shared by the built-in weights kernels."""

import numpy as np
from numba import njit

__all__ = ["n_ranked", "rank_rows", "state_row", "states_to_weights", "top_bottom_row"]


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


@njit(nogil=True, cache=True, inline="always")
def state_row(out, t, close, state, held, changed):
    """Row t of the weights, in the same pass as the states (what
    :func:`states_to_weights` does for a whole array): if some state ``changed`` on this
    bar, state / ``held`` for every held asset and 0 for flat assets with a bar; else NaN
    (no instruction). Assets without a bar get NaN. Inlined: a per-bar call of a helper
    that takes arrays would cost reference counting on every bar."""
    for n in range(out.shape[1]):
        if not changed or np.isnan(close[t, n]):
            out[t, n] = np.nan
        else:
            out[t, n] = state[n] / held if state[n] != 0.0 else 0.0


@njit(nogil=True, cache=True)
def rank_rows(score, close):
    """Per bar, the assets eligible for ranking (a bar and a finite score), best score
    first, ties by asset order, padded with -1; as floats, to sit in a strategy's data.

    A ranking does not depend on how many names a run holds or how often it rebalances,
    so strategies compute it once per grid in ``prepare`` instead of sorting in every run.
    """
    T, N = score.shape
    out = np.full((T, N), -1.0)
    eligible = np.empty(N, dtype=np.int64)
    keys = np.empty(N)
    for t in range(T):
        m = 0
        for n in range(N):
            if not np.isnan(close[t, n]) and not np.isnan(score[t, n]):
                eligible[m] = n
                keys[m] = -score[t, n]
                m += 1
        if m:
            order = eligible[:m][np.argsort(keys[:m], kind="mergesort")]
            for i in range(m):
                out[t, i] = order[i]
    return out


@njit(nogil=True, cache=True)
def n_ranked(ranked, t):
    """How many assets were eligible for ranking on bar t."""
    m = 0
    while m < ranked.shape[1] and ranked[t, m] >= 0.0:
        m += 1
    return m


@njit(nogil=True, cache=True)
def top_bottom_row(ranked, score, close, t, n_pick, long_short, score_weighted, out):
    """Row t: hold the ``n_pick`` highest scores (and short the lowest if ``long_short``),
    from the bar's ranking (see :func:`rank_rows`).

    Only assets with a bar and a finite score are eligible; other listed assets get 0 and
    assets without a bar NaN. Equal weights sum to 1 (0.5 a side when long-short). Score
    weights are proportional to score minus the eligible mean, selected names only.
    """
    N = close.shape[1]
    total = 0.0
    for n in range(N):
        if np.isnan(close[t, n]):
            out[t, n] = np.nan
        else:
            out[t, n] = 0.0
            if not np.isnan(score[t, n]):
                total -= score[t, n]
    m = n_ranked(ranked, t)
    if m == 0:
        return
    n_long = min(n_pick, m // 2) if long_short else min(n_pick, m)
    side = 0.5 if long_short else 1.0
    mean = -total / m
    _assign(ranked[t], 0, n_long, score, t, mean, side, score_weighted, out)
    if long_short:
        _assign(ranked[t], m - n_long, m, score, t, mean, -side, score_weighted, out)


@njit(nogil=True, cache=True)
def _assign(ranked_row, first, last, score, t, mean, side, score_weighted, out):
    k = last - first
    if k == 0:
        return
    total = 0.0
    if score_weighted:
        for i in range(first, last):
            n = int(ranked_row[i])
            total += max((score[t, n] - mean) * np.sign(side), 0.0)
    for i in range(first, last):
        n = int(ranked_row[i])
        if total > 0.0:
            out[t, n] = side * max((score[t, n] - mean) * np.sign(side), 0.0) / total
        else:
            out[t, n] = side / k
