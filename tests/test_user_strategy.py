"""examples/user_strategy.py: a strategy defined outside the package registers on import,
sweeps through sweep.evaluate exactly like a built-in, has no look-ahead, and shows up in
``backsweep strategies --module ...``."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from test_strategies import EXAMPLE, check_no_lookahead, load_user_example, tiny_panel

import strategies
import sweep
from engine import METRIC_NAMES, EngineConfig, run_backtest
from engine.data import synthetic_panel
from sweep.cli import main

NAN = np.nan
BUILTINS = ("breakout", "ma_cross", "mean_reversion", "momentum", "top_n")


@pytest.fixture(scope="module")
def example():
    return load_user_example()


def test_registers_on_import(example) -> None:
    s = strategies.get("rsi_reversal")
    assert s is example.RSI_REVERSAL
    assert list(s.params) == ["period", "lower", "upper"]
    assert s.lookback(period=14) == 15
    assert "rsi_reversal" in strategies.names()


def wilder_rsi(values: list[float], period: int) -> list[float]:
    """Plain-Python Wilder RSI over one asset's bars (NaN = no bar, skipped)."""
    out = [NAN] * len(values)
    prev = None
    changes: list[float] = []
    gain = loss = 0.0
    for t, c in enumerate(values):
        if math.isnan(c):
            continue
        if prev is None:
            prev = c
            continue
        d, prev = c - prev, c
        changes.append(d)
        if len(changes) < period:
            continue
        if len(changes) == period:
            gain = sum(max(x, 0.0) for x in changes) / period
            loss = sum(max(-x, 0.0) for x in changes) / period
        else:
            gain = (gain * (period - 1) + max(d, 0.0)) / period
            loss = (loss * (period - 1) + max(-d, 0.0)) / period
        out[t] = (50.0 if gain == 0 else 100.0) if loss == 0 else 100 - 100 / (1 + gain / loss)
    return out


def test_rsi_matches_a_plain_loop(example) -> None:
    p = synthetic_panel(n_assets=6, n_bars=120, seed=4, halt_probability=0.05)
    for period in (2, 5, 14):
        got = example.rsi(np.ascontiguousarray(p.close), period)
        for n in range(p.n_assets):
            np.testing.assert_allclose(got[:, n], wilder_rsi(p.close[:, n].tolist(), period),
                                       rtol=1e-12, atol=1e-10, equal_nan=True)
    flat = example.rsi(np.full((5, 1), 7.0), 2)
    np.testing.assert_array_equal(flat[:, 0], [NAN, NAN, 50.0, 50.0, 50.0])


def test_weights_by_hand(example) -> None:
    close = [10, 11, 10, 9, 8, 9, 11, 12]
    # period 2; changes +1 -1 -1 -1 +1 +2 +1. RSI = 100 * gain / (gain + loss):
    #   t2: gain (1+0)/2 = 0.5, loss (0+1)/2 = 0.5             -> 50
    #   t3: gain 0.5/2 = 0.25,   loss (0.5+1)/2 = 0.75         -> 25   < 30: enter
    #   t4: gain 0.125,          loss 0.875                    -> 12.5
    #   t5: gain (0.125+1)/2 = 0.5625, loss 0.4375             -> 56.25
    #   t6: gain (0.5625+2)/2 = 1.28125, loss 0.21875          -> 85.4 > 70: exit
    #   t7: gain 1.140625, loss 0.109375                       -> 91.25 (flat already)
    p = tiny_panel(close)
    r = example.rsi(np.ascontiguousarray(p.close), 2)[:, 0]
    np.testing.assert_allclose(r[2:], [50, 25, 12.5, 56.25, 85.41666666666667, 91.25],
                               rtol=1e-14)
    w = strategies.get("rsi_reversal").weights(p, period=2, lower=30, upper=70)
    np.testing.assert_array_equal(w[:, 0], [NAN, NAN, NAN, 1, NAN, NAN, 0, NAN])


def test_prepare_builds_one_rsi_per_period(example) -> None:
    p = synthetic_panel(n_assets=3, n_bars=50, seed=1)
    cols = {"period": np.array([5, 14, 5]), "lower": np.array([30.0, 20.0, 25.0]),
            "upper": np.array([70.0, 60.0, 65.0])}
    data, rows = example.RSI_REVERSAL.prepare(p, cols)
    assert data.shape == (3, *p.shape)  # close + RSI(5) + RSI(14)
    np.testing.assert_array_equal(rows, [[1, 30, 70], [2, 20, 60], [1, 25, 65]])
    np.testing.assert_array_equal(data[2], example.rsi(np.ascontiguousarray(p.close), 14))


def test_sweeps_like_a_builtin(example) -> None:
    p = synthetic_panel(n_assets=10, n_bars=400, seed=9)
    cfg = EngineConfig(init_cash=50_000.0)
    grid = {"period": {"start": 4, "stop": 12, "step": 4}, "lower": [25, 35],
            "upper": [50, 65], "commission": [0.0, 0.001], "trailing_stop": [0.1]}
    windows = [(None, "2010-12-31"), ("2011-01-01", None)]
    df = sweep.evaluate(p, "rsi_reversal", grid, cfg, constraints=["lower < upper"],
                        windows=windows)
    assert df.height == 2 * 3 * 2 * 2 * 2
    assert df.columns[:5] == ["run", "window", "window_start", "window_end", "combo"]
    assert df.columns[5:10] == list(grid)
    assert (df["n_trades"] > 0).sum() > df.height // 2
    s = strategies.get("rsi_reversal")
    for row in df.iter_rows(named=True):
        w = s.weights(p, period=row["period"], lower=row["lower"], upper=row["upper"])
        # window=: the same bars, annualised at the whole panel's rate as in the sweep
        ref = run_backtest(p, w, cfg.replace(commission=row["commission"],
                                             trailing_stop=row["trailing_stop"]),
                           window=windows[row["window"]])
        for m in METRIC_NAMES:
            a, b = row[m], ref.metrics[m]
            assert a == b or (math.isnan(a) and math.isnan(b)), (row["run"], m, a, b)


def test_bad_values_are_named(example) -> None:
    p = synthetic_panel(n_assets=3, n_bars=50, seed=1)
    with pytest.raises(strategies.StrategyError, match=r"parameter 'period': 1 is below"):
        sweep.evaluate(p, "rsi_reversal", {"period": [1, 5]})
    with pytest.raises(strategies.StrategyError, match=r"lower \(70.0\) must be below upper"):
        strategies.get("rsi_reversal").weights(p, lower=70, upper=70)
    with pytest.raises(strategies.StrategyError, match=r"parameter 'upper': 101"):
        strategies.get("rsi_reversal").weights(p, upper=101)


@pytest.mark.parametrize("seed", [3, 4])
def test_no_lookahead(example, seed: int) -> None:
    s = strategies.get("rsi_reversal")
    check_no_lookahead(s, {"period": 3, "lower": 40.0, "upper": 55.0}, seed)
    check_no_lookahead(s, {"period": 8, "lower": 30.0, "upper": 70.0}, seed)


# ------------------------------------------------------------------ the CLI
def test_cli_lists_the_user_strategy(example) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["strategies", "--module", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "rsi_reversal" in out
    assert "RSI period (bars, Wilder smoothing)" in out
    for name in ("period", "lower", "upper", *BUILTINS):
        assert name in out
    # The file was already imported here: the CLI does not run it again.
    assert strategies.get("rsi_reversal") is example.RSI_REVERSAL
    # Only the named strategy; a dotted module works too.
    result = runner.invoke(main, ["strategies", "-m", "strategies.top_n", "rsi_reversal"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "rsi_reversal"
    assert "top_n" not in result.output


def test_cli_errors() -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["strategies", "--module", "no/such/file.py"])
    assert result.exit_code == 2 and "no such file: no/such/file.py" in result.output
    result = runner.invoke(main, ["strategies", "--module", "no_such_module_xyz"])
    assert result.exit_code == 2 and "cannot import module 'no_such_module_xyz'" in result.output
    result = runner.invoke(main, ["strategies", "nope"])
    assert result.exit_code == 2 and "unknown strategy 'nope'" in result.output


def test_cli_lists_the_builtins_in_a_fresh_process() -> None:
    out = subprocess.run([sys.executable, "-m", "sweep.cli", "strategies"], check=True,
                         capture_output=True, text=True, timeout=120).stdout
    listed = [line for line in out.splitlines() if line and not line.startswith(" ")]
    assert listed == list(BUILTINS)
    for s in map(strategies.get, BUILTINS):
        assert " ".join(s.doc.split())[:40] in " ".join(out.split())
        for pname, param in s.params.items():
            line = next(x for x in out.splitlines() if x.strip().startswith(pname + " ")
                        and param.doc in x)
            assert param.kind in line and f"default={param.default}" in line
    assert "{sma, ema}" in out and "[1, 10000]" in out
