"""Where the time of a grid evaluation goes: strategy kernel vs simulation (with metrics).

``sweep.evaluate`` runs one compiled loop per grid (``sweep.kernels.evaluate_block``):
for each run, the strategy's weights kernel writes (T, N) weights into one reused buffer,
then ``engine.nb.simulate.simulate`` runs the backtest into its per-bar equity and
exposure buffers and reduces them to the metrics. The loops below call the same compiled
functions in the same order, stopping after each stage, so their difference is each
stage's share; the direct timings (one run's weights simulated R times; all-NaN
weights, no order at all; the separate ``metrics_vector`` pass over one run's equity
curve, what the simulation's own metrics passes cost) cross-check it. Nothing here is
imported by the package.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from engine.config import pack_configs
from engine.metrics import periods_per_year
from engine.nb.layout import LOG_FIELDS, N_CLOSED, N_OPENED, N_WINS
from engine.nb.metrics import metrics_vector
from engine.nb.simulate import last_valid_bars, simulate

__all__ = ["ComponentTimes", "profile_components"]

_NONE = np.empty(0)  # no benchmark, no risk-free series (the default metrics)
# The bar loop reads the weight rows itself, as in sweep.kernels.evaluate_block.
_UNSCANNED = np.empty(0, dtype=np.bool_)


@njit(nogil=True)
def _kernel_loop(kernel, data, rows, weights):
    """Stage 1: the strategy kernel of every run, into one reused (T, N) buffer."""
    for r in range(rows.shape[0]):
        kernel(data, rows[r], weights)
    return weights[-1, 0]


@njit(nogil=True)
def _full_loop(kernel, data, rows, open_, high, low, close, cfgs, t0, t1, ppy):
    """Stages 1 + 2: kernel, then the simulation with its metrics: what evaluate_block
    does (without PBO block statistics)."""
    out = np.empty(rows.shape[0])
    weights = np.empty(close.shape)
    last_bar = last_valid_bars(close[t0:t1])
    no_atr = np.empty((0, 0))
    no_log = np.empty((0, LOG_FIELDS))
    no_blocks = np.empty((0, 3))
    for r in range(rows.shape[0]):
        kernel(data, rows[r], weights)
        out[r] = simulate(open_[t0:t1], high[t0:t1], low[t0:t1], close[t0:t1],
                          weights[t0:t1], _UNSCANNED, cfgs[0], last_bar, no_atr, 0, no_log,
                          ppy, no_blocks, _NONE, _NONE).metrics[0]
    return out


@njit(nogil=True)
def _simulate_repeat(open_, high, low, close, weights, cfgs, ppy, repeat):
    """One weight set simulated ``repeat`` times (direct timing of stage 2)."""
    last_bar = last_valid_bars(close)
    no_atr = np.empty((0, 0))
    no_log = np.empty((0, LOG_FIELDS))
    no_blocks = np.empty((0, 3))
    acc = 0.0
    for _ in range(repeat):
        acc += simulate(open_, high, low, close, weights, _UNSCANNED, cfgs[0], last_bar,
                        no_atr, 0, no_log, ppy, no_blocks, _NONE, _NONE).metrics[0]
    return acc


@njit(nogil=True)
def _one_run(open_, high, low, close, weights, cfgs, ppy):
    """One run with its per-bar series recorded."""
    last_bar = last_valid_bars(close)
    no_atr = np.empty((0, 0))
    log = np.empty((0, LOG_FIELDS))
    sim = simulate(open_, high, low, close, weights, _UNSCANNED, cfgs[0], last_bar, no_atr, 1,
                   log, ppy, np.empty((0, 3)), _NONE, _NONE)
    return sim.equity, sim.exposure, sim.fees.sum(), sim.notional.sum(), sim.acct


@njit(nogil=True)
def _metrics_repeat(equity, exposure, fees, notional, acct, init_cash, ppy, repeat):
    """One run's equity curve reduced by ``metrics_vector`` ``repeat`` times."""
    acc = 0.0
    for _ in range(repeat):
        acc += metrics_vector(equity, exposure, init_cash, ppy, fees, notional,
                              acct[N_OPENED], acct[N_CLOSED], acct[N_WINS], 0.0, 0.0)[0]
    return acc


def _interleaved(fns: dict[str, Any], repeat: int) -> dict[str, tuple[float, float]]:
    """(median, min) CPU seconds (``time.process_time``) of each function, timed
    round-robin after one warm-up call each, so that a burst of background load hits every
    stage alike (CPU time leaves out the time spent waiting for a core; cache and memory
    contention still count)."""
    for fn in fns.values():
        fn()  # compile / warm
    seconds: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(max(1, repeat)):
        for k, fn in fns.items():
            t0 = time.process_time()
            fn()
            seconds[k].append(time.process_time() - t0)
    return {k: (float(np.median(v)), float(np.min(v))) for k, v in seconds.items()}


@dataclass
class ComponentTimes:
    """CPU seconds (median, min) of each loop over the R runs of a grid."""

    runs: int
    bars: int
    assets: int
    repeat: int
    kernel: tuple[float, float]
    full: tuple[float, float]
    evaluate_block: tuple[float, float]
    simulate_direct: tuple[float, float]
    simulate_no_orders: tuple[float, float]
    metrics_direct: tuple[float, float]
    mean_trades: float

    def rows(self) -> list[list[Any]]:
        """Table rows: stage, how, ms for the grid (median, min), µs a run and ns a
        bar-run (from the minima), share of loop 2 (minima)."""
        R, bar_runs = self.runs, self.runs * self.bars

        def diff(a, b):
            return (a[0] - b[0], a[1] - b[1])

        parts = [
            ("strategy kernel (weights)", self.kernel, "loop 1"),
            ("simulate, metrics included", diff(self.full, self.kernel), "loop 2 - loop 1"),
            ("both", self.full, "loop 2"),
            ("evaluate_block (the sweep's loop, PBO off)", self.evaluate_block, "direct"),
            ("simulate, the median-trades run R times", self.simulate_direct, "direct"),
            ("simulate, all-NaN weights (no orders) R times", self.simulate_no_orders,
             "direct"),
            ("(a separate metrics_vector pass, the median run R times)",
             self.metrics_direct, "direct"),
        ]
        out = []
        for name, (med, best), how in parts:
            out.append([name, how, f"{1e3 * med:.1f}", f"{1e3 * best:.1f}",
                        f"{1e6 * best / R:.2f}", f"{1e9 * best / bar_runs:.2f}",
                        f"{100 * best / self.full[1]:.0f} %"])
        return out

    HEADERS = ("stage", "how", "ms med", "ms min", "µs/run (min)", "ns/bar-run (min)",
               "of loop 2 (min)")

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def profile_components(panel, strategy, table, config, repeat: int = 5,
                       t0: int = 0, t1: int | None = None) -> ComponentTimes:
    """Time the stages of ``sweep.evaluate``'s compiled loop over a grid table."""
    from sweep.evaluate import evaluate_table
    from sweep.grid import strategy_columns
    from sweep.kernels import evaluate_block

    t1 = panel.n_bars if t1 is None else t1
    data, rows = strategy.prepare(panel, strategy_columns(strategy, table))
    data, rows = np.ascontiguousarray(data), np.ascontiguousarray(rows)
    o, h, lo, c = (np.ascontiguousarray(a) for a in (panel.open, panel.high, panel.low,
                                                     panel.close))
    cfgs = pack_configs([config])
    ppy = config.periods_per_year or periods_per_year(panel.timestamps[t0:t1])
    R = rows.shape[0]
    buf = np.empty(panel.shape)
    cfg_of_run = np.zeros(R, dtype=np.int64)
    no_atr, atr_slot = np.empty((0, 0, 0)), np.full(1, -1, dtype=np.int64)
    window, ppy_w = np.array([[t0, t1]], dtype=np.int64), np.array([ppy])
    k = strategy.kernel

    # Direct timings on a typical run: the grid's median run by number of trades.
    metrics = evaluate_table(panel, strategy, table, config, t0, t1)
    n_trades = metrics["n_trades"].to_numpy()
    typical = int(np.argsort(n_trades, kind="stable")[R // 2])
    k(data, rows[typical], buf)
    w = np.ascontiguousarray(buf[t0:t1])
    nan_w = np.full(w.shape, np.nan)
    ow, hw, lw, cw = (np.ascontiguousarray(a[t0:t1]) for a in (o, h, lo, c))
    eq, ex, fe, no, acct = _one_run(ow, hw, lw, cw, w, cfgs, ppy)

    t = _interleaved({
        "kernel": lambda: _kernel_loop(k, data, rows, buf),
        "full": lambda: _full_loop(k, data, rows, o, h, lo, c, cfgs, t0, t1, ppy),
        "evaluate_block": lambda: evaluate_block(k, data, rows, o, h, lo, c, cfgs, cfg_of_run,
                                                 no_atr, atr_slot, window, ppy_w, 0,
                                                 _NONE, _NONE),
        "simulate_direct": lambda: _simulate_repeat(ow, hw, lw, cw, w, cfgs, ppy, R),
        "simulate_no_orders": lambda: _simulate_repeat(ow, hw, lw, cw, nan_w, cfgs, ppy, R),
        "metrics_direct": lambda: _metrics_repeat(eq, ex, fe, no, acct, config.init_cash,
                                                  ppy, R),
    }, repeat)
    return ComponentTimes(R, t1 - t0, panel.n_assets, repeat, mean_trades=float(
        np.nanmean(n_trades)), **t)
