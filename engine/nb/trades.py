"""Position and trade bookkeeping for one fill, and the growable trade log."""

import numpy as np
from numba import njit

from engine.nb.layout import OPEN, TRADE_DTYPE


@njit(nogil=True, cache=True)
def _open_trade(b, acct, qty, price, fee, bar, atr_k, atr_value):
    """Start a trade with signed ``qty`` filled at ``price``."""
    d = 1 if qty > 0 else -1
    b.tr_dir = d
    b.tr_entry_bar = bar
    b.tr_qty_in = abs(qty)
    b.tr_cost_in = abs(qty) * price
    b.tr_qty_out = 0.0
    b.tr_value_out = 0.0
    b.tr_fees = fee
    b.tr_cash = -qty * price - fee
    b.peak = price
    b.atr_level = price - d * atr_k * atr_value  # NaN when there is no ATR stop
    acct.n_opened += 1


@njit(nogil=True, cache=True)
def apply_fill(b, acct, asset, qty, price, fee, bar, reason, atr_k, atr_value, closed):
    """Apply a filled signed ``qty`` at fill ``price`` with ``fee`` to the asset's book.

    Returns True when the fill closed a trade; that trade is then written to ``closed[0]``.
    A fill that reverses the position closes the trade and opens a new one with the rest,
    splitting the fee by quantity.
    """
    acct.cash -= qty * price + fee
    acct.bar_fees += fee
    acct.bar_notional += abs(qty) * price
    pos = b.pos
    new_pos = pos + qty
    b.pos = new_pos
    if pos == 0.0:
        _open_trade(b, acct, qty, price, fee, bar, atr_k, atr_value)
        return False
    if (qty > 0) == (pos > 0):
        b.tr_qty_in += abs(qty)
        b.tr_cost_in += abs(qty) * price
        b.tr_fees += fee
        b.tr_cash -= qty * price + fee
        return False
    closing = min(abs(qty), abs(pos))
    share = closing / abs(qty)
    b.tr_qty_out += closing
    b.tr_value_out += closing * price
    b.tr_fees += fee * share
    b.tr_cash += b.tr_dir * closing * price - fee * share
    if new_pos != 0.0 and (new_pos > 0) == (pos > 0):
        return False
    _finish_trade(b, acct, asset, bar, reason, b.tr_value_out / b.tr_qty_out, b.tr_cash,
                  closed)
    if new_pos != 0.0:
        _open_trade(b, acct, new_pos, price, fee * (1.0 - share), bar, atr_k, atr_value)
    else:
        b.tr_dir = 0
    return True


@njit(nogil=True, cache=True)
def _finish_trade(b, acct, asset, bar, reason, exit_price, pnl, closed):
    t = closed[0]
    t.asset = asset
    t.direction = b.tr_dir
    t.entry_bar = b.tr_entry_bar
    t.exit_bar = bar if reason != OPEN else -1
    t.entry_price = b.tr_cost_in / b.tr_qty_in
    t.exit_price = exit_price
    t.quantity = b.tr_qty_in
    t.pnl = pnl
    t.cost = b.tr_cost_in
    t.fees = b.tr_fees
    t.exit_reason = reason
    if reason != OPEN:
        acct.n_closed += 1
        if pnl > 0:
            acct.n_wins += 1
            acct.gross_profit += pnl
        else:
            acct.gross_loss -= pnl


@njit(nogil=True, cache=True)
def describe_open_trade(b, acct, asset, closed):
    """Write the asset's still-open trade, marked at its last close, to ``closed[0]``."""
    _finish_trade(b, acct, asset, -1, OPEN, b.mark, b.tr_cash + b.pos * b.mark, closed)


@njit(nogil=True, cache=True)
def new_trade_log(capacity):
    return np.empty(max(capacity, 16), dtype=TRADE_DTYPE)


@njit(nogil=True, cache=True)
def append_trade(log, n, trade):
    """Append a trade record; returns the (possibly reallocated) log."""
    if n == log.shape[0]:
        bigger = np.empty(2 * n, dtype=TRADE_DTYPE)
        bigger[:n] = log
        log = bigger
    log[n] = trade
    return log
