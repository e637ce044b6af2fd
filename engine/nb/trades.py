"""Position and trade bookkeeping for one fill, and the trade log (rows of
``engine.nb.layout.LOG_COLUMNS``).

The per-fill helpers are inlined into their callers (why: see engine.nb.fills)."""

from numba import njit

from engine.nb.layout import (
    ATR_LEVEL,
    BAR_FEES,
    BAR_NOTIONAL,
    CASH,
    GROSS_LOSS,
    GROSS_PROFIT,
    LOG_ASSET,
    LOG_COST,
    LOG_DIRECTION,
    LOG_ENTRY_BAR,
    LOG_ENTRY_PRICE,
    LOG_EXIT_BAR,
    LOG_EXIT_PRICE,
    LOG_EXIT_REASON,
    LOG_FEES,
    LOG_FIELDS,
    LOG_PNL,
    LOG_QUANTITY,
    MARK,
    N_CLOSED,
    N_OPENED,
    N_WINS,
    OPEN,
    PEAK,
    POS,
    TR_CASH,
    TR_DIR,
    TR_ENTRY_BAR,
    TR_ENTRY_PRICE,
    TR_FEES,
    TR_QTY_IN,
    TR_QTY_OUT,
    TR_VALUE_OUT,
)


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _open_trade(book, acct, n, qty, price, fee, bar, atr_k, atr_value):
    """Start a trade of asset n with signed ``qty`` filled at ``price``."""
    d = 1.0 if qty > 0 else -1.0
    book[TR_DIR, n] = d
    book[TR_ENTRY_BAR, n] = bar
    book[TR_QTY_IN, n] = abs(qty)
    book[TR_ENTRY_PRICE, n] = price
    book[TR_QTY_OUT, n] = 0.0
    book[TR_VALUE_OUT, n] = 0.0
    book[TR_FEES, n] = fee
    book[TR_CASH, n] = -qty * price - fee
    book[PEAK, n] = price
    book[ATR_LEVEL, n] = price - d * atr_k * atr_value  # NaN when there is no ATR stop
    acct[N_OPENED] += 1.0


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def apply_fill(book, acct, n, qty, price, fee, bar, reason, atr_k, atr_value, closed):
    """Apply a filled signed ``qty`` of asset n at fill ``price`` with ``fee``.

    Returns True when the fill closed a trade; that trade is then written to ``closed``
    (one log row).
    A fill that reverses the position closes the trade and opens a new one with the rest,
    splitting the fee by quantity.
    """
    acct[CASH] -= qty * price + fee
    acct[BAR_FEES] += fee
    acct[BAR_NOTIONAL] += abs(qty) * price
    pos = book[POS, n]
    new_pos = pos + qty
    book[POS, n] = new_pos
    if pos == 0.0:
        _open_trade(book, acct, n, qty, price, fee, bar, atr_k, atr_value)
        return False
    if (qty > 0) == (pos > 0):
        # A running average, not notional / quantity: one fill's entry is its price exactly
        # (stop levels that tie by the spec must tie in floating point too).
        held = book[TR_QTY_IN, n]
        book[TR_QTY_IN, n] = held + abs(qty)
        book[TR_ENTRY_PRICE, n] += (price - book[TR_ENTRY_PRICE, n]) * abs(qty) / (held + abs(qty))
        book[TR_FEES, n] += fee
        book[TR_CASH, n] -= qty * price + fee
        return False
    closing = min(abs(qty), abs(pos))
    share = closing / abs(qty)
    book[TR_QTY_OUT, n] += closing
    book[TR_VALUE_OUT, n] += closing * price
    book[TR_FEES, n] += fee * share
    book[TR_CASH, n] += book[TR_DIR, n] * closing * price - fee * share
    if new_pos != 0.0 and (new_pos > 0) == (pos > 0):
        return False
    _finish_trade(book, acct, n, bar, reason, book[TR_VALUE_OUT, n] / book[TR_QTY_OUT, n],
                  book[TR_CASH, n], closed)
    if new_pos != 0.0:
        _open_trade(book, acct, n, new_pos, price, fee * (1.0 - share), bar, atr_k, atr_value)
    else:
        book[TR_DIR, n] = 0.0
    return True


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _finish_trade(book, acct, n, bar, reason, exit_price, pnl, closed):
    closed[LOG_ASSET] = n
    closed[LOG_DIRECTION] = book[TR_DIR, n]
    closed[LOG_ENTRY_BAR] = book[TR_ENTRY_BAR, n]
    closed[LOG_EXIT_BAR] = bar if reason != OPEN else -1
    closed[LOG_ENTRY_PRICE] = book[TR_ENTRY_PRICE, n]
    closed[LOG_EXIT_PRICE] = exit_price
    closed[LOG_QUANTITY] = book[TR_QTY_IN, n]
    closed[LOG_PNL] = pnl
    closed[LOG_COST] = book[TR_ENTRY_PRICE, n] * book[TR_QTY_IN, n]
    closed[LOG_FEES] = book[TR_FEES, n]
    closed[LOG_EXIT_REASON] = reason
    if reason != OPEN:
        acct[N_CLOSED] += 1.0
        if pnl > 0:
            acct[N_WINS] += 1.0
            acct[GROSS_PROFIT] += pnl
        else:
            acct[GROSS_LOSS] -= pnl


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def describe_open_trade(book, acct, n, closed):
    """Write asset n's still-open trade, marked at its last close, to the row ``closed``."""
    _finish_trade(book, acct, n, -1, OPEN, book[MARK, n],
                  book[TR_CASH, n] + book[POS, n] * book[MARK, n], closed)


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def log_trade(log, n_logged, closed):
    """Store the row ``closed`` as trade number ``n_logged`` if the log (LOG_FIELDS
    columns) has room; returns the new count. The log never grows here: reassigning an
    array inside the bar loop costs Numba reference counting on every bar, so the caller
    sizes it and retries when it was short."""
    if n_logged < log.shape[0]:
        for i in range(LOG_FIELDS):
            log[n_logged, i] = closed[i]
    return n_logged + 1
