"""In-process grid evaluation: the unit of work the distributed layer ships to workers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

import strategies
from engine import METRIC_NAMES, EngineConfig, Panel, market_series
from engine.config import pack_configs
from engine.metrics import bars_per_year
from engine.nb.stops import average_true_range
from strategies import Strategy
from sweep.grid import Grid, GridError, engine_axes, strategy_columns
from sweep.kernels import evaluate_block, evaluate_block_single
from sweep.schema import BLOCK_COLUMNS
from sweep.windows import Window, WindowError, windows_from_spec

__all__ = ["ShortingError", "evaluate", "evaluate_table", "evaluate_windows"]

DateRanges = Sequence[tuple[Any, Any]] | None


def evaluate(
    panel: Panel,
    strategy: str | Strategy,
    grid: Mapping[str, Any],
    config: EngineConfig | None = None,
    *,
    constraints: Iterable[str] = (),
    windows: DateRanges = None,
) -> pl.DataFrame:
    """Backtest every combination of a grid, in this process; one row per run.

    ``grid`` maps strategy parameters and engine fields (e.g. ``commission``) to lists or
    ranges ``{start, stop, step}``; parameters left out take their defaults. ``windows``:
    date ranges ``[(start, end), ...]`` (inclusive; None = open end; default: the whole
    panel). Each run trades only inside its window; indicators are warmed up on the bars
    before it.

    Example:
        >>> import sweep
        >>> from engine.data import synthetic_panel
        >>> panel = synthetic_panel(n_assets=5, n_bars=400, seed=2)
        >>> df = sweep.evaluate(panel, "ma_cross", {"fast": [5, 10], "slow": [20, 50]},
        ...                     constraints=["fast < slow"])
        >>> df.height, "sharpe" in df.columns
        (4, True)
    """
    s = strategies.get(strategy)
    cfg = config if config is not None else EngineConfig()
    g = Grid.build(s, grid, constraints)
    table = g.frame()
    if table.height == 0:
        raise GridError(
            f"the grid is empty after the constraints {list(g.constraints)} "
            f"({g.size} combinations before them)"
        )
    rate = bars_per_year(panel.timestamps, cfg.periods_per_year)
    try:
        wins = windows_from_spec(panel, None if windows is None else {"ranges": list(windows)},
                                 rate)
    except WindowError as exc:
        raise GridError(str(exc)) from None
    frames = []
    for w, metrics in zip(wins, evaluate_windows(panel, s, table, cfg, wins), strict=True):
        frames.append(
            pl.concat(
                [
                    pl.DataFrame({
                        "window": np.full(table.height, w.index, dtype=np.int64),
                        "window_start": np.repeat(w.start, table.height),
                        "window_end": np.repeat(w.end, table.height),
                    }),
                    table,
                    metrics,
                ],
                how="horizontal",
            )
        )
    return pl.concat(frames).with_row_index("run")


def evaluate_table(
    panel: Panel,
    strategy: Strategy,
    table: pl.DataFrame,
    config: EngineConfig,
    t0: int = 0,
    t1: int | None = None,
    *,
    blocks: int = 0,
) -> pl.DataFrame:
    """Metrics of each row of a grid table (strategy and engine columns) on bars t0..t1-1.

    With ``blocks = S``, also list columns ``block_sum``, ``block_sumsq``, ``block_n``: the
    per-run sums of returns, of squared returns and bar counts in S consecutive blocks of
    the window (what PBO needs, see sweep.overfit).
    """
    t1 = panel.n_bars if t1 is None else t1
    return evaluate_windows(panel, strategy, table, config, [(t0, t1)], blocks=blocks)[0]


def evaluate_windows(
    panel: Panel,
    strategy: Strategy,
    table: pl.DataFrame,
    config: EngineConfig,
    windows: Sequence[Window | tuple[int, int]],
    *,
    blocks: int = 0,
    prepared: tuple[np.ndarray, np.ndarray] | None = None,
    market: Any = None,
) -> list[pl.DataFrame]:
    """:func:`evaluate_table` on several windows at once (:class:`sweep.windows.Window`,
    or bar bounds ``(start, end)``, end exclusive, annualised at the data's rate): one
    metrics frame per window. Each run's weights are computed once for all the windows.

    ``prepared``: the strategy's ``prepare`` output for exactly these rows, when the caller
    already holds it (a worker caches the indicators of a whole grid segment).
    ``market``: the per-bar benchmark and risk-free series, if any.
    """
    if prepared is None:
        prepared = strategy.prepare(panel, strategy_columns(strategy, table))
    data, rows = prepared
    cfgs, cfg_of_run = _engine_configs(table, config)
    atr_windows = sorted({c.atr_window for c in cfgs if c.atr_stop is not None})
    atrs = np.stack(
        [average_true_range(panel.high, panel.low, panel.close, w) for w in atr_windows]
    ) if atr_windows else np.empty((0, 0, 0))
    atr_slot = np.array(
        [atr_windows.index(c.atr_window) if c.atr_stop is not None else -1 for c in cfgs],
        dtype=np.int64,
    )
    rate = bars_per_year(panel.timestamps, config.periods_per_year)
    bounds = np.array([w.bounds if isinstance(w, Window) else tuple(w) for w in windows],
                      dtype=np.int64).reshape(-1, 2)
    ppy = np.array([w.bars_per_year if isinstance(w, Window) else rate for w in windows],
                   dtype=np.float64)
    bench, rf = (market or market_series(panel, config)).kernel_arrays(ppy, cfgs)
    if _fused_applies(strategy, panel, cfgs, bounds, bench, rf):
        out, refused, stats = evaluate_block_single(
            strategy.fused, np.ascontiguousarray(data), np.ascontiguousarray(rows),
            np.ascontiguousarray(panel.open[:, 0]), np.ascontiguousarray(panel.close[:, 0]),
            pack_configs(cfgs), cfg_of_run, bounds, ppy, blocks,
        )
    else:
        out, refused, stats = evaluate_block(
            strategy.kernel, np.ascontiguousarray(data), np.ascontiguousarray(rows),
            *(np.ascontiguousarray(a) for a in (panel.open, panel.high, panel.low,
                                                panel.close)),
            pack_configs(cfgs), cfg_of_run, np.ascontiguousarray(atrs), atr_slot, bounds,
            ppy, blocks, bench, rf,
        )
    bad = np.flatnonzero(refused)
    if bad.size:
        raise ShortingError(
            f"{strategy.name} with {table.drop('combo', strict=False).row(int(bad[0]), named=True)}"
            " gives negative weights but allow_short is False "
            f"({bad.size} of {table.height} runs); set allow_short = true in [engine]"
        )
    frames = []
    for w in range(bounds.shape[0]):
        frame = pl.DataFrame(out[w], schema=list(METRIC_NAMES), orient="row")
        if blocks:
            frame = frame.with_columns(
                pl.Series(name, stats[w, :, :, k], dtype=pl.Array(pl.Float64, blocks))
                for k, name in enumerate(BLOCK_COLUMNS)
            )
        frames.append(frame)
    return frames



def _fused_applies(strategy: Strategy, panel: Panel, cfgs: list[EngineConfig],
                   bounds: np.ndarray, bench: np.ndarray, rf: np.ndarray) -> bool:
    """Can the strategy's fused one-asset kernel run this block (engine.nb.single)? One
    asset with a close on every bar up to the last window's end (and an open on every
    window bar where orders may fill at the open), no stops, no benchmark, no risk-free
    series."""
    if getattr(strategy, "fused", None) is None or panel.n_assets != 1:
        return False
    if bench.shape[0] or rf.shape[0] or bounds.shape[0] == 0:
        return False
    if any(c.stop_loss is not None or c.take_profit is not None or
           c.trailing_stop is not None or c.atr_stop is not None for c in cfgs):
        return False
    end = int(bounds[:, 1].max())
    if not np.isfinite(panel.close[:end, 0]).all():
        return False
    if any(c.fill == "next_open" for c in cfgs):
        return all(np.isfinite(panel.open[t0:t1, 0]).all() for t0, t1 in bounds.tolist())
    return True


class ShortingError(ValueError):
    """A run produced short (negative) weights under a long-only engine config."""


def _engine_configs(table: pl.DataFrame, base: EngineConfig
                    ) -> tuple[list[EngineConfig], np.ndarray]:
    """Distinct engine configs of the table's engine axes, and each row's index into them."""
    axes = list(engine_axes(table))
    if not axes:
        return [base], np.zeros(table.height, dtype=np.int64)
    distinct = table.select(axes).unique(maintain_order=True)
    cfgs = [base.replace(**row) for row in distinct.iter_rows(named=True)]
    index = table.select(axes).join(
        distinct.with_row_index("__cfg"), on=axes, how="left", maintain_order="left",
        nulls_equal=True,
    )["__cfg"].to_numpy().astype(np.int64)
    return cfgs, index
