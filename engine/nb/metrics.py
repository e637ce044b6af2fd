"""Performance metrics as pure functions of an equity or returns array (empyrical style).

Definitions are in docs/engine.md. Every function is a Numba kernel that is also callable
from Python, e.g. ``sharpe(returns, 252.0)``.
"""

from collections import namedtuple

import numpy as np
from numba import njit

METRIC_NAMES = (
    "total_return", "cagr", "volatility", "sharpe", "sortino", "max_drawdown",
    "max_drawdown_duration", "calmar", "n_trades", "win_rate", "profit_factor", "turnover",
    "exposure", "fees", "final_equity", "skew", "kurtosis", "n_bars",
)
N_METRICS = len(METRIC_NAMES)


@njit(nogil=True, cache=True)
def simple_returns(equity, init_cash):
    """Per-bar returns; the first is relative to the initial cash."""
    r = np.empty(equity.shape[0])
    prev = init_cash
    for t in range(equity.shape[0]):
        r[t] = equity[t] / prev - 1.0
        prev = equity[t]
    return r


@njit(nogil=True, cache=True)
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


@njit(nogil=True, cache=True)
def volatility(r, periods_per_year):
    n = r.shape[0]
    if n < 2:
        return np.nan
    _, m2, _, _ = _moments(r)
    return np.sqrt(m2 * n / (n - 1)) * np.sqrt(periods_per_year)


@njit(nogil=True, cache=True)
def sharpe(r, periods_per_year):
    n = r.shape[0]
    if n < 2:
        return np.nan
    mean, m2, _, _ = _moments(r)
    sd = np.sqrt(m2 * n / (n - 1))
    if sd == 0.0:
        return np.nan
    return mean / sd * np.sqrt(periods_per_year)


@njit(nogil=True, cache=True)
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


@njit(nogil=True, cache=True)
def skew(r):
    if r.shape[0] < 2:
        return np.nan
    _, m2, m3, _ = _moments(r)
    if m2 == 0.0:
        return np.nan
    return m3 / m2**1.5


@njit(nogil=True, cache=True)
def kurtosis(r):
    """Raw (Pearson) kurtosis: 3 for a normal distribution."""
    if r.shape[0] < 2:
        return np.nan
    _, m2, _, m4 = _moments(r)
    if m2 == 0.0:
        return np.nan
    return m4 / (m2 * m2)


@njit(nogil=True, cache=True)
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


@njit(nogil=True, cache=True)
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


@njit(nogil=True, cache=True)
def cagr(equity, init_cash, periods_per_year):
    n = equity.shape[0]
    if n == 0:
        return np.nan
    return _cagr(equity[n - 1], init_cash, periods_per_year, n)


@njit(nogil=True, cache=True, inline="always")
def _cagr(final, init_cash, periods_per_year, n):
    growth = final / init_cash
    if growth <= 0.0:
        return -1.0
    return growth ** (periods_per_year / n) - 1.0


# What the metrics need from the bars seen so far. The simulation updates it bar by bar as
# it goes (no per-bar series to write and read back), and metrics_vector over an equity
# array does the same, so the two agree to the bit: one definition.
Running = namedtuple("Running", [
    "prev",        # last equity (the initial cash before the first bar)
    "ret",         # last bar's return
    "total",       # sum of returns
    "down",        # sum of squared negative returns
    "peak",        # running peak of equity
    "worst",       # deepest drawdown so far (fraction)
    "run",         # bars since the last peak
    "longest",     # longest such run
    "equity_sum",
    "share",       # sum of gross exposure / equity
])


@njit(nogil=True, cache=True, inline="always")
def running_start(init_cash):
    """Running totals before the first bar."""
    return Running(init_cash, 0.0, 0.0, 0.0, init_cash, 0.0, 0, 0, 0.0, 0.0)


@njit(nogil=True, cache=True, inline="always")
def running_bar(a, x, g):
    """Running totals after a bar with equity ``x`` and gross exposure ``g``; the bar's
    return is ``ret`` (the caller keeps the returns: the moments need a second pass).
    Inlined into the bar loops, with scalars only: the totals stay in registers, and no
    array argument costs reference counting on every bar."""
    rt = x / a.prev - 1.0
    peak = a.peak
    worst = a.worst
    run = a.run
    longest = a.longest
    if x >= peak:
        peak = x
        run = 0
    else:
        run += 1
        if run > longest:
            longest = run
        if x < peak * (1.0 - worst):  # divide only when a deeper drawdown is possible
            worst = 1.0 - x / peak
    return Running(x, rt, a.total + rt, a.down + rt * rt if rt < 0.0 else a.down, peak,
                   worst, run, longest, a.equity_sum + x,
                   a.share + g / x if g != 0.0 and x > 0.0 else a.share)


@njit(nogil=True, cache=True)
def running_metrics(a, n, returns, blocks, init_cash, periods_per_year, fees, notional,
                    n_opened, n_closed, n_wins, gross_profit, gross_loss):
    """All METRIC_NAMES, in order, from the running totals after the last of ``n`` bars
    and the bars' ``returns``; ``fees`` and ``notional`` are the run's totals.

    Also adds to ``blocks`` (S, 3) each of S consecutive blocks' (sum, sum of squares,
    count) of returns, in the same pass as the moments: bar t belongs to block b with
    ``b * n // S <= t < (b + 1) * n // S`` (what PBO needs). S = 0: no blocks."""
    out = np.full(N_METRICS, np.nan)
    out[17] = n
    out[8] = n_opened
    out[13] = fees
    if n == 0:
        return out
    mean = a.total / n
    m2 = m3 = m4 = 0.0
    S = blocks.shape[0]
    n_parts = max(S, 1)
    for b in range(n_parts):
        # A block's sums are kept in registers and stored once: added into blocks[b] on
        # every bar, each bar would wait for the previous bar's store.
        s1 = s2 = 0.0
        for t in range(b * n // n_parts, (b + 1) * n // n_parts):
            rt = returns[t]
            s1 += rt
            s2 += rt * rt
            d = rt - mean
            d2 = d * d
            m2 += d2
            m3 += d2 * d
            m4 += d2 * d2
        if S > 0:
            blocks[b, 0] += s1
            blocks[b, 1] += s2
            blocks[b, 2] += (b + 1) * n // S - b * n // S
    m2 /= n
    m3 /= n
    m4 /= n
    final = a.prev
    worst = a.worst
    root_p = np.sqrt(periods_per_year)
    out[0] = final / init_cash - 1.0
    out[1] = _cagr(final, init_cash, periods_per_year, n)
    if n >= 2:
        sd = np.sqrt(m2 * n / (n - 1))
        out[2] = sd * root_p
        if sd > 0.0:
            out[3] = mean / sd * root_p
    if a.down > 0.0:
        out[4] = mean / np.sqrt(a.down / n) * root_p
    out[5] = worst
    out[6] = a.longest
    out[7] = out[1] / worst if worst > 0.0 else np.nan
    if n_closed > 0:
        out[9] = n_wins / n_closed
        if gross_loss > 0.0:
            out[10] = gross_profit / gross_loss
        elif gross_profit > 0.0:
            out[10] = np.inf
    mean_equity = a.equity_sum / n
    years = n / periods_per_year
    out[11] = notional / 2.0 / mean_equity / years if mean_equity > 0.0 else np.nan
    out[12] = a.share / n
    out[14] = final
    if n >= 2 and m2 > 0.0:
        out[15] = m3 / m2**1.5
        out[16] = m4 / (m2 * m2)
    return out


@njit(nogil=True, cache=True)
def metrics_vector(equity, exposure, init_cash, periods_per_year, fees, notional, n_opened,
                   n_closed, n_wins, gross_profit, gross_loss):
    """All METRIC_NAMES, in order, for one run: ``equity`` and gross ``exposure`` per bar,
    ``fees`` and traded ``notional`` in total, and the trade counts.

    The same definitions as the functions above, fused into two passes over the bars;
    the simulation computes exactly these values as it goes.
    """
    return metrics_with_blocks(equity, exposure, init_cash, periods_per_year, fees,
                               notional, n_opened, n_closed, n_wins, gross_profit,
                               gross_loss, np.empty((0, 3)))


@njit(nogil=True, cache=True)
def metrics_with_blocks(equity, exposure, init_cash, periods_per_year, fees, notional,
                        n_opened, n_closed, n_wins, gross_profit, gross_loss, blocks):
    """:func:`metrics_vector`, also adding to ``blocks`` (S, 3) each of S consecutive
    blocks' (sum, sum of squares, count) of returns (see :func:`running_metrics`)."""
    n = equity.shape[0]
    returns = np.empty(n)
    a = running_start(init_cash)
    for t in range(n):
        a = running_bar(a, equity[t], exposure[t])
        returns[t] = a.ret
    return running_metrics(a, n, returns, blocks, init_cash, periods_per_year, fees,
                           notional, n_opened, n_closed, n_wins, gross_profit, gross_loss)
