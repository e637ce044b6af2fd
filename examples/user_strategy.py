"""A user-defined strategy living outside the package: RSI reversal.

This file shows everything a strategy needs to sweep exactly like a built-in
(``strategies/ma_cross.py`` and friends follow the same recipe):

1. **Parameters** (:class:`strategies.Param`): kind, default, inclusive bounds, a one-line
   doc. ``sweep.evaluate`` and ``Strategy.weights`` check every value against them.
2. **prepare(panel, columns) -> (data, rows)**: plain Python, run once per grid (or grid
   chunk). ``columns`` maps each parameter to an array with one value per run. Indicators
   are computed *once per distinct value* (here: one RSI per distinct ``period``), stacked
   into ``data`` (K, T, N); each run becomes one float row of ``rows`` (R, P) holding its
   parameter values and the slot of its RSI in ``data``.
3. **kernel(data, row, out)**: a Numba function compiled with
   :func:`strategies.weights_kernel` (fixed signature) that writes one run's (T, N)
   target weights. Row ``t`` may only use data up to bar ``t``: the RSI at ``t`` is built
   from closes up to ``t``, and the kernel walks forward in time keeping its state.
4. ``strategies.register(...)`` at import time, so ``sweep.evaluate(panel,
   "rsi_reversal", grid)`` and ``backsweep strategies --module examples/user_strategy.py``
   find it by name.

The rule: per asset, enter long when RSI(period) drops below ``lower`` and exit when it
rises above ``upper``. All positions are equally weighted; the weights row is re-issued only
on bars where some position changes (NaN = "no instruction" otherwise, so positions drift
instead of being re-traded every bar) - the same convention as the built-ins, via
``strategies.signals.states_to_weights``.

Run it:

    $ python examples/user_strategy.py
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numba import njit

import strategies
from engine import Panel
from strategies import Param, Strategy, StrategyError, weights_kernel
from strategies.signals import states_to_weights

__all__ = ["RSI_REVERSAL", "rsi"]

# The columns of a run's row (``rows[r]``): written by _prepare, read by _kernel (module
# constants are compiled into the kernel).
RSI = 0          # slot in ``data`` of this run's RSI
LOWER = 1        # enter long below this RSI
UPPER = 2        # exit above this RSI
ROW_FIELDS = 3


@njit(nogil=True, cache=True)
def rsi(close, window):
    """Wilder's RSI over (T, N) closes, column by column; NaN until ``window`` changes exist.

    Like the built-in indicators, each asset runs over its own bars: NaN bars (not listed,
    halted) are skipped and get NaN. The first average gain/loss is the simple mean of the
    first ``window`` close-to-close changes, then Wilder's smoothing
    ``avg = (avg * (window - 1) + x) / window``. RSI = 100 - 100 / (1 + gain / loss)
    (100 when there was no loss, 50 when nothing moved). Bar t uses closes up to t only.
    """
    T, N = close.shape
    out = np.full((T, N), np.nan)
    for n in range(N):
        prev = np.nan
        k = 0  # changes seen so far
        gain = 0.0
        loss = 0.0
        for t in range(T):
            c = close[t, n]
            if np.isnan(c):
                continue
            if np.isnan(prev):
                prev = c
                continue
            d = c - prev
            prev = c
            up = d if d > 0.0 else 0.0
            down = -d if d < 0.0 else 0.0
            k += 1
            if k <= window:
                gain += up / window
                loss += down / window
                if k < window:
                    continue
            else:
                gain = (gain * (window - 1) + up) / window
                loss = (loss * (window - 1) + down) / window
            if loss == 0.0:
                out[t, n] = 50.0 if gain == 0.0 else 100.0
            else:
                out[t, n] = 100.0 - 100.0 / (1.0 + gain / loss)
    return out


@weights_kernel
def _kernel(data, row, out):
    close = data[0]
    value = data[int(row[RSI])]  # this run's RSI
    lower = row[LOWER]
    upper = row[UPPER]
    T, N = close.shape
    state = np.zeros(N, dtype=np.int64)  # 1 = long, 0 = flat
    for t in range(T):  # forward in time: row t sees bars 0..t only
        for n in range(N):
            r = value[t, n]
            if not (np.isnan(close[t, n]) or np.isnan(r)):  # else keep the state
                if state[n] == 0 and r < lower:
                    state[n] = 1
                elif state[n] == 1 and r > upper:
                    state[n] = 0
            out[t, n] = state[n]  # the position state; converted to weights below
    states_to_weights(out, close)


def _prepare(panel: Panel, cols: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    lower = np.asarray(cols["lower"], dtype=np.float64)
    upper = np.asarray(cols["upper"], dtype=np.float64)
    bad = np.flatnonzero(lower >= upper)
    if bad.size:
        raise StrategyError(
            f"rsi_reversal: lower ({lower[bad[0]]}) must be below upper ({upper[bad[0]]})"
        )
    # One RSI per distinct period, shared by every run that uses it.
    periods, slot = np.unique(np.asarray(cols["period"]).astype(np.int64), return_inverse=True)
    data = np.empty((1 + periods.shape[0], *panel.shape))
    data[0] = panel.close
    close = np.ascontiguousarray(panel.close)
    for i, period in enumerate(periods.tolist()):
        data[1 + i] = rsi(close, period)
    rows = np.empty((lower.shape[0], ROW_FIELDS))
    rows[:, RSI] = 1 + slot.ravel()
    rows[:, LOWER] = lower
    rows[:, UPPER] = upper
    return data, rows


RSI_REVERSAL = Strategy(
    name="rsi_reversal",
    params={
        "period": Param("int", 14, 2, 10_000, doc="RSI period (bars, Wilder smoothing)"),
        "lower": Param("float", 30.0, 0.0, 100.0, doc="enter long when RSI falls below this"),
        "upper": Param("float", 70.0, 0.0, 100.0, doc="exit when RSI rises above this"),
    },
    prepare=_prepare,
    kernel=_kernel,
    lookback_fn=lambda period, **_: period + 1,
    doc=(
        "Per asset: enter long when RSI(period) drops below `lower`, exit when it rises "
        "above `upper`. Equal weight across positions, re-balanced only when some position "
        "changes. (A user strategy: examples/user_strategy.py.)"
    ),
)

# replace=True: importing this file again (by path, under another module name) registers
# the fresh copy instead of failing on the name.
strategies.register(RSI_REVERSAL, replace=True)


if __name__ == "__main__":
    import polars as pl

    import sweep
    from engine import EngineConfig
    from engine.data import synthetic_panel

    panel = synthetic_panel(n_assets=30, n_bars=1500, seed=7)
    results = sweep.evaluate(
        panel,
        "rsi_reversal",
        {
            "period": [7, 14, 21],
            "lower": {"start": 20, "stop": 35, "step": 5},
            "upper": [55, 65, 75],
            "commission": [0.0, 0.001],
        },
        EngineConfig(init_cash=100_000.0),
        constraints=["lower < upper"],
        # The second window starts after 750 bars: its RSI is warmed up on the bars before.
        windows=[(None, "2012-12-31"), ("2013-01-01", None)],
    )
    cols = ["window", "window_start", "period", "lower", "upper", "commission",
            "sharpe", "total_return", "max_drawdown", "n_trades"]
    top = (results.sort("sharpe", descending=True, nulls_last=True)
           .select(cols).head(10))
    with pl.Config(tbl_rows=20, tbl_cols=20, tbl_width_chars=140):
        print(f"{results.height} runs of rsi_reversal on {panel}; best by sharpe:")
        print(top)
