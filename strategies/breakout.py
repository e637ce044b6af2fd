"""Donchian channel breakout with an ATR-multiple trailing exit."""

from collections.abc import Mapping

import numpy as np

from engine import Panel
from engine.nb.stops import average_true_range
from strategies.base import Param, Strategy, weights_kernel
from strategies.indicators import rolling_max, rolling_min
from strategies.signals import states_to_weights

__all__ = ["BREAKOUT"]

# The columns of a run's row (``rows[r]``): written by _prepare, read by _kernel.
CHANNEL = 0      # slot in ``data`` of the channel's highest high; its lowest low is next
ATR = 1          # slot of the ATR for the exit
ATR_MULT = 2     # exit this many ATRs beyond the best close since entry
LONG_SHORT = 3   # 1.0: also short breakdowns
ROW_FIELDS = 4


@weights_kernel
def _kernel(data, row, out):
    close = data[0]
    upper = data[int(row[CHANNEL])]  # highest high of the last `channel` bars, this one included
    lower = data[int(row[CHANNEL]) + 1]
    atr = data[int(row[ATR])]
    mult = row[ATR_MULT]
    long_short = row[LONG_SHORT] != 0.0
    T, N = close.shape
    state = np.zeros(N, dtype=np.int64)
    extreme = np.full(N, np.nan)   # best close since entry
    prev_upper = np.full(N, np.nan)  # channel as of the asset's previous bar
    prev_lower = np.full(N, np.nan)
    for t in range(T):
        for n in range(N):
            c = close[t, n]
            if not np.isnan(c):
                a = atr[t, n]
                if state[n] == 1:
                    extreme[n] = max(extreme[n], c)
                    if not np.isnan(a) and c < extreme[n] - mult * a:
                        state[n] = 0
                elif state[n] == -1:
                    extreme[n] = min(extreme[n], c)
                    if not np.isnan(a) and c > extreme[n] + mult * a:
                        state[n] = 0
                elif c > prev_upper[n]:  # flat (an exit bar is not also an entry bar)
                    state[n] = 1
                    extreme[n] = c
                elif long_short and c < prev_lower[n]:
                    state[n] = -1
                    extreme[n] = c
                prev_upper[n] = upper[t, n]
                prev_lower[n] = lower[t, n]
            out[t, n] = state[n]
    states_to_weights(out, close)


def _prepare(panel: Panel, cols: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    windows, w_slot = np.unique(cols["channel"].astype(np.int64), return_inverse=True)
    atr_windows, a_slot = np.unique(cols["atr_window"].astype(np.int64), return_inverse=True)
    data = np.empty((1 + 2 * windows.shape[0] + atr_windows.shape[0], *panel.shape))
    data[0] = panel.close
    for i, w in enumerate(windows.tolist()):
        data[1 + 2 * i] = rolling_max(panel.high, w)
        data[2 + 2 * i] = rolling_min(panel.low, w)
    base = 1 + 2 * windows.shape[0]
    for i, w in enumerate(atr_windows.tolist()):
        data[base + i] = average_true_range(panel.high, panel.low, panel.close, w)
    rows = np.empty((w_slot.shape[0], ROW_FIELDS))
    rows[:, CHANNEL] = 1 + 2 * w_slot
    rows[:, ATR] = base + a_slot
    rows[:, ATR_MULT] = cols["atr_mult"]
    rows[:, LONG_SHORT] = cols["long_short"]
    return data, rows


BREAKOUT = Strategy(
    name="breakout",
    params={
        "channel": Param("int", 20, 1, 100_000, doc="channel length (bars)"),
        "atr_window": Param("int", 14, 1, 100_000, doc="ATR window for the exit"),
        "atr_mult": Param("float", 3.0, 0.01, 100.0, doc="exit k ATRs below the best close"),
        "long_short": Param("bool", False, doc="also short breakdowns"),
    },
    prepare=_prepare,
    kernel=_kernel,
    lookback_fn=lambda channel, atr_window, **_: max(channel, atr_window) + 1,
    doc=(
        "Enter long when the close breaks above the highest high of the previous `channel` "
        "bars; exit when it falls `atr_mult` ATRs below the best close since entry (shorts "
        "mirror it). Equal weight across positions, re-balanced when a position changes."
    ),
)
