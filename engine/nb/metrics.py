"""Performance metrics as pure functions of an equity or returns array (empyrical style).

Definitions are in docs/engine.md. Every function is a Numba kernel that is also callable
from Python, e.g. ``sharpe(returns, 252.0)``.

With a risk-free rate (a per-bar constant ``rf_bar``, or a per-bar series ``rf``) Sharpe
and Sortino are ratios of excess returns ``r - rf``; with a benchmark (per-bar returns
``bench``) the pass adds alpha, beta, information ratio, tracking error and excess return
(NaN without one). See docs/engine.md "Benchmark and risk-free rate".

Each formula is written once. The simulation reduces a run's equity and exposure in one
pass (:func:`metrics_with_blocks`: per-bar returns, then every running sum and the
drawdown together), then finishes every metric from those sums with the scalar functions
``_sharpe``, ``_sortino``, ... below. The moments come from the sums of the 1st to 4th
powers of the returns (:func:`moments`), so no second pass over the returns is needed
(unless the mean is large against the spread, :func:`power_sums_do`): the fused one-asset
runs (engine.nb.single) keep the same sums in registers bar by bar and get the same bits.
The standalone functions (:func:`sharpe`, :func:`max_drawdown`, ...) run the same
reductions and the same finishers, so they give the same bits as the fused pass
(tests/test_engine_records.py checks it).
"""

import numpy as np
from numba import njit

METRIC_NAMES = (
    "total_return", "cagr", "volatility", "sharpe", "sortino", "max_drawdown",
    "max_drawdown_duration", "calmar", "n_trades", "win_rate", "profit_factor", "turnover",
    "exposure", "fees", "final_equity", "skew", "kurtosis", "n_bars",
    "alpha", "beta", "information_ratio", "tracking_error", "excess_return",
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
ALPHA = _slot("alpha")
BETA = _slot("beta")
INFORMATION_RATIO = _slot("information_ratio")
TRACKING_ERROR = _slot("tracking_error")
EXCESS_RETURN = _slot("excess_return")

# Below this population variance a benchmark's returns are flat: beta (and alpha) are NaN
# (empyrical's threshold, so a constant benchmark gives NaN, not a ratio of rounding noise).
MIN_BENCHMARK_VARIANCE = 1e-30


# ------------------------------------------------------------------ finishers: one formula each
@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def per_bar_rate(annual, periods_per_year):
    """The per-bar rate that compounds to ``annual`` over a year of bars:
    ``(1 + annual) ** (1 / periods_per_year) - 1`` (exactly 0 for 0)."""
    return (1.0 + annual) ** (1.0 / periods_per_year) - 1.0


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


@njit(nogil=True, cache=True, error_model="numpy")
def per_bar_rates(annual, periods_per_year):
    """:func:`per_bar_rate` of each of an array of annual rates (NaN stays NaN)."""
    out = np.empty(annual.shape[0])
    for t in range(annual.shape[0]):
        out[t] = per_bar_rate(annual[t], periods_per_year)
    return out


# ------------------------------------------------------------------ reductions over the bars
@njit(nogil=True, cache=True, error_model="numpy")
def _bar_returns(equity, init_cash, returns):
    """Each bar's return: element-wise, so the divisions run as vector instructions."""
    returns[0] = equity[0] / init_cash - 1.0
    for t in range(1, equity.shape[0]):
        returns[t] = equity[t] / equity[t - 1] - 1.0


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def drawdown_step(x, peak, worst, limit, run, longest):
    """Equity ``x`` of the next bar into the running peak, the deepest drawdown (a
    fraction), ``limit`` = peak * (1 - worst) (the equity below which the drawdown
    deepens), the bars below the peak now (``run``) and the most in a run that has ended
    (``longest``; the longest run overall is ``max(longest, run)``): the new five.

    What a bar costs here is what the sweeps' bar loops cost, so the common bar (below
    the peak, no deeper) only counts itself: ``limit`` is kept rather than recomputed
    (comparing with it is a branch that is rarely taken, where ``x < peak * (1 - worst)``
    made the worst drawdown a chain through every bar and the compiler divided on every
    bar to select the new value), and the longest run is updated when a run ends, not
    on every bar of it (with the fused loop's other changes of 2026-12-06, the MA grid's
    runs ~1.2x faster, same bits: benchmarks/README.md).
    """
    if x >= peak:
        peak = x
        longest = max(longest, run)
        run = 0
        limit = peak * (1.0 - worst)
    else:
        run += 1
        if x < limit:  # divide only when the drawdown deepens
            worst = 1.0 - x / peak
            limit = peak * (1.0 - worst)
    return peak, worst, limit, run, longest


@njit(nogil=True, cache=True, error_model="numpy")
def _sums_and_drawdown(equity, exposure, returns, init_cash, rf_bar):
    """Sums of returns and of their squares, cubes and 4th powers, of squared negative
    excess returns (``r - rf_bar``; subtracting 0.0 changes no bit), of equity and of
    exposure shares (gross / equity; 0 without exposure or equity); the deepest fall from
    the running peak (a fraction; the peak starts at the initial cash) and the longest run
    of bars below it. One pass: the sums are independent chains beside the drawdown's
    branches, so they cost little, and the bars are read once."""
    total = s2 = s3 = s4 = down = equity_sum = share = 0.0
    peak = init_cash
    worst = 0.0
    limit = peak * (1.0 - worst)
    run = 0
    longest = 0
    for t in range(equity.shape[0]):
        x = equity[t]
        g = exposure[t]
        r = returns[t]
        total += r
        r2 = r * r
        s2 += r2
        s3 += r2 * r
        s4 += r2 * r2
        e = r - rf_bar
        down += e * e if e < 0.0 else 0.0
        equity_sum += x
        share += g / x if g != 0.0 and x > 0.0 else 0.0
        peak, worst, limit, run, longest = drawdown_step(x, peak, worst, limit, run,
                                                         longest)
    return total, s2, s3, s4, down, equity_sum, share, worst, max(longest, run)


@njit(nogil=True, cache=True, error_model="numpy")
def _central_moments(returns, mean):
    """Sums of the 2nd to 4th powers of ``returns - mean``, in bar order (a second pass,
    for the runs whose power sums are not accurate enough: see :func:`power_sums_do`)."""
    m2 = m3 = m4 = 0.0
    for t in range(returns.shape[0]):
        d = returns[t] - mean
        d2 = d * d
        m2 += d2
        m3 += d2 * d
        m4 += d2 * d2
    return m2, m3, m4


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def power_sums_do(total, s2, n):
    """Are the sums of the returns' powers enough for their central moments, with no
    second pass? Yes when |mean| is at most a quarter of the returns' root mean square
    (a backtest's returns: the mean is a small fraction of their spread), where the
    moments from the power sums lose less than a digit to cancellation. Otherwise (a few
    bars, near-constant returns, NaN) the moments are summed again around the mean
    (:func:`_central_moments`), as exactly as ever."""
    mean = total / n
    return mean * mean <= 0.0625 * (s2 / n)


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def moments(total, s2, s3, s4, n, centred):
    """Mean and population central moments 2..4 of n returns from their sum ``total``
    and either the sums of their 2nd to 4th powers (``centred`` False; one pass, see
    :func:`power_sums_do`) or the sums of the powers of their deviations from the mean
    (``centred`` True; a second pass)."""
    mean = total / n
    if centred:
        return mean, s2 / n, s3 / n, s4 / n
    q2 = s2 / n
    q3 = s3 / n
    q4 = s4 / n
    mm = mean * mean
    m2 = q2 - mm
    m3 = q3 - mean * (3.0 * q2 - 2.0 * mm)
    m4 = q4 - mean * (4.0 * q3 - mean * (6.0 * q2 - 3.0 * mm))
    return mean, m2, m3, m4


@njit(nogil=True, cache=True, error_model="numpy")
def _return_stats(r):
    """Mean, sum of squared negative returns and population central moments 2..4 of a
    returns array, by the fused pass's own reductions (over a flat dummy equity curve)."""
    n = r.shape[0]
    total, s2, s3, s4, down, _, _, _, _ = _sums_and_drawdown(np.ones(n), np.zeros(n), r,
                                                             1.0, 0.0)
    centred = not power_sums_do(total, s2, n)
    if centred:
        s2, s3, s4 = _central_moments(r, total / n)
    mean, m2, m3, m4 = moments(total, s2, s3, s4, n, centred)
    return mean, down, m2, m3, m4


@njit(nogil=True, cache=True, error_model="numpy")
def _drawdown(equity, init_cash):
    """(deepest drawdown, longest run below the peak): the fused pass's own loop."""
    n = equity.shape[0]
    _, _, _, _, _, _, _, worst, longest = _sums_and_drawdown(equity, np.zeros(n),
                                                             np.zeros(n), init_cash, 0.0)
    return worst, longest


@njit(nogil=True, cache=True, error_model="numpy")
def _market_moments(returns, rf_bar, rf, bench):
    """Excess returns ``e = r - rf`` (``rf[t]``, or ``rf_bar`` when ``rf`` is empty) and,
    if ``bench`` is given, benchmark excess returns ``be = b - rf`` and active returns
    ``a = r - b``, where ``b = bench`` except on the first bar, whose benchmark return is
    0 (the benchmark is bought at the run's first close). Two passes (means, then centred
    sums, as the other moments). Returns the means of e, be and a; the population
    variances of e, be and a and covariance of e and be; the sum of squared negative e;
    and the benchmark's growth prod(1 + b)."""
    n = returns.shape[0]
    has_rf = rf.shape[0] > 0
    has_bench = bench.shape[0] > 0
    se = sb = sa = 0.0
    growth = 1.0
    for t in range(n):
        f = rf[t] if has_rf else rf_bar
        se += returns[t] - f
        if has_bench:
            b = bench[t] if t > 0 else 0.0
            sb += b - f
            sa += returns[t] - b
            growth *= 1.0 + b
    me = se / n
    mb = sb / n
    ma = sa / n
    vee = vbb = veb = vaa = down = 0.0
    for t in range(n):
        f = rf[t] if has_rf else rf_bar
        e = returns[t] - f
        de = e - me
        vee += de * de
        down += e * e if e < 0.0 else 0.0
        if has_bench:
            b = bench[t] if t > 0 else 0.0
            db = b - f - mb
            da = returns[t] - b - ma
            vbb += db * db
            veb += de * db
            vaa += da * da
    return me, mb, ma, vee / n, vbb / n, veb / n, vaa / n, down, growth


@njit(nogil=True, cache=True, error_model="numpy")
def _excess_blocks(returns, rf_bar, rf, blocks):
    """Add each block's (sum, sum of squares, count) of excess returns ``returns - rf``
    (``rf[t]``, or the constant ``rf_bar`` when ``rf`` is empty) to ``blocks`` (S, 3):
    block b covers bars ``b*n//S .. (b+1)*n//S``."""
    n = returns.shape[0]
    S = blocks.shape[0]
    has_rf = rf.shape[0] > 0
    for b in range(S):
        lo = b * n // S
        hi = (b + 1) * n // S
        s1 = s2 = 0.0
        for t in range(lo, hi):
            x = returns[t] - (rf[t] if has_rf else rf_bar)
            s1 += x
            s2 += x * x
        blocks[b, 0] += s1
        blocks[b, 1] += s2
        blocks[b, 2] += hi - lo


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
@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def finish_metrics(out, n, total, s2, s3, s4, centred, down, equity_sum, share, worst,
                   longest, final, init_cash, periods_per_year, notional, n_closed, n_wins,
                   gross_profit, gross_loss, rf_bar):
    """Every metric but the benchmark's from a run's sums over its ``n`` bars: the sum of
    its returns and of their powers 2 to 4 (or of their deviations', ``centred``: see
    :func:`moments`), of squared negative excess returns ``down``, of
    equity and of exposure shares, the drawdown (``worst``, ``longest``) and the final
    equity; N_BARS, N_TRADES and FEES are the caller's. Shared by every path that reduces
    a run (the pass over an equity array here, engine.nb.single's fused runs), so they
    give the same bits."""
    mean, m2, m3, m4 = moments(total, s2, s3, s4, n, centred)
    root_p = np.sqrt(periods_per_year)
    out[TOTAL_RETURN] = final / init_cash - 1.0
    out[CAGR] = _cagr(final, init_cash, periods_per_year, n)
    out[VOLATILITY] = _volatility(m2, n, root_p)
    # A constant rate shifts every return alike: the excess returns' mean is mean - rf_bar
    # and their variance is the returns' (with rf_bar = 0, exactly the plain ratio).
    out[SHARPE] = _sharpe(mean - rf_bar, m2, n, root_p)
    out[SORTINO] = _sortino(mean - rf_bar, down, n, root_p)
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


@njit(nogil=True, cache=True, error_model="numpy")
def metrics_vector(equity, exposure, init_cash, periods_per_year, fees, notional, n_opened,
                   n_closed, n_wins, gross_profit, gross_loss, risk_free=0.0, bench=None,
                   rf=None):
    """All METRIC_NAMES, in order, for one run: ``equity`` and gross ``exposure`` per bar,
    ``fees`` and traded ``notional`` in total, and the trade counts; optionally an annual
    ``risk_free`` rate (EngineConfig.risk_free), the benchmark's per-bar returns
    ``bench`` and a per-bar risk-free series ``rf`` (the arrays of engine.MarketSeries).

    The simulation calls :func:`metrics_with_blocks` on its own equity and exposure, so
    both give the same bits. With ``error_model="numpy"`` a zero equity yields inf/nan
    metrics rather than an exception.
    """
    b = np.empty(0) if bench is None else bench  # None: resolved when compiled
    f = np.empty(0) if rf is None else rf
    return metrics_with_blocks(equity, exposure, init_cash, periods_per_year, fees,
                               notional, n_opened, n_closed, n_wins, gross_profit,
                               gross_loss, np.empty((0, 3)),
                               per_bar_rate(risk_free, periods_per_year), b, f)


@njit(nogil=True, cache=True, error_model="numpy")
def metrics_with_blocks(equity, exposure, init_cash, periods_per_year, fees, notional,
                        n_opened, n_closed, n_wins, gross_profit, gross_loss, blocks, rf_bar,
                        bench, rf):
    """:func:`metrics_vector`, also adding to ``blocks`` (S, 3) each of S consecutive
    blocks' (sum, sum of squares, count) of excess returns; block b covers bars
    ``b*n//S .. (b+1)*n//S``, so the overfitting statistics can rebuild per-block Sharpe
    ratios without keeping the returns. The risk-free rate is ``rf[t]`` per bar, or the
    constant per-bar ``rf_bar`` when ``rf`` is empty; ``bench`` (empty = none) holds the
    benchmark's per-bar returns, the first bar's taken as 0."""
    n = equity.shape[0]
    out = np.full(N_METRICS, np.nan)
    out[N_BARS] = n
    out[N_TRADES] = n_opened
    out[FEES] = fees
    if n == 0:
        return out
    returns = np.empty(n)
    _bar_returns(equity, init_cash, returns)
    total, s2, s3, s4, down, equity_sum, share, worst, longest = _sums_and_drawdown(
        equity, exposure, returns, init_cash, rf_bar)
    centred = not power_sums_do(total, s2, n)
    if centred:
        s2, s3, s4 = _central_moments(returns, total / n)
    rf_series = rf.shape[0] > 0
    if blocks.shape[0] > 0:
        _excess_blocks(returns, rf_bar, rf, blocks)
    root_p = np.sqrt(periods_per_year)
    finish_metrics(out, n, total, s2, s3, s4, centred, down, equity_sum, share, worst,
                   longest, equity[n - 1], init_cash, periods_per_year, notional, n_closed,
                   n_wins, gross_profit, gross_loss, rf_bar)
    if rf_series or bench.shape[0] > 0:
        me, mb, ma, vee, vbb, veb, vaa, down_e, growth = _market_moments(
            returns, rf_bar, rf, bench)
        if rf_series:
            out[SHARPE] = _sharpe(me, vee, n, root_p)
            out[SORTINO] = _sortino(me, down_e, n, root_p)
        if bench.shape[0] > 0:
            # CAPM on excess returns: e = alpha + beta * be (empyrical's alpha and beta)
            beta = veb / vbb if vbb >= MIN_BENCHMARK_VARIANCE else np.nan
            out[BETA] = beta
            out[ALPHA] = (1.0 + (me - beta * mb)) ** periods_per_year - 1.0 if n >= 2 \
                else np.nan
            out[TRACKING_ERROR] = _volatility(vaa, n, root_p)
            out[INFORMATION_RATIO] = _sharpe(ma, vaa, n, root_p)
            out[EXCESS_RETURN] = out[TOTAL_RETURN] - (growth - 1.0)
    return out
