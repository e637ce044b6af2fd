"""sweep.evaluate: every run's metrics are EXACTLY those of a separate run_backtest

    run_backtest(panel.take(i0, i1), strategy.weights(panel, **params)[i0:i1],
                 config.replace(**engine_axes))

(weights computed on the whole panel, so indicators are warmed up before a window), the
result table's layout, and errors that name the bad input.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from test_strategies import load_user_example

import strategies
import sweep
import sweep.grid
from engine import METRIC_NAMES, EngineConfig, Panel, run_backtest
from engine.data import synthetic_panel
from sweep.grid import ENGINE_AXES, GridError
from sweep.schema import is_param_column

CONFIG = EngineConfig(init_cash=100_000.0)
WINDOWS = [(None, "2010-09-30"), ("2010-07-01", "2011-03-31"), ("2011-04-01", None)]


@pytest.fixture(scope="module")
def panel() -> Panel:
    load_user_example()
    return synthetic_panel(n_assets=12, n_bars=480, seed=5, halt_probability=0.002)


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def check_exact(panel: Panel, name: str, grid: dict, config: EngineConfig,
                constraints: list[str], windows: list | None) -> pl.DataFrame:
    df = sweep.evaluate(panel, name, grid, config, constraints=constraints, windows=windows)
    s = strategies.get(name)
    bounds = [panel.index_range(*w) for w in windows] if windows else [(0, panel.n_bars)]
    weights_cache: dict[tuple, np.ndarray] = {}
    for row in df.iter_rows(named=True):
        params = {k: row[k] for k in grid if k in s.params}
        engine = {k: row[k] for k in grid if k in ENGINE_AXES}
        i0, i1 = bounds[row["window"]]
        key = tuple(sorted(params.items()))
        if key not in weights_cache:
            weights_cache[key] = s.weights(panel, **params)
        ref = run_backtest(panel, weights_cache[key], config.replace(**engine),
                           window=(panel.timestamps[i0], panel.timestamps[i1 - 1]))
        bad = {m: (row[m], ref.metrics[m]) for m in METRIC_NAMES
               if not same(row[m], ref.metrics[m])}
        assert not bad, f"{name} run {row['run']} {params} {engine} window {i0}:{i1}: {bad}"
    return df


EXACT_CASES = [
    ("ma_cross",
     {"fast": [5, 10], "slow": [10, 30], "kind": ["sma", "ema"], "commission": [0.0, 0.001]},
     ["fast < slow"]),
    ("top_n",
     {"n": [2, 4], "rebalance_every": [5], "weighting": ["equal", "score"],
      "stop_loss": [0.03, 0.08], "slippage": [0.0005]},
     []),
    ("momentum",
     {"lookback": [30, 60], "skip": [0, 5], "quantile": [0.25], "rebalance_every": [10],
      "long_short": [False, True], "allow_short": [True], "fixed_fee": [0.0, 2.0]},
     []),
    ("mean_reversion",
     {"entry_z": [1.0, 2.0], "exit_z": [0.0, 0.5], "long_short": [False],
      "trailing_stop": [0.05], "take_profit": [0.1]},
     ["exit_z < entry_z"]),
    ("breakout",
     {"atr_window": [5, 14], "atr_mult": [1.5, 3.0], "fractional": [True, False],
      "min_trade_value": [0.0, 5000.0]},
     []),
    ("rsi_reversal",
     {"period": [5, 14], "lower": [25, 35], "upper": [55, 70], "commission": [0.002]},
     ["lower < upper"]),
]


@pytest.mark.parametrize("windows", [None, WINDOWS], ids=["whole", "windows"])
@pytest.mark.parametrize(("name", "grid", "constraints"), EXACT_CASES,
                         ids=[c[0] for c in EXACT_CASES])
def test_evaluate_equals_run_backtest(panel: Panel, name: str, grid: dict,
                                     constraints: list[str], windows: list | None) -> None:
    df = check_exact(panel, name, grid, CONFIG, constraints, windows)
    n_windows = len(windows) if windows else 1
    assert df.height % n_windows == 0 and df.height > 0
    assert (df["n_trades"] > 0).any()


def test_evaluate_close_fill_and_base_config(panel: Panel) -> None:
    # fill is not an axis, but the base config's fill is used; other base fields too.
    cfg = EngineConfig(init_cash=50_000.0, fill="close", commission=0.001, max_leverage=0.8)
    check_exact(panel, "ma_cross", {"fast": [4, 8], "slow": [20], "stop_loss": [0.05, 0.1]},
                cfg, [], WINDOWS[1:])


def test_evaluate_atr_stop(panel: Panel) -> None:
    check_exact(panel, "breakout", {"atr_stop": [1.0, 2.0], "atr_window": [3, 10]},
                CONFIG, [], None)


def test_evaluate_atr_stop_in_windows(panel: Panel) -> None:
    # The ATR of atr_stop is warmed up on the bars before the window, in a sweep and in
    # run_backtest(window=...) alike (a trade opening right after the window start needs it).
    check_exact(panel, "ma_cross",
                {"fast": [5], "slow": [20], "atr_stop": [2.0], "atr_window": [5]},
                CONFIG, [], [("2010-06-01", "2011-06-30")])


def test_stop_axis_with_none(panel: Panel) -> None:
    # None ("no stop") on a stop axis is a null in the grid table: it must still select
    # the right engine config (a null-blind join once sent these runs to garbage configs).
    df = check_exact(panel, "ma_cross",
                     {"fast": [5], "slow": [20], "stop_loss": [None, 0.03],
                      "take_profit": [0.1, None]},
                     CONFIG, [], None)
    assert (df["n_trades"] > 0).all()


def test_window_param_is_sweepable(panel: Panel) -> None:
    # Built-in parameters must not collide with reserved result columns such as 'window'.
    for s in strategies.names():
        assert all(is_param_column(p) for p in strategies.get(s).params), s
    df = check_exact(panel, "mean_reversion", {"period": [10, 20]}, CONFIG, [], None)
    assert df.height == 2


def test_negative_weights_need_allow_short(panel: Panel) -> None:
    # Negative weights under allow_short=False are an error in a sweep as in run_backtest
    # (the kernel counts them; it must never short in a cash account).
    w = strategies.get("momentum").weights(panel, lookback=30, long_short=True)
    with pytest.raises(ValueError, match="allow_short"):
        run_backtest(panel, w, CONFIG)
    with pytest.raises(ValueError, match="allow_short"):
        sweep.evaluate(panel, "momentum", {"lookback": [30], "long_short": [True]}, CONFIG)


# ------------------------------------------------------------------ the result table
def test_result_layout(panel: Panel) -> None:
    grid = {"fast": [5, 10], "slow": [10, 30], "commission": [0.0, 0.001]}
    df = sweep.evaluate(panel, "ma_cross", grid, CONFIG, constraints=["fast < slow"],
                        windows=WINDOWS)
    assert df.columns == ["run", "window", "window_start", "window_end", "combo", *grid,
                          *METRIC_NAMES]
    per_window = 6  # 8 combinations minus (10, 10, *)
    assert df.height == 3 * per_window
    assert df["run"].to_list() == list(range(df.height))
    assert df["window"].to_list() == [0] * 6 + [1] * 6 + [2] * 6
    # Within a window: combos in grid order (itertools.product, last axis fastest).
    block = df.filter(pl.col("window") == 1)
    assert block["combo"].to_list() == [0, 1, 2, 3, 6, 7]
    assert block.select(list(grid)).rows() == [
        (5, 10, 0.0), (5, 10, 0.001), (5, 30, 0.0), (5, 30, 0.001), (10, 30, 0.0),
        (10, 30, 0.001),
    ]
    for k, (start, end) in enumerate(WINDOWS):
        i0, i1 = panel.index_range(start, end)
        rows = df.filter(pl.col("window") == k)
        assert (rows["window_start"].to_numpy() == panel.timestamps[i0]).all()
        assert (rows["window_end"].to_numpy() == panel.timestamps[i1 - 1]).all()
        assert (rows["n_bars"] == i1 - i0).all()
    assert df.schema["window_start"] == pl.Datetime("ns")
    assert all(df.schema[m] == pl.Float64 for m in METRIC_NAMES)
    # No windows: one window covering the panel.
    whole = sweep.evaluate(panel, "ma_cross", {"fast": [5]}, CONFIG)
    assert whole["window_start"].to_numpy()[0] == panel.timestamps[0]
    assert whole["window_end"].to_numpy()[0] == panel.timestamps[-1]
    assert whole["n_bars"][0] == panel.n_bars


def test_defaults_fill_unswept_parameters(panel: Panel) -> None:
    df = sweep.evaluate(panel, "ma_cross", {"commission": [0.0]}, CONFIG)
    ref = run_backtest(panel, strategies.get("ma_cross").weights(panel), CONFIG)
    assert df.columns[:6] == ["run", "window", "window_start", "window_end", "combo",
                              "commission"]
    assert all(same(df[m][0], ref.metrics[m]) for m in METRIC_NAMES)


def test_strategy_object_and_user_strategy_by_name(panel: Panel) -> None:
    mod = load_user_example()
    a = sweep.evaluate(panel, mod.RSI_REVERSAL, {"period": [7]}, CONFIG)
    b = sweep.evaluate(panel, "rsi_reversal", {"period": [7]}, CONFIG)
    assert a.equals(b)


# ------------------------------------------------------------------ bad input
SE = strategies.StrategyError  # GridError is a subclass; both are ValueErrors
BAD_INPUT = [
    ("nope", {}, {}, SE,
     r"unknown strategy 'nope'; known strategies: breakout, ma_cross"),
    ("ma_cross", {"fats": [5]}, {}, GridError, r"grid axis 'fats' is neither a parameter"),
    ("ma_cross", {"fast": [5, 0]}, {}, SE,
     r"parameter 'fast': 0 is below the lower bound 1"),
    ("ma_cross", {"slow": [100_000]}, {}, SE,
     r"parameter 'slow': 100000 is above the upper bound"),
    ("ma_cross", {"fast": ["ten"]}, {}, SE, r"parameter 'fast': 'ten' is not"),
    ("ma_cross", {"kind": ["wma"]}, {}, SE, r"parameter 'kind': 'wma'"),
    ("ma_cross", {"long_short": [0]}, {}, SE,
     r"parameter 'long_short': 0 is not true/false"),
    ("ma_cross", {"commission": [1.5]}, {}, GridError, r"grid axis 'commission'"),
    ("ma_cross", {"fill": ["close"]}, {}, GridError, r"grid axis 'fill' is neither"),
    ("ma_cross", {"fast": [50], "slow": [20]}, {"constraints": ["fast < slow"]}, GridError,
     r"grid is empty after the constraints \['fast < slow'\] \(1 combinations"),
    ("ma_cross", {"fast": [5], "slow": [20]}, {"constraints": ["fast <<< slow"]}, GridError,
     r"constraint 'fast <<< slow' cannot be evaluated"),
    ("ma_cross", {"fast": [5], "slow": [20]}, {"constraints": ["fsat < slow"]}, GridError,
     r"constraint 'fsat < slow' cannot be evaluated over the grid axes \['fast', 'slow'\]"),
    ("ma_cross", {"fast": [5]}, {"windows": [("2030-01-01", "2030-12-31")]}, GridError,
     r"window 0 \(2030-01-01 .. 2030-12-31\) holds 0 bar\(s\) of the data \(2010-01-04 .."),
    ("ma_cross", {"fast": [5]}, {"windows": [(None, None), ("2011-01-01", "2011-01-03")]},
     GridError, r"window 1 .* holds 1 bar\(s\).*at least 2"),
    ("ma_cross", {"fast": [5]}, {"windows": [("2011-01-01",)]}, GridError,
     r"window 0: expected \[start, end\]"),
    ("ma_cross", {"fast": [5]}, {"windows": []}, GridError, r"'ranges' is empty"),
    ("ma_cross", {"fast": [5]}, {"windows": [("someday", None)]}, ValueError,
     r"cannot parse 'someday' as a date"),
    ("top_n", {"feature": ["ml_score", "pe_ratio"]}, {}, SE,
     r"parameter 'feature': 'pe_ratio' is not a feature of the panel; it has \['ml_score'\]"),
    ("momentum", {"lookback": [20], "skip": [5, 20]}, {}, SE,
     r"momentum: skip \(20\) must be smaller than lookback \(20\)"),
    ("rsi_reversal", {"lower": [50], "upper": [40]}, {}, SE,
     r"rsi_reversal: lower \(50.0\) must be below upper \(40.0\)"),
]


@pytest.mark.parametrize(("name", "grid", "kw", "exc", "message"), BAD_INPUT,
                         ids=[f"{i}-{c[0]}" for i, c in enumerate(BAD_INPUT)])
def test_bad_input(panel: Panel, name: str, grid: dict, kw: dict, exc: type,
                   message: str) -> None:
    with pytest.raises(exc, match=message):
        sweep.evaluate(panel, name, grid, CONFIG, **kw)


def test_grid_loop_compiles_once_on_first_use() -> None:
    """sweep.kernels compiles the general grid loop on its first call, not at import (a
    one-asset sweep on the fused path never loads its machine code), once, for the fixed
    signature: two strategies' kernels (two dispatcher types) share it, and it is then
    closed to other signatures."""
    code = """
import sweep
from sweep import kernels
from engine.data import synthetic_panel
one = synthetic_panel(n_assets=1, n_bars=300, seed=1)
sweep.evaluate(one, "ma_cross", {"fast": [5, 10], "slow": [20, 40]})
assert not kernels._evaluate_block.signatures, "loaded by a fused one-asset sweep"
many = synthetic_panel(n_assets=4, n_bars=300, seed=1)
sweep.evaluate(many, "ma_cross", {"fast": [5, 10], "slow": [20, 40]})
sweep.evaluate(many, "momentum", {"lookback": [40, 60], "skip": [5]})
assert len(kernels._evaluate_block.signatures) == 1, kernels._evaluate_block.signatures
assert not kernels._evaluate_block._can_compile
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
