"""sweep.analysis: notebook helpers on a real sweep.evaluate table and on small hand-made
tables with known answers; their chart companions draw the same numbers."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import polars as pl
import pytest

import sweep
from engine import METRIC_NAMES
from engine.data import synthetic_panel
from sweep import analysis
from sweep.schema import BLOCK_COLUMNS, KEY_COLUMNS, TRIAL

WINDOWS = [("2010-01-01", "2010-12-31"), ("2011-01-01", "2011-12-31")]


@pytest.fixture(scope="module")
def runs() -> pl.DataFrame:
    panel = synthetic_panel(n_assets=8, n_bars=520, seed=4)
    return sweep.evaluate(panel, "ma_cross",
                          {"fast": [5, 10, 20], "slow": [30, 60], "kind": ["sma", "ema"]},
                          windows=WINDOWS)


def table(rows: list[tuple], cols: list[str]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=cols, orient="row")


def grid_table(values: dict[tuple[int, int], float], window: int = 0) -> pl.DataFrame:
    """A runs table over (a, b) with a sharpe and a max_drawdown column."""
    return pl.DataFrame({
        "run": list(range(len(values))),
        "window": [window] * len(values),
        "a": [k[0] for k in values],
        "b": [k[1] for k in values],
        "sharpe": list(values.values()),
        "max_drawdown": [0.1] * len(values),
    })


# --------------------------------------------------------------------------------------
# param_columns / top_k / best_per_window on a real sweep
# --------------------------------------------------------------------------------------


def test_param_columns(runs):
    assert analysis.param_columns(runs) == ["fast", "slow", "kind"]
    assert analysis.param_columns(runs.lazy()) == ["fast", "slow", "kind"]
    extra = runs.with_columns(pl.lit(None, pl.String).alias("error"), pl.lit(1).alias("run_id"),
                              pl.lit(0).alias("chunk_id"), pl.lit("ma_cross").alias("strategy"))
    assert analysis.param_columns(extra) == ["fast", "slow", "kind"]
    with_blocks = extra.with_columns(pl.lit(0).alias(c) for c in (*BLOCK_COLUMNS, TRIAL))
    assert analysis.param_columns(with_blocks) == ["fast", "slow", "kind"]
    assert not set(KEY_COLUMNS) & set(METRIC_NAMES)


def test_engine_axis_is_a_parameter():
    panel = synthetic_panel(n_assets=4, n_bars=300, seed=1)
    df = sweep.evaluate(panel, "ma_cross", {"fast": [5, 10], "commission": [0.0, 0.001]})
    assert set(analysis.param_columns(df)) == {"fast", "commission"}


def test_top_k(runs):
    got = analysis.top_k(runs, "sharpe", k=5)
    want = runs.sort("sharpe", descending=True).head(5)
    assert got["run"].to_list() == want["run"].to_list()
    assert got.columns == runs.columns
    # lower-is-better metrics sort ascending by default; ascending overrides
    dd = analysis.top_k(runs.lazy(), "max_drawdown", k=3)
    assert dd["max_drawdown"].to_list() == sorted(runs["max_drawdown"].to_list())[:3]
    worst = analysis.top_k(runs, "max_drawdown", k=3, ascending=False)
    assert worst["max_drawdown"].to_list() == sorted(runs["max_drawdown"].to_list())[-3:][::-1]
    assert analysis.top_k(runs, "sharpe", k=1000).height == runs.height


def test_top_k_by_window_and_best_per_window(runs):
    got = analysis.top_k(runs, "sharpe", k=2, by_window=True)
    assert got["window"].to_list() == [0, 0, 1, 1]
    for w in (0, 1):
        part = runs.filter(pl.col("window") == w).sort("sharpe", descending=True).head(2)
        assert got.filter(pl.col("window") == w)["run"].to_list() == part["run"].to_list()
    best = analysis.best_per_window(runs.lazy(), "sharpe")
    assert best["window"].to_list() == [0, 1]
    maxima = runs.group_by("window").agg(pl.col("sharpe").max()).sort("window")
    assert best["sharpe"].to_list() == maxima["sharpe"].to_list()
    best_dd = analysis.best_per_window(runs, "max_drawdown")
    minima = runs.group_by("window").agg(pl.col("max_drawdown").min()).sort("window")
    assert best_dd["max_drawdown"].to_list() == minima["max_drawdown"].to_list()


def test_failed_and_nan_runs_are_left_out():
    df = table(
        [(0, 0, 1, 3.0, None), (1, 0, 2, float("nan"), None), (2, 0, 3, 9.0, "boom"),
         (3, 0, 4, 1.0, None), (4, 0, 5, None, None), (5, 0, 6, float("inf"), None)],
        ["run", "window", "p", "sharpe", "error"],
    )
    assert analysis.top_k(df, "sharpe", k=10)["run"].to_list() == [5, 0, 3]
    assert analysis.best_per_window(df, "sharpe")["run"].to_list() == [5]


def test_unknown_columns_are_named():
    df = grid_table({(1, 1): 1.0, (1, 2): 2.0})
    with pytest.raises(ValueError, match=r"unknown metric column 'sharp'.*sharpe.*max_drawdown"):
        analysis.top_k(df, "sharp")
    with pytest.raises(ValueError, match=r"unknown parameter column 'c'.*a, b"):
        analysis.heatmap(df, "a", "c")
    with pytest.raises(ValueError, match=r"unknown parameter column 'zz'.*a, b"):
        analysis.sensitivity(df, ["zz"])
    with pytest.raises(ValueError, match=r"unknown parameter column 'zz'"):
        analysis.compare_windows(df, "sharpe", ["a", "zz"])
    with pytest.raises(ValueError, match="unknown agg"):
        analysis.heatmap(df, "a", "b", agg="avg")
    with pytest.raises(TypeError, match="polars"):
        analysis.top_k({"sharpe": [1.0]})


# --------------------------------------------------------------------------------------
# heatmap
# --------------------------------------------------------------------------------------


def test_heatmap_hand_made():
    df = pl.concat([
        grid_table({(1, 10): 1.0, (2, 10): 2.0, (1, 20): 3.0}, window=0),
        grid_table({(1, 10): 3.0, (2, 10): 4.0, (1, 20): 5.0}, window=1),
    ])
    h = analysis.heatmap(df, x="a", y="b")
    assert h.columns == ["b", "1", "2"]
    assert h["b"].to_list() == [10, 20]
    assert h["1"].to_list() == [2.0, 4.0]
    assert h["2"].to_list() == [3.0, None]          # (2, 20) not in the grid
    h1 = analysis.heatmap(df, x="a", y="b", window=1, agg="max")
    assert h1["1"].to_list() == [3.0, 5.0]
    hc = analysis.heatmap(df, x="b", y="a", agg="count")
    assert hc.columns == ["a", "10", "20"] and hc["10"].to_list() == [2, 2]


def test_heatmap_real_sweep(runs):
    h = analysis.heatmap(runs.lazy(), x="fast", y="slow", metric="sharpe", window=0)
    assert h.columns == ["slow", "5", "10", "20"]
    assert h["slow"].to_list() == [30, 60]
    want = (runs.filter((pl.col("window") == 0) & (pl.col("fast") == 10) &
                        (pl.col("slow") == 60))["sharpe"].mean())
    assert h.filter(pl.col("slow") == 60)["10"].item() == pytest.approx(want)
    # plotting-ready: a dense float matrix
    assert h.drop("slow").to_numpy().shape == (2, 3)


# --------------------------------------------------------------------------------------
# sensitivity
# --------------------------------------------------------------------------------------


def test_sensitivity_plateau():
    vals = {(a, b): 1.0 for a in (1, 2, 3) for b in (10, 20, 30)}
    vals[(2, 20)] = 1.1
    vals[(1, 20)] = 1.0
    vals[(3, 20)] = 0.99
    s = analysis.sensitivity(grid_table(vals), ["a", "b"])
    assert s.columns == ["param", "direction", "best_value", "value", "best_metric", "metric",
                         "drop", "relative_drop", "verdict"]
    assert s.select("param", "direction", "value").rows() == [
        ("a", "-", 1), ("a", "+", 3), ("b", "-", 10), ("b", "+", 30)]
    assert s["best_value"].to_list() == [2, 2, 20, 20]
    np.testing.assert_allclose(s["drop"].to_numpy(), [0.1, 0.11, 0.1, 0.1])
    np.testing.assert_allclose(s["relative_drop"].to_numpy(), np.array([0.1, 0.11, 0.1, 0.1]) / 1.1)
    assert set(s["verdict"]) == {"plateau"}


def test_sensitivity_spike_edges_and_constraints():
    # best at a = 1 (an edge): only "+" along a; b = 20 is missing at a = 2 (a constraint)
    vals = {(1, 10): 0.2, (1, 20): 2.0, (1, 30): 0.4, (2, 10): 0.5, (2, 30): 0.5,
            (3, 20): 1.9}
    s = analysis.sensitivity(grid_table(vals))          # params: both vary
    assert s.select("param", "direction", "value", "metric").rows() == [
        ("a", "+", 3, 1.9), ("b", "-", 10, 0.2), ("b", "+", 30, 0.4)]
    # relative drops 0.05, 0.9, 0.8 -> median 0.8 > 25%
    np.testing.assert_allclose(s["relative_drop"].to_numpy(), [0.05, 0.9, 0.8])
    assert set(s["verdict"]) == {"spike"}


def test_sensitivity_lower_is_better_and_windows():
    df = pl.DataFrame({
        "window": [0, 0, 0, 1, 1, 1],
        "a": [1, 2, 3, 1, 2, 3],
        "max_drawdown": [0.2, 0.1, 0.3, 0.4, 0.1, 0.1],
    })
    # mean over windows: a=1 0.3, a=2 0.1, a=3 0.2 -> best a=2 (lowest)
    s = analysis.sensitivity(df, ["a"], metric="max_drawdown")
    assert s["best_value"].to_list() == [2, 2]
    np.testing.assert_allclose(s["drop"].to_numpy(), [0.2, 0.1])
    np.testing.assert_allclose(s["relative_drop"].to_numpy(), [2.0, 1.0])
    assert s["verdict"][0] == "spike"
    # window 1 alone: a=2 (first of the tie at 0.1) is best, a=3 does not drop
    s1 = analysis.sensitivity(df, "a", metric="max_drawdown", window=1)
    np.testing.assert_allclose(s1["drop"].to_numpy(), [0.3, 0.0])


def test_sensitivity_errors_and_mixed_types(runs):
    one = grid_table({(1, 10): 1.0})
    with pytest.raises(ValueError, match="no neighbouring grid point"):
        analysis.sensitivity(one)
    s = analysis.sensitivity(runs, metric="sharpe", window=0)
    assert set(s["param"]) <= {"fast", "slow", "kind"}
    assert s.schema["value"] == pl.String          # int and str parameters together
    assert (s["drop"] >= 0).all()
    assert s["verdict"].n_unique() == 1 and s["verdict"][0] in {"plateau", "spike"}
    best = analysis.top_k(runs.filter(pl.col("window") == 0), "sharpe", k=1)
    assert s["best_metric"][0] == pytest.approx(best["sharpe"].item())


# --------------------------------------------------------------------------------------
# compare_windows / window_rank_correlation
# --------------------------------------------------------------------------------------


def test_compare_windows_hand_made():
    df = pl.DataFrame({
        "window": [0] * 4 + [1] * 4 + [2] * 4,
        "a": [1, 2, 3, 4] * 3,
        "sharpe": [1.0, 2.0, 3.0, 4.0,      # window 0
                   1.5, 2.5, 3.5, 4.5,      # window 1: same order
                   4.0, 3.0, 2.0, 1.0],     # window 2: reversed
    })
    wide = analysis.compare_windows(df, "sharpe", ["a"])
    assert wide.columns == ["a", "sharpe_w0", "sharpe_w1", "sharpe_w2", "sharpe_mean"]
    assert wide["a"].to_list() == [4, 3, 2, 1]         # best mean first
    assert wide.filter(pl.col("a") == 1).row(0) == (1, 1.0, 1.5, 4.0, pytest.approx(6.5 / 3))
    corr = analysis.window_rank_correlation(df, "sharpe", ["a"])
    assert corr.select("window_a", "window_b", "n").rows() == [(0, 1, 4), (0, 2, 4), (1, 2, 4)]
    np.testing.assert_allclose(corr["spearman"].to_numpy(), [1.0, -1.0, -1.0])
    assert corr["stable"].to_list() == [True, False, False]


def test_rank_correlation_ties_missing_and_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    x = rng.normal(size=30).round(1)                   # rounding creates ties
    y = (x + rng.normal(scale=0.5, size=30)).round(1)
    df = pl.DataFrame({"window": [0] * 30 + [1] * 30, "p": list(range(30)) * 2,
                       "sharpe": np.concatenate([x, y])})
    df = df.with_columns(
        pl.when((pl.col("window") == 1) & (pl.col("p") == 3)).then(float("nan"))
        .otherwise(pl.col("sharpe")).alias("sharpe"))
    corr = analysis.window_rank_correlation(df)
    keep = np.arange(30) != 3
    rho = stats.spearmanr(x[keep], y[keep]).statistic
    assert corr["n"].item() == 29
    assert corr["spearman"].item() == pytest.approx(rho, abs=1e-12)
    # too few parameter sets: undefined
    small = df.filter(pl.col("p") < 2)
    assert analysis.window_rank_correlation(small)["spearman"].item() is None


def test_compare_windows_real_sweep(runs):
    wide = analysis.compare_windows(runs.lazy(), "sharpe")
    assert wide.height == 12
    assert wide.columns[:3] == ["fast", "slow", "kind"]
    row = wide.filter((pl.col("fast") == 5) & (pl.col("slow") == 30) & (pl.col("kind") == "ema"))
    for w in (0, 1):
        want = runs.filter((pl.col("window") == w) & (pl.col("fast") == 5) &
                           (pl.col("slow") == 30) & (pl.col("kind") == "ema"))["sharpe"].item()
        assert row[f"sharpe_w{w}"].item() == pytest.approx(want)
    corr = analysis.window_rank_correlation(runs, "sharpe")
    assert corr.height == 1 and corr["n"].item() == 12
    assert -1.0 <= corr["spearman"].item() <= 1.0


def test_hive_partitioned_lazyframe(runs, tmp_path):
    """The shape sweep.load_results gives: a LazyFrame with a hive `window` column."""
    for w, part in runs.partition_by("window", as_dict=True).items():
        d = tmp_path / f"window={w[0]}"
        d.mkdir()
        part.drop("window").write_parquet(d / "part-0000000.parquet")
    lf = pl.scan_parquet(tmp_path / "**" / "*.parquet", hive_partitioning=True)
    assert analysis.best_per_window(lf, "sharpe")["sharpe"].to_list() == (
        analysis.best_per_window(runs, "sharpe")["sharpe"].to_list())
    assert analysis.heatmap(lf, "fast", "slow").shape == (2, 4)
    assert analysis.window_rank_correlation(lf)["n"].item() == 12


# --------------------------------------------------------------------------------------
# charts: the *_chart companions draw the tables' numbers
# --------------------------------------------------------------------------------------
NS = "{http://www.w3.org/2000/svg}"


def svg_of(chart) -> ET.Element:
    """The chart as Jupyter gets it (a standalone SVG document), parsed."""
    assert chart._repr_html_().startswith("<figure")
    root = ET.fromstring(chart._repr_svg_())
    assert root.tag == f"{NS}svg"
    return root


def elements(root: ET.Element, tag: str, cls: str) -> list[ET.Element]:
    return [e for e in root.iter(f"{NS}{tag}") if cls in (e.get("class") or "").split()]


def tip(e: ET.Element) -> str:
    return e.find(f"{NS}title").text


def test_heatmap_chart_draws_the_pivot(runs):
    pivot = analysis.heatmap(runs, "fast", "slow", window=1)
    root = svg_of(analysis.heatmap_chart(runs, "fast", "slow", window=1))
    cells = elements(root, "rect", "heatmap-cell")
    assert len(cells) == pivot.drop("slow").to_numpy().size == 6
    for e in cells:
        x, y = int(e.get("data-x")), int(e.get("data-y"))
        fast, slow = pivot.columns[1 + x], pivot["slow"][y]
        value = pivot[fast][y]
        assert tip(e).startswith(f"fast={fast}, slow={slow}: mean sharpe {value:.3f} over 2 "
                                 "runs (min ")
    texts = [e.text for e in root.iter(f"{NS}text")]
    assert "mean sharpe by fast and slow, window 1" in texts
    # Constraint-removed pairs are grey; the count aggregate is drawn too.
    gaps = analysis.heatmap_chart(grid_table({(1, 10): 1.0, (2, 10): 2.0, (1, 20): 3.0}),
                                  "a", "b", agg="max")
    g = svg_of(gaps)
    assert len(elements(g, "rect", "heatmap-cell")) == 3
    assert [tip(e) for e in elements(g, "rect", "heatmap-empty")] == ["a=2, b=20: no runs"]


def test_sensitivity_chart_draws_the_neighbours():
    vals = {(a, b): 1.0 for a in (1, 2, 3) for b in (10, 20, 30)}
    vals[(2, 20)], vals[(1, 20)], vals[(3, 20)] = 1.1, 1.0, 0.5
    table = analysis.sensitivity(grid_table(vals), ["a", "b"])
    root = svg_of(analysis.sensitivity_chart(grid_table(vals), ["a", "b"]))
    bars = elements(root, "rect", "bar")
    assert len(bars) == table.height + 2  # the neighbours and the best point of each param
    assert [tip(b) for b in bars] == ["a=1: sharpe 1.000", "a=2: sharpe 1.100",
                                      "a=3: sharpe 0.500", "b=10: sharpe 1.000",
                                      "b=20: sharpe 1.100", "b=30: sharpe 1.000"]
    heights = {tip(b): float(b.get("height")) for b in bars}
    assert heights["a=2: sharpe 1.100"] == pytest.approx(2.2 * heights["a=3: sharpe 0.500"],
                                                         abs=0.2)
    assert any(e.text == f"sharpe around the best point: {table['verdict'][0]}"
               for e in root.iter(f"{NS}text"))


def test_compare_windows_chart_draws_sets_by_windows(runs):
    wide = analysis.compare_windows(runs, "sharpe")
    root = svg_of(analysis.compare_windows_chart(runs, "sharpe", top=5))
    cells = elements(root, "rect", "heatmap-cell")
    assert len(cells) == 5 * 2
    best = wide.row(0, named=True)
    label = f"fast={best['fast']}, slow={best['slow']}, kind={best['kind']}"
    top_row = [e for e in cells if e.get("data-y") == "4"]  # drawn at the top
    assert sorted(tip(e) for e in top_row) == [
        f"{label}, window=w{w}: mean sharpe {best[f'sharpe_w{w}']:.3f}" for w in (0, 1)]
    assert {e.text for e in elements(root, "text", "tick-x")} == {"w0", "w1"}


def test_distribution_chart_counts_every_run(runs):
    root = svg_of(analysis.distribution_chart(runs, "total_return", window=0, bins=8))
    bars = elements(root, "rect", "hist-bar")
    assert len(bars) == 8
    counts = [int(tip(b).rsplit(": ", 1)[1].split()[0]) for b in bars]
    assert sum(counts) == runs.filter(pl.col("window") == 0).height
    with pytest.raises(ValueError, match="unknown metric"):
        analysis.distribution_chart(runs, "sharp")


def test_equity_and_drawdown_charts_of_backtests():
    from engine import EngineConfig, run_backtest
    from engine.metrics import max_drawdown

    panel = synthetic_panel(n_assets=4, n_bars=300, seed=9)
    weights = np.full(panel.shape, 0.25)
    results = {f"c={c}": run_backtest(panel, weights, EngineConfig(commission=c))
               for c in (0.0, 0.01)}
    root = svg_of(analysis.equity_chart(results))
    lines = list(root.iter(f"{NS}polyline"))
    assert len(lines) == 2 and all(len(e.get("points").split()) == 300 for e in lines)
    assert [e.text for e in root.iter(f"{NS}text") if e.text in results] == list(results)
    res = results["c=0.01"]
    dd = svg_of(analysis.drawdown_chart(res))
    label = elements(dd, "text", "dd-label")[0].text
    want = max_drawdown(res.equity, res.config.init_cash)
    assert label == f"max drawdown {want * 100:.1f}%" == \
        f"max drawdown {res.metrics['max_drawdown'] * 100:.1f}%"


def test_walk_forward_chart_from_tables():
    ts = np.arange(np.datetime64("2020-01-01"), np.datetime64("2020-01-01") + 60)
    oos = pl.DataFrame({"timestamp": ts, "fold": [0] * 30 + [1] * 30,
                        "equity": np.linspace(1e6, 1.1e6, 60),
                        "is_equity": np.linspace(1e6, 1.2e6, 60)})
    root = svg_of(analysis.walk_forward_chart(oos))
    ids = [e.get("id") for e in root.iter(f"{NS}polyline")]
    assert ids == ["is-equity-line", "oos-equity-line"]
    assert len(elements(root, "rect", "fold-band")) == 2
