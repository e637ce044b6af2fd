"""Moving-average crossover: long after the fast average crosses above the slow one."""

from collections.abc import Mapping

import numpy as np
from numba import njit

from engine import Panel
from strategies.base import Param, Strategy, weights_kernel
from strategies.indicators import ema, rolling_mean
from strategies.signals import state_row

__all__ = ["MA_CROSS"]

# The columns of a run's row (``rows[r]``): written by _prepare, read by _kernel.
FAST = 0         # slot in ``data`` of the fast average
SLOW = 1         # slot of the slow average
LONG_SHORT = 2   # 1.0: go short after a cross down (else flat)
ROW_FIELDS = 3


@njit(nogil=True, cache=True, inline="always")
def _cross(f, s, state, relation, long_short):
    """One asset's bar with a close: its new (state, relation). ``relation`` is the last
    strict relation of fast vs slow (+1 above, -1 below, 0 unknown); a cross is a flip of
    it. Equal bars don't count; warm-up (NaN averages) forgets it."""
    if np.isnan(f) or np.isnan(s):
        return state, 0
    d = 1 if f > s else (-1 if f < s else 0)
    if d == 1 and relation == -1:
        state = 1.0
    elif d == -1 and relation == 1:
        state = -1.0 if long_short else 0.0
    return state, (d if d != 0 else relation)


@weights_kernel
def _kernel(data, row, out):
    close = data[0]
    fast = data[int(row[FAST])]
    slow = data[int(row[SLOW])]
    long_short = row[LONG_SHORT] != 0.0
    T, N = close.shape
    if N == 1:
        # One asset (the usual MA sweep): the steps of _cross with the state in registers
        # and a branch per case, not a select: crosses are rare, so the branches are
        # predicted and no bar waits for the previous bar's state (measured 3.8 -> 2.4 ns
        # a bar). Its weight is its state (1 asset held) on the bars where it changes.
        exit_state = -1.0 if long_short else 0.0
        st = 0.0
        rel = 0
        for t in range(T):
            out[t, 0] = np.nan
            if np.isnan(close[t, 0]):
                continue
            f = fast[t, 0]
            s = slow[t, 0]
            if f > s:
                if rel == -1 and st != 1.0:
                    st = 1.0
                    out[t, 0] = 1.0
                rel = 1
            elif f < s:
                if rel == 1 and st != exit_state:
                    st = exit_state
                    out[t, 0] = exit_state
                rel = -1
            elif np.isnan(f) or np.isnan(s):
                rel = 0
        return
    state = np.zeros(N)  # +1 long, -1 short, 0 flat
    relation = np.zeros(N, dtype=np.int64)
    held = 0
    for t in range(T):
        changed = False
        for n in range(N):
            if np.isnan(close[t, n]):  # no bar: keep the position and the memory
                continue
            new, relation[n] = _cross(fast[t, n], slow[t, n], state[n], relation[n],
                                      long_short)
            if new != state[n]:
                changed = True
                held += int(new != 0.0) - int(state[n] != 0.0)
                state[n] = new
        state_row(out, t, close, state, held, changed)


def _prepare(panel: Panel, cols: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    fast = cols["fast"].astype(np.int64)
    slow = cols["slow"].astype(np.int64)
    is_ema = (cols["kind"] == "ema").astype(np.int64)
    runs = fast.shape[0]
    # One average per distinct (window, kind) across both legs of every run.
    keys, slot = np.unique(np.concatenate([fast * 2 + is_ema, slow * 2 + is_ema]),
                           return_inverse=True)
    data = np.empty((1 + keys.shape[0], *panel.shape))
    data[0] = panel.close
    for i, key in enumerate(keys.tolist()):
        data[1 + i] = (ema if key % 2 else rolling_mean)(panel.close, key // 2)
    rows = np.empty((runs, ROW_FIELDS))
    rows[:, FAST] = 1 + slot[:runs]
    rows[:, SLOW] = 1 + slot[runs:]
    rows[:, LONG_SHORT] = cols["long_short"]
    return data, rows


MA_CROSS = Strategy(
    name="ma_cross",
    params={
        "fast": Param("int", 10, 1, 10_000, doc="fast moving-average window (bars)"),
        "slow": Param("int", 50, 2, 10_000, doc="slow moving-average window (bars)"),
        "kind": Param("choice", "sma", choices=("sma", "ema"), doc="simple or exponential"),
        "long_short": Param("bool", False, doc="go short after a cross down"),
    },
    prepare=_prepare,
    kernel=_kernel,
    lookback_fn=lambda fast, slow, kind, long_short: max(fast, slow),
    doc=(
        "Per asset: enter long on the bar the fast average crosses above the slow one, exit "
        "(or go short) when it crosses below. Equal weight across the assets in position, "
        "re-balanced only on bars where some position changes."
    ),
)
