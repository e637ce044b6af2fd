"""The compiled grid loop: strategy kernel -> engine -> metrics, for every run of a block.

One call evaluates a whole block of runs with no Python per run. The strategy kernel is a
first-class function argument of a fixed signature, which keeps this loop in Numba's disk
cache for every strategy, built-in or user-defined.
"""

import numpy as np
from numba import from_dtype, njit, types

from engine.config import CONFIG_DTYPE
from engine.nb.layout import N_REFUSED, TRADE_DTYPE
from engine.nb.metrics import N_METRICS
from engine.nb.simulate import last_valid_bars, run_metrics, simulate
from strategies.base import WEIGHTS_KERNEL_TYPE

_F2 = types.float64[:, ::1]
_SIGNATURE = types.Tuple((types.float64[:, ::1], types.int64[::1], types.float64[:, :, ::1]))(
    WEIGHTS_KERNEL_TYPE,           # strategy kernel
    types.float64[:, :, ::1],      # strategy data (K, T, N)
    _F2,                           # strategy rows (R, P)
    _F2, _F2, _F2, _F2,            # open, high, low, close (T, N)
    from_dtype(CONFIG_DTYPE)[::1], # distinct engine configs
    types.int64[::1],              # config of each run
    types.float64[:, :, ::1],      # ATR stack for the configs' ATR windows (W, T, N)
    types.int64[::1],              # ATR slot of each config (-1 = none)
    types.int64,                   # window start bar
    types.int64,                   # window end bar (exclusive)
    types.float64,                 # periods per year
    types.int64,                   # blocks for per-block return stats (0 = none)
)


@njit(nogil=True, cache=True)
def block_return_stats(equity, init_cash, out):
    """Split the bars into ``out.shape[0]`` nearly equal consecutive blocks and write each
    block's (sum, sum of squares, count) of per-bar returns into ``out``."""
    n = equity.shape[0]
    S = out.shape[0]
    prev = init_cash
    b = 0
    for t in range(n):
        while b < S - 1 and t >= (b + 1) * n // S:
            b += 1
        r = equity[t] / prev - 1.0
        prev = equity[t]
        out[b, 0] += r
        out[b, 1] += r * r
        out[b, 2] += 1.0


@njit(_SIGNATURE, nogil=True, cache=True)
def evaluate_block(kernel, data, rows, open_, high, low, close, cfgs, cfg_of_run, atrs,
                   atr_slot, t0, t1, periods_per_year, n_blocks):
    """Metrics (R, N_METRICS) of R runs, each trading bars ``t0 .. t1-1`` only; per run the
    number of negative weights refused because its config does not allow shorts; and per
    run and block the (sum, sum of squares, count) of returns (R, n_blocks, 3), enough to
    compute the Sharpe ratio on any union of blocks (for PBO) without the return series.

    Weights are computed over the whole panel, so indicators are warmed up on the bars
    before ``t0``; the engine then sees only the window.
    """
    R = rows.shape[0]
    T, N = close.shape
    out = np.empty((R, N_METRICS))
    refused = np.zeros(R, dtype=np.int64)
    blocks = np.zeros((R, n_blocks, 3))
    weights = np.empty((T, N))
    last_bar = last_valid_bars(close[t0:t1])
    no_atr = np.empty((0, 0))
    no_log = np.empty(0, dtype=TRADE_DTYPE)
    for r in range(R):
        kernel(data, rows[r], weights)
        cfg = cfgs[cfg_of_run[r]]
        slot = atr_slot[cfg_of_run[r]]
        atr = atrs[slot, t0:t1] if slot >= 0 else no_atr
        equity, _, exposure, fees, notional, _, _, acct = simulate(
            open_[t0:t1], high[t0:t1], low[t0:t1], close[t0:t1], weights[t0:t1], cfg,
            last_bar, atr, 0, no_log,
        )
        out[r] = run_metrics(equity, exposure, fees, notional, acct, cfg.init_cash,
                             periods_per_year)
        refused[r] = int(acct[N_REFUSED])
        if n_blocks > 0:
            block_return_stats(equity, cfg.init_cash, blocks[r])
    return out, refused, blocks

