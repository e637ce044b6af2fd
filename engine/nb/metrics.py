"""Performance metrics as pure functions of an equity or returns array (empyrical style).

Definitions are in docs/engine.md. Every function is a Numba kernel that is also callable
from Python, e.g. ``sharpe(returns, 252.0)``.

Each formula is written once. The simulation reduces a run's equity and exposure in one
fused pass (:func:`metrics_with_blocks`: per-bar returns; sums and drawdown; central
moments), then finishes every metric from those sums with the scalar functions ``_sharpe``,
``_sortino``, ... below. The standalone functions (:func:`sharpe`, :func:`max_drawdown`, ...)
run the same reductions and the same finishers, so they give the same bits as the fused
pass (tests/test_engine_metrics.py checks it).
"""

import numpy as np
from numba import njit

METRIC_NAMES = (
    "total_return", "cagr", "volatility", "sharpe", "sortino", "max_drawdown",
    "max_drawdown_duration", "calmar", "n_trades", "win_rate", "profit_factor", "turnover",
    "exposure", "fees", "final_equity", "skew", "kurtosis", "n_bars",
)
N_METRICS = len(METRIC_NAMES)


def _slot(name: str) -> int:
    """The position of a metric in METRIC_NAMES (a metrics vector's layout)."""
    return METRIC_NAMES.index(name)


# Slots of a metrics vector, by name (module constants: compiled into the kernels).
TOTAL_RETURN = _slot("total_return")
CAGR = _slot("cagr")
VOLATILITY = _slot("volatility")
SHARPE = _slot("sharpe")
SORTINO = _slot("sortino")
MAX_DRAWDOWN = _slot("max_drawdown")
MAX_DRAWDOWN_DURATION = _slot("max_drawdown_duration")
CALMAR = _slot("calmar")
N_TRADES = _slot("n_trades")
WIN_RATE = _slot("win_rate")
PROFIT_FACTOR = _slot("profit_factor")
TURNOVER = _slot("turnover")
EXPOSURE = _slot("exposure")
FEES = _slot("fees")
FINAL_EQUITY = _slot("final_equity")
SKEW = _slot("skew")
KURTOSIS = _slot("kurtosis")
N_BARS = _slot("n_bars")


# ------------------------------------------------------------------ finishers: one formula each
@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _cagr(final, init_cash, periods_per_year, n):
    growth = final / init_cash
    if growth <= 0.0:
        return -1.0
    return growth ** (periods_per_year / n) - 1.0


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _volatility(m2, n, root_p):
    """Annualised sample standard deviation from the population variance ``m2``."""
    if n < 2:
        return np.nan
    return np.sqrt(m2 * n / (n - 1)) * root_p


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _sharpe(mean, m2, n, root_p):
    """mean / sample standard deviation, annualised; NaN if undefined or the std is 0."""
    if n < 2:
        return np.nan
    sd = np.sqrt(m2 * n / (n - 1))
    if sd > 0.0:
        return mean / sd * root_p
    return np.nan


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _sortino(mean, down, n, root_p):
    """mean / root mean square of the negative returns (``down`` is their sum of
    squares), annualised; NaN if no return is negative."""
    if down > 0.0:
        return mean / np.sqrt(down / n) * root_p
    return np.nan


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _skew(m2, m3, n):
    """Population skewness from the central moments."""
    if n >= 2 and m2 > 0.0:
        return m3 / m2**1.5
    return np.nan


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _kurtosis(m2, m4, n):
    """Raw (Pearson) kurtosis from the central moments: 3 for a normal distribution."""
    if n >= 2 and m2 > 0.0:
        return m4 / (m2 * m2)
    return np.nan


# ------------------------------------------------------------------ reductions over the bars
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
def _return_stats(r):
    """Mean, sum of squared negative returns and population central moments 2..4 of a
    returns array, by the fused pass's own reductions (over a flat dummy equity curve)."""
    n = r.shape[0]
    total, down, _, _, _, _ = _sums_and_drawdown(np.ones(n), np.zeros(n), r, 1.0)
    mean = total / n
    m2, m3, m4, _, _ = _central_moments(r, mean, 0, n, 0.0, 0.0, 0.0, False)
    return mean, down, m2 / n, m3 / n, m4 / n


@njit(nogil=True, cache=True, error_model="numpy")
def _drawdown(equity, init_cash):
    """(deepest drawdown, longest run below the peak): the fused pass's own loop."""
    n = equity.shape[0]
    _, _, _, _, worst, longest = _sums_and_drawdown(equity, np.zeros(n), np.zeros(n),
                                                    init_cash)
    return worst, longest


# ------------------------------------------------------------------ standalone metrics
@njit(nogil=True, cache=True, error_model="numpy")
def simple_returns(equity, init_cash):
    """Per-bar returns; the first is relative to the initial cash."""
    r = np.empty(equity.shape[0])
    if equity.shape[0]:
        _bar_returns(equity, init_cash, r)
    return r


@njit(nogil=True, cache=True, error_model="numpy")
def volatility(r, periods_per_year):
    _, _, m2, _, _ = _return_stats(r)
    return _volatility(m2, r.shape[0], np.sqrt(periods_per_year))


@njit(nogil=True, cache=True, error_model="numpy")
def sharpe(r, periods_per_year):
    mean, _, m2, _, _ = _return_stats(r)
    return _sharpe(mean, m2, r.shape[0], np.sqrt(periods_per_year))


@njit(nogil=True, cache=True, error_model="numpy")
def sortino(r, periods_per_year):
    mean, down, _, _, _ = _return_stats(r)
    return _sortino(mean, down, r.shape[0], np.sqrt(periods_per_year))


@njit(nogil=True, cache=True, error_model="numpy")
def skew(r):
    _, _, m2, m3, _ = _return_stats(r)
    return _skew(m2, m3, r.shape[0])


@njit(nogil=True, cache=True, error_model="numpy")
def kurtosis(r):
    """Raw (Pearson) kurtosis: 3 for a normal distribution."""
    _, _, m2, _, m4 = _return_stats(r)
    return _kurtosis(m2, m4, r.shape[0])


@njit(nogil=True, cache=True, error_model="numpy")
def max_drawdown(equity, init_cash):
    """Largest fall from a running peak (which starts at the initial cash), as a fraction."""
    return _drawdown(equity, init_cash)[0]


@njit(nogil=True, cache=True, error_model="numpy")
def max_drawdown_duration(equity, init_cash):
    """Longest run of consecutive bars below the running peak."""
    return _drawdown(equity, init_cash)[1]


@njit(nogil=True, cache=True, error_model="numpy")
def cagr(equity, init_cash, periods_per_year):
    n = equity.shape[0]
    if n == 0:
        return np.nan
    return _cagr(equity[n - 1], init_cash, periods_per_year, n)


# ------------------------------------------------------------------ the fused pass
@njit(nogil=True, cache=True, error_model="numpy")
def metrics_vector(equity, exposure, init_cash, periods_per_year, fees, notional, n_opened,
                   n_closed, n_wins, gross_profit, gross_loss):
    """All METRIC_NAMES, in order, for one run: ``equity`` and gross ``exposure`` per bar,
    ``fees`` and traded ``notional`` in total, and the trade counts.

    The simulation calls :func:`metrics_with_blocks` on its own equity and exposure, so
    both give the same bits. With ``error_model="numpy"`` a zero equity yields inf/nan
    metrics rather than an exception.
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
    out[N_BARS] = n
    out[N_TRADES] = n_opened
    out[FEES] = fees
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
    out[TOTAL_RETURN] = final / init_cash - 1.0
    out[CAGR] = _cagr(final, init_cash, periods_per_year, n)
    out[VOLATILITY] = _volatility(m2, n, root_p)
    out[SHARPE] = _sharpe(mean, m2, n, root_p)
    out[SORTINO] = _sortino(mean, down, n, root_p)
    out[MAX_DRAWDOWN] = worst
    out[MAX_DRAWDOWN_DURATION] = longest
    out[CALMAR] = out[CAGR] / worst if worst > 0.0 else np.nan
    if n_closed > 0:
        out[WIN_RATE] = n_wins / n_closed
        if gross_loss > 0.0:
            out[PROFIT_FACTOR] = gross_profit / gross_loss
        elif gross_profit > 0.0:
            out[PROFIT_FACTOR] = np.inf
    mean_equity = equity_sum / n
    years = n / periods_per_year
    out[TURNOVER] = notional / 2.0 / mean_equity / years if mean_equity > 0.0 else np.nan
    out[EXPOSURE] = share / n
    out[FINAL_EQUITY] = final
    out[SKEW] = _skew(m2, m3, n)
    out[KURTOSIS] = _kurtosis(m2, m4, n)
    return out
