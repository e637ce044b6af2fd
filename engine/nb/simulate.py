"""The bar loop: fills, stops, delisting, marking and decisions in the order of docs/engine.md.

``simulate`` runs one backtest; ``simulate_batch`` runs many over one panel in one call
(no Python per run), returning only metrics.
"""

from collections import namedtuple

import numpy as np
from numba import njit

from engine.nb.fills import fill_order, order_quantity, sort_by_value
from engine.nb.jit import loop_helper
from engine.nb.layout import (
    ACCT_FIELDS,
    BAR_FEES,
    BAR_NOTIONAL,
    BLOCK_W,
    BLOCKED,
    BOOK_FIELDS,
    CASH,
    DELISTED,
    GROSS_LOSS,
    GROSS_PROFIT,
    LAST_W,
    LOG_FIELDS,
    MARK,
    N_CLOSED,
    N_DROPPED,
    N_OPENED,
    N_REFUSED,
    N_WINS,
    ORDER,
    POS,
    SIGNAL,
    TR_ENTRY_BAR,
)
from engine.nb.metrics import N_METRICS, metrics_with_blocks, per_bar_rate
from engine.nb.stops import average_true_range, check_stop, update_trailing
from engine.nb.trades import describe_open_trade, log_trade

SimResult = namedtuple(
    "SimResult",
    ["equity", "cash", "exposure", "fees", "notional", "positions", "n_trades", "acct",
     "metrics"],
)
SimResult.__doc__ = """What :func:`simulate` returns (fields by name, in Numba and in Python):
per-bar ``equity``, ``cash``, gross ``exposure``, ``fees`` and traded ``notional`` (T,);
``positions`` (T, N); ``n_trades``, the number of trade records (all of them, even those
the log had no room for); the account totals ``acct`` (``engine.nb.layout``: CASH,
N_OPENED, ...); ``metrics`` (N_METRICS,) in the order of METRIC_NAMES."""


@njit(nogil=True, cache=True, error_model="numpy")
def last_valid_bars(close):
    """Per asset, the index of its last bar with a close (-1 if none)."""
    T, N = close.shape
    out = np.full(N, -1, dtype=np.int64)
    for n in range(N):
        for t in range(T - 1, -1, -1):
            if not np.isnan(close[t, n]):
                out[n] = t
                break
    return out


@njit(nogil=True, cache=True, error_model="numpy")
def _new_book(n_assets):
    book = np.zeros((BOOK_FIELDS, n_assets))
    book[MARK] = np.nan
    book[LAST_W] = np.nan
    book[BLOCK_W] = np.nan
    return book


@njit(nogil=True, cache=True, error_model="numpy")
def _delisting_bars(last_bar, n_bars):
    """Per bar: does some asset's data end here (before the panel's last bar)?"""
    out = np.zeros(n_bars, dtype=np.bool_)
    for n in range(last_bar.shape[0]):
        if 0 <= last_bar[n] < n_bars - 1:
            out[last_bar[n]] = True
    return out


@njit(nogil=True, cache=True, error_model="numpy")
def _delisting_order(last_bar, n_bars):
    """The bars where some asset's data ends (before the panel's last bar), ascending:
    where the quiet spans must stop. A loop, not masks: this runs once a backtest."""
    out = np.empty(last_bar.shape[0], dtype=np.int64)
    k = 0
    for n in range(last_bar.shape[0]):
        if 0 <= last_bar[n] < n_bars - 1:
            out[k] = last_bar[n]
            k += 1
    out = out[:k]
    out.sort()
    return out


# _instructed, _span_end and _held_assets are calls, not inlined (inlined they added ~5 s,
# 25 %, to the bar loop's cold compilation), without reference counting (loop_helper).
@loop_helper
def _instructed(weights, rows, t):
    """Does row ``weights[t]`` hold an instruction (a non-NaN weight)? ``rows`` holds the
    answers when the caller has them (engine.nb.weights.scan_weights), else is empty."""
    if rows.shape[0]:
        return rows[t]
    if weights.shape[1] == 1:  # the loop below costs ~10x for one asset (its set-up)
        return not np.isnan(weights[t, 0])
    # Most rows are all NaN and must be read to the end, so a row is read in strides of
    # 64 with a branch-free count (vectorised), not element by element with an early exit
    # (a branch a weight).
    N = weights.shape[1]
    a = 0
    while a < N:
        b = min(a + 64, N)
        k = 0
        for n in range(a, b):
            k += weights[t, n] == weights[t, n]
        if k:
            return True
        a = b
    return False


@loop_helper
def _span_end(weights, rows, t, limit):
    """The first bar after t with an instruction, or ``limit`` (the next delisting bar,
    or T) if none comes before it."""
    u = t + 1
    if rows.shape[0]:
        while u < limit and not rows[u]:
            u += 1
        return u
    if weights.shape[1] == 1:
        # Four bars a test, with & (no short-circuit): one branch for four bars of the
        # long quiet spans, then bar by bar to the instruction.
        while u + 4 <= limit and (np.isnan(weights[u, 0]) & np.isnan(weights[u + 1, 0])
                                  & np.isnan(weights[u + 2, 0])
                                  & np.isnan(weights[u + 3, 0])):
            u += 4
        while u < limit and np.isnan(weights[u, 0]):
            u += 1
        return u
    while u < limit and not _instructed(weights, rows, u):
        u += 1
    return u


@loop_helper
def _held_assets(book, held):
    """Write the assets with a position to ``held``, ascending; returns how many."""
    h = 0
    for n in range(book.shape[1]):
        if book[POS, n] != 0.0:
            held[h] = n
            h += 1
    return h


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _marked_equity(book, close, t, cash, held, h):
    """Mark the held positions (``held[:h]``) to this bar's closes (assets without a bar
    keep their last) and return the equity at those marks: cash plus each position's
    value, in asset order."""
    eq = cash
    for j in range(h):
        n = held[j]
        c = close[t, n]
        if not np.isnan(c):
            book[MARK, n] = c
        eq += book[POS, n] * book[MARK, n]
    return eq


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _decide(book, acct, cfg, stops, weights, close, last_bar, t, delisting, equity, wt, idx,
            vals, cand):
    """Turn row ``weights[t]`` into order quantities in ``book.order``.

    Returns the number of orders; their assets are ``idx[:k]`` and their values (for the
    sells-first sort) ``vals[:k]``. ``delisting``: some asset's bars end at t (before the
    panel's last bar); such an asset gets target 0 (close mode only: in next_open mode it
    was already closed out and gets nothing).
    """
    N = close.shape[1]
    fill_close = cfg.fill_close
    # The row's weights, NaN where the asset has no bar, in a branch-free pass that
    # vectorises; the rare cases (delistings, refused shorts, stops' bookkeeping) are then
    # applied in that order. One loop doing it all, asset by asset, made a rebalancing
    # backtest ~6 % slower.
    negative = 0
    for n in range(N):
        c = close[t, n]
        w = weights[t, n] if c == c else np.nan
        negative += w < 0.0
        wt[n] = w
    if delisting:  # an asset whose bars end here (before the last) is closed
        for n in range(N):
            if last_bar[n] == t and not np.isnan(close[t, n]):
                wt[n] = 0.0 if fill_close else np.nan
    if negative and not cfg.allow_short:
        for n in range(N):
            if wt[n] < 0.0:
                acct[N_REFUSED] += 1.0  # callers check their inputs; batch callers see this
                wt[n] = np.nan
    if stops:
        # What a stop needs (the instruction in force, and a stopped asset staying out
        # until its instruction changes); without stops nothing reads these fields.
        for n in range(N):
            w = wt[n]
            if np.isnan(w) or (delisting and last_bar[n] == t):
                continue
            if book[BLOCKED, n] != 0.0:
                if w == book[BLOCK_W, n]:
                    wt[n] = np.nan
                    continue
                book[BLOCKED, n] = 0.0
            book[LAST_W, n] = w
    # The assets that may get an order, in asset order: those with a target that are held
    # or told to hold something (most assets of a rebalance are flat and told to stay so).
    gross = 0.0
    held = 0.0
    m = 0
    for n in range(N):
        w = wt[n]
        pos = book[POS, n]
        if not np.isnan(w):
            gross += abs(w)
            cand[m] = n
            m += w != 0.0 or pos != 0.0
        elif pos != 0.0 and equity > 0.0:
            held += abs(pos * book[MARK, n]) / equity
    if gross > 0.0 and gross + held > cfg.max_leverage + 1e-9:
        scale = max(0.0, cfg.max_leverage - held) / gross
        for n in range(N):
            wt[n] *= scale

    k = 0
    for j in range(m):
        n = cand[j]
        w = wt[n]
        pos = book[POS, n]
        c = close[t, n]
        q = order_quantity(w, pos, c, equity, cfg)
        if q == 0.0:
            continue
        book[ORDER, n] = q
        idx[k] = n
        # The order's value: vectorbt's form for fractional orders (equal to q * c up to
        # rounding; parity needs its exact ties), q * c once rounded to whole shares.
        vals[k] = w * equity - pos * c if cfg.fractional else q * c
        k += 1
    return k


@njit(nogil=True, cache=True, error_model="numpy")
def simulate(open_, high, low, close, weights, rows, cfg, last_bar, atr, record, log,
             periods_per_year, blocks, bench, rf):
    """One backtest. ``rows`` (T,) says which rows of ``weights`` hold an instruction
    (engine.nb.weights.scan_weights, from the caller's input checks), or is empty: then
    the loop reads each row itself. ``atr`` is (T, N) when cfg has an ATR stop, else
    unused. ``bench`` and ``rf`` (T,) are the benchmark's per-bar returns and the per-bar
    risk-free rates of these bars (engine.MarketSeries; empty = no benchmark, and the
    constant ``cfg.risk_free``), read by the metrics only.

    Returns a :class:`SimResult` (equity, cash, exposure, fees, notional, positions,
    n_trades, acct, metrics: read its fields by name). The metrics (METRIC_NAMES) are
    ``metrics_with_blocks`` of the run's equity and exposure series, with ``blocks``
    (S, 3) receiving the per-block return stats (S = 0: none). ``record``: 0 = metrics
    only (cash, fees and notional are empty); 1 = also those series, and trades written
    to ``log`` (rows of engine.nb.layout.LOG_COLUMNS) while it has room (``n_trades``
    counts them all, so a short log can be retried); 2 = also the (T, N) positions.
    """
    T, N = close.shape
    book = _new_book(N)
    acct = np.zeros(ACCT_FIELDS)
    acct[CASH] = cfg.init_cash
    n_series = T if record else 0
    # Equity and gross exposure of every bar are what the metrics are computed from, after
    # the loop (metrics_with_blocks); the other series only when recording.
    equity = np.empty(T)
    exposure = np.empty(T)
    cash = np.empty(n_series)
    fees = np.empty(n_series)
    notional = np.empty(n_series)
    positions = np.zeros((T if record == 2 else 0, N))
    fees_total = 0.0
    notional_total = 0.0
    n_log = 0
    closed = np.empty(LOG_FIELDS)
    idx = np.empty(N, dtype=np.int64)
    vals = np.empty(N)
    wt = np.empty(N)
    cand = np.empty(N, dtype=np.int64)
    has_atr = not np.isnan(cfg.atr_stop)
    has_trailing = not np.isnan(cfg.trailing_stop)
    has_stops = (has_atr or has_trailing or not np.isnan(cfg.stop_loss)
                 or not np.isnan(cfg.take_profit))
    next_open = not cfg.fill_close
    delisting = _delisting_bars(last_bar, T)
    delist_at = _delisting_order(last_bar, T)
    n_delist = 0  # delist_at[:n_delist] are behind the current bar
    # held[:h]: the assets with a position, ascending, so that marking, valuing and
    # stops visit them only (in the order of a scan over all assets: the same sums); a
    # fill makes it stale until it is next needed.
    held = np.empty(N, dtype=np.int64)
    h = 0
    stale = False
    pending = 0  # next_open: orders waiting for the next open, on waiting[:pending]
    waiting = np.empty(N, dtype=np.int64)

    fill_close = cfg.fill_close
    t = 0
    while t < T:
        # A quiet bar (no fill pending, no stops, no delisting, no instruction) only marks
        # and records, and so do the bars after it up to the next event: most bars of most
        # strategies are quiet, so they are run through as a span, over the held assets
        # only (in asset order, so every sum is the one the bar-by-bar path makes); the
        # span ends at the next bar with an instruction or a delisting.
        decide = (_instructed(weights, rows, t) and (fill_close or t < T - 1)) or (
            fill_close and delisting[t])
        busy = pending > 0 or has_stops or delisting[t] or decide
        if not busy:
            while n_delist < delist_at.shape[0] and delist_at[n_delist] <= t:
                n_delist += 1
            limit = delist_at[n_delist] if n_delist < delist_at.shape[0] else T
            u_end = _span_end(weights, rows, t, limit)
            cash_t = acct[CASH]
            # Asset by asset over the span, each value added to its bar's running equity
            # and exposure: every bar's sums take their terms in asset order, as bar by
            # bar (cash + v0 + v1 ...; 0 + |v0| + ... is |v0| + ...), but no bar waits on
            # the previous bar's sum (a chain of h adds a bar), and each asset's marks
            # stay in a register while its closes are read in bar order.
            equity[t:u_end] = cash_t
            exposure[t:u_end] = 0.0
            for j in range(h):
                n = held[j]
                q = book[POS, n]
                m = book[MARK, n]
                for u in range(t, u_end):
                    c = close[u, n]
                    if not np.isnan(c):
                        m = c
                    v = q * m
                    equity[u] += v
                    exposure[u] += abs(v)
                book[MARK, n] = m
            if record:
                cash[t:u_end] = cash_t
                fees[t:u_end] = 0.0
                notional[t:u_end] = 0.0
            if record == 2:
                for u in range(t, u_end):
                    for n in range(N):
                        positions[u, n] = book[POS, n]
            t = u_end
            continue
        acct[BAR_FEES] = 0.0
        acct[BAR_NOTIONAL] = 0.0
        # (1) next_open: yesterday's decisions fill at today's open, sells first.
        if pending > 0:
            k = 0
            for j in range(pending):
                n = waiting[j]
                q = book[ORDER, n]
                if np.isnan(close[t, n]):
                    book[ORDER, n] = 0.0
                    acct[N_DROPPED] += 1.0
                else:
                    idx[k] = n
                    vals[k] = q * open_[t, n]
                    k += 1
            pending = 0
            sort_by_value(idx, vals, k)
            for j in range(k):
                n = idx[j]
                q = book[ORDER, n]
                book[ORDER, n] = 0.0
                atr_dec = atr[t - 1, n] if has_atr else np.nan
                _, done = fill_order(book, acct, cfg, n, q, open_[t, n], t, SIGNAL, atr_dec,
                                     closed)
                stale = True
                if done and record:
                    n_log = log_trade(log, n_log, closed)
        # (2) stops, for trades opened before this bar.
        if has_stops:
            if stale:
                h = _held_assets(book, held)
                stale = False
            for j in range(h):
                n = held[j]
                if book[TR_ENTRY_BAR, n] >= t or np.isnan(close[t, n]):
                    continue
                reason, price = check_stop(book, n, cfg, open_[t, n], high[t, n], low[t, n])
                if reason == SIGNAL:
                    continue
                _, done = fill_order(book, acct, cfg, n, -book[POS, n], price, t, reason,
                                     np.nan, closed)
                stale = True
                if book[POS, n] == 0.0:
                    book[BLOCKED, n] = 1.0
                    book[BLOCK_W, n] = book[LAST_W, n]
                if done and record:
                    n_log = log_trade(log, n_log, closed)
        # (3) next_open: a position whose bars end here closes at this close.
        if next_open and delisting[t]:
            for n in range(N):
                if last_bar[n] == t and book[POS, n] != 0.0:
                    _, done = fill_order(book, acct, cfg, n, -book[POS, n], close[t, n], t,
                                         DELISTED, np.nan, closed)
                    stale = True
                    if done and record:
                        n_log = log_trade(log, n_log, closed)
        # (4) mark held positions to this bar's closes (again when recording the bar), and
        # (5) decide from this bar's weights: fill now (close) or at the next open.
        if decide:
            if stale:
                h = _held_assets(book, held)
                stale = False
            eq = _marked_equity(book, close, t, acct[CASH], held, h)
            k = _decide(book, acct, cfg, has_stops, weights, close, last_bar, t, delisting[t],
                        eq, wt, idx, vals, cand)
            if next_open:
                pending = k
                waiting[:k] = idx[:k]  # the assets with an order, ascending
            else:
                sort_by_value(idx, vals, k)
                for j in range(k):
                    n = idx[j]
                    q = book[ORDER, n]
                    book[ORDER, n] = 0.0
                    reason = DELISTED if (last_bar[n] == t and t < T - 1) else SIGNAL
                    atr_dec = atr[t, n] if has_atr else np.nan
                    _, done = fill_order(book, acct, cfg, n, q, close[t, n], t, reason,
                                         atr_dec, closed)
                    stale = True
                    if done and record:
                        n_log = log_trade(log, n_log, closed)
        # Record the bar.
        if stale:
            h = _held_assets(book, held)
            stale = False
        eq = acct[CASH]
        gross = 0.0
        for j in range(h):  # the others are flat (and their positions row stays 0)
            n = held[j]
            p = book[POS, n]
            if record == 2:
                positions[t, n] = p
            c = close[t, n]
            if not np.isnan(c):
                book[MARK, n] = c
            v = p * book[MARK, n]
            eq += v
            gross += abs(v)
            if has_trailing and not np.isnan(c) and (
                book[TR_ENTRY_BAR, n] < t or (next_open and book[TR_ENTRY_BAR, n] == t)
            ):
                update_trailing(book, n, high[t, n], low[t, n])
        equity[t] = eq
        exposure[t] = gross
        # Totals in bar order: the sums of the per-bar series, to the bit.
        fees_total += acct[BAR_FEES]
        notional_total += acct[BAR_NOTIONAL]
        if record:
            cash[t] = acct[CASH]
            fees[t] = acct[BAR_FEES]
            notional[t] = acct[BAR_NOTIONAL]
        t += 1

    if record:
        for n in range(N):
            if book[POS, n] != 0.0:
                describe_open_trade(book, acct, n, closed)
                n_log = log_trade(log, n_log, closed)
    metrics = metrics_with_blocks(equity, exposure, cfg.init_cash, periods_per_year,
                                  fees_total, notional_total, acct[N_OPENED], acct[N_CLOSED],
                                  acct[N_WINS], acct[GROSS_PROFIT], acct[GROSS_LOSS], blocks,
                                  per_bar_rate(cfg.risk_free, periods_per_year), bench, rf)
    return SimResult(equity, cash, exposure, fees, notional, positions, n_log, acct, metrics)


@njit(nogil=True, cache=True, error_model="numpy")
def simulate_batch(open_, high, low, close, weights, rows, cfgs, last_bar, periods_per_year,
                   bench, rf):
    """Metrics (R, N_METRICS) of R runs: ``weights`` is (R, T, N) or (1, T, N) shared, and
    ``rows`` (R or 1, T) their instructed rows (as in :func:`simulate`);
    ``bench`` and ``rf`` as in :func:`simulate`, shared by every run."""
    R = cfgs.shape[0]
    out = np.empty((R, N_METRICS))
    atr = np.empty((0, 0))
    atr_window = -1
    no_log = np.empty((0, LOG_FIELDS))
    no_blocks = np.empty((0, 3))
    for r in range(R):
        cfg = cfgs[r]
        if not np.isnan(cfg.atr_stop) and cfg.atr_window != atr_window:
            atr = average_true_range(high, low, close, cfg.atr_window)
            atr_window = cfg.atr_window
        k = r if weights.shape[0] > 1 else 0
        out[r] = simulate(open_, high, low, close, weights[k], rows[k], cfg, last_bar, atr, 0,
                          no_log, periods_per_year, no_blocks, bench, rf).metrics
    return out
