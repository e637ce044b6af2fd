"""Benchmark and risk-free rate (docs/engine.md "Benchmark and risk-free rate").

The engine's alpha, beta, information ratio, tracking error, excess return and its excess-
return Sharpe and Sortino are checked against an external library (empyrical-reloaded) on
the same returns, against the reference loop's plain-Python definitions on random cases,
and across the ways of running them (run_backtest, run_batch, windows, sweep.evaluate,
evaluate_windows with a market), which must agree to the bit.
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import empyrical as ep
import numpy as np
import polars as pl
import pytest
from gen import CaseSpec, build_case, case_specs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_loop import benchmark_of, compute_metrics
from test_reference_parity import (
    assert_matches_reference,
    assert_metrics_match_definitions,
    engine_trades,
)

import strategies
import sweep
from engine import (
    METRIC_NAMES,
    EngineConfig,
    MarketSeries,
    Panel,
    load_series,
    market_series,
    run_backtest,
    run_batch,
)
from engine.data import synthetic_panel
from engine.metrics import bars_per_year, metrics_vector, simple_returns
from engine.series import align_series
from sweep.evaluate import evaluate_windows
from sweep.grid import Grid, GridError

BENCH_METRICS = ("alpha", "beta", "information_ratio", "tracking_error", "excess_return")
RTOL = 1e-9
SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def panel() -> Panel:
    return synthetic_panel(n_assets=8, n_bars=900, seed=11, listing_fraction=0)


def _weights(panel: Panel, name: str = "top_n", **params: object) -> np.ndarray:
    return strategies.get(name).weights(panel, **params)


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _close(a: float, b: float, rtol: float = RTOL, atol: float = 1e-12) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= atol + rtol * abs(b)


def _bench_returns(prices: np.ndarray) -> np.ndarray:
    """Close-to-close returns of carried-forward prices, 0 on the first bar (numpy)."""
    p = pl.Series(prices).fill_nan(None).forward_fill().to_numpy()
    return np.concatenate([[0.0], p[1:] / p[:-1] - 1.0])


# ------------------------------------------------------------------ schema
def test_names_always_present_nan_without_a_benchmark(panel: Panel) -> None:
    assert set(BENCH_METRICS) <= set(METRIC_NAMES)
    res = run_backtest(panel, _weights(panel), EngineConfig())
    assert all(math.isnan(res.metrics[m]) for m in BENCH_METRICS)
    df = sweep.evaluate(panel, "top_n", {"n": [2, 3]})
    assert all(df[m].is_nan().all() for m in BENCH_METRICS)


def test_zero_rate_is_todays_sharpe_to_the_bit(panel: Panel) -> None:
    w = _weights(panel)
    a = run_backtest(panel, w, EngineConfig()).metrics
    b = run_backtest(panel, w, EngineConfig(risk_free=0.0)).metrics
    c = run_backtest(panel, w, EngineConfig(), risk_free=np.zeros(panel.n_bars)).metrics
    assert all(_same(a[m], b[m]) for m in METRIC_NAMES)
    # a zero series takes the series path: the same numbers, not necessarily the same bits
    assert all(_close(a[m], c[m]) for m in ("sharpe", "sortino"))


# ------------------------------------------------------------------ against empyrical
@pytest.mark.parametrize("fill", ["close", "next_open"])
@pytest.mark.parametrize("rate", [0.0, 0.035])
@pytest.mark.parametrize("ppy", [None, 52.0])
def test_against_empyrical_constant_rate_and_asset_benchmark(panel: Panel, fill: str,
                                                              rate: float,
                                                              ppy: float | None) -> None:
    cfg = EngineConfig(fill=fill, commission=0.001, risk_free=rate, benchmark=panel.assets[3],
                       periods_per_year=ppy)
    res = run_backtest(panel, _weights(panel, n=3, rebalance_every=7), cfg)
    P = bars_per_year(panel.timestamps, ppy)
    r = simple_returns(res.equity, cfg.init_cash)
    b = _bench_returns(panel.close[:, 3])
    rf = (1.0 + rate) ** (1.0 / P) - 1.0
    m = res.metrics
    alpha, beta = ep.alpha_beta(r, b, risk_free=rf, annualization=P)
    want = {
        "sharpe": ep.sharpe_ratio(r, risk_free=rf, annualization=P),
        "sortino": ep.sortino_ratio(r, required_return=rf, annualization=P),
        "alpha": alpha,
        "beta": beta,
        # empyrical's excess Sharpe is per period; the engine annualises it like Sharpe
        "information_ratio": ep.excess_sharpe(r, b) * math.sqrt(P),
        "tracking_error": ep.annual_volatility(r - b, annualization=P),
        "excess_return": ep.cum_returns_final(r) - ep.cum_returns_final(b),
        "volatility": ep.annual_volatility(r, annualization=P),
    }
    for name, value in want.items():
        assert _close(m[name], float(value)), (name, m[name], value)


def test_against_empyrical_risk_free_series_and_price_benchmark(panel: Panel) -> None:
    """A varying rate: Sharpe and Sortino of r - rf[t] as empyrical's with an array rate.
    Deliberate difference: beta regresses EXCESS returns (r - rf on b - rf, CAPM), where
    empyrical's beta ignores its risk_free argument; alpha is empyrical's formula with that
    beta. With a constant rate both betas are the same (a shift changes no covariance)."""
    rng = np.random.default_rng(3)
    annual = np.clip(0.02 + np.cumsum(rng.normal(0, 0.001, panel.n_bars)), 0.0, 0.2)
    prices = 100 * np.cumprod(1 + rng.normal(0.0003, 0.01, panel.n_bars))
    prices[rng.random(panel.n_bars) < 0.05] = np.nan  # holidays of the benchmark: carried
    prices[0] = 100.0
    cfg = EngineConfig(fill="close", periods_per_year=252.0)
    res = run_backtest(panel, _weights(panel, "momentum", lookback=60, skip=5), cfg,
                       benchmark_prices=prices, risk_free=annual)
    P = 252.0
    r = simple_returns(res.equity, cfg.init_cash)
    b = _bench_returns(prices)
    rf = (1.0 + annual) ** (1.0 / P) - 1.0
    m = res.metrics
    assert _close(m["sharpe"], ep.sharpe_ratio(r, risk_free=rf, annualization=P))
    assert _close(m["sortino"], ep.sortino_ratio(r, required_return=rf, annualization=P))
    e, be = r - rf, b - rf
    beta = np.mean((e - e.mean()) * (be - be.mean())) / np.var(be)
    assert _close(m["beta"], beta)
    alpha = ep.alpha_aligned(r, b, risk_free=rf, annualization=P, _beta=beta)
    assert _close(m["alpha"], float(alpha))
    assert not _close(m["beta"], ep.beta(r, b, risk_free=rf))  # empyrical: raw returns
    assert _close(m["tracking_error"], ep.annual_volatility(r - b, annualization=P))
    assert _close(m["excess_return"], ep.cum_returns_final(r) - ep.cum_returns_final(b))


def test_flat_benchmark_has_no_beta(panel: Panel) -> None:
    res = run_backtest(panel, _weights(panel), EngineConfig(),
                       benchmark_prices=np.full(panel.n_bars, 50.0))
    m = res.metrics
    assert math.isnan(m["beta"]) and math.isnan(m["alpha"])
    assert _close(m["excess_return"], m["total_return"])
    assert _close(m["tracking_error"], m["volatility"])


# ------------------------------------------------------------------ the reference loop
@st.composite
def market_cases(draw: st.DrawFn) -> tuple[CaseSpec, dict[str, object]]:
    spec = draw(case_specs())
    panel, _, _ = build_case(spec)
    rng = np.random.default_rng(spec.seed + 7)
    kw: dict[str, object] = {}
    cfg_kw: dict[str, object] = {}
    rate = draw(st.sampled_from(["none", "constant", "series"]))
    if rate == "constant":
        cfg_kw["risk_free"] = draw(st.floats(-0.05, 0.2))
    elif rate == "series":
        annual = rng.uniform(0.0, 0.1, spec.T)
        annual[rng.random(spec.T) < 0.3] = np.nan  # no new value: carried forward
        annual[0] = 0.04
        kw["risk_free"] = annual
    bench = draw(st.sampled_from(["none", "asset", "prices"]))
    listed = [a for n, a in enumerate(panel.assets) if np.isfinite(panel.close[:, n]).any()]
    if bench == "asset" and listed:  # (an asset with no bar at all is refused: tested)
        cfg_kw["benchmark"] = draw(st.sampled_from(listed))
    elif bench == "prices":
        prices = 50 * np.cumprod(1 + rng.normal(0, 0.02, spec.T))
        prices[rng.random(spec.T) < 0.2] = np.nan
        prices[-1] = 50.0  # at least one price (a series with none is refused: tested)
        kw["benchmark_prices"] = prices
    return CaseSpec(**{**spec.__dict__, "cfg": spec.cfg.replace(**cfg_kw)}), kw


@SETTINGS
@given(market_cases())
def test_metrics_match_the_reference_definitions(case: tuple[CaseSpec, dict]) -> None:
    """Random cases (late listings, halts, NaN benchmark bars, rates carried forward): the
    engine's metrics == tests/reference_loop.py's plain-Python definitions on the engine's
    own series. (An information ratio whose active returns are rounding noise, the run
    being the benchmark itself, is a ratio of noise: not compared.)"""
    spec, kw = case
    panel, weights, cfg = build_case(spec)
    res = run_backtest(panel, weights, cfg, **kw)
    want = compute_metrics(res.equity, res.exposure, res.fees, res.turnover,
                           engine_trades(res, panel), cfg, panel.timestamps,
                           benchmark_prices=benchmark_of(panel, cfg,
                                                         kw.get("benchmark_prices")),
                           risk_free=kw.get("risk_free"))
    noise = abs(want["tracking_error"]) < 1e-9
    for name in METRIC_NAMES:
        if name == "information_ratio" and noise:
            continue
        assert _close(res.metrics[name], want[name]), (name, res.metrics[name], want[name])


def test_reference_loop_with_a_benchmark_and_a_rate_series() -> None:
    """The whole reference run (series, trades, metrics) on a hand-sized case."""
    spec = CaseSpec(T=40, N=3, seed=5, cfg=EngineConfig(fill="close", benchmark="A1",
                                                        commission=0.001), halts=True)
    panel, weights, cfg = build_case(spec)
    annual = np.linspace(0.01, 0.05, spec.T)
    assert_matches_reference(panel, weights, cfg)
    res = run_backtest(panel, weights, cfg, risk_free=annual)
    assert_metrics_match_definitions(res, panel, cfg, risk_free=annual)
    assert all(np.isfinite(res.metrics[m]) for m in BENCH_METRICS)


# ------------------------------------------------------------------ one answer every way
def test_metrics_vector_is_the_engines_pass(panel: Panel) -> None:
    rng = np.random.default_rng(0)
    annual = rng.uniform(0.0, 0.05, panel.n_bars)
    cfg = EngineConfig(fill="close", benchmark=panel.assets[0])
    res = run_backtest(panel, _weights(panel), cfg, risk_free=annual)
    mkt = market_series(panel, cfg, risk_free=annual)
    got = metrics_vector(res.equity, res.exposure, cfg.init_cash, bars_per_year(panel.timestamps),
                         float(np.cumsum(res.fees)[-1]), float(np.cumsum(res.turnover)[-1]),
                         res.metrics["n_trades"], 0.0, 0.0, 0.0, 0.0, 0.0,
                         mkt.benchmark_returns, mkt.risk_free)
    for k, name in enumerate(METRIC_NAMES):
        if name not in ("win_rate", "profit_factor"):
            assert _same(got[k], res.metrics[name]), name


def test_run_batch_equals_run_backtest(panel: Panel) -> None:
    w = _weights(panel)
    prices = panel.close[:, 2] * 1.5
    cfgs = [EngineConfig(risk_free=0.01), EngineConfig(risk_free=0.04, commission=0.002)]
    df = run_batch(panel, w, cfgs, benchmark_prices=prices)
    for i, cfg in enumerate(cfgs):
        ref = run_backtest(panel, w, cfg, benchmark_prices=prices).metrics
        assert all(_same(df[m][i], ref[m]) for m in METRIC_NAMES)
    with pytest.raises(ValueError, match="disagree on benchmark"):
        run_batch(panel, w, [EngineConfig(benchmark="A1"), EngineConfig(benchmark="A2")])


WINDOWS = [(None, "2010-12-31"), ("2010-07-01", "2011-09-30"), ("2011-10-01", None)]


@pytest.mark.parametrize("rate", [0.0, 0.05])
def test_sweep_evaluate_equals_run_backtest_with_config_benchmark(panel: Panel,
                                                                  rate: float) -> None:
    """(The rate is the sweep's, not a grid axis: one market for all its runs.)"""
    cfg = EngineConfig(benchmark=panel.assets[5], risk_free=rate, commission=0.001)
    df = sweep.evaluate(panel, "ma_cross", {"fast": [5, 10], "slow": [30]}, cfg,
                        windows=WINDOWS)
    s = strategies.get("ma_cross")
    for row in df.iter_rows(named=True):
        w = s.weights(panel, fast=row["fast"], slow=row["slow"])
        ref = run_backtest(panel, w, cfg, window=WINDOWS[row["window"]]).metrics
        bad = {m: (row[m], ref[m]) for m in METRIC_NAMES if not _same(row[m], ref[m])}
        assert not bad, (row["run"], bad)
    assert df["beta"].is_finite().all()


def test_evaluate_windows_with_a_market_equals_run_backtest(panel: Panel) -> None:
    """The sweep's entry point for series files: one MarketSeries for every run and
    window, sliced like the prices."""
    rng = np.random.default_rng(8)
    annual = rng.uniform(0.0, 0.06, panel.n_bars)
    prices = 100 * np.cumprod(1 + rng.normal(0, 0.01, panel.n_bars))
    cfg = EngineConfig(fill="close")
    mkt = market_series(panel, cfg, benchmark_prices=prices, risk_free=annual)
    s = strategies.get("mean_reversion")
    table = Grid.build(s, {"period": [10, 20]}, []).frame()
    bounds = [panel.index_range(*w) for w in WINDOWS]
    frames = evaluate_windows(panel, s, table, cfg, bounds, market=mkt)
    for k, frame in enumerate(frames):
        for i, row in enumerate(table.iter_rows(named=True)):
            w = s.weights(panel, period=row["period"])
            ref = run_backtest(panel, w, cfg, window=WINDOWS[k], benchmark_prices=prices,
                               risk_free=annual).metrics
            assert all(_same(frame[m][i], ref[m]) for m in METRIC_NAMES), (k, i)


def test_a_window_starts_its_benchmark_at_its_first_close(panel: Panel) -> None:
    """A window's first benchmark return is 0 whatever the bar before it did: the same
    run on the panel cut to the window gives the same bits."""
    cfg = EngineConfig(benchmark=panel.assets[1], periods_per_year=252.0, risk_free=0.02)
    w = _weights(panel)
    annual = np.linspace(0.0, 0.05, panel.n_bars)
    i0, i1 = panel.index_range("2011-03-01", "2012-03-01")
    for kw, cut in (({}, {}), ({"risk_free": annual}, {"risk_free": annual[i0:i1]})):
        c = cfg.replace(risk_free=0.0) if kw else cfg
        a = run_backtest(panel, w, c, window=("2011-03-01", "2012-03-01"), **kw).metrics
        b = run_backtest(panel.take(i0, i1), w[i0:i1], c, **cut).metrics
        assert all(_same(a[m], b[m]) for m in METRIC_NAMES)


def test_block_stats_are_of_excess_returns(panel: Panel) -> None:
    """PBO's per-block sums are of the returns the Sharpe ratio is a ratio of."""
    s = strategies.get("top_n")
    table = Grid.build(s, {"n": [2]}, []).frame()
    annual = np.linspace(0.0, 0.05, panel.n_bars)
    for cfg, kw in ((EngineConfig(risk_free=0.03), {}), (EngineConfig(), {"risk_free": annual})):
        mkt = market_series(panel, cfg, **kw)
        frame = evaluate_windows(panel, s, table, cfg, [(0, panel.n_bars)], blocks=4,
                                 market=mkt)[0]
        res = run_backtest(panel, s.weights(panel, n=2), cfg, **kw)
        P = bars_per_year(panel.timestamps)
        rf = (1.03 ** (1 / P) - 1) if not kw else mkt.risk_free
        e = simple_returns(res.equity, cfg.init_cash) - rf
        edges = np.arange(5) * panel.n_bars // 4
        want = [e[edges[b]:edges[b + 1]].sum() for b in range(4)]
        np.testing.assert_allclose(frame["block_sum"][0].to_numpy(), want, rtol=1e-12,
                                   atol=1e-15)


def test_nan_benchmark_bars_make_nan_metrics_only_where_used(panel: Panel) -> None:
    prices = panel.close[:, 0].copy()
    prices[:300] = np.nan  # listed late
    w = _weights(panel)
    whole = run_backtest(panel, w, EngineConfig(), benchmark_prices=prices).metrics
    later = run_backtest(panel, w, EngineConfig(), benchmark_prices=prices,
                         window=(panel.timestamps[300], None)).metrics
    assert all(math.isnan(whole[m]) for m in BENCH_METRICS)
    assert all(np.isfinite(later[m]) for m in BENCH_METRICS)


# ------------------------------------------------------------------ series in, series out
def test_market_series_conversion_and_alignment(panel: Panel) -> None:
    cfg = EngineConfig(periods_per_year=252.0)
    m = market_series(panel, cfg, risk_free=np.full(panel.n_bars, 0.05))
    np.testing.assert_allclose((1 + m.risk_free) ** 252, 1.05, rtol=1e-13)
    assert m.periods_per_year == 252.0 and not m.has_benchmark
    dates = panel.timestamps[::20]
    m2 = market_series(panel, cfg, risk_free=(dates, np.linspace(0.01, 0.02, dates.size)))
    assert np.isfinite(m2.risk_free).all()
    assert m2.risk_free[1] == m2.risk_free[19] < m2.risk_free[20]
    with pytest.raises(ValueError, match="annualised at"):
        m.kernel_arrays(np.array([252.0, 250.0]))


def test_align_series_is_as_of_and_load_series_reads_files(tmp_path: Path) -> None:
    ts = np.array(["2024-01-02T09:30", "2024-01-02T15:30", "2024-01-03T09:30",
                   "2024-01-05T09:30"], dtype="datetime64[ns]")
    dates = np.array(["2024-01-01", "2024-01-03", "2024-01-04"], dtype="datetime64[D]")
    assert align_series(dates, [1.0, 2.0, np.nan], ts).tolist() == [1.0, 1.0, 2.0, 2.0]
    with pytest.raises(ValueError, match="two values dated"):
        align_series(np.array(["2024-01-01"] * 2, dtype="datetime64[D]"), [1.0, 2.0], ts)
    csv = "observation_date,DGS3MO\n2024-01-01,5.25\n2024-01-03,.\n2024-01-04,5.10\n"
    (tmp_path / "rf.csv").write_text(csv)
    with gzip.open(tmp_path / "rf.csv.gz", "wt") as f:
        f.write(csv)
    pl.DataFrame({"Date": dates, "Close": [10.0, 11.0, 12.0], "Volume": [1, 2, 3]}) \
        .write_parquet(tmp_path / "spy.parquet")
    want = [0.0525, 0.0525, 0.0525, 0.051]
    np.testing.assert_allclose(load_series(tmp_path / "rf.csv", ts, scale=0.01), want)
    np.testing.assert_allclose(load_series(tmp_path / "rf.csv.gz", ts, scale=0.01), want)
    assert load_series(tmp_path / "spy.parquet", ts).tolist() == [10.0, 10.0, 11.0, 12.0]
    assert load_series(tmp_path / "spy.parquet", ts, column="volume").tolist() == [1, 1, 2, 3]
    with pytest.raises(ValueError, match="no column 'nope'"):
        load_series(tmp_path / "spy.parquet", ts, column="nope")


@pytest.mark.parametrize(("cfg", "kw", "match"), [
    (EngineConfig(benchmark="A0009"), {}, r"'A0009' is not an asset.*did you mean 'A0007'"),
    (EngineConfig(benchmark="A1"), {"benchmark_prices": np.ones(900)}, "two benchmarks"),
    (EngineConfig(risk_free=0.02), {"risk_free": np.zeros(900)}, "two risk-free rates"),
    (EngineConfig(), {"risk_free": np.full(900, 5.25)}, "percentages need scale=0.01"),
    (EngineConfig(), {"risk_free": np.zeros(10)}, r"shape \(10,\)"),
    (EngineConfig(), {"benchmark_prices": np.full(900, np.nan)}, "no price on any bar"),
    (EngineConfig(), {"benchmark_prices": -np.ones(900)}, "positive finite"),
])
def test_bad_series_are_named(panel: Panel, cfg: EngineConfig, kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        run_backtest(panel, _weights(panel), cfg, **kw)


def test_config_fields_are_checked() -> None:
    with pytest.raises(ValueError, match="risk_free is an annual rate"):
        EngineConfig(risk_free=-1.5)
    with pytest.raises(ValueError, match="benchmark must be an asset name"):
        EngineConfig(benchmark="")
    assert EngineConfig.from_dict({"risk_free": 0.02, "benchmark": "SPY"}).benchmark == "SPY"
    assert isinstance(market_series(synthetic_panel(n_assets=2, n_bars=20, seed=0)),
                      MarketSeries)


def test_the_benchmark_is_not_a_grid_axis(panel: Panel) -> None:
    """One market for all the runs: a grid asking for other benchmarks or rates is an
    error (the grid refuses the axes), not silently the market's."""
    with pytest.raises(GridError, match="nor an engine field"):
        sweep.evaluate(panel, "top_n", {"benchmark": [panel.assets[0], panel.assets[1]]},
                       EngineConfig(benchmark=panel.assets[0]))
    with pytest.raises(GridError, match="nor an engine field"):
        Grid.build(strategies.get("top_n"), {"risk_free": [0.0, 0.02]}, [])
