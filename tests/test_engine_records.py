"""Named slots and derived records: metric slots by name, the packed config derived from
the EngineConfig fields, simulate's named result, strategy row columns by name, each
metric formula written once (the standalone functions give the fused pass's bits), and the
bar loop's helpers compiled without reference counting."""

from __future__ import annotations

import dataclasses
import importlib
import math
import typing

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine.nb.metrics as nbm
import strategies
from engine import METRIC_NAMES, EngineConfig
from engine.config import CONFIG_DTYPE, DERIVED_FIELDS, PYTHON_ONLY, pack_configs
from engine.data import synthetic_panel
from engine.metrics import (
    cagr,
    kurtosis,
    max_drawdown,
    max_drawdown_duration,
    metrics_vector,
    sharpe,
    simple_returns,
    skew,
    sortino,
    volatility,
)
from engine.nb import fills, stops
from engine.nb import simulate as nb_simulate
from engine.nb.layout import ACCT_FIELDS, BOOK_FIELDS, CASH, LOG_FIELDS
from engine.nb.simulate import SimResult, last_valid_bars, simulate
from engine.nb.weights import scan_weights

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------ metric slots
def test_every_metric_has_a_named_slot() -> None:
    for i, name in enumerate(METRIC_NAMES):
        assert getattr(nbm, name.upper()) == i, name
    assert nbm.N_METRICS == len(METRIC_NAMES) == len(set(METRIC_NAMES))


# ------------------------------------------------------------------ one formula each
def _bits(x: float) -> int:
    return int(np.float64(x).view(np.int64))


def equity_curves() -> st.SearchStrategy[np.ndarray]:
    """Equity curves of 1..300 bars: random walks, flat runs, ruin (0 then inf/nan
    returns), exact repeats."""
    step = st.one_of(st.floats(-0.2, 0.2), st.just(0.0), st.just(-1.0))
    return st.lists(step, min_size=1, max_size=300).map(
        lambda steps: 1000.0 * np.cumprod(1.0 + np.array(steps)))


@SETTINGS
@given(equity_curves(), st.sampled_from([252.0, 52.0, 365.25, 1638.0]))
def test_standalone_metrics_are_the_fused_pass_to_the_bit(equity: np.ndarray,
                                                           ppy: float) -> None:
    init = 1000.0
    fused = metrics_vector(equity, np.zeros_like(equity), init, ppy, 0.0, 0.0, 0.0, 0.0,
                           0.0, 0.0, 0.0)
    r = simple_returns(equity, init)
    alone = {
        "sharpe": sharpe(r, ppy), "sortino": sortino(r, ppy), "volatility": volatility(r, ppy),
        "skew": skew(r), "kurtosis": kurtosis(r), "max_drawdown": max_drawdown(equity, init),
        "max_drawdown_duration": max_drawdown_duration(equity, init),
        "cagr": cagr(equity, init, ppy),
    }
    for name, value in alone.items():
        want = fused[METRIC_NAMES.index(name)]
        assert _bits(value) == _bits(want) or (math.isnan(value) and math.isnan(want)), \
            (name, value, want)


def test_standalone_metrics_on_empty_and_tiny_inputs() -> None:
    assert simple_returns(np.empty(0), 1.0).shape == (0,)
    one = np.array([0.01])
    assert math.isnan(sharpe(one, 252.0)) and math.isnan(volatility(one, 252.0))
    assert math.isnan(skew(one)) and math.isnan(kurtosis(one))
    assert math.isnan(sortino(np.array([0.01, 0.02]), 252.0))  # no negative return
    assert max_drawdown(np.array([100.0, 50.0, 100.0]), 100.0) == 0.5
    assert max_drawdown_duration(np.array([100.0, 50.0, 60.0, 100.0]), 100.0) == 2


# ------------------------------------------------------------------ the packed config
def test_config_dtype_is_derived_from_the_fields() -> None:
    hints = typing.get_type_hints(EngineConfig)
    kernel = [f.name for f in dataclasses.fields(EngineConfig) if f.metadata != PYTHON_ONLY]
    assert list(CONFIG_DTYPE.names) == kernel + list(DERIVED_FIELDS)
    for name in kernel:
        kind = CONFIG_DTYPE.fields[name][0].kind
        want = {bool: "b", int: "i"}.get(hints[name], "f")  # float and float | None: f
        assert kind == want, (name, kind, hints[name])


@pytest.mark.parametrize("cfg", [
    EngineConfig(),
    EngineConfig(fill="close", commission=0.001, fixed_fee=2.0, slippage=0.0005,
                 fractional=False, min_trade_value=10.0, min_weight_change=0.01,
                 allow_short=True, max_leverage=2.0, stop_loss=0.1, take_profit=0.2,
                 trailing_stop=0.05, atr_stop=3.0, atr_window=7, periods_per_year=52.0),
])
def test_pack_configs_copies_every_kernel_field(cfg: EngineConfig) -> None:
    rec = pack_configs([cfg, EngineConfig()])[0]
    for name in CONFIG_DTYPE.names:
        want = DERIVED_FIELDS[name][1](cfg) if name in DERIVED_FIELDS else getattr(cfg, name)
        got = rec[name].item()
        assert got == want or (want is None and math.isnan(got)), (name, got, want)
    assert bool(rec["fill_close"]) == (cfg.fill == "close")
    assert bool(rec["cash_account"]) == cfg.cash_account


# ------------------------------------------------------------------ simulate's result
def test_simulate_returns_named_fields() -> None:
    panel = synthetic_panel(n_assets=3, n_bars=60, seed=4, listing_fraction=0)
    w = np.full(panel.shape, np.nan)
    w[5] = 0.3
    log = np.empty((16, LOG_FIELDS))
    sim = simulate(panel.open, panel.high, panel.low, panel.close, w, scan_weights(w)[0],
                   pack_configs([EngineConfig()])[0], last_valid_bars(panel.close),
                   np.empty((0, 0)), 2, log, 252.0, np.empty((0, 3)), np.empty(0), np.empty(0))
    assert isinstance(sim, SimResult) and sim._fields == SimResult._fields
    assert sim.equity.shape == sim.cash.shape == (panel.n_bars,)
    assert sim.positions.shape == panel.shape
    assert sim.n_trades == 3 and sim.metrics.shape == (len(METRIC_NAMES),)
    assert sim.metrics[METRIC_NAMES.index("final_equity")] == sim.equity[-1]


# ------------------------------------------------------------------ the loop's helpers
def _helper_calls() -> list[tuple[typing.Any, tuple]]:
    """Each helper the bar loop calls (not inlines), with arguments of the bar loop's
    types."""
    book = np.zeros((BOOK_FIELDS, 3))
    acct = np.zeros(ACCT_FIELDS)
    acct[CASH] = 1000.0
    rec = pack_configs([EngineConfig(stop_loss=0.1, trailing_stop=0.1)])[0]
    w = np.full((4, 3), np.nan)
    rows = np.zeros(4, dtype=np.bool_)
    return [
        (fills.fill_order, (book, acct, rec, 1, 2.0, 10.0, 0, 0, np.nan, np.empty(LOG_FIELDS))),
        (stops.check_stop, (book, 1, rec, 10.0, 11.0, 9.0)),
        (stops.update_trailing, (book, 1, 11.0, 9.0)),
        (nb_simulate._instructed, (w, rows, 0)),
        (nb_simulate._span_end, (w, rows, 0, 4)),
        (nb_simulate._held_assets, (book, np.empty(3, dtype=np.int64))),
    ]


def _compiled_asm(helper: typing.Any, args: tuple, **options: typing.Any) -> str:
    """The machine code of ``helper`` compiled afresh (the cached code cannot be
    inspected) with its own options, changed by ``options``."""
    own = {k: v for k, v in helper.targetoptions.items() if k != "nopython"}  # njit's own
    fresh = numba.njit(**{**own, "cache": False, **options})(helper.py_func)
    fresh(*args)
    return fresh.inspect_asm(fresh.signatures[0])


@pytest.mark.parametrize("helper, args", _helper_calls(),
                         ids=[helper.__name__ for helper, _ in _helper_calls()])
def test_loop_helpers_make_no_reference_counting_calls(helper, args) -> None:
    """The helpers the bar loop calls per fill, per held asset and per span are compiled
    without Numba's reference counting (engine.nb.jit.loop_helper): with it, each call
    increfs and decrefs every array argument (~25 % of a rebalancing backtest)."""
    assert "NRT_incref" not in _compiled_asm(helper, args)
    if helper is fills.fill_order:  # the check sees the counting where it is compiled in
        assert "NRT_incref" in _compiled_asm(helper, args, _nrt=True)


# ------------------------------------------------------------------ the weights' one pass
@settings(max_examples=60, deadline=None)
@given(T=st.integers(0, 40), N=st.integers(1, 70), seed=st.integers(0, 2**32 - 1),
       p_nan=st.sampled_from([0.0, 0.5, 0.97, 1.0]))
def test_scan_weights_agrees_with_numpy(T: int, N: int, seed: int, p_nan: float) -> None:
    """The one pass finds what numpy's separate passes find: rows holding a non-NaN
    weight, and the numbers of finite, infinite and negative weights (rows of more than
    64 assets cross the bar loop's stride too)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(T, N))
    w[rng.random((T, N)) < p_nan] = np.nan
    w[rng.random((T, N)) < 0.02] = np.inf
    w[rng.random((T, N)) < 0.02] = -np.inf
    rows, counts = scan_weights(w)
    assert rows.tolist() == (~np.isnan(w)).any(axis=1).tolist()
    assert counts.tolist() == [int(np.isfinite(w).sum()), int(np.isinf(w).sum()),
                               int((w < 0).sum())]


@pytest.mark.parametrize("cfg", [
    EngineConfig(),
    EngineConfig(fill="close", commission=0.001),
    EngineConfig(allow_short=True, max_leverage=2.0, stop_loss=0.05, trailing_stop=0.04),
    EngineConfig(fill="close", fractional=False, take_profit=0.03, min_weight_change=0.01),
])
def test_simulate_same_bits_with_or_without_the_scanned_rows(cfg: EngineConfig) -> None:
    """The bar loop told which rows hold instructions (run_backtest, run_batch) and the
    loop reading each row itself (a sweep's kernels) give the same bits: every series,
    the trades and the metrics, on a panel with listings, delistings and halts whose
    weights rebalance every few bars (quiet spans between)."""
    panel = synthetic_panel(n_assets=90, n_bars=400, seed=11)
    rng = np.random.default_rng(5)
    w = np.full(panel.shape, np.nan)
    for t in range(0, panel.n_bars, 7):
        w[t] = np.where(rng.random(panel.n_assets) < 0.2, 1.0 / 18, 0.0)
        if cfg.allow_short:
            w[t] *= np.where(rng.random(panel.n_assets) < 0.3, -1.0, 1.0)
    w[np.isnan(panel.close)] = np.nan
    rows = scan_weights(w)[0]
    assert 0 < rows.sum() < panel.n_bars
    rec = pack_configs([cfg])[0]
    last = last_valid_bars(panel.close)
    assert ((last >= 0) & (last < panel.n_bars - 1)).any()  # delistings end some spans
    atr = np.empty((0, 0))
    sims = []
    for r in (rows, np.empty(0, dtype=np.bool_)):
        log = np.empty((4096, LOG_FIELDS))
        sim = simulate(panel.open, panel.high, panel.low, panel.close, w, r, rec, last, atr,
                       2, log, 252.0, np.empty((0, 3)), np.empty(0), np.empty(0))
        assert 0 < sim.n_trades <= log.shape[0]
        sims.append((sim, log[:sim.n_trades]))
    (a, log_a), (b, log_b) = sims
    for name in ("equity", "cash", "exposure", "fees", "notional", "positions", "acct",
                 "metrics"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert log_a.tobytes() == log_b.tobytes()


# ------------------------------------------------------------------ strategy rows
@pytest.mark.parametrize("name", list(strategies.BUILTIN_NAMES))
def test_strategy_rows_have_named_columns(name: str) -> None:
    """Each built-in's rows have one column per named constant, 0..ROW_FIELDS-1, shared by
    its _prepare (which writes them) and its kernel (which reads them)."""
    s = strategies.get(name)
    module = importlib.import_module(f"strategies.{name}")
    width = module.ROW_FIELDS
    names = [k for k, v in vars(module).items()
             if k.isupper() and isinstance(v, int) and not isinstance(v, bool)
             and k != "ROW_FIELDS"]
    assert sorted(getattr(module, k) for k in names) == list(range(width)), names
    panel = synthetic_panel(n_assets=4, n_bars=300, seed=1)
    cols = {k: np.array([p.default, p.default]) for k, p in s.params.items()}
    _data, rows = s.prepare(panel, cols)
    assert rows.shape == (2, width) and rows.flags.c_contiguous and rows.dtype == np.float64
    assert np.isfinite(rows).all()
