"""Indicator kernels over (T, N) price arrays, column by column.

Each asset's indicator runs over its own bars: NaN bars (not listed, halted) are skipped
and get NaN, so a one-day halt does not blank a 200-bar average for 200 bars. A value at
bar t uses bars up to t only. Windows count bars; results are NaN until a window is full.
"""

import numpy as np
from numba import njit

__all__ = ["ema", "rolling_max", "rolling_mean", "rolling_min", "rolling_std"]


@njit(nogil=True, cache=True)
def rolling_mean(x, window):
    """Simple moving average: running-sum differences, as pandas' rolling mean does."""
    T, N = x.shape
    out = np.full((T, N), np.nan)
    csum = np.empty(T + 1)
    for n in range(N):
        k = 0
        csum[0] = 0.0
        for t in range(T):
            v = x[t, n]
            if np.isnan(v):
                continue
            csum[k + 1] = csum[k] + v
            k += 1
            if k >= window:
                out[t, n] = (csum[k] - csum[k - window]) / window
    return out


@njit(nogil=True, cache=True)
def rolling_std(x, window):
    """Population standard deviation over the last ``window`` bars."""
    T, N = x.shape
    out = np.full((T, N), np.nan)
    buf = np.empty(T)
    for n in range(N):
        k = 0
        for t in range(T):
            v = x[t, n]
            if np.isnan(v):
                continue
            buf[k] = v
            k += 1
            if k >= window:
                seg = buf[k - window:k]
                m = seg.sum() / window
                ss = 0.0
                for y in seg:
                    ss += (y - m) * (y - m)
                out[t, n] = np.sqrt(ss / window)
    return out


@njit(nogil=True, cache=True)
def ema(x, span):
    """Exponential moving average, alpha = 2 / (span + 1), recursive form (no bias
    adjustment), NaN until ``span`` observations."""
    T, N = x.shape
    out = np.full((T, N), np.nan)
    alpha = 2.0 / (span + 1.0)
    keep = 1.0 - alpha
    for n in range(N):
        avg = np.nan
        k = 0
        for t in range(T):
            v = x[t, n]
            if np.isnan(v):
                continue
            k += 1
            if k == 1:
                avg = v
            elif avg != v:
                avg = (keep * avg + alpha * v) / (keep + alpha)
            if k >= span:
                out[t, n] = avg
    return out


@njit(nogil=True, cache=True)
def _rolling_extreme(x, window, sign):
    T, N = x.shape
    out = np.full((T, N), np.nan)
    buf = np.empty(T)
    for n in range(N):
        k = 0
        for t in range(T):
            v = x[t, n]
            if np.isnan(v):
                continue
            buf[k] = v * sign
            k += 1
            if k >= window:
                out[t, n] = buf[k - window:k].max() * sign
    return out


@njit(nogil=True, cache=True)
def rolling_max(x, window):
    return _rolling_extreme(x, window, 1.0)


@njit(nogil=True, cache=True)
def rolling_min(x, window):
    return _rolling_extreme(x, window, -1.0)
