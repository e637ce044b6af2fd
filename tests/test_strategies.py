"""The built-in strategies: hand-computed weights, defaults, parameter checks, the registry,
and no look-ahead (weights and the engine's equity) for every built-in and the user example.

Conventions checked throughout (strategies/signals.py): a weights row is NaN ("no
instruction") except on rebalance bars / bars where some position changes; on such a row a
held asset gets its weight, a flat asset *with a bar* gets 0 and an asset without a bar NaN.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import strategies
from engine import EngineConfig, Panel, run_backtest
from engine.data import synthetic_panel
from strategies import StrategyError

NAN = np.nan
BUILTINS = ("breakout", "ma_cross", "mean_reversion", "momentum", "top_n")
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "user_strategy.py"


# ------------------------------------------------------------------ shared helpers
def load_user_example() -> ModuleType:
    """examples/user_strategy.py imported by path (once per process); it registers itself."""
    return strategies.load_module(EXAMPLE)


def tiny_panel(close: list[list[float]] | np.ndarray, **kw: object) -> Panel:
    """Daily bars from a (T, N) close list; open/high/low default to the close."""
    c = np.asarray(close, dtype=np.float64)
    if c.ndim == 1:
        c = c[:, None]
    ts = np.datetime64("2024-01-01") + np.arange(c.shape[0]).astype("timedelta64[D]")
    assets = [chr(ord("A") + i) for i in range(c.shape[1])]
    return Panel.from_arrays(ts, assets, close=c, **kw)  # type: ignore[arg-type]


def scramble_after(panel: Panel, t: int, seed: int, keep_bars: bool = True) -> Panel:
    """The same panel up to bar t; garbage (but valid) prices, volumes and features after.

    ``keep_bars``: keep which (bar, asset) cells exist after t (the engine reads an asset's
    last valid bar to close delisted positions, so for engine checks the calendar of bars
    must stay); otherwise bars appear and vanish at random too.
    """
    rng = np.random.default_rng(seed)
    T, N = panel.shape
    k = T - t - 1
    old = ~np.isnan(panel.close[t + 1:])
    has = old if keep_bars else rng.random((k, N)) < 0.8
    level = np.exp(rng.normal(np.log(30.0), 1.5, (1, N)))       # a new price level per asset
    close = level * np.exp(np.cumsum(rng.normal(0.0, 0.08, (k, N)), axis=0))
    open_ = close * np.exp(rng.normal(0.0, 0.05, (k, N)))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.04, (k, N))))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.04, (k, N))))
    volume = rng.integers(1, 10**7, (k, N)).astype(np.float64)

    def splice(base: np.ndarray, future: np.ndarray) -> np.ndarray:
        out = base.copy()
        out[t + 1:] = np.where(has, future, np.nan)
        return out

    feats = {name: splice(arr, rng.normal(0.0, 3.0, (k, N)))
             for name, arr in panel.features.items()}
    return Panel.from_arrays(
        panel.timestamps, panel.assets,
        open=splice(panel.open, open_), high=splice(panel.high, high),
        low=splice(panel.low, low), close=splice(panel.close, close),
        volume=splice(panel.volume, volume), features=feats,
    )


def lookahead_panel(seed: int) -> Panel:
    """Small, with late listings, delistings and halts."""
    return synthetic_panel(n_assets=8, n_bars=160, seed=seed, halt_probability=0.02,
                           listing_fraction=0.25, delisting_fraction=0.25)


LOOKAHEAD_BARS = (0, 1, 29, 77, 118, 158)
ENGINE_CONFIGS = (
    EngineConfig(init_cash=1e5, fill="close", commission=0.001, stop_loss=0.04,
                 trailing_stop=0.06, allow_short=True),
    EngineConfig(init_cash=1e5, fill="next_open", slippage=0.001, fixed_fee=1.0,
                 atr_stop=1.5, atr_window=5, take_profit=0.08, allow_short=True),
)


def check_no_lookahead(strategy: strategies.Strategy, params: dict, seed: int) -> None:
    """Weights rows 0..t, and equity/cash/positions 0..t, ignore everything after bar t."""
    panel = lookahead_panel(seed)
    w = strategy.weights(panel, **params)
    assert np.isfinite(w).any(), "the case should trade"
    base = {id(cfg): run_backtest(panel, w, cfg, positions=True) for cfg in ENGINE_CONFIGS}
    for i, t in enumerate(LOOKAHEAD_BARS):
        for keep_bars in (True, False):
            other = scramble_after(panel, t, seed=1000 * seed + 2 * i + keep_bars,
                                   keep_bars=keep_bars)
            w2 = strategy.weights(other, **params)
            np.testing.assert_array_equal(
                w[: t + 1], w2[: t + 1],
                err_msg=f"{strategy.name} {params}: weights up to bar {t} changed when only "
                        f"data after it changed (keep_bars={keep_bars})",
            )
            if not keep_bars:
                continue
            for cfg in ENGINE_CONFIGS:
                a = base[id(cfg)]
                b = run_backtest(other, w2, cfg, positions=True)
                for field in ("equity", "cash", "exposure", "positions"):
                    np.testing.assert_array_equal(
                        getattr(a, field)[: t + 1], getattr(b, field)[: t + 1],
                        err_msg=f"{strategy.name} {params} fill={cfg.fill}: {field} up to "
                                f"bar {t} depends on later data",
                    )


# ------------------------------------------------------------------ hand-computed cases
def test_top_n_by_hand() -> None:
    # 3 assets, closes flat at 10 except C has no bar at t=2; feature "sig".
    close = [[10, 10, 10], [10, 10, 10], [10, 10, NAN], [10, 10, 10], [10, 10, 10],
             [10, 10, 10]]
    sig = [[1, 3, 2],        # t0: best is B (3)
           [9, 0, 0],        # t1: not a rebalance bar (every 2)
           [5, 1, 9],        # t2: C has no bar (its 9 is dropped) -> best of A, B is A
           [0, 9, 0],
           [2, NAN, 2],      # t4: B has a bar but no score -> 0; A, C tie -> A (asset order)
           [0, 0, 9]]
    p = tiny_panel(close, features={"sig": np.array(sig, dtype=float)})
    w = strategies.get("top_n").weights(p, n=1, rebalance_every=2, feature="sig")
    expected = [[0, 1, 0], [NAN] * 3, [1, 0, NAN], [NAN] * 3, [1, 0, 0], [NAN] * 3]
    np.testing.assert_array_equal(w, expected)
    # n larger than the eligible assets: hold all of them, 1/2 each on t2 (C has no bar).
    w = strategies.get("top_n").weights(p, n=5, rebalance_every=2, feature="sig")
    np.testing.assert_array_equal(w[2], [0.5, 0.5, NAN])
    np.testing.assert_array_equal(w[4], [0.5, 0.0, 0.5])  # B: no score -> not eligible


@pytest.mark.parametrize(
    ("kw", "row"),
    [
        # scores A..D = 4, 1, 3, 0; ranking A > C > B > D; eligible mean = 8 / 4 = 2.
        ({"n": 2}, [0.5, 0, 0.5, 0]),
        # score weights: excess over the mean, A: 4 - 2 = 2, C: 3 - 2 = 1 -> 2/3, 1/3.
        ({"n": 2, "weighting": "score"}, [2 / 3, 0, 1 / 3, 0]),
        # long-short n=1: 0.5 long the best (A), 0.5 short the worst (D).
        ({"n": 1, "long_short": True}, [0.5, 0, 0, -0.5]),
        # long-short, score-weighted, n=2: long A, C with excess 2, 1 -> 0.5 * 2/3, 0.5 * 1/3;
        # short B, D with shortfall 2 - 1 = 1, 2 - 0 = 2 -> -0.5 * 1/3, -0.5 * 2/3.
        ({"n": 2, "long_short": True, "weighting": "score"}, [1 / 3, -1 / 6, 1 / 6, -1 / 3]),
        # n is capped at half the eligible assets a side when long-short: 2 + 2 of 4.
        ({"n": 3, "long_short": True}, [0.25, -0.25, 0.25, -0.25]),
    ],
)
def test_top_n_weighting_by_hand(kw: dict, row: list[float]) -> None:
    p = tiny_panel([[10.0] * 4] * 3, features={"s": np.array([[4.0, 1.0, 3.0, 0.0]] * 3)})
    w = strategies.get("top_n").weights(p, rebalance_every=3, feature="s", **kw)
    np.testing.assert_allclose(w[0], row, rtol=1e-15, atol=1e-15)
    assert np.isnan(w[1:]).all()


def test_ma_cross_sma_by_hand() -> None:
    # fast = SMA(2), slow = SMA(3); B is A delayed by one bar.
    a = [10, 9, 8, 9, 12, 11, 8, 7, 9, 12]
    b = [10, 10, 9, 8, 9, 12, 11, 8, 7, 9]
    # A: t  fast   slow                relation
    #    2  8.5    9      (10+9+8)/3   below
    #    3  8.5    8.67   (9+8+9)/3    below
    #    4  10.5   9.67   (8+9+12)/3   above  -> cross up: enter
    #    5  11.5   10.67               above
    #    6  9.5    10.33  (12+11+8)/3  below  -> cross down: exit
    #    7  7.5    8.67                below
    #    8  8      8      (8+7+9)/3    equal: ignored, still "below"
    #    9  10.5   9.33   (7+9+12)/3   above  -> cross up: enter
    # B: t2 9.5 < 9.67, t3 8.5 < 9, t4 8.5 < 8.67, t5 10.5 > 9.67 (enter), t6 11.5 > 10.67,
    #    t7 9.5 < 10.33 (exit), t8 7.5 < 8.67, t9 8 == 8.
    p = tiny_panel(np.column_stack([a, b]))
    s = strategies.get("ma_cross")
    w = s.weights(p, fast=2, slow=3)
    expected = [[NAN, NAN]] * 4 + [
        [1, 0],        # t4: A enters; B flat (has a bar) -> 0
        [0.5, 0.5],    # t5: B enters; two positions -> 1/2 each
        [0, 1],        # t6: A exits
        [0, 0],        # t7: B exits
        [NAN, NAN],    # t8: nothing changed
        [1, 0],        # t9: A enters again
    ]
    np.testing.assert_array_equal(w, expected)
    # Single asset, long-short: the cross down goes short instead of flat.
    w = s.weights(tiny_panel(a), fast=2, slow=3, long_short=True)
    np.testing.assert_array_equal(w[:, 0], [NAN] * 4 + [1, NAN, -1, NAN, NAN, 1])
    assert s.lookback(fast=2, slow=3) == 3


def test_ma_cross_ema_by_hand() -> None:
    # EMA(1) is the close itself; EMA(3) has alpha = 2 / (3 + 1) = 1/2: avg = (avg + c) / 2,
    # seeded with the first close, NaN for the first 3 bars... of which the first 2 are NaN.
    close = [8, 8, 8, 12, 4, 4, 10, 7]
    # ema3: t2 8 | t3 (8+12)/2 = 10 | t4 (10+4)/2 = 7 | t5 5.5 | t6 7.75 | t7 7.375
    # fast vs slow: t2 8 = 8 (no relation) | t3 12 > 10 above (first relation, no cross)
    #   t4 4 < 7 cross down (already flat) | t5 below | t6 10 > 7.75 cross up: enter
    #   t7 7 < 7.375 cross down: exit
    w = strategies.get("ma_cross").weights(tiny_panel(close), fast=1, slow=3, kind="ema")
    np.testing.assert_array_equal(w[:, 0], [NAN] * 6 + [1, 0])


def test_momentum_by_hand() -> None:
    close = [[10, 10, 10],
             [10, 12, 8],
             [11, 12, 9],
             [12, 11, 10],
             [12, 15, 20]]
    # lookback=2, skip=1: score[t] = close[t-1] / close[t-2] - 1 (NaN for t < 2).
    #   t2: A 10/10-1 = 0,     B 12/10-1 = 0.2,   C 8/10-1 = -0.2   -> best B, worst C
    #   t3: A 11/10-1 = 0.1,   B 12/12-1 = 0,     C 9/8-1 = 0.125   -> best C, worst B
    #   t4: A 12/11-1 = 0.091, B 11/12-1 = -0.083, C 10/9-1 = 0.111 -> best C, worst B
    # quantile 0.3 of 3 scored assets: ceil(0.9) = 1 asset a side. On t0/t1 no asset has a
    # score: every listed asset gets 0 (close everything).
    s = strategies.get("momentum")
    kw = {"lookback": 2, "skip": 1, "quantile": 0.3}
    w = s.weights(tiny_panel(close), rebalance_every=1, **kw)
    np.testing.assert_array_equal(
        w, [[0, 0, 0], [0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]]
    )
    w = s.weights(tiny_panel(close), rebalance_every=2, long_short=True, **kw)
    np.testing.assert_array_equal(
        w, [[0, 0, 0], [NAN] * 3, [0, 0.5, -0.5], [NAN] * 3, [0, -0.5, 0.5]]
    )
    # quantile 0.5 of 3: ceil(1.5) = 2 assets, 1/2 each.
    w = s.weights(tiny_panel(close), rebalance_every=1, lookback=2, skip=1, quantile=0.5)
    np.testing.assert_array_equal(w[3], [0.5, 0, 0.5])
    # skip=0: score[t] = close[t] / close[t-2] - 1; t2: A 0.1, B 0.2, C -0.1 -> B.
    w = s.weights(tiny_panel(close), rebalance_every=1, lookback=2, skip=0, quantile=0.3)
    np.testing.assert_array_equal(w[2], [0, 1, 0])
    assert s.lookback(lookback=2, skip=1) == 2


def test_mean_reversion_by_hand() -> None:
    close = [10, 10, 10, 10, 7, 7, 7, 10, 10, 10, 13]
    # window 3, population std. Three values x, x, x+3d: mean x+d, deviations -d, -d, 2d,
    # std = sqrt(6 d^2 / 3) = |d| sqrt(2).
    #   t2, t3: [10,10,10] std 0 -> skipped
    #   t4: [10,10,7]  z = (7 - 9) / sqrt(2)  = -1.41 < -1.2 -> enter long
    #   t5: [10,7,7]   z = (7 - 8) / sqrt(2)  = -0.71, not > -0.5 -> hold
    #   t6: [7,7,7]    std 0 -> skipped
    #   t7: [7,7,10]   z = (10 - 8) / sqrt(2) = +1.41 > -0.5 -> exit
    #   t8: [7,10,10]  z = +0.71 | t9 std 0 | t10: [10,10,13] z = +1.41 > 1.2 -> short if
    #   long_short (t7's exit does not flip straight to short: z 1.41 > 1.2, but the position
    #   was long on that bar)
    s = strategies.get("mean_reversion")
    kw = {"period": 3, "entry_z": 1.2, "exit_z": 0.5}
    w = s.weights(tiny_panel(close), **kw)
    np.testing.assert_array_equal(w[:, 0], [NAN] * 4 + [1, NAN, NAN, 0, NAN, NAN, NAN])
    w = s.weights(tiny_panel(close), long_short=True, **kw)
    np.testing.assert_array_equal(w[:, 0], [NAN] * 4 + [1, NAN, NAN, 0, NAN, NAN, -1])


def test_breakout_by_hand() -> None:
    close = [10, 11, 10, 12, 13, 11.5, 11, 12, 14]
    # high = low = close, so true range = |close - previous close| (t0: high - low = 0):
    #   TR      0   1    1   2    1    1.5    0.5   1     2
    #   ATR(2)  -   0.5  1   1.5  1.5  1.25   1     0.75  1.5
    #   max(2)  -   11   11  12   13   13     11.5  12    14   (highest high, this bar incl.)
    #   min(2)  -   10   10  10   12   11.5   11    11    12
    # Entry: close > the channel as of the previous bar.
    #   t3: 12 > 11 -> long, best close 12 | t4: best 13; exit if 13 < 13 - 1*1.5: no
    #   t5: 11.5 < 13 - 1.25 = 11.75 -> exit | t6: 11 > 13? no | t7: 12 > 11.5 -> long
    #   t8: best 14, 14 < 14 - 1.5? no
    s = strategies.get("breakout")
    kw = {"channel": 2, "atr_window": 2, "atr_mult": 1.0}
    w = s.weights(tiny_panel(close), **kw)
    np.testing.assert_array_equal(w[:, 0], [NAN, NAN, NAN, 1, NAN, 0, NAN, 1, NAN])
    # long_short: t6: 11 < previous min 11.5 -> short, best (lowest) close 11;
    #   t7: 12 > 11 + 1 * 0.75 = 11.75 -> cover (no new entry on the exit bar);
    #   t8: 14 > previous max 12 -> long.
    w = s.weights(tiny_panel(close), long_short=True, **kw)
    np.testing.assert_array_equal(w[:, 0], [NAN, NAN, NAN, 1, NAN, 0, -1, 0, 1])
    assert s.lookback(channel=2, atr_window=2) == 3


def test_signals_skip_assets_without_a_bar() -> None:
    # A halt at t4 on the bar A would cross: A's averages skip the halt (its own bars),
    # the row gives A NaN on t4 (no bar), and the cross is taken on A's next bar.
    a = [10, 9, 8, 9, NAN, 12, 11]
    b = [5, 5, 5, 5, 5, 5, 5]  # constant: averages equal, never crosses
    w = strategies.get("ma_cross").weights(tiny_panel(np.column_stack([a, b])),
                                           fast=2, slow=3)
    # A's own bars: 10, 9, 8, 9, 12, 11 -> the cross up is on 12 (t5), as without the halt.
    np.testing.assert_array_equal(w, [[NAN, NAN]] * 5 + [[1, 0], [NAN, NAN]])


@pytest.mark.parametrize("kw", [{"fast": 3, "slow": 12}, {"fast": 5, "slow": 20,
                                 "kind": "ema", "long_short": True}])
def test_ma_cross_one_asset_path_matches_the_panel_path(kw: dict) -> None:
    # A one-asset panel takes the kernel's register path; each asset of a wider panel the
    # per-asset path. Same crosses: the one-asset weights are finite exactly where that
    # asset's state changes in the panel run, with the same sign.
    panel = synthetic_panel(6, 400, seed=5)
    s = strategies.get("ma_cross")
    wide = s.weights(panel, **kw)
    for n in range(panel.n_assets):
        one = Panel.from_arrays(panel.timestamps, panel.assets[n:n + 1],
                                close=panel.close[:, n:n + 1], open=panel.open[:, n:n + 1],
                                high=panel.high[:, n:n + 1], low=panel.low[:, n:n + 1])
        w1 = s.weights(one, **kw)[:, 0]
        changes = np.flatnonzero(np.isfinite(w1))
        assert changes.size > 2
        assert np.isfinite(wide[changes, n]).all()
        np.testing.assert_array_equal(np.sign(wide[changes, n]), w1[changes])
        # Between its changes, the asset's sign in the panel's rows is its last state.
        state = np.zeros(panel.n_bars)
        for t in range(panel.n_bars):
            state[t] = w1[t] if np.isfinite(w1[t]) else (state[t - 1] if t else 0.0)
        rows = np.flatnonzero(np.isfinite(wide[:, n]))
        np.testing.assert_array_equal(np.sign(wide[rows, n]), state[rows])


def test_ma_cross_prepare_under_a_profiler() -> None:
    # prepare grows its data array in place when nothing else refers to it; a profiler
    # holding a reference to the array's bound resize makes numpy refuse, and prepare
    # then copies: the same data either way.
    import cProfile

    panel = synthetic_panel(1, 600, seed=4)
    s = strategies.get("ma_cross")
    windows = np.arange(2, 40, dtype=float)
    fast, slow = np.meshgrid(windows, windows)
    keep = fast < slow
    cols = {"fast": fast[keep], "slow": slow[keep], "kind": np.array(["sma"] * keep.sum()),
            "long_short": np.zeros(keep.sum())}
    data, rows = s.prepare(panel, cols)
    profiled: dict = {}
    cProfile.runctx("profiled['out'] = s.prepare(panel, cols)", globals(),
                    {"s": s, "panel": panel, "cols": cols, "profiled": profiled})
    assert data.shape[0] > 1 + 38  # cross bars were stored after the averages
    np.testing.assert_array_equal(profiled["out"][1], rows)
    assert profiled["out"][0].tobytes() == data.tobytes()


# ------------------------------------------------------------------ defaults
@pytest.fixture(scope="module")
def default_panel() -> Panel:
    return synthetic_panel(50, 600, seed=11)


@pytest.mark.parametrize("name", BUILTINS)
def test_defaults_trade(name: str, default_panel: Panel) -> None:
    s = strategies.get(name)
    w = s.weights(default_panel)
    assert w.shape == default_panel.shape
    assert np.isfinite(w).any()
    assert (w[np.isfinite(w)] >= 0).all(), "defaults are long-only"
    # Weights never instruct an asset without a bar.
    assert np.isnan(w[np.isnan(default_panel.close)]).all()
    res = run_backtest(default_panel, w, EngineConfig(commission=0.0005))
    assert res.metrics["n_trades"] >= 1
    assert math.isfinite(res.metrics["final_equity"])
    assert isinstance(s.lookback(), int)
    assert s.doc and all(p.doc for p in s.params.values())
    # Every default passes its own check.
    assert s.resolve({}) == {k: p.default for k, p in s.params.items()}


# ------------------------------------------------------------------ parameter checks
BAD_PARAMS = [
    ("ma_cross", {"fsat": 5}, r"no parameter 'fsat'.*fast, slow, kind, long_short"),
    ("ma_cross", {"fast": 0}, r"'fast'.*below the lower bound"),
    ("ma_cross", {"slow": 10_001}, r"'slow'.*above the upper bound"),
    ("ma_cross", {"fast": 2.5}, r"'fast'.*not an integer"),
    ("ma_cross", {"fast": "10"}, r"'fast'.*not a number"),
    ("ma_cross", {"fast": True}, r"'fast'.*not a number"),
    ("ma_cross", {"kind": "wma"}, r"'kind'.*'wma'.*not one of \['sma', 'ema'\]"),
    ("ma_cross", {"long_short": 1}, r"'long_short'.*true/false"),
    ("top_n", {"n": 0}, r"'n'.*below the lower bound"),
    ("top_n", {"weighting": "rank"}, r"'weighting'.*'rank'"),
    ("top_n", {"feature": 3}, r"'feature'.*not a string"),
    ("top_n", {"rebalance_every": None}, r"'rebalance_every'.*not a number"),
    ("momentum", {"quantile": 1.5}, r"'quantile'.*above the upper bound"),
    ("momentum", {"quantile": float("nan")}, r"'quantile'.*not finite"),
    ("momentum", {"lookback": 20, "skip": 20}, r"skip \(20\).*lookback \(20\)"),
    ("momentum", {"skip": -1}, r"'skip'.*below"),
    ("mean_reversion", {"period": 1}, r"'period'.*below the lower bound"),
    ("mean_reversion", {"entry_z": -1.0}, r"'entry_z'.*below"),
    ("mean_reversion", {"entry_z": 1.0, "exit_z": 1.0}, r"exit_z \(1.0\).*entry_z \(1.0\)"),
    ("breakout", {"atr_mult": 0.0}, r"'atr_mult'.*below"),
    ("breakout", {"atr_window": 0}, r"'atr_window'.*below"),
    ("breakout", {"channel": 1.5}, r"'channel'.*not an integer"),
    ("breakout", {"long_short": "yes"}, r"'long_short'.*true/false"),
]


@pytest.mark.parametrize(("name", "params", "message"), BAD_PARAMS,
                         ids=[f"{n}-{'-'.join(p)}" for n, p, _ in BAD_PARAMS])
def test_bad_parameters(name: str, params: dict, message: str) -> None:
    p = tiny_panel([[10.0, 11.0]] * 30, features={"ml_score": np.zeros((30, 2))})
    with pytest.raises(StrategyError, match=message):
        strategies.get(name).weights(p, **params)


def test_parameter_conversion() -> None:
    s = strategies.get("ma_cross")
    r = s.resolve({"fast": np.int64(5), "slow": 20.0, "long_short": np.bool_(True)})
    assert r == {"fast": 5, "slow": 20, "kind": "sma", "long_short": True}
    assert type(r["slow"]) is int and type(r["long_short"]) is bool
    r = strategies.get("momentum").resolve({"quantile": 1})
    assert type(r["quantile"]) is float


def test_top_n_missing_feature() -> None:
    p = tiny_panel([[10.0, 11.0]] * 5, features={"alpha": np.zeros((5, 2))})
    s = strategies.get("top_n")
    with pytest.raises(StrategyError, match=r"'feature'.*'beta'.*\['alpha'\]"):
        s.weights(p, feature="beta")
    with pytest.raises(StrategyError, match=r"'ml_score'.*no features"):
        s.weights(tiny_panel([[10.0]] * 5))


# ------------------------------------------------------------------ registry
def test_registry_names_and_get() -> None:
    names = strategies.names()
    assert set(BUILTINS) <= set(names)
    assert names == sorted(names)
    for n in BUILTINS:
        s = strategies.get(n)
        assert s.name == n
        assert strategies.get(s) is s
    with pytest.raises(StrategyError, match="unknown strategy 'nope'") as info:
        strategies.get("nope")
    for n in BUILTINS:
        assert n in str(info.value)
    assert "did you mean" not in str(info.value)  # nothing close to 'nope'
    with pytest.raises(StrategyError, match=r"did you mean 'ma_cross'\?$"):
        strategies.get("ma_crosss")


def test_register_duplicates_and_replace() -> None:
    original = strategies.get("ma_cross")
    clone = dataclasses.replace(original, doc="a copy")
    assert strategies.register(original) is original  # the same object again: fine
    with pytest.raises(StrategyError, match=r"'ma_cross' is already registered.*replace=True"):
        strategies.register(clone)
    assert strategies.get("ma_cross") is original
    try:
        assert strategies.register(clone, replace=True) is clone
        assert strategies.get("ma_cross") is clone
    finally:
        strategies.register(original, replace=True)
    assert strategies.get("ma_cross") is original
    with pytest.raises(TypeError, match="Strategy"):
        strategies.register("ma_cross")  # type: ignore[arg-type]


def test_register_new_name() -> None:
    from strategies import registry

    fresh = dataclasses.replace(strategies.get("top_n"), name="test_tmp_top_n")
    try:
        strategies.register(fresh)
        assert "test_tmp_top_n" in strategies.names()
        assert strategies.get("test_tmp_top_n") is fresh
    finally:
        registry._REGISTRY.pop("test_tmp_top_n", None)
    assert "test_tmp_top_n" not in strategies.names()


# ------------------------------------------------------------------ no look-ahead
LOOKAHEAD_CASES = [
    ("top_n", {"n": 3, "rebalance_every": 3}),
    ("top_n", {"n": 2, "rebalance_every": 1, "long_short": True, "weighting": "score"}),
    ("ma_cross", {"fast": 3, "slow": 10}),
    ("ma_cross", {"fast": 4, "slow": 12, "kind": "ema", "long_short": True}),
    ("momentum", {"lookback": 20, "skip": 3, "quantile": 0.3, "rebalance_every": 4}),
    ("momentum", {"lookback": 10, "skip": 0, "quantile": 0.25, "rebalance_every": 1,
                  "long_short": True}),
    ("mean_reversion", {"period": 10, "entry_z": 1.0, "exit_z": 0.2}),
    ("mean_reversion", {"period": 6, "entry_z": 0.8, "exit_z": 0.0, "long_short": True}),
    ("breakout", {"channel": 10, "atr_window": 5, "atr_mult": 1.5}),
    ("breakout", {"channel": 5, "atr_window": 3, "atr_mult": 1.0, "long_short": True}),
    ("rsi_reversal", {"period": 5, "lower": 35.0, "upper": 60.0}),
]


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize(("name", "params"), LOOKAHEAD_CASES,
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(LOOKAHEAD_CASES)])
def test_no_lookahead(name: str, params: dict, seed: int) -> None:
    if name == "rsi_reversal":
        load_user_example()
    check_no_lookahead(strategies.get(name), params, seed)


def test_scramble_after_changes_the_future() -> None:
    # The look-ahead check is only as good as its garbage: everything after t must differ.
    p = lookahead_panel(1)
    q = scramble_after(p, 50, seed=3)
    assert q.fingerprint != p.fingerprint
    for col in ("open", "high", "low", "close"):
        a, b = getattr(p, col), getattr(q, col)
        np.testing.assert_array_equal(a[:51], b[:51])
        has = ~np.isnan(a[51:])
        assert (a[51:][has] != b[51:][has]).all()
    np.testing.assert_array_equal(np.isnan(p.close), np.isnan(q.close))


def test_lookahead_check_catches_a_peek() -> None:
    # A strategy ranking by the NEXT bar's return must fail the check.
    top_n = strategies.get("top_n")

    def peeking_prepare(panel: Panel, cols: dict) -> tuple[np.ndarray, np.ndarray]:
        future = np.full(panel.shape, np.nan)
        future[:-1] = panel.close[1:] / panel.close[:-1]
        feats = {"ml_score": future}
        cheat = Panel(panel.timestamps, panel.assets, panel.open, panel.high, panel.low,
                      panel.close, panel.volume, feats)
        return top_n.prepare(cheat, cols)

    peek = dataclasses.replace(top_n, name="peek", prepare=peeking_prepare)
    with pytest.raises(AssertionError, match="weights up to bar"):
        check_no_lookahead(peek, {"n": 2, "rebalance_every": 1}, seed=1)
