"""The fused one-asset path (engine.nb.single driven by a strategy's fused kernel) against
the general one (weights array -> engine.nb.simulate -> metrics): the same metrics, block
statistics and refusals, to the bit, on random panels, parameters, configs and windows;
and its parts: add_n (k equal additions at once), cross_flips (every pair's crossings
from one sort a bar)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from gen import MAX_T, make_panel
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from numba import njit

import strategies
import sweep
from engine import METRIC_NAMES, EngineConfig, Panel, run_backtest
from engine.config import pack_configs
from engine.nb.single import ADD_N_MIN, add_n
from strategies.ma_cross import CROSS_AT
from strategies.signals import cross_flips
from sweep.evaluate import _fused_applies, evaluate_windows
from sweep.grid import Grid, strategy_columns
from sweep.kernels import evaluate_block, evaluate_block_single

SETTINGS = settings(
    max_examples=300, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MA = strategies.get("ma_cross")
MA_DENSE = dataclasses.replace(MA, fused=None)  # the same strategy through its weights


def _bits(x: float) -> int:
    return int(np.float64(x).view(np.int64))


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and bool(np.array_equal(a.view(np.int64), b.view(np.int64)))


# ------------------------------------------------------------------ add_n
@njit(nogil=True, error_model="numpy")
def _add_loop(s, c, k):
    for _ in range(k):
        s = s + c
    return s


@njit(nogil=True, error_model="numpy")
def _add_n(s, c, k):
    return add_n(s, c, k)


def _ulp_multiple(draw: st.DrawFn) -> tuple[float, float]:
    """s and a c that is a tie (an odd multiple of half s's spacing): the hard case."""
    s = draw(st.floats(1.0, 2.0)) * 2.0 ** draw(st.integers(-30, 40))
    _, e = math.frexp(s)
    u = math.ldexp(1.0, e - 53)
    return s, (draw(st.integers(0, 4000)) + 0.5) * u * draw(st.sampled_from([1.0, -1.0]))


@st.composite
def _sums(draw: st.DrawFn) -> tuple[float, float, int]:
    kind = draw(st.integers(0, 4))
    if kind == 0:  # an equity sum and a cash
        s, c = draw(st.floats(0.0, 3e9)), draw(st.floats(1.0, 2e6))
    elif kind == 1:  # anything finite
        s = draw(st.floats(-1e300, 1e300, allow_nan=False))
        c = draw(st.floats(-1e300, 1e300, allow_nan=False))
    elif kind == 2:
        s, c = _ulp_multiple(draw)
    elif kind == 3:  # crossing zero and binades downwards
        s = draw(st.floats(-1.0, 1.0, allow_nan=False))
        c = -s / draw(st.integers(1, 3000)) * draw(st.floats(0.5, 2.0))
    else:  # the moments: tiny constants
        s, c = draw(st.floats(0.0, 1e-2)), draw(st.floats(-1e-9, 1e-9))
    return s, c, draw(st.integers(0, 3000))


@SETTINGS
@given(_sums())
# at a binade's bottom edge a step toward zero smaller than half a unit still moves s
@example((1.0, -0.3 * 2.0**-52, 40))
@example((-(2.0**-7), 0.3 * 2.0**-59, 40))
def test_add_n_is_the_plain_loop(case: tuple[float, float, int]) -> None:
    s, c, k = case
    assert _bits(_add_n(s, c, k)) == _bits(_add_loop(s, c, k)), case


def test_add_n_edges() -> None:
    for s, c, k in [(0.0, 0.0, 5), (-0.0, 0.0, 3), (-0.0, 0.0, 0), (1.0, np.inf, 50),
                    (np.inf, -1.0, 50), (np.nan, 1.0, 40), (1e308, 1e308, 40),
                    (5e-324, 5e-324, 100), (1.0, 1e-30, 10_000), (2.0**53, 1.0, 100),
                    (1e6, 1e6, 2520), (-(2.0**60), 3.0, 1000), (1.0, -0.75, 200),
                    (1.0, -0.3 * 2.0**-52, 40), (4.0, -0.49 * 2.0**-50, 40),
                    (1.0, -0.25 * 2.0**-52, 40), (1.0, 0.3 * 2.0**-52, 40),
                    # integers (the all-in bars' exposure count): the exact shortcut
                    (0.0, 1.0, 2520), (-0.0, 1.0, 9), (-5.0, 2.0, 7), (7.0, -3.0, 5),
                    (2.0**52 - 10.0, 1.0, 20), (2.0**51, 2.0**40, 4096)]:
        a, b = _add_n(s, c, k), _add_loop(s, c, k)
        assert _bits(a) == _bits(b) or (math.isnan(a) and math.isnan(b)), (s, c, k)
    assert ADD_N_MIN >= 4


# ------------------------------------------------------------------ cross_flips
def _scan_pairs(series: np.ndarray, a: np.ndarray, b: np.ndarray):
    """ma_cross's relation, bar by bar: (first bar both exist, its sign, the strict sign
    changes after it)."""
    out = []
    for i, j in zip(a.tolist(), b.tolist(), strict=True):
        first, sign0, bars, rel = -1, 0.0, [], 0
        for t in range(series.shape[0]):
            f, s = series[t, i], series[t, j]
            if np.isnan(f) or np.isnan(s):
                continue
            d = 1 if f > s else (-1 if f < s else 0)
            if first < 0:
                first, sign0, rel = t, float(d), d
            elif d != 0 and d != rel:
                bars.append(t)
                rel = d
        out.append((first if i != j else -1, sign0, bars if i != j else []))
    return out


@SETTINGS
@given(st.integers(2, 80), st.integers(1, 12), st.integers(0, 2**31 - 1), st.booleans())
def test_cross_flips_match_a_scan(T: int, K: int, seed: int, plateaus: bool) -> None:
    rng = np.random.default_rng(seed)
    series = np.cumsum(rng.normal(0, 1, (T, K)), axis=0)
    if plateaus:  # equal values after the start: the relation keeps its last strict sign
        series = np.round(series)
    for k in range(K):
        series[: rng.integers(0, T + 1), k] = np.nan
    R = int(rng.integers(1, 30))
    a, b = rng.integers(0, K, R), rng.integers(0, K, R)
    by_row = np.ascontiguousarray(series.T)  # cross_flips takes (K, T): a series a row
    ok, first, sign0, start, count, bars = cross_flips(by_row, a, b)
    want = _scan_pairs(series, a, b)
    if not ok:
        # refused only for a tie where a series starts
        starts = [int(np.argmax(~np.isnan(series[:, k]))) for k in range(K)
                  if not np.isnan(series[:, k]).all()]
        ties = any(not np.isnan(series[t, k]) and np.sum(series[t] == series[t, k]) > 1
                   for k in range(K) for t in starts)
        assert ties
        return
    for r, (f0, s0, flips) in enumerate(want):
        if f0 < 0:
            assert first[r] == -1
            continue
        assert (first[r], sign0[r]) == (f0, s0)
        assert bars[start[r]:start[r] + count[r]].tolist() == flips


def test_cross_flips_refuse_what_they_cannot_order() -> None:
    # (K, T): a series a row
    s = np.array([[1.0, 2.0, 3.0], [np.nan, 2.0, 1.0]])  # equal where the 2nd starts
    assert not cross_flips(s, np.array([0]), np.array([1]))[0]
    s = np.array([[1.0, np.nan, 3.0], [2.0, 2.0, 1.0]])  # a gap after the start
    assert not cross_flips(s, np.array([0]), np.array([1]))[0]


# ------------------------------------------------------------------ the fused runs
@st.composite
def fused_cases(draw: st.DrawFn):
    """A one-asset panel with a close on every bar, a small ma_cross grid, a config
    without stops (the fused path's domain), windows and PBO blocks."""
    T = draw(st.integers(2, MAX_T))
    panel = make_panel(T, 1, draw(st.integers(0, 2**31 - 1)), gaps=draw(st.booleans()),
                       tick_round=draw(st.booleans()), volatility=draw(
                           st.sampled_from([0.01, 0.03, 0.08])))
    allow_short = draw(st.booleans())
    zero_or = lambda hi: st.one_of(st.just(0.0), st.floats(0.0, hi))  # noqa: E731
    cfg = EngineConfig(
        init_cash=draw(st.floats(10_000.0, 1_000_000.0)),
        fill=draw(st.sampled_from(["next_open", "close"])),
        commission=draw(zero_or(0.01)), fixed_fee=draw(zero_or(50.0)),
        slippage=draw(zero_or(0.01)), fractional=draw(st.booleans()),
        min_trade_value=draw(st.one_of(st.just(0.0), st.floats(0.0, 2000.0))),
        min_weight_change=draw(st.one_of(st.just(0.0), st.floats(0.0, 0.05))),
        allow_short=allow_short,
        max_leverage=draw(st.floats(0.5, 2.0) if allow_short else
                          st.one_of(st.just(1.0), st.floats(0.5, 1.5))),
        risk_free=draw(st.one_of(st.just(0.0), st.floats(-0.02, 0.1))),
        periods_per_year=draw(st.one_of(st.none(), st.just(252.0))),
    )
    windows = [1, 2, 3, 5, 8, 13]
    grid = {"fast": draw(st.lists(st.sampled_from(windows), min_size=1, max_size=3,
                                  unique=True)),
            "slow": draw(st.lists(st.sampled_from(windows[1:]), min_size=1, max_size=3,
                                  unique=True)),
            "kind": draw(st.lists(st.sampled_from(["sma", "ema"]), min_size=1,
                                  max_size=2, unique=True)),
            "long_short": [draw(st.booleans())] if allow_short else [False]}
    if draw(st.booleans()):
        grid["commission"] = [0.0, 0.003]
    bounds = []
    for _ in range(draw(st.integers(1, 3))):
        t0 = draw(st.integers(0, T - 1))
        bounds.append((t0, draw(st.integers(t0 + 1, T))))
    return panel, grid, cfg, bounds, draw(st.sampled_from([0, 1, 3, 16]))


def _evaluate(strategy, panel: Panel, grid: dict, cfg: EngineConfig, bounds, blocks: int):
    table = Grid.build(strategy, grid).frame()
    try:
        frames = evaluate_windows(panel, strategy, table, cfg, bounds, blocks=blocks)
    except sweep.evaluate.ShortingError as exc:
        return str(exc)
    return [f.to_numpy() if not blocks else
            np.hstack([f.select(METRIC_NAMES).to_numpy()] +
                      [np.vstack(f[c].to_numpy()) for c in f.columns if c.startswith("block")])
            for f in frames]


@SETTINGS
@given(fused_cases())
def test_fused_runs_are_the_weights_path_to_the_bit(case) -> None:
    panel, grid, cfg, bounds, blocks = case
    none = np.empty(0)
    assert _fused_applies(MA, panel, [cfg], np.array(bounds), none, none)
    fused = _evaluate(MA, panel, grid, cfg, bounds, blocks)
    dense = _evaluate(MA_DENSE, panel, grid, cfg, bounds, blocks)
    if isinstance(dense, str):
        assert fused == dense  # the same refusal, named the same way
        return
    assert len(fused) == len(dense)
    for f, d in zip(fused, dense, strict=True):
        assert same_bits(f, d), np.argwhere(f.view(np.int64) != d.view(np.int64))[:5]


def _all_in_closes(edit: str, close: np.ndarray) -> np.ndarray:
    """Closes for the all-in loop's rare exits (bars 150-154 edited; the runs' signals
    stay those of the panel): a crash to 1e-17 of the price (the deepest drawdown rounds
    to 1, its limit to 0) then closes of 0, closes of 0 or below (no positive equity),
    the least positive double (equity in the subnormals)."""
    out = close.copy()
    bars = slice(150, 155)
    if edit == "crash":  # then no price: after the limit went to 0, no positive equity
        out[150:153] *= 1e-17
        out[153:155] = 0.0
    elif edit == "zero":
        out[bars] = 0.0
    elif edit == "negative":
        out[bars] *= -1.0
    else:
        out[bars] = 5e-324
    return out


@pytest.mark.parametrize("fill", ["close", "next_open"])
@pytest.mark.parametrize("edit", ["crash", "zero", "negative", "subnormal"])
def test_fused_all_in_edges_are_the_weights_path(edit: str, fill: str) -> None:
    """engine.nb.single's all-in loop (fractional, no costs: every entry spends all the
    cash) leaves a stretch to the general loop at a bar without positive equity or after
    which the drawdown limit is not positive: the bits stay the weights path's. Prices
    such as these cannot be in a Panel, so the kernels get the arrays directly."""
    panel = make_panel(300, 1, 3, gaps=False)
    grid = {"fast": [2, 3, 5], "slow": [8, 13, 21]}
    table = Grid.build(MA, grid).frame()
    data, rows = MA.prepare(panel, strategy_columns(MA, table))
    data, rows = np.ascontiguousarray(data), np.ascontiguousarray(rows)
    close = _all_in_closes(edit, panel.close[:, 0])
    open_ = _all_in_closes(edit, panel.open[:, 0])
    cfgs = pack_configs([EngineConfig(fill=fill, fractional=True, init_cash=1e6)])
    of_run = np.zeros(rows.shape[0], dtype=np.int64)
    bounds = np.array([[0, 300], [140, 300]], dtype=np.int64)
    ppy = np.full(2, 252.0)
    none = np.empty(0)
    fused, refused, _ = evaluate_block_single(MA.fused, data, rows, open_, close, cfgs,
                                              of_run, bounds, ppy, 0)
    as2d = [np.ascontiguousarray(a[:, None]) for a in (open_, close, close, close)]
    dense, dense_refused, _ = evaluate_block(
        MA.kernel, data, rows, *as2d, cfgs, of_run, np.empty((0, 0, 0)),
        np.full(1, -1, dtype=np.int64), bounds, ppy, 0, none, none)
    assert same_bits(fused, dense), np.argwhere(fused.view(np.int64) != dense.view(np.int64))[:5]
    assert np.array_equal(refused, dense_refused)
    weights, held = np.empty((300, 1)), 0
    for r in range(rows.shape[0]):  # runs that hold the asset into the edited bars
        MA.kernel(data, rows[r], weights)
        given_ = weights[:151, 0][np.isfinite(weights[:151, 0])]
        held += bool(given_.size and given_[-1] > 0.0)
    assert held >= 5


@pytest.mark.parametrize("cfg", [
    EngineConfig(fill="close", init_cash=1e6),
    EngineConfig(commission=0.001, slippage=0.0005, fractional=False),
    EngineConfig(commission=0.002, fixed_fee=3.0, risk_free=0.03, max_leverage=0.8,
                 min_weight_change=0.01, fill="close"),
    EngineConfig(allow_short=True, max_leverage=1.5, commission=0.0005),
])
def test_fused_sweep_equals_run_backtest(cfg: EngineConfig) -> None:
    """sweep.evaluate on one asset (the fused path) = run_backtest of the weights, to the
    bit, on the whole panel and in a date window."""
    from engine.data import synthetic_panel

    panel = synthetic_panel(n_assets=1, n_bars=600, seed=4, listing_fraction=0.0,
                            delisting_fraction=0.0, halt_probability=0.0)
    grid = {"fast": [2, 5, 20], "slow": [3, 50], "kind": ["sma", "ema"],
            "long_short": [False, True] if cfg.allow_short else [False]}
    table = Grid.build(MA, grid).frame()
    assert _fused_applies(MA, panel, [cfg], np.array([[0, 600]]), np.empty(0), np.empty(0))
    df = sweep.evaluate(panel, MA, grid, cfg, windows=[(None, None), ("2010-06-01", None)])
    assert df.height == 2 * table.height
    for row in df.iter_rows(named=True):
        params = {k: row[k] for k in grid}
        w = MA.weights(panel, **params)
        window = None if row["window"] == 0 else (row["window_start"], row["window_end"])
        ref = run_backtest(panel, w, cfg, window=window).metrics
        bad = {m: (row[m], ref[m]) for m in METRIC_NAMES
               if _bits(row[m]) != _bits(ref[m]) and not (math.isnan(row[m]) and
                                                          math.isnan(ref[m]))}
        assert not bad, (params, row["window"], bad)


def test_fused_path_only_where_it_applies() -> None:
    panel = make_panel(40, 1, 3)
    cfg = EngineConfig()
    whole = np.array([[0, 40]])
    none = np.empty(0)
    assert _fused_applies(MA, panel, [cfg], whole, none, none)
    assert not _fused_applies(MA_DENSE, panel, [cfg], whole, none, none)
    assert not _fused_applies(MA, make_panel(40, 2, 3), [cfg], whole, none, none)
    assert not _fused_applies(MA, panel, [cfg.replace(stop_loss=0.1)], whole, none, none)
    assert not _fused_applies(MA, panel, [cfg], whole, np.zeros(40), none)
    assert not _fused_applies(MA, panel, [cfg], whole, none, np.zeros(40))
    gap = make_panel(40, 1, 3, halts=True)
    assert not np.isfinite(gap.close).all()
    assert not _fused_applies(MA, gap, [cfg], whole, none, none)


def test_crosses_found_once_for_the_grid_or_scanned() -> None:
    """prepare finds every run's crosses on a one-asset panel; with prices on a grid of
    ticks two averages can be equal where one starts, and then the fused kernel scans
    the averages itself: the same bits either way (the property test covers both)."""
    from sweep.grid import strategy_columns

    panel = make_panel(MAX_T, 1, 11)
    table = Grid.build(MA, {"fast": [2, 3], "slow": [5, 8]}).frame()
    _, rows = MA.prepare(panel, strategy_columns(MA, table))
    assert (rows[:, CROSS_AT] >= 0).all()
    flat = Panel.from_arrays(panel.timestamps, panel.assets,
                             close=np.full(panel.shape, 100.0))
    _, rows = MA.prepare(flat, strategy_columns(MA, table))
    assert (rows[:, CROSS_AT] < 0).all()
    a = _evaluate(MA, flat, {"fast": [2, 3], "slow": [5, 8]}, EngineConfig(), [(0, MAX_T)], 0)
    b = _evaluate(MA_DENSE, flat, {"fast": [2, 3], "slow": [5, 8]}, EngineConfig(),
                  [(0, MAX_T)], 0)
    assert same_bits(a[0], b[0])
