"""Helpers shared by the built-in weights kernels."""

import numpy as np
from numba import njit

__all__ = ["cross_flips", "n_ranked", "rank_rows", "state_row", "states_to_weights",
           "top_bottom_row"]


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


_NO_PAIR = np.uint32(0xFFFFFFFF)  # a pair of series no run compares


@njit(nogil=True, cache=True)
def _sort_bar(row, order, val, m, pair, rec_pair, n_rec, per_pair):
    """Re-sort the m ordered series by their values on this bar (``row``; insertion
    sort: one swap per pair whose order changed strictly), recording each wanted pair
    that swapped and counting it in ``per_pair[pair + 1]``; returns the new record count.
    Indices are unsigned: no negative-index wrap on each step."""
    for i in range(m):
        val[i] = row[order[i]]
    for i in range(1, m):
        x = val[i]
        ox = order[i]
        j = i
        while j > 0 and val[j - 1] > x:
            p = pair[order[j - 1], ox]
            if p != _NO_PAIR:
                rec_pair[n_rec] = p
                per_pair[p + 1] += 1
                n_rec += 1
            val[j] = val[j - 1]
            order[j] = order[j - 1]
            j -= 1
        val[j] = x
        order[j] = ox
    return n_rec


MAX_FLIP_SERIES = 1024
"""cross_flips keeps a K x K table of pairs: above this many series it is not used."""
FLIP_TILE = 8
"""Bars cross_flips copies out of its (K, T) series at a time: one 64-byte line a row."""


@njit(nogil=True, cache=True)
def cross_flips(series, a, b):
    """Where the sign of ``series[a[r]] - series[b[r]]`` changes, for every r, at once.

    ``series`` is (K, T): K series over T bars, each NaN up to some bar and finite from
    there on (moving averages of finite closes). For each r: ``first[r]``, the bar from
    which both series are finite (-1: never, or a == b), ``sign0[r]`` the sign of the
    difference there, and, from ``start[r]``, ``count[r]`` bars of ``bars`` (uint32,
    ascending, all after ``first[r]``) where the sign changes strictly: a bar where the two
    are equal keeps the last strict sign (what ma_cross's relation does). Rows with the
    same two series share their bars.

    One insertion sort of the K values per bar, kept in order from bar to bar, swaps
    exactly the pairs whose order changed strictly, so the cost is O(T * K + changes)
    rather than O(T * pairs). The sort reads a bar's K values from a tile of
    ``FLIP_TILE`` bars copied out of the rows (a transposed copy of the whole array costs
    more than the sort's reads). ``ok`` is False (nothing else is meaningful) when the
    series do not suit: a NaN after a finite value, two series equal on the bar the later
    one starts (their first strict sign would come later), or more than MAX_FLIP_SERIES
    series; the caller then compares the series itself.
    """
    K, T = series.shape
    R = a.shape[0]
    first = np.full(R, -1, dtype=np.int64)
    sign0 = np.zeros(R)
    start = np.zeros(R, dtype=np.int64)
    count = np.zeros(R, dtype=np.int64)
    no = np.empty(0, dtype=np.uint32)
    if K > MAX_FLIP_SERIES:
        return False, first, sign0, start, count, no
    # Each series' first finite bar, and no NaN after it.
    valid_from = np.full(K, T, dtype=np.int64)
    for k in range(K):
        for t in range(T):
            if not np.isnan(series[k, t]):
                valid_from[k] = t
                break
        for t in range(valid_from[k], T):
            if np.isnan(series[k, t]):
                return False, first, sign0, start, count, no
    joins = np.argsort(valid_from, kind="mergesort")  # the series by the bar they start
    pair = np.full((K, K), _NO_PAIR, dtype=np.uint32)
    n_pairs = 0
    for r in range(R):
        i, j = a[r], b[r]
        if i != j and pair[i, j] == _NO_PAIR:
            pair[i, j] = pair[j, i] = n_pairs
            n_pairs += 1
    # Pass over the bars: each strict order change of a wanted pair, as its pair in
    # 32-bit records, and where each bar's records end (records in bar order need no bar
    # each: half the memory of (bar, pair) records, and a quarter of 64-bit ones; bars
    # and pairs fit, T and n_pairs < 2**32 are checked).
    if T >= 2**32 or n_pairs >= 2**32:
        return False, first, sign0, start, count, no
    cap = max(1024, min(T * n_pairs // 32, 1 << 20))  # ~ a grid of MAs' crossings
    rec_pair = np.empty(cap, dtype=np.uint32)
    bar_end = np.empty(T, dtype=np.int64)
    offsets = np.zeros(n_pairs + 1, dtype=np.int64)  # counts, then starts, of each pair
    n_rec = 0
    order = np.empty(K, dtype=np.uint32)
    val = np.empty(K)
    m = 0
    nxt = 0  # the next series to join, in ``joins``
    tile = np.empty((FLIP_TILE, K))  # bars t0 .. t0 + FLIP_TILE - 1, one row a bar
    for t in range(T):
        dt = t % FLIP_TILE
        if dt == 0:
            for k in range(K):
                for d in range(min(FLIP_TILE, T - t)):
                    tile[d, k] = series[k, t + d]
        # Room for this bar's changes (at most one per pair of the m ordered series),
        # grown here, outside the sort: an array reassigned inside the inner loop would
        # cost Numba reference counting on every step.
        need = n_rec + m * (m - 1) // 2
        if need > cap:
            cap = max(2 * cap, need)
            grown = np.empty(cap, dtype=np.uint32)
            grown[:n_rec] = rec_pair[:n_rec]
            rec_pair = grown
        n_rec = _sort_bar(tile[dt], order, val, m, pair, rec_pair, n_rec, offsets)
        bar_end[t] = n_rec
        while nxt < K and valid_from[joins[nxt]] == t:  # they join the order by value
            k = joins[nxt]
            nxt += 1
            x = tile[dt, k]
            j = m
            while j > 0 and val[j - 1] > x:
                val[j] = val[j - 1]
                order[j] = order[j - 1]
                j -= 1
            if (j > 0 and val[j - 1] == x) or (j < m and val[j + 1] == x):
                return False, first, sign0, start, count, no
            val[j] = x
            order[j] = k
            m += 1
    # Per pair, its bars in bar order (a counting sort of the records).
    for p in range(n_pairs):
        offsets[p + 1] += offsets[p]
    bars = np.empty(n_rec, dtype=np.uint32)
    fill = offsets[:-1].copy()
    q = 0
    for t in range(T):
        while q < bar_end[t]:
            p = rec_pair[q]
            bars[fill[p]] = t
            fill[p] += 1
            q += 1
    for r in range(R):
        i, j = a[r], b[r]
        if i == j:
            continue
        t0 = max(valid_from[i], valid_from[j])
        if t0 >= T:
            continue
        p = pair[i, j]
        first[r] = t0
        sign0[r] = 1.0 if series[i, t0] > series[j, t0] else -1.0
        start[r] = offsets[p]
        count[r] = offsets[p + 1] - offsets[p]
    return True, first, sign0, start, count, bars
