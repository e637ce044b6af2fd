"""Mean reversion on Bollinger-band z-scores: buy stretched-down assets, sell on reversion."""

from collections.abc import Mapping

import numpy as np

from engine import Panel
from strategies.base import Param, Strategy, StrategyError, weights_kernel
from strategies.indicators import rolling_mean, rolling_std
from strategies.signals import states_to_weights

__all__ = ["MEAN_REVERSION"]

# The columns of a run's row (``rows[r]``): written by _prepare, read by _kernel.
BAND = 0         # slot in ``data`` of the rolling mean; the rolling std is the next slot
ENTRY_Z = 1      # enter when |z| exceeds this
EXIT_Z = 2       # exit when z is back within this
LONG_SHORT = 3   # 1.0: also short assets stretched up
ROW_FIELDS = 4


@weights_kernel
def _kernel(data, row, out):
    close = data[0]
    mean = data[int(row[BAND])]
    std = data[int(row[BAND]) + 1]
    entry_z = row[ENTRY_Z]
    exit_z = row[EXIT_Z]
    long_short = row[LONG_SHORT] != 0.0
    T, N = close.shape
    state = np.zeros(N, dtype=np.int64)
    for t in range(T):
        for n in range(N):
            c = close[t, n]
            sd = std[t, n]
            if not (np.isnan(c) or np.isnan(sd) or sd == 0.0):
                z = (c - mean[t, n]) / sd
                if (state[n] == 1 and z > -exit_z) or (state[n] == -1 and z < exit_z):
                    state[n] = 0
                elif state[n] == 0:
                    if z < -entry_z:
                        state[n] = 1
                    elif long_short and z > entry_z:
                        state[n] = -1
            out[t, n] = state[n]
    states_to_weights(out, close)


def _prepare(panel: Panel, cols: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    bad = np.flatnonzero(cols["exit_z"] >= cols["entry_z"])
    if bad.size:
        raise StrategyError(
            f"mean_reversion: exit_z ({cols['exit_z'][bad[0]]}) must be below entry_z "
            f"({cols['entry_z'][bad[0]]})"
        )
    windows, slot = np.unique(cols["period"].astype(np.int64), return_inverse=True)
    data = np.empty((1 + 2 * windows.shape[0], *panel.shape))
    data[0] = panel.close
    for i, w in enumerate(windows.tolist()):
        data[1 + 2 * i] = rolling_mean(panel.close, w)
        data[2 + 2 * i] = rolling_std(panel.close, w)
    rows = np.empty((slot.shape[0], ROW_FIELDS))
    rows[:, BAND] = 1 + 2 * slot
    rows[:, ENTRY_Z] = cols["entry_z"]
    rows[:, EXIT_Z] = cols["exit_z"]
    rows[:, LONG_SHORT] = cols["long_short"]
    return data, rows


MEAN_REVERSION = Strategy(
    name="mean_reversion",
    params={
        "period": Param("int", 20, 2, 100_000, doc="band window (bars)"),
        "entry_z": Param("float", 2.0, 0.0, 100.0, doc="enter when |z| exceeds this"),
        "exit_z": Param("float", 0.5, 0.0, 100.0, doc="exit when z is back within this"),
        "long_short": Param("bool", False, doc="also short assets stretched up"),
    },
    prepare=_prepare,
    kernel=_kernel,
    lookback_fn=lambda period, **_: period,
    doc=(
        "z = (close - mean) / std over `period` bars (population std). Enter long when "
        "z < -entry_z, exit when z > -exit_z (shorts mirror it if long_short). Equal weight "
        "across positions, re-balanced only when some position changes."
    ),
)
