"""Executing orders: costs, the cash rule, and the sells-first order of a batch of fills.

Helpers marked ``inline="always"`` run inside the bar loop at every fill: as calls they
would pay Numba's reference counting of their array arguments each time (measured: a bar
with a fill ~125 ns called, ~75 ns inlined). ``fill_order`` itself stays a call: it has
four call sites, and inlining it cost seconds of cold compilation; it is compiled without
reference counting instead (``engine.nb.jit.loop_helper``)."""

import numpy as np
from numba import njit

from engine.nb.jit import loop_helper
from engine.nb.layout import CASH, CASH_RTOL, N_DROPPED
from engine.nb.trades import apply_fill


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _close_enough(a, b):
    return abs(a - b) <= max(CASH_RTOL * max(abs(a), abs(b)), 1e-12)


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def order_cost(qty, price, cash, cfg):
    """Signed ``qty`` at raw ``price`` under the config's costs, with ``cash`` in the
    account: ``(filled qty, fill price, fee, spend, status)``; status 0 = filled, 1 = no
    order (a quantity of 0 or no price), 2 = dropped (no cash for it, or a sale whose
    proceeds do not cover its fees). The one formula of a fill's costs (fill_order here,
    engine.nb.single's fused runs)."""
    if qty == 0.0 or not np.isfinite(price):
        return 0.0, 0.0, 0.0, 0.0, 1
    c = cfg.commission
    f = cfg.fixed_fee
    if qty > 0:
        fill_price = price * (1.0 + cfg.slippage)
        fee = qty * fill_price * c + f
        spend = qty * fill_price + fee
        if cfg.cash_account and spend > cash and not _close_enough(spend, cash):
            budget = (cash - f) / (1.0 + c)
            if budget <= 0.0:
                return 0.0, 0.0, 0.0, 0.0, 2
            qty = budget / fill_price
            if cfg.fractional:
                fee = cash - budget
            else:
                qty = np.floor(qty)
                if qty == 0.0:
                    return 0.0, 0.0, 0.0, 0.0, 2
                fee = qty * fill_price * c + f
            spend = qty * fill_price + fee
    else:
        fill_price = price * (1.0 - cfg.slippage)
        fee = -qty * fill_price * c + f
        if -qty * fill_price - fee < 0.0:
            return 0.0, 0.0, 0.0, 0.0, 2
        spend = 0.0
    return qty, fill_price, fee, spend, 0


@njit(nogil=True, cache=True, error_model="numpy")
def order_quantity(w, pos, price, equity, cfg):
    """Shares to trade to move a position of ``pos`` shares to target weight ``w`` of
    ``equity`` at ``price``; 0.0 for no order (no equity to size a non-zero target, already
    there, or below ``min_trade_value`` / ``min_weight_change``). The one sizing rule of
    the bar loop (simulate) and the one-asset run (single)."""
    if w == 0.0:
        target = 0.0
    elif equity <= 0.0:
        return 0.0
    else:
        target = w * equity / price
        if not cfg.fractional:
            target = np.trunc(target)
    q = target - pos
    # Each test only when its threshold is set: at 0 no size or change is below it, and
    # the weight change costs a division (~4 % of a rebalancing backtest's time).
    if q != 0.0 and target != 0.0:
        if cfg.min_trade_value > 0.0 and abs(q) * price < cfg.min_trade_value:
            return 0.0
        if (cfg.min_weight_change > 0.0
                and abs(w - pos * price / equity) < cfg.min_weight_change):
            return 0.0
    return q


@loop_helper
def fill_order(book, acct, cfg, n, qty, price, bar, reason, atr_value, closed):
    """Fill signed ``qty`` of asset n at raw ``price`` under the config's costs.

    Buys in a cash account are cut to what the cash pays for (vectorbt's rule: spend
    ``(cash - fixed_fee) / (1 + commission)`` on the asset); a sale whose proceeds do not
    cover its fees is not filled. Returns ``(filled qty, closed a trade)``; a closed trade
    is written to the log row ``closed``.
    """
    cash = acct[CASH]
    qty, fill_price, fee, spend, status = order_cost(qty, price, cash, cfg)
    if status != 0:
        if status == 2:
            acct[N_DROPPED] += 1.0
        return 0.0, False
    closed_trade = apply_fill(book, acct, n, qty, fill_price, fee, bar, reason,
                              cfg.atr_stop, atr_value, closed)
    if cfg.cash_account and spend > 0.0 and _close_enough(spend, cash):
        acct[CASH] = 0.0  # spent within rounding of all the cash: never a negative crumb
    return qty, closed_trade


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def sort_by_value(idx, values, n):
    """Stable insertion sort of ``idx[:n]`` by ``values[:n]`` ascending (sells first)."""
    for i in range(1, n):
        key_v = values[i]
        key_i = idx[i]
        j = i - 1
        while j >= 0 and values[j] > key_v:
            values[j + 1] = values[j]
            idx[j + 1] = idx[j]
            j -= 1
        values[j + 1] = key_v
        idx[j + 1] = key_i
