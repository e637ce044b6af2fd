"""``run_backtest`` and ``run_batch``: input checks, then one call into the Numba kernels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import polars as pl

from engine.config import EngineConfig, pack_configs
from engine.metrics import METRIC_NAMES, bars_per_year
from engine.nb.layout import EXIT_REASONS, LOG_COLUMNS, LOG_FIELDS
from engine.nb.simulate import simulate, simulate_batch
from engine.nb.stops import average_true_range
from engine.nb.weights import FINITE, INFINITE, NEGATIVE, scan_weights
from engine.panel import Panel
from engine.series import SeriesLike, market_series

__all__ = ["BacktestResult", "check_weights", "run_backtest", "run_batch"]


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """Per-bar series, trades and metrics of one backtest.

    ``fees`` and ``turnover`` are per bar (fees paid, notional traded on that bar);
    ``exposure`` is the gross exposure (sum of |position value|) at each close.
    """

    timestamps: np.ndarray
    assets: tuple[str, ...]
    config: EngineConfig
    equity: np.ndarray
    cash: np.ndarray
    exposure: np.ndarray
    fees: np.ndarray
    turnover: np.ndarray
    positions: np.ndarray | None
    metrics: dict[str, float]
    _trade_log: np.ndarray  # rows of engine.nb.layout.LOG_COLUMNS

    @cached_property
    def trades(self) -> pl.DataFrame:
        """One row per trade (round trip); still-open trades have exit_reason 'open'."""
        log = dict(zip(LOG_COLUMNS, self._trade_log.T, strict=True))
        ts = self.timestamps
        asset, direction, entry_bar, exit_bar, reason = (
            log[name].astype(np.int64)
            for name in ("asset", "direction", "entry_bar", "exit_bar", "exit_reason"))
        is_open = exit_bar < 0
        exit_time = ts[np.where(is_open, 0, exit_bar)] if len(ts) else ts[:0]
        return pl.DataFrame(
            {
                "asset": [self.assets[i] for i in asset],
                "direction": ["long" if d > 0 else "short" for d in direction],
                "entry_bar": entry_bar,
                "exit_bar": pl.Series(exit_bar).set(pl.Series(is_open), None),
                "entry_time": ts[entry_bar],
                "exit_time": pl.Series(exit_time).set(pl.Series(is_open), None),
                "entry_price": log["entry_price"],
                "exit_price": log["exit_price"],
                "quantity": log["quantity"],
                "pnl": log["pnl"],
                "return": log["pnl"] / log["cost"],
                "fees": log["fees"],
                "exit_reason": [EXIT_REASONS[i] for i in reason],
            },
            schema_overrides={"exit_bar": pl.Int64, "entry_bar": pl.Int64},
        ).with_columns(
            pl.col("entry_time").cast(pl.Datetime("ns")),
            pl.col("exit_time").cast(pl.Datetime("ns")),
        )

    def equity_frame(self) -> pl.DataFrame:
        """timestamp, equity, cash, exposure, fees, turnover as a table."""
        return pl.DataFrame(
            {
                "timestamp": self.timestamps,
                "equity": self.equity,
                "cash": self.cash,
                "exposure": self.exposure,
                "fees": self.fees,
                "turnover": self.turnover,
            }
        )


def check_weights(panel: Panel, weights: np.ndarray, allow_short: bool) -> np.ndarray:
    """Weights as a C-contiguous float64 (T, N) array, or a ValueError naming the problem."""
    return _checked_weights(panel, weights, allow_short)[0]


def _checked_weights(panel: Panel, weights: np.ndarray,
                     allow_short: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """:func:`check_weights`, with what its one pass over the weights also found: which
    rows hold an instruction (for the bar loop) and the number of finite weights."""
    w = _float_array(weights)
    if w.shape != panel.shape:
        raise ValueError(
            f"weights have shape {w.shape}, the panel is {panel.shape} (bars, assets)"
        )
    rows, counts = scan_weights(w)
    if counts[INFINITE]:
        _first_bad(panel, w, np.isinf(w), "is infinite")
    if counts[NEGATIVE] and not allow_short:
        _first_bad(panel, w, w < 0, "is negative and allow_short is False")
    return w, rows, int(counts[FINITE])


def _float_array(weights: Any) -> np.ndarray:
    try:
        return np.ascontiguousarray(weights, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"weights must be a numeric (bars, assets) array: {exc}") from exc


def _first_bad(panel: Panel, w: np.ndarray, mask: np.ndarray, problem: str) -> None:
    if mask.any():
        t, n = (int(x[0]) for x in np.nonzero(mask))
        raise ValueError(
            f"weight {w[t, n]!r} at row {t} ({panel.timestamps[t]!s:.19}), asset "
            f"{panel.assets[n]!r} {problem}; {int(mask.sum())} such weight(s)"
        )


def run_backtest(
    panel: Panel,
    weights: np.ndarray,
    config: EngineConfig | None = None,
    *,
    window: tuple[Any, Any] | None = None,
    positions: bool = False,
    benchmark_prices: SeriesLike | None = None,
    risk_free: SeriesLike | None = None,
) -> BacktestResult:
    """Simulate target weights on a panel.

    ``weights[t, n]`` is asset n's target fraction of equity decided at bar t; NaN = no
    instruction, 0 = close. See docs/engine.md for fills, costs and stops. ``window =
    (start, end)`` (inclusive dates, None = open) trades only those bars; the bars before
    it still warm up the ATR stop, as in a sweep's date windows, and annualisation uses
    the whole panel's bars per year (``engine.metrics.bars_per_year``).

    A benchmark (``config.benchmark``, an asset; or ``benchmark_prices``) adds alpha,
    beta, information ratio, tracking error and excess return to the metrics; a risk-free
    rate (``config.risk_free``, annual; or ``risk_free``, a series of annual rates) makes
    Sharpe and Sortino excess-return ratios. The series are one value per bar of the
    panel or ``(dates, values)`` pairs (``engine.market_series``).

    Example:
        >>> import numpy as np
        >>> from engine import EngineConfig, Panel, run_backtest
        >>> p = Panel.from_arrays(np.arange(3).astype("datetime64[D]"), ["A"],
        ...                       close=np.array([[10.0], [11.0], [12.0]]))
        >>> res = run_backtest(p, np.array([[1.0], [np.nan], [np.nan]]),
        ...                    EngineConfig(init_cash=100.0, fill="close"))
        >>> res.equity.tolist()
        [100.0, 110.0, 120.0]
    """
    cfg = config if config is not None else EngineConfig()
    if not isinstance(cfg, EngineConfig):
        raise TypeError(f"config must be an EngineConfig, got {type(cfg).__name__}")
    if not isinstance(panel, Panel):
        raise TypeError(f"panel must be an engine.Panel, got {type(panel).__name__}")
    w, rows, n_finite = _checked_weights(panel, weights, cfg.allow_short)
    rec = pack_configs([cfg])[0]
    ppy = bars_per_year(panel.timestamps, cfg.periods_per_year)
    i0, i1 = (0, panel.n_bars) if window is None else panel.index_range(*window)
    if i1 - i0 < 1:
        raise ValueError(f"window {window} holds no bars of the panel")
    market = market_series(panel, cfg, benchmark_prices=benchmark_prices,
                           risk_free=risk_free).take(i0, i1)
    atr = _atr_for(panel, cfg)[i0:i1]
    if (i0, i1) != (0, panel.n_bars):  # a new panel: its last bars are the window's
        panel = panel.take(i0, i1)
        w = w[i0:i1]
        rows = rows[i0:i1]
    # A trade needs a finite weight to open it, so this nearly always suffices (stops,
    # delistings and reversals aside); when it doesn't, the run is repeated with room.
    log = np.empty((n_finite + panel.n_assets + 16, LOG_FIELDS))
    record = 2 if positions else 1
    while True:
        sim = simulate(panel.open, panel.high, panel.low, panel.close, w, rows, rec,
                       panel.last_bars, atr, record, log, ppy, np.empty((0, 3)),
                       *market.kernel_arrays(ppy, [cfg]))
        if sim.n_trades <= log.shape[0]:
            break
        log = np.empty((sim.n_trades, LOG_FIELDS))  # rare: rerun with room for all
    return BacktestResult(
        timestamps=panel.timestamps,
        assets=panel.assets,
        config=cfg,
        equity=sim.equity,
        cash=sim.cash,
        exposure=sim.exposure,
        fees=sim.fees,
        turnover=sim.notional,
        positions=sim.positions if positions else None,
        metrics=dict(zip(METRIC_NAMES, sim.metrics.tolist(), strict=True)),
        _trade_log=log[:sim.n_trades],
    )


def run_batch(
    panel: Panel,
    weights: np.ndarray,
    configs: EngineConfig | Sequence[EngineConfig],
    *,
    benchmark_prices: SeriesLike | None = None,
    risk_free: SeriesLike | None = None,
) -> pl.DataFrame:
    """Metrics of many runs over one panel in one compiled call, one row per run.

    ``weights`` is (T, N) shared by every config or (R, T, N), one per run; ``configs`` is
    one config (shared) or R configs. All configs must share ``periods_per_year`` and
    ``benchmark``; ``benchmark_prices`` and ``risk_free`` as in :func:`run_backtest`.

    Example:
        >>> import numpy as np
        >>> from engine import EngineConfig, run_batch
        >>> from engine.data import synthetic_panel
        >>> p = synthetic_panel(n_assets=4, n_bars=100, seed=3)
        >>> w = np.full(p.shape, 0.25)
        >>> run_batch(p, w, [EngineConfig(commission=c) for c in (0.0, 0.01)]).height
        2
    """
    cfgs = [configs] if isinstance(configs, EngineConfig) else list(configs)
    if not cfgs or not all(isinstance(c, EngineConfig) for c in cfgs):
        raise ValueError("configs must be one EngineConfig or a non-empty list of them")
    w = _float_array(weights)
    if w.ndim == 2:
        w = w[None]
    if w.ndim != 3:
        raise ValueError(f"weights must be (T, N) or (R, T, N), got shape {w.shape}")
    runs = max(w.shape[0], len(cfgs))
    if w.shape[0] not in (1, runs) or len(cfgs) not in (1, runs):
        raise ValueError(
            f"{w.shape[0]} weight sets and {len(cfgs)} configs: give one of each, or equal "
            "numbers"
        )
    # A weight set shared by several configs must suit the strictest of them.
    allow_short = all(c.allow_short for c in cfgs)
    rows = np.stack([_checked_weights(panel, w[r], allow_short)[1] for r in range(w.shape[0])])
    ppys = {c.periods_per_year for c in cfgs}
    if len(ppys) > 1:
        raise ValueError(f"configs disagree on periods_per_year: {sorted(map(str, ppys))}")
    benchmarks = {c.benchmark for c in cfgs}
    if len(benchmarks) > 1:
        raise ValueError(f"configs disagree on benchmark: {sorted(map(str, benchmarks))}")
    ppy = bars_per_year(panel.timestamps, cfgs[0].periods_per_year)
    market = market_series(panel, cfgs[0].replace(risk_free=0.0),
                           benchmark_prices=benchmark_prices, risk_free=risk_free)
    recs = pack_configs(cfgs if len(cfgs) == runs else cfgs * runs)
    out = simulate_batch(panel.open, panel.high, panel.low, panel.close,
                         w, rows, recs, panel.last_bars, ppy,
                         *market.kernel_arrays(ppy, cfgs))
    return pl.DataFrame(out, schema=list(METRIC_NAMES), orient="row").with_row_index("run")


def _atr_for(panel: Panel, cfg: EngineConfig) -> np.ndarray:
    if cfg.atr_stop is None:
        return np.empty((0, 0))
    return average_true_range(panel.high, panel.low, panel.close, cfg.atr_window)
