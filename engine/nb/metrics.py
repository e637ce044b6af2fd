"""Performance metrics as pure functions of an equity or returns array (empyrical style).

Definitions are in docs/engine.md. Every function is a Numba kernel that is also callable
from Python, e.g. ``sharpe(returns, 252.0)``.
"""

import numpy as np
from numba import njit

METRIC_NAMES = (
    "total_return", "cagr", "volatility", "sharpe", "sortino", "max_drawdown",
    "max_drawdown_duration", "calmar", "n_trades", "win_rate", "profit_factor", "turnover",
    "exposure", "fees", "final_equity", "skew", "kurtosis", "n_bars",
)
N_METRICS = len(METRIC_NAMES)


@njit(nogil=True, cache=True, error_model="numpy")
def simple_returns(equity, init_cash):
    """Per-bar returns; the first is relative to the initial cash."""
    r = np.empty(equity.shape[0])
    prev = init_cash
    for t in range(equity.shape[0]):
        r[t] = equity[t] / prev - 1.0
        prev = equity[t]
    return r


@njit(nogil=True, cache=True, error_model="numpy")
def _moments(r):
    """Mean and central moments 2..4 (population)."""
    n = r.shape[0]
    mean = r.sum() / n
    m2 = m3 = m4 = 0.0
    for x in r:
        d = x - mean
        d2 = d * d
        m2 += d2
        m3 += d2 * d
        m4 += d2 * d2
    return mean, m2 / n, m3 / n, m4 / n


@njit(nogil=True, cache=True, error_model="numpy")
def volatility(r, periods_per_year):
    n = r.shape[0]
    if n < 2:
        return np.nan
    _, m2, _, _ = _moments(r)
    return np.sqrt(m2 * n / (n - 1)) * np.sqrt(periods_per_year)


@njit(nogil=True, cache=True, error_model="numpy")
def sharpe(r, periods_per_year):
    n = r.shape[0]
    if n < 2:
        return np.nan
    mean, m2, _, _ = _moments(r)
    sd = np.sqrt(m2 * n / (n - 1))
    if sd == 0.0:
        return np.nan
    return mean / sd * np.sqrt(periods_per_year)


@njit(nogil=True, cache=True, error_model="numpy")
def sortino(r, periods_per_year):
    n = r.shape[0]
    if n == 0:
        return np.nan
    down = 0.0
    for x in r:
        if x < 0.0:
            down += x * x
    dd = np.sqrt(down / n)
    if dd == 0.0:
        return np.nan
    return r.sum() / n / dd * np.sqrt(periods_per_year)


@njit(nogil=True, cache=True, error_model="numpy")
def skew(r):
    if r.shape[0] < 2:
        return np.nan
    _, m2, m3, _ = _moments(r)
    if m2 == 0.0:
        return np.nan
    return m3 / m2**1.5


@njit(nogil=True, cache=True, error_model="numpy")
def kurtosis(r):
    """Raw (Pearson) kurtosis: 3 for a normal distribution."""
    if r.shape[0] < 2:
        return np.nan
    _, m2, _, m4 = _moments(r)
    if m2 == 0.0:
        return np.nan
    return m4 / (m2 * m2)


@njit(nogil=True, cache=True, error_model="numpy")
def max_drawdown(equity, init_cash):
    """Largest fall from a running peak (which starts at the initial cash), as a fraction."""
    peak = init_cash
    worst = 0.0
    for x in equity:
        if x > peak:
            peak = x
        dd = 1.0 - x / peak
        if dd > worst:
            worst = dd
    return worst


@njit(nogil=True, cache=True, error_model="numpy")
def max_drawdown_duration(equity, init_cash):
    """Longest run of consecutive bars below the running peak."""
    peak = init_cash
    run = 0
    longest = 0
    for x in equity:
        if x >= peak:
            peak = x
            run = 0
        else:
            run += 1
            if run > longest:
                longest = run
    return longest


@njit(nogil=True, cache=True, error_model="numpy")
def cagr(equity, init_cash, periods_per_year):
    n = equity.shape[0]
    if n == 0:
        return np.nan
    return _cagr(equity[n - 1], init_cash, periods_per_year, n)


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _cagr(final, init_cash, periods_per_year, n):
    growth = final / init_cash
    if growth <= 0.0:
        return -1.0
    return growth ** (periods_per_year / n) - 1.0


@njit(nogil=True, cache=True, error_model="numpy")
def _bar_returns(equity, init_cash, returns):
    """Each bar's return: element-wise, so the divisions run as vector instructions."""
    returns[0] = equity[0] / init_cash - 1.0
    for t in range(1, equity.shape[0]):
        returns[t] = equity[t] / equity[t - 1] - 1.0


@njit(nogil=True, cache=True, error_model="numpy")
def _sums_and_drawdown(equity, exposure, returns, init_cash):
    """Sums of returns, of squared negative returns, of equity and of exposure shares
    (gross / equity; 0 without exposure or equity); the deepest fall from the running
    peak (a fraction; the peak starts at the initial cash) and the longest run of bars
    below it. One pass: the sums are independent of the drawdown's branches, so they
    cost little beside them, and the bars are read once (measured 40 -> 33 ms for the
    metrics of 4,950 runs of 2,520 bars, against separate passes)."""
    total = down = equity_sum = share = 0.0
    peak = init_cash
    worst = 0.0
    run = 0
    longest = 0
    for t in range(equity.shape[0]):
        x = equity[t]
        g = exposure[t]
        r = returns[t]
        total += r
        down += r * r if r < 0.0 else 0.0
        equity_sum += x
        share += g / x if g != 0.0 and x > 0.0 else 0.0
        if x >= peak:
            peak = x
            run = 0
        else:
            run += 1
            longest = max(longest, run)
            if x < peak * (1.0 - worst):  # divide only when a deeper drawdown is possible
                worst = 1.0 - x / peak
    return total, down, equity_sum, share, worst, longest


@njit(nogil=True, cache=True, error_model="numpy")
def _central_moments(returns, mean, lo, hi, m2, m3, m4, block_sums):
    """``m2``..``m4`` plus the sums of the 2nd to 4th powers of ``returns[lo:hi] - mean``,
    and, if ``block_sums``, the sums of those returns and their squares (the PBO block
    statistics; 0 otherwise: a third of the pass's cost). The moments carry on from the
    caller's totals, so they are added in bar order whatever the blocks: a run's metrics
    are the same bits with or without blocks."""
    s1 = s2 = 0.0
    for t in range(lo, hi):
        r = returns[t]
        d = r - mean
        d2 = d * d
        m2 += d2
        m3 += d2 * d
        m4 += d2 * d2
        if block_sums:  # loop-invariant: compiled as two loops
            s1 += r
            s2 += r * r
    return m2, m3, m4, s1, s2


@njit(nogil=True, cache=True, error_model="numpy")
def metrics_vector(equity, exposure, init_cash, periods_per_year, fees, notional, n_opened,
                   n_closed, n_wins, gross_profit, gross_loss):
    """All METRIC_NAMES, in order, for one run: ``equity`` and gross ``exposure`` per bar,
    ``fees`` and traded ``notional`` in total, and the trade counts.

    The same definitions as the functions above, fused into a few passes over the bars
    (per-bar returns; sums and drawdown; central moments); the simulation calls
    :func:`metrics_with_blocks` on its own equity and exposure, so both give the same
    bits. With ``error_model="numpy"`` a zero equity yields inf/nan metrics rather than
    an exception.
    """
    return metrics_with_blocks(equity, exposure, init_cash, periods_per_year, fees,
                               notional, n_opened, n_closed, n_wins, gross_profit,
                               gross_loss, np.empty((0, 3)))


@njit(nogil=True, cache=True, error_model="numpy")
def metrics_with_blocks(equity, exposure, init_cash, periods_per_year, fees, notional,
                        n_opened, n_closed, n_wins, gross_profit, gross_loss, blocks):
    """:func:`metrics_vector`, also adding to ``blocks`` (S, 3) each of S consecutive
    blocks' (sum, sum of squares, count) of returns; block b covers bars
    ``b*n//S .. (b+1)*n//S``, so the overfitting statistics can rebuild per-block Sharpe
    ratios without keeping the returns."""
    n = equity.shape[0]
    out = np.full(N_METRICS, np.nan)
    out[17] = n
    out[8] = n_opened
    out[13] = fees
    if n == 0:
        return out
    returns = np.empty(n)
    _bar_returns(equity, init_cash, returns)
    total, down, equity_sum, share, worst, longest = _sums_and_drawdown(
        equity, exposure, returns, init_cash)
    mean = total / n
    m2 = m3 = m4 = 0.0
    S = blocks.shape[0]
    n_parts = max(S, 1)
    for b in range(n_parts):
        lo = b * n // n_parts
        hi = (b + 1) * n // n_parts
        m2, m3, m4, s1, s2 = _central_moments(returns, mean, lo, hi, m2, m3, m4, S > 0)
        if S > 0:
            blocks[b, 0] += s1
            blocks[b, 1] += s2
            blocks[b, 2] += hi - lo
    m2 /= n
    m3 /= n
    m4 /= n
    final = equity[n - 1]
    root_p = np.sqrt(periods_per_year)
    out[0] = final / init_cash - 1.0
    out[1] = _cagr(final, init_cash, periods_per_year, n)
    if n >= 2:
        sd = np.sqrt(m2 * n / (n - 1))
        out[2] = sd * root_p
        if sd > 0.0:
            out[3] = mean / sd * root_p
    if down > 0.0:
        out[4] = mean / np.sqrt(down / n) * root_p
    out[5] = worst
    out[6] = longest
    out[7] = out[1] / worst if worst > 0.0 else np.nan
    if n_closed > 0:
        out[9] = n_wins / n_closed
        if gross_loss > 0.0:
            out[10] = gross_profit / gross_loss
        elif gross_profit > 0.0:
            out[10] = np.inf
    mean_equity = equity_sum / n
    years = n / periods_per_year
    out[11] = notional / 2.0 / mean_equity / years if mean_equity > 0.0 else np.nan
    out[12] = share / n
    out[14] = final
    if n >= 2 and m2 > 0.0:
        out[15] = m3 / m2**1.5
        out[16] = m4 / (m2 * m2)
    return out
