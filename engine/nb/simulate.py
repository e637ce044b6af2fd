"""The bar loop: fills, stops, delisting, marking and decisions in the order of docs/engine.md.

``simulate`` runs one backtest; ``simulate_batch`` runs many over one panel in one call
(no Python per run), returning only metrics.
"""

import numpy as np
from numba import njit

from engine.nb.fills import fill_order, sort_by_value
from engine.nb.layout import ACCT_DTYPE, BOOK_DTYPE, DELISTED, SIGNAL, TRADE_DTYPE
from engine.nb.metrics import N_METRICS, metrics_vector
from engine.nb.stops import average_true_range, check_stop, update_trailing
from engine.nb.trades import append_trade, describe_open_trade, new_trade_log


@njit(nogil=True, cache=True)
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


@njit(nogil=True, cache=True)
def _new_book(n_assets):
    book = np.zeros(n_assets, dtype=BOOK_DTYPE)
    for n in range(n_assets):
        b = book[n]
        b.mark = np.nan
        b.peak = np.nan
        b.atr_level = np.nan
        b.last_w = np.nan
        b.block_w = np.nan
    return book


@njit(nogil=True, cache=True)
def _equity(book, cash):
    eq = cash
    for n in range(book.shape[0]):
        p = book[n].pos
        if p != 0.0:
            eq += p * book[n].mark
    return eq


@njit(nogil=True, cache=True)
def _decide(book, cfg, weights, close, last_bar, t, n_bars, equity, wt, idx, vals):
    """Turn row ``weights[t]`` into order quantities in ``book.order``.

    Returns the number of orders; their assets are ``idx[:k]`` and their values (for the
    sells-first sort) ``vals[:k]``. A delisting asset gets target 0 (close mode only: in
    next_open mode it was already closed out and gets nothing).
    """
    N = close.shape[1]
    gross = 0.0
    held = 0.0
    for n in range(N):
        b = book[n]
        wt[n] = np.nan
        c = close[t, n]
        if np.isnan(c):
            pass
        elif last_bar[n] == t and t < n_bars - 1:
            if cfg.fill_close:
                wt[n] = 0.0
        else:
            w = weights[t, n]
            if not np.isnan(w):
                if b.blocked:
                    if w == b.block_w:
                        w = np.nan
                    else:
                        b.blocked = False
                if not np.isnan(w):
                    b.last_w = w
            wt[n] = w
        if not np.isnan(wt[n]):
            gross += abs(wt[n])
        elif b.pos != 0.0 and equity > 0.0:
            held += abs(b.pos * b.mark) / equity
    if gross > 0.0 and gross + held > cfg.max_leverage + 1e-9:
        scale = max(0.0, cfg.max_leverage - held) / gross
        for n in range(N):
            wt[n] *= scale

    k = 0
    for n in range(N):
        w = wt[n]
        if np.isnan(w):
            continue
        b = book[n]
        c = close[t, n]
        if w == 0.0:
            target = 0.0
        elif equity <= 0.0:
            continue
        else:
            target = w * equity / c
            if not cfg.fractional:
                target = np.trunc(target)
        q = target - b.pos
        if q == 0.0:
            continue
        if target != 0.0:
            if abs(q) * c < cfg.min_trade_value:
                continue
            if abs(w - b.pos * c / equity) < cfg.min_weight_change:
                continue
        b.order = q
        idx[k] = n
        vals[k] = w * equity - b.pos * c  # vectorbt's approximate order value
        k += 1
    return k


@njit(nogil=True, cache=True)
def simulate(open_, high, low, close, weights, cfg, last_bar, atr, record):
    """One backtest. ``atr`` is (T, N) when cfg has an ATR stop, else unused.

    Returns ``(equity, cash, exposure, fees, notional, positions, trades, acct)``; positions
    and trades are empty unless ``record``.
    """
    T, N = close.shape
    book = _new_book(N)
    acct = np.zeros(1, dtype=ACCT_DTYPE)
    a = acct[0]
    a.cash = cfg.init_cash
    equity = np.empty(T)
    cash = np.empty(T)
    exposure = np.empty(T)
    fees = np.empty(T)
    notional = np.empty(T)
    positions = np.zeros((T if record else 0, N))
    log = new_trade_log(64 if record else 1)
    n_log = 0
    closed = np.empty(1, dtype=TRADE_DTYPE)
    idx = np.empty(N, dtype=np.int64)
    vals = np.empty(N)
    wt = np.empty(N)
    has_atr = not np.isnan(cfg.atr_stop)
    has_trailing = not np.isnan(cfg.trailing_stop)
    has_stops = (has_atr or has_trailing or not np.isnan(cfg.stop_loss)
                 or not np.isnan(cfg.take_profit))
    next_open = not cfg.fill_close

    for t in range(T):
        a.bar_fees = 0.0
        a.bar_notional = 0.0
        # (1) next_open: yesterday's decisions fill at today's open, sells first.
        if next_open and t > 0:
            k = 0
            for n in range(N):
                q = book[n].order
                if q != 0.0:
                    if np.isnan(close[t, n]):
                        book[n].order = 0.0
                        a.n_dropped += 1
                    else:
                        idx[k] = n
                        vals[k] = q * open_[t, n]
                        k += 1
            sort_by_value(idx, vals, k)
            for j in range(k):
                n = idx[j]
                b = book[n]
                q = b.order
                b.order = 0.0
                atr_dec = atr[t - 1, n] if has_atr else np.nan
                _, done = fill_order(b, a, cfg, n, q, open_[t, n], t, SIGNAL, atr_dec, closed)
                if done and record:
                    log = append_trade(log, n_log, closed[0])
                    n_log += 1
        # (2) stops, for trades opened before this bar.
        if has_stops:
            for n in range(N):
                b = book[n]
                if b.pos == 0.0 or b.tr_entry_bar >= t or np.isnan(close[t, n]):
                    continue
                reason, price = check_stop(b, cfg, open_[t, n], high[t, n], low[t, n])
                if reason == SIGNAL:
                    continue
                _, done = fill_order(b, a, cfg, n, -b.pos, price, t, reason, np.nan, closed)
                if b.pos == 0.0:
                    b.blocked = True
                    b.block_w = b.last_w
                if done and record:
                    log = append_trade(log, n_log, closed[0])
                    n_log += 1
        # (3) next_open: a position whose bars end here closes at this close.
        if next_open and t < T - 1:
            for n in range(N):
                b = book[n]
                if last_bar[n] == t and b.pos != 0.0:
                    _, done = fill_order(b, a, cfg, n, -b.pos, close[t, n], t, DELISTED,
                                         np.nan, closed)
                    if done and record:
                        log = append_trade(log, n_log, closed[0])
                        n_log += 1
        # (4) mark to this bar's closes.
        for n in range(N):
            c = close[t, n]
            if not np.isnan(c):
                book[n].mark = c
        # (5) decide from this bar's weights: fill now (close) or at the next open.
        if cfg.fill_close or t < T - 1:
            eq = _equity(book, a.cash)
            k = _decide(book, cfg, weights, close, last_bar, t, T, eq, wt, idx, vals)
            if cfg.fill_close:
                sort_by_value(idx, vals, k)
                for j in range(k):
                    n = idx[j]
                    b = book[n]
                    q = b.order
                    b.order = 0.0
                    reason = DELISTED if (last_bar[n] == t and t < T - 1) else SIGNAL
                    atr_dec = atr[t, n] if has_atr else np.nan
                    _, done = fill_order(b, a, cfg, n, q, close[t, n], t, reason, atr_dec,
                                         closed)
                    if done and record:
                        log = append_trade(log, n_log, closed[0])
                        n_log += 1
        # Record the bar.
        eq = a.cash
        gross = 0.0
        for n in range(N):
            b = book[n]
            p = b.pos
            if record:
                positions[t, n] = p
            if p == 0.0:
                continue
            v = p * b.mark
            eq += v
            gross += abs(v)
            if has_trailing and not np.isnan(close[t, n]) and (
                b.tr_entry_bar < t or (next_open and b.tr_entry_bar == t)
            ):
                update_trailing(b, high[t, n], low[t, n])
        equity[t] = eq
        cash[t] = a.cash
        exposure[t] = gross
        fees[t] = a.bar_fees
        notional[t] = a.bar_notional

    if record:
        for n in range(N):
            b = book[n]
            if b.pos != 0.0:
                describe_open_trade(b, a, n, closed)
                log = append_trade(log, n_log, closed[0])
                n_log += 1
    return equity, cash, exposure, fees, notional, positions, log[:n_log], acct


@njit(nogil=True, cache=True)
def run_metrics(equity, exposure, fees, notional, acct, init_cash, periods_per_year):
    a = acct[0]
    return metrics_vector(equity, exposure, init_cash, periods_per_year, fees.sum(),
                          notional.sum(), a.n_opened, a.n_closed, a.n_wins, a.gross_profit,
                          a.gross_loss)


@njit(nogil=True, cache=True)
def simulate_batch(open_, high, low, close, weights, cfgs, last_bar, periods_per_year):
    """Metrics (R, N_METRICS) of R runs: ``weights`` is (R, T, N) or (1, T, N) shared."""
    R = cfgs.shape[0]
    out = np.empty((R, N_METRICS))
    atr = np.empty((0, 0))
    atr_window = -1
    for r in range(R):
        cfg = cfgs[r]
        if not np.isnan(cfg.atr_stop) and cfg.atr_window != atr_window:
            atr = average_true_range(high, low, close, cfg.atr_window)
            atr_window = cfg.atr_window
        w = weights[r] if weights.shape[0] > 1 else weights[0]
        equity, _, exposure, fees, notional, _, _, acct = simulate(
            open_, high, low, close, w, cfg, last_bar, atr, False
        )
        out[r] = run_metrics(equity, exposure, fees, notional, acct, cfg.init_cash,
                             periods_per_year)
    return out
