"""Stop-loss, take-profit, trailing and ATR stops: levels, triggers, the trailing reference."""

import numpy as np
from numba import njit

from engine.nb.jit import loop_helper
from engine.nb.layout import (
    ATR_LEVEL,
    ATR_STOP,
    PEAK,
    SIGNAL,
    STOP_LOSS,
    TAKE_PROFIT,
    TR_DIR,
    TR_ENTRY_PRICE,
    TRAILING_STOP,
)


@njit(nogil=True, cache=True, error_model="numpy")
def average_true_range(high, low, close, window):
    """(T, N) simple mean of the last ``window`` true ranges; NaN until there are enough.

    Missing bars are skipped: the window counts the asset's own bars, and a bar's previous
    close is the asset's previous valid close.
    """
    T, N = close.shape
    out = np.full((T, N), np.nan)
    ring = np.empty(window)
    for n in range(N):
        prev_close = np.nan
        total = 0.0
        count = 0
        for t in range(T):
            c = close[t, n]
            if np.isnan(c):
                continue
            h = high[t, n]
            lo = low[t, n]
            tr = h - lo
            if not np.isnan(prev_close):
                tr = max(tr, abs(h - prev_close), abs(lo - prev_close))
            prev_close = c
            slot = count % window
            if count >= window:
                total -= ring[slot]
            ring[slot] = tr
            total += tr
            count += 1
            if count >= window:
                out[t, n] = total / window
    return out


@loop_helper
def check_stop(book, n, cfg, o, h, lo):
    """The stop that fires for asset n's position on a bar with open/high/low ``o, h, lo``.

    Returns ``(reason, price)``; reason SIGNAL means nothing fired. Loss-side stops are
    checked first; a gap through the level fills at the open.
    """
    d = book[TR_DIR, n]
    entry = book[TR_ENTRY_PRICE, n]
    atr_level = book[ATR_LEVEL, n]
    # Loss side: the level price reaches first, i.e. the highest for a long (lowest short).
    level = -np.inf * d
    reason = SIGNAL
    if not np.isnan(cfg.stop_loss):
        level = entry * (1.0 - d * cfg.stop_loss)
        reason = STOP_LOSS
    if not np.isnan(atr_level) and (atr_level - level) * d > 0:
        level = atr_level
        reason = ATR_STOP
    if not np.isnan(cfg.trailing_stop):
        trail = book[PEAK, n] * (1.0 - d * cfg.trailing_stop)
        if (trail - level) * d > 0:
            level = trail
            reason = TRAILING_STOP
    if reason != SIGNAL:
        if (o - level) * d <= 0:
            return reason, o
        worst = lo if d > 0 else h
        if (worst - level) * d <= 0:
            return reason, level
    if not np.isnan(cfg.take_profit):
        level = entry * (1.0 + d * cfg.take_profit)
        if (o - level) * d >= 0:
            return TAKE_PROFIT, o
        best = h if d > 0 else lo
        if (best - level) * d >= 0:
            return TAKE_PROFIT, level
    return SIGNAL, np.nan


@loop_helper
def update_trailing(book, n, h, lo):
    """Move the trailing reference with a finished bar's high (long) or low (short)."""
    if book[TR_DIR, n] > 0:
        if h > book[PEAK, n]:
            book[PEAK, n] = h
    elif lo < book[PEAK, n]:
        book[PEAK, n] = lo
