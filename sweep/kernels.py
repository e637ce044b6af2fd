"""The compiled grid loop: strategy kernel -> engine -> metrics, for every run of a block.

One call evaluates a whole block of runs with no Python per run. The strategy kernel is a
first-class function argument of a fixed signature, which keeps this loop in Numba's disk
cache for every strategy, built-in or user-defined.
"""

import threading

import numpy as np
from numba import from_dtype, njit, types

from engine.config import CONFIG_DTYPE
from engine.nb.layout import LOG_FIELDS, N_REFUSED
from engine.nb.metrics import N_METRICS
from engine.nb.simulate import last_valid_bars, simulate
from strategies.base import FUSED_KERNEL_TYPE, WEIGHTS_KERNEL_TYPE

_F2 = types.float64[:, ::1]
_SIGNATURE = types.Tuple((types.float64[:, :, ::1], types.int64[::1],
                          types.float64[:, :, :, ::1]))(
    WEIGHTS_KERNEL_TYPE,           # strategy kernel
    types.float64[:, :, ::1],      # strategy data (K, T, N)
    _F2,                           # strategy rows (R, P)
    _F2, _F2, _F2, _F2,            # open, high, low, close (T, N)
    from_dtype(CONFIG_DTYPE)[::1], # distinct engine configs
    types.int64[::1],              # config of each run
    types.float64[:, :, ::1],      # ATR stack for the configs' ATR windows (A, T, N)
    types.int64[::1],              # ATR slot of each config (-1 = none)
    types.int64[:, ::1],           # windows (W, 2): start bar, end bar (exclusive)
    types.float64[::1],            # periods per year of each window
    types.int64,                   # blocks for per-block return stats (0 = none)
    types.float64[::1],            # benchmark's per-bar returns (T,) (empty = none)
    types.float64[::1],            # per-bar risk-free rates (T,) (empty = cfg.risk_free)
)


_COMPILING = threading.Lock()
_READY: set[int] = set()


def _compiled(dispatcher, signature):
    """``dispatcher`` compiled for ``signature`` (loaded from Numba's disk cache when it is
    there) on its first use, then closed to any other signature, as ``njit(signature)``
    makes it at import. Once per process, under a lock: a worker's threads may race here,
    and a call while compiling was still open would compile a copy for the argument
    types (a strategy kernel's own dispatcher type instead of the function type)."""
    if id(dispatcher) not in _READY:
        with _COMPILING:
            if id(dispatcher) not in _READY:
                dispatcher.compile(signature)
                dispatcher.disable_compile()
                _READY.add(id(dispatcher))
    return dispatcher


def evaluate_block(kernel, data, rows, open_, high, low, close, cfgs, cfg_of_run, atrs,
                   atr_slot, windows, periods_per_year, n_blocks, bench, rf):
    """The grid loop of every panel and config (:func:`_evaluate_block`). It is compiled
    (or loaded from the disk cache) on the first call, not at import: a one-asset sweep
    on the fused path (:func:`evaluate_block_single`) never needs it, and its machine
    code is ~4 MB of resident memory."""
    return _compiled(_evaluate_block, _SIGNATURE)(
        kernel, data, rows, open_, high, low, close, cfgs, cfg_of_run, atrs, atr_slot,
        windows, periods_per_year, n_blocks, bench, rf)


@njit(nogil=True, cache=True)
def _evaluate_block(kernel, data, rows, open_, high, low, close, cfgs, cfg_of_run, atrs,
                    atr_slot, windows, periods_per_year, n_blocks, bench, rf):
    """Metrics (W, R, N_METRICS) of R runs on each of W windows (a run trades bars
    ``windows[w, 0] .. windows[w, 1] - 1`` only); per run the number of negative weights
    refused because its config does not allow shorts (summed over the windows); and per
    window, run and block the (sum, sum of squares, count) of returns (W, R, n_blocks, 3),
    enough to compute the Sharpe ratio on any union of blocks (for PBO) without the return
    series. ``bench`` and ``rf`` are the panel's engine.MarketSeries arrays, one for all
    the runs, sliced to each window like the prices.

    A run's weights are computed once, over the whole panel, so indicators are warmed up
    on the bars before each window and the strategy's cost does not grow with the number
    of windows (walk-forward folds); the engine then sees one window at a time.
    """
    R = rows.shape[0]
    W = windows.shape[0]
    T, N = close.shape
    out = np.empty((W, R, N_METRICS))
    refused = np.zeros(R, dtype=np.int64)
    blocks = np.zeros((W, R, n_blocks, 3))
    weights = np.empty((T, N))
    last_bars = np.empty((W, N), dtype=np.int64)
    for w in range(W):
        last_bars[w] = last_valid_bars(close[windows[w, 0]:windows[w, 1]])
    no_atr = np.empty((0, 0))
    no_log = np.empty((0, LOG_FIELDS))
    unscanned = np.empty(0, dtype=np.bool_)  # the bar loop reads the kernel's rows itself
    for r in range(R):
        kernel(data, rows[r], weights)
        cfg = cfgs[cfg_of_run[r]]
        slot = atr_slot[cfg_of_run[r]]
        for w in range(W):
            t0 = windows[w, 0]
            t1 = windows[w, 1]
            atr = atrs[slot, t0:t1] if slot >= 0 else no_atr
            sim = simulate(
                open_[t0:t1], high[t0:t1], low[t0:t1], close[t0:t1], weights[t0:t1], unscanned,
                cfg, last_bars[w], atr, 0, no_log, periods_per_year[w], blocks[w, r],
                bench[t0:t1], rf[t0:t1],  # an empty array stays empty
            )
            out[w, r] = sim.metrics
            refused[r] += int(sim.acct[N_REFUSED])
    return out, refused, blocks


_SINGLE_SIGNATURE = types.Tuple((types.float64[:, :, ::1], types.int64[::1],
                                 types.float64[:, :, :, ::1]))(
    FUSED_KERNEL_TYPE,             # the strategy's fused one-asset kernel
    types.float64[:, :, ::1],      # strategy data (K, T, 1)
    _F2,                           # strategy rows (R, P)
    types.float64[::1],            # open (T,) of the one asset
    types.float64[::1],            # close (T,)
    from_dtype(CONFIG_DTYPE)[::1], # distinct engine configs
    types.int64[::1],              # config of each run
    types.int64[:, ::1],           # windows (W, 2)
    types.float64[::1],            # periods per year of each window
    types.int64,                   # blocks for per-block return stats (0 = none)
)


@njit(_SINGLE_SIGNATURE, nogil=True, cache=True)
def evaluate_block_single(fused, data, rows, open_, close, cfgs, cfg_of_run, windows,
                          periods_per_year, n_blocks):
    """:func:`_evaluate_block` for a strategy with a fused one-asset kernel, on a panel of
    one asset with a close on every bar and configs without stops, benchmark or
    risk-free series (the caller checks): the same three arrays, the same bits, one pass
    per run and window and no per-bar array (strategies.base, engine.nb.single)."""
    R = rows.shape[0]
    W = windows.shape[0]
    out = np.empty((W, R, N_METRICS))
    refused = np.zeros(R, dtype=np.int64)
    blocks = np.zeros((W, R, n_blocks, 3))
    events = np.empty((2, close.shape[0] + 1))
    for r in range(R):
        ci = cfg_of_run[r]
        for w in range(W):
            refused[r] += fused(data, rows[r], open_, close, cfgs, ci, windows[w, 0],
                                windows[w, 1], periods_per_year[w], blocks[w, r], out[w, r],
                                events)
    return out, refused, blocks
