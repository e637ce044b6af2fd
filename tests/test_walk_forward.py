"""Walk-forward validation and the overfitting statistics, end to end on real components.

* ``make_folds`` / ``WalkForwardConfig`` on synthetic panels: rolling and anchored train
  windows, bars and calendar lengths, the purge gap, the default step, "no fold fits", and
  every kind of bad ``[walk_forward]`` table (SpecError in Python, exit code 2 with nothing
  written from the CLI).
* ``sweep.walk_forward`` on a real LocalCluster (2 worker processes, shared by the module)
  writing real Parquet: each output is re-derived independently from the store and from
  ``engine.run_backtest`` (the fold winners, the out-of-sample metrics, the stitched
  equity curve, the summary), then the CLI (``backsweep walk-forward`` / ``report``).
* DSR and PBO in a plain sweep's ``sweep.json``, cross-checked against
  ``sweep.overfit.pbo_from_block_stats`` on the stored block columns and against a hand
  computation of the deflated Sharpe ratio (stdlib ``statistics.NormalDist``).
"""

from __future__ import annotations

import calendar
import dataclasses
import itertools
import json
import math
import statistics
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from cluster_fixtures import read_meta, run_cli, write_toml
from polars.testing import assert_frame_equal

import strategies
import sweep
from engine import METRIC_NAMES, EngineConfig, run_backtest
from engine.data import parse_data_spec, synthetic_panel
from sweep import SpecError, SweepSpec
from sweep.cli import main as cli_main
from sweep.overfit import EULER_GAMMA, pbo_from_block_stats
from sweep.spec import WalkForwardConfig
from sweep.windows import make_folds as _make_folds


class Fold(NamedTuple):
    """A fold as bar bounds (end exclusive), for comparisons."""

    fold: int
    train: tuple[int, int]
    test: tuple[int, int]


def make_folds(panel: Any, cfg: WalkForwardConfig) -> list[Fold]:
    return [Fold(f.index, f.train.bounds, f.test.bounds)
            for f in _make_folds(panel, cfg.schedule, cfg.test, cfg.purge)]


def config_tuple(cfg: WalkForwardConfig) -> tuple[Any, ...]:
    """(train, test, step, anchored, purge, objective, filters) of a parsed table."""
    return (cfg.schedule.length, cfg.test, cfg.schedule.step, cfg.schedule.anchored,
            cfg.purge, cfg.selection.objective, cfg.selection.filters)


DATA = "synthetic:assets=6,bars=1000,seed=3"
# take_profit of 100x / 200x never triggers: each (fast, slow, commission) point appears
# twice with bit-identical results, so every fold has ties that the combo must break.
GRID = {"fast": [3, 5, 8, 13], "slow": [20, 40, 60], "commission": [0.0, 0.001],
        "take_profit": [100.0, 200.0]}
ENGINE = {"init_cash": 100_000.0}
MIN_TRADES = 20
FILTERS = ["max_drawdown < 0.5"]
WF = {"train": 300, "test": 150, "purge": 3, "objective": "sharpe",
      "min_trades": MIN_TRADES, "filters": FILTERS}
SPEC = SweepSpec(name="wf", strategy="ma_cross", data=DATA, grid=GRID, engine=ENGINE,
                 walk_forward=WF)
# train 300, test = step 150, purge 3 on 1000 bars: four folds whose tests tile 303..903.
FOLDS = [Fold(k, (150 * k, 300 + 150 * k), (303 + 150 * k, 453 + 150 * k)) for k in range(4)]
PARAMS = ["fast", "slow", "commission", "take_profit"]

TOML = """\
name = "wf"
strategy = "ma_cross"
data = "synthetic:assets=6,bars=1000,seed=3"

[engine]
init_cash = 100000.0

[grid]
fast = [3, 5, 8, 13]
slow = [20, 40, 60]
commission = [0.0, 0.001]
take_profit = [100.0, 200.0]

[walk_forward]
train = 300
test = 150
purge = 3
objective = "sharpe"
min_trades = 20
filters = ["max_drawdown < 0.5"]
"""


def quiet_wf(spec: SweepSpec, client: Any, out: Path, **kw: Any) -> sweep.WalkForwardResult:
    return sweep.walk_forward(spec, client, out, progress=False, **kw)


def spec_with(**wf: Any) -> SweepSpec:
    return SweepSpec(name="wf", strategy="ma_cross", data=DATA, grid=GRID, engine=ENGINE,
                     walk_forward=wf)


def read_store(root: Path) -> pl.DataFrame:
    return pl.scan_parquet(root / "runs" / "**" / "part-*.parquet",
                           hive_partitioning=True).collect()


def same_number(a: Any, b: Any) -> bool:
    """Equal, or both NaN / both None (exact: no tolerance)."""
    if a is None or b is None:
        return a is None and b is None
    return (math.isnan(a) and math.isnan(b)) or a == b


@pytest.fixture(scope="module")
def panel() -> Any:
    return parse_data_spec(DATA)


@pytest.fixture(scope="module")
def wf(client: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """SPEC walked forward once; its folder is shared read-only by several tests."""
    out = tmp_path_factory.mktemp("wf")
    result = quiet_wf(SPEC, client, out)
    assert result.ok, result.sweep.describe()
    root = out / SPEC.name
    return {"out": out, "root": root, "result": result,
            "folds": pl.read_parquet(root / "folds.parquet"),
            "oos": pl.read_parquet(root / "oos_equity.parquet"),
            "meta": read_meta(root), "runs": read_store(root)}


# =============================================================== make_folds, no cluster
def test_make_folds_rolling_bars_with_purge_and_default_step() -> None:
    p = synthetic_panel(3, 1000, seed=1)
    cfg = WalkForwardConfig.from_dict({"train": 300, "test": 150, "purge": 3})
    assert cfg.schedule.step == 150 and cfg.purge == 3 and not cfg.schedule.anchored
    assert make_folds(p, cfg) == FOLDS
    # Purge: each test starts exactly `purge` bars after its train window ends.
    assert all(f.test[0] - f.train[1] == 3 for f in FOLDS)
    # The default step is the test length: identical to giving it explicitly.
    explicit = WalkForwardConfig.from_dict({"train": 300, "test": 150, "step": 150, "purge": 3})
    assert make_folds(p, explicit) == FOLDS
    # A test window ending on the very last bar still fits; one bar more does not.
    exact = make_folds(p, WalkForwardConfig.from_dict({"train": 400, "test": 200}))
    assert [f.test for f in exact] == [(400, 600), (600, 800), (800, 1000)]
    assert len(make_folds(p, WalkForwardConfig.from_dict(
        {"train": 400, "test": 200, "purge": 1}))) == 2
    # An explicit step different from the test length.
    stepped = make_folds(p, WalkForwardConfig.from_dict({"train": 500, "test": 100,
                                                         "step": 200}))
    assert [(f.train, f.test) for f in stepped] == [
        ((0, 500), (500, 600)), ((200, 700), (700, 800)), ((400, 900), (900, 1000))]


def test_walk_forward_config_defaults_and_filters() -> None:
    cfg = WalkForwardConfig.from_dict({"train": "2Y", "test": 250})
    assert config_tuple(cfg) == ("2y", 250, 250, False, 0, "sharpe", ())
    # One filter may be a plain string; min_trades becomes one more filter.
    cfg = WalkForwardConfig.from_dict({"train": 300, "test": 150, "filters": "calmar > 0",
                                       "min_trades": 3})
    assert cfg.selection.filters == ("calmar > 0", "n_trades >= 3")


def test_make_folds_anchored_bars() -> None:
    p = synthetic_panel(3, 1000, seed=1)
    anchored = make_folds(p, WalkForwardConfig.from_dict(
        {"train": 300, "test": 150, "purge": 3, "anchored": True}))
    # Same train ends and tests as rolling, but every train window starts at bar 0.
    assert [f.test for f in anchored] == [f.test for f in FOLDS]
    assert [f.train for f in anchored] == [(0, f.train[1]) for f in FOLDS]


def _add_months(d: datetime, months: int) -> datetime:
    """Calendar month arithmetic, clamping the day (Jan 31 + 1 month = Feb 28/29)."""
    y, m = divmod(d.month - 1 + months, 12)
    y += d.year
    return d.replace(year=y, month=m + 1, day=min(d.day, calendar.monthrange(y, m + 1)[1]))


def _calendar_train_windows(ts: np.ndarray, train_m: int, step_m: int, anchored: bool
                            ) -> list[tuple[int, int]]:
    """Train windows by the documented rule, computed independently: a window of
    ``train_m`` months from its first bar (ending before the first bar at or after that
    date), the next one starting at the first bar ``step_m`` months later."""
    dates = [datetime.fromisoformat(str(t)[:19]) for t in ts]

    def first_at_or_after(d: datetime) -> int | None:
        return None if d > dates[-1] else next(i for i, x in enumerate(dates) if x >= d)

    out: list[tuple[int, int]] = []
    start: int | None = 0
    while start is not None:
        end = first_at_or_after(_add_months(dates[start], train_m))
        if end is None:
            break
        out.append((0 if anchored else start, end))
        start = first_at_or_after(_add_months(dates[start], step_m))
    return out


@pytest.mark.parametrize("anchored", [False, True])
def test_make_folds_calendar_units(anchored: bool) -> None:
    p = synthetic_panel(3, 1000, seed=1)   # business days 2010-01-04 .. 2013-11-01
    cfg = WalkForwardConfig.from_dict({"train": "1Y", "test": "6M", "purge": 3,
                                       "anchored": anchored})
    assert config_tuple(cfg)[:3] == ("1y", "6mo", "6mo")
    folds = make_folds(p, cfg)
    trains = _calendar_train_windows(p.timestamps, 12, 6, anchored)
    assert len(folds) >= 4
    assert [f.train for f in folds] == trains[:len(folds)]
    ts = [datetime.fromisoformat(str(t)[:19]) for t in p.timestamps]
    for f in folds:
        assert f.test[0] == f.train[1] + 3                       # the purge gap
        # The test window spans six calendar months (to within a few days: weekends, and
        # the purge bars when the span is measured from the train window's end).
        span = ts[f.test[1]] - ts[f.test[0]]
        assert timedelta(days=181 - 8) <= span <= timedelta(days=184 + 8), (f, span)
    # Train windows without a fold are exactly those whose test would run past the data.
    for i0, i1 in trains[len(folds):]:
        assert i1 + 3 >= len(ts) or _add_months(ts[i1 + 3], 6) > ts[-1], (i0, i1)


def test_make_folds_calendar_test_windows_tile_the_data() -> None:
    """With step = test (the default), consecutive test windows must neither overlap
    (a bar traded twice, duplicated timestamps in oos_equity.parquet) nor leave bars out,
    as they do with bar lengths. With calendar lengths, a test window's end is computed
    from its own start (test start + "3M") while the next one's start comes from the next
    train window (start + step + train, + purge), and calendar arithmetic on business days
    and month ends does not add up: the two differ by a bar either way."""
    p = synthetic_panel(3, 1500, seed=1)
    for train, test, purge in [("1Y", "3M", 2), ("1Y", "2M", 2), ("6M", "1M", 0)]:
        folds = make_folds(p, WalkForwardConfig.from_dict(
            {"train": train, "test": test, "purge": purge}))
        bad = [(a.fold, a.test[1], b.test[0]) for a, b in itertools.pairwise(folds)
               if a.test[1] != b.test[0]]
        assert not bad, (f"train {train} test {test} purge {purge}: fold k's test end != "
                         f"fold k+1's test start (fold, end, next start): {bad[:4]}")


def test_no_fold_fits_names_lengths_and_data_span(tmp_path: Path) -> None:
    spec = spec_with(train=900, test=150, purge=5)
    with pytest.raises(SpecError) as err:
        sweep.walk_forward(spec, None, tmp_path)
    msg = str(err.value)
    assert "no fold fits" in msg
    assert "900" in msg and "150" in msg and "purge 5" in msg
    assert "1000 bars" in msg and "2010-01-04" in msg and "2013-11-01" in msg
    with pytest.raises(SpecError, match=r"'3Y'.*'1Y'"):
        sweep.walk_forward(spec_with(train="3Y", test="1Y"), None, tmp_path)
    assert not any(tmp_path.iterdir())


BAD = {
    "unknown key": ({"train": 300, "test": 150, "trian": 3}, r"unknown key.*trian"),
    "bad length": ({"train": "2X", "test": 150}, r"train.*'2X'"),
    "zero length": ({"train": 300, "test": 0}, r"test.*at least 1"),
    "negative purge": ({"train": 300, "test": 150, "purge": -1}, r"purge.*-1"),
    "float purge": ({"train": 300, "test": 150, "purge": 2.5}, r"purge"),
    "missing test": ({"train": 300}, r"'test' is required"),
    "unknown objective": ({"train": 300, "test": 150, "objective": "shrape"},
                          r"objective 'shrape' is not a metric"),
    "bad filter": ({"train": 300, "test": 150, "filters": ["n_trades >>= 3"]},
                   r"filter 'n_trades >>= 3'"),
    "filter on a non-metric": ({"train": 300, "test": 150, "filters": ["fast > 3"]},
                               r"filter 'fast > 3'"),
    "filters not a list": ({"train": 300, "test": 150, "filters": 3}, r"'filters' must be"),
    "bad min_trades": ({"train": 300, "test": 150, "min_trades": -2}, r"min_trades"),
    "bad anchored": ({"train": 300, "test": 150, "anchored": "yes"}, r"anchored"),
}


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def _bad_toml(path: Path, wf: dict[str, Any], extra: str = "") -> Path:
    body = "\n".join(f"{k} = {_toml_value(v)}" for k, v in wf.items())
    return write_toml(path, f'name = "bad"\nstrategy = "ma_cross"\n'
                            f'data = "synthetic:assets=5,bars=800,seed=1"\n'
                            f"[grid]\nfast = [3, 5]\nslow = [20, 40]\n{extra}"
                            f"[walk_forward]\n{body}\n")


@pytest.mark.parametrize("case", list(BAD))
def test_bad_walk_forward_table(case: str, tmp_path: Path) -> None:
    table, pattern = BAD[case]
    config = _bad_toml(tmp_path / "bad.toml", table)
    out = tmp_path / "out"
    with pytest.raises(SpecError, match=pattern) as err:
        sweep.walk_forward(config, None, out)
    assert str(config) in str(err.value) and "[walk_forward]" in str(err.value)
    # The CLI command (in-process through click): exit 2, one message, nothing written.
    res = CliRunner().invoke(cli_main, ["walk-forward", str(config), "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert "error:" in res.output and "[walk_forward]" in res.output
    assert not out.exists()


def test_windows_and_walk_forward_exclude_each_other(tmp_path: Path) -> None:
    config = _bad_toml(tmp_path / "bad.toml", {"train": 300, "test": 150},
                       extra='[windows]\nranges = [["2010-01-01", "2011-12-31"]]\n')
    out = tmp_path / "out"
    with pytest.raises(SpecError, match=r"\[windows\] and \[walk_forward\]"):
        sweep.walk_forward(config, None, out)
    with pytest.raises(SpecError, match="no \\[walk_forward\\] table"):
        sweep.walk_forward(SweepSpec(name="x", strategy="ma_cross", data=DATA), None, out)
    res = CliRunner().invoke(cli_main, ["walk-forward", str(config), "--out", str(out)])
    assert res.exit_code == 2 and "exclude each other" in res.output
    assert not out.exists()


def test_cli_bad_config_subprocess_exit_2(tmp_path: Path) -> None:
    """The installed ``backsweep`` entry point itself, on a bad length."""
    config = _bad_toml(tmp_path / "bad.toml", {"train": "2X", "test": 150})
    proc = run_cli("walk-forward", config, "--out", tmp_path / "out", "--workers", "2")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "'2X'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


# ============================================================ walk_forward end to end
def test_folds_parquet_columns(wf: dict[str, Any]) -> None:
    folds = wf["folds"]
    expected = ["fold", "train_start", "train_end", "test_start", "test_end", *PARAMS,
                *(f"is_{m}" for m in METRIC_NAMES), *(f"oos_{m}" for m in METRIC_NAMES),
                "dsr", "pbo"]
    assert sorted(folds.columns) == sorted(expected)
    assert folds["fold"].to_list() == [0, 1, 2, 3]
    for c in ("train_start", "train_end", "test_start", "test_end"):
        assert folds.schema[c] == pl.Datetime("ns")
    assert_frame_equal(folds, wf["result"].folds)


def test_fold_dates_match_make_folds_and_the_store(wf: dict[str, Any], panel: Any) -> None:
    ts = panel.timestamps.astype("datetime64[ns]")
    folds, runs = wf["folds"], wf["runs"]
    for f, row in zip(FOLDS, folds.iter_rows(named=True), strict=True):
        assert np.datetime64(row["train_start"], "ns") == ts[f.train[0]]
        assert np.datetime64(row["train_end"], "ns") == ts[f.train[1] - 1]
        assert np.datetime64(row["test_start"], "ns") == ts[f.test[0]]
        assert np.datetime64(row["test_end"], "ns") == ts[f.test[1] - 1]
        # The train runs in the store ran on exactly the fold's train bars, the whole grid.
        w = runs.filter(pl.col("window") == f.fold)
        assert w.height == 4 * 3 * 2 * 2
        assert w["n_bars"].unique().to_list() == [f.train[1] - f.train[0]]
        assert w["window_start"].unique().cast(pl.Datetime("ns")).to_list() == \
            [row["train_start"]]
    assert read_meta(wf["root"])["walk_forward"]["folds"][0]["test"][0].startswith(
        str(ts[303])[:10])


def _hand_select(runs: pl.DataFrame, fold: int) -> dict[str, Any] | None:
    """The fold's winner, independently: highest Sharpe among the successful train runs
    with >= MIN_TRADES trades and max_drawdown < 0.5; ties go to the lowest combo."""
    best = None
    for r in runs.filter(pl.col("window") == fold).iter_rows(named=True):
        if r["error"] is not None or math.isnan(r["sharpe"]):
            continue
        if not (r["n_trades"] >= MIN_TRADES and r["max_drawdown"] < 0.5):
            continue
        if best is None or (r["sharpe"], -r["combo"]) > (best["sharpe"], -best["combo"]):
            best = r
    return best


def test_chosen_params_are_the_filtered_train_argmax(wf: dict[str, Any]) -> None:
    runs = wf["runs"]
    filtered_out = ties = 0
    for row in wf["folds"].iter_rows(named=True):
        k = row["fold"]
        best = _hand_select(runs, k)
        assert best is not None
        assert {p: row[p] for p in PARAMS} == {p: best[p] for p in PARAMS}, f"fold {k}"
        # is_* are the stored metrics of that run.
        for m in METRIC_NAMES:
            assert same_number(row[f"is_{m}"], best[m]), (k, m)
        w = runs.filter(pl.col("window") == k)
        filtered_out += w.filter((pl.col("n_trades") < MIN_TRADES)
                                 | (pl.col("max_drawdown") >= 0.5)).height
        ties += w.filter(pl.col("sharpe") == best["sharpe"]).height - 1
        # The tie partner (take_profit 200) has a higher combo and was not chosen.
        assert row["take_profit"] == 100.0
    assert filtered_out > 0, "the filters should exclude some runs of this data"
    assert ties >= 4, "every fold's winner has a bit-identical twin"


def test_oos_metrics_equal_run_backtest_on_the_test_window(wf: dict[str, Any],
                                                           panel: Any) -> None:
    strategy = strategies.get("ma_cross")
    base = EngineConfig.from_dict(ENGINE)
    for row in wf["folds"].iter_rows(named=True):
        cfg = base.replace(commission=row["commission"], take_profit=row["take_profit"])
        res = run_backtest(panel, strategy.weights(panel, fast=row["fast"], slow=row["slow"]),
                           cfg, window=(row["test_start"], row["test_end"]))
        for m in METRIC_NAMES:
            assert same_number(row[f"oos_{m}"], res.metrics[m]), (row["fold"], m)
        assert row["oos_n_bars"] == 150


def test_oos_equity_stitches_the_test_windows(wf: dict[str, Any], panel: Any) -> None:
    oos, folds = wf["oos"], wf["folds"]
    assert oos.columns == ["timestamp", "fold", "equity", "is_equity"]
    assert oos.schema["timestamp"] == pl.Datetime("ns")
    # Exactly the test bars, in order, each once.
    ts = panel.timestamps.astype("datetime64[ns]")
    expected_ts = np.concatenate([ts[f.test[0]:f.test[1]] for f in FOLDS])
    np.testing.assert_array_equal(oos["timestamp"].to_numpy(), expected_ts)
    assert oos["fold"].to_list() == [f.fold for f in FOLDS for _ in range(150)]
    strategy = strategies.get("ma_cross")
    base = EngineConfig.from_dict(ENGINE)
    level = promised = base.init_cash
    for row in folds.iter_rows(named=True):
        cfg = base.replace(commission=row["commission"], take_profit=row["take_profit"])
        res = run_backtest(panel, strategy.weights(panel, fast=row["fast"], slow=row["slow"]),
                           cfg, window=(row["test_start"], row["test_end"]))
        seg = oos.filter(pl.col("fold") == row["fold"])
        # Fold k's curve = the previous fold's final equity x this fold's equity / cash.
        np.testing.assert_allclose(seg["equity"].to_numpy(),
                                   level * res.equity / cfg.init_cash, rtol=1e-13)
        # In-sample promise: the IS run's per-bar geometric growth over the test bars.
        growth = (1.0 + row["is_total_return"]) ** (1.0 / row["is_n_bars"])
        np.testing.assert_allclose(seg["is_equity"].to_numpy(),
                                   promised * growth ** np.arange(1, seg.height + 1),
                                   rtol=1e-12)
        level, promised = float(seg["equity"][-1]), float(seg["is_equity"][-1])
    # The stitched total return is the product of the folds' returns.
    total = np.prod([1.0 + r for r in folds["oos_total_return"].to_list()]) - 1.0
    assert oos["equity"][-1] / base.init_cash - 1.0 == pytest.approx(total, rel=1e-12)


def data_rate(panel: Any) -> float:
    """Bars per year of the whole data, by the documented rule."""
    t = panel.timestamps
    return (len(t) - 1) / ((t[-1] - t[0]) / np.timedelta64(1, "D") / 365.25)


def _hand_dsr(trials: pl.DataFrame, best: dict[str, Any], rate: float) -> float:
    """The deflated Sharpe ratio of ``best`` among ``trials``, from the stored metrics
    only: per-bar Sharpe = sharpe / sqrt(bars per year of the data), the expected max
    Sharpe of N trials, then the probabilistic Sharpe ratio (raw kurtosis)."""
    n = int(best["n_bars"])
    scale = math.sqrt(rate)
    srs = [s / scale for s in trials["sharpe"].to_list() if math.isfinite(s)]
    v = statistics.variance(srs)
    big_n = len(srs)
    z = statistics.NormalDist()
    sr0 = math.sqrt(v) * ((1 - EULER_GAMMA) * z.inv_cdf(1 - 1 / big_n)
                          + EULER_GAMMA * z.inv_cdf(1 - 1 / (big_n * math.e)))
    sr = best["sharpe"] / scale
    g3, g4 = best["skew"], best["kurtosis"]
    return z.cdf((sr - sr0) * math.sqrt(n - 1) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2))


def _stored_pbo(trials: pl.DataFrame) -> float:
    stats = [np.stack(trials[c].to_numpy()) for c in ("block_sum", "block_sumsq", "block_n")]
    assert stats[0].shape == (trials.height, 16)
    return pbo_from_block_stats(*stats).pbo


def test_summary_in_sweep_json(wf: dict[str, Any], panel: Any) -> None:
    s = wf["meta"]["walk_forward"]
    assert s == json.loads(json.dumps(dataclasses.asdict(wf["result"].summary)))
    assert s["n_folds"] == 4 and s["objective"] == "sharpe"
    folds, oos = wf["folds"], wf["oos"]
    # Out-of-sample metrics of the stitched curve, recomputed with numpy.
    eq = oos["equity"].to_numpy()
    cash = ENGINE["init_cash"]
    r = np.diff(np.concatenate([[cash], eq])) / np.concatenate([[cash], eq[:-1]])
    om = s["oos_metrics"]
    assert om["total_return"] == pytest.approx(eq[-1] / cash - 1, rel=1e-12)
    assert om["final_equity"] == pytest.approx(eq[-1], rel=1e-12)
    assert om["n_bars"] == 600
    # Annualisation: whatever bars-per-year convention, it is the data's (business days,
    # ~261 a year) and the same one for volatility, Sharpe and CAGR.
    ppy = (om["volatility"] / r.std(ddof=1)) ** 2
    t = panel.timestamps
    assert ppy == pytest.approx((len(t) - 1) / ((t[-1] - t[0]) / np.timedelta64(1, "D")
                                                / 365.25), rel=0.01)
    assert om["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(ppy), rel=1e-9)
    peak = np.maximum.accumulate(np.concatenate([[cash], eq]))
    assert om["max_drawdown"] == pytest.approx(np.max(1 - eq / peak[1:]), rel=1e-12)
    assert om["cagr"] == pytest.approx((eq[-1] / cash) ** (ppy / len(eq)) - 1, rel=1e-9)
    assert om["n_trades"] == folds["oos_n_trades"].sum()
    assert om["fees"] == pytest.approx(folds["oos_fees"].sum(), rel=1e-12)
    # Walk-forward efficiency: OOS cagr / mean IS cagr, None when the latter is <= 0.
    mean_is = float(np.mean(folds["is_cagr"].to_numpy()))
    assert s["is_mean_cagr"] == pytest.approx(mean_is, rel=1e-12)
    if mean_is > 0:
        assert s["wfe"] == pytest.approx(om["cagr"] / mean_is, rel=1e-12)
    else:
        assert s["wfe"] is None
    # DSR / PBO: per fold (also the folds.parquet columns) and their means, all in [0, 1].
    assert s["dsr_by_fold"] == folds["dsr"].to_list()
    assert s["pbo_by_fold"] == folds["pbo"].to_list()
    for key in ("dsr", "pbo"):
        vals = s[f"{key}_by_fold"]
        assert len(vals) == 4 and all(isinstance(v, float) and 0 <= v <= 1 for v in vals)
        assert isinstance(s[key], float) and 0.0 <= s[key] <= 1.0
        assert s[key] == pytest.approx(float(np.mean(vals)), rel=1e-12)
    runs = wf["runs"].sort("combo")
    for k in range(4):
        trials = runs.filter(pl.col("window") == k)
        best = _hand_select(wf["runs"], k)
        assert s["dsr_by_fold"][k] == pytest.approx(_hand_dsr(trials, best, data_rate(panel)),
                                                    rel=1e-9, abs=1e-12)
        assert s["pbo_by_fold"][k] == _stored_pbo(trials)
    # Parameter stability across the folds' choices.
    stab = s["param_stability"]
    assert set(stab) == set(PARAMS)
    for p in PARAMS:
        values = folds[p].to_list()
        counts = {v: values.count(v) for v in values}
        assert stab[p]["distinct"] == len(counts)
        assert stab[p]["mode_share"] == max(counts.values()) / len(values)
        assert counts[stab[p]["mode"]] == max(counts.values())
        mean = float(np.mean(values))
        if mean:
            assert stab[p]["cv"] == pytest.approx(np.std(values, ddof=1) / abs(mean), rel=1e-9)
    assert stab["take_profit"]["distinct"] == 1 and stab["take_profit"]["mode"] == 100.0


def test_rerun_computes_nothing_and_gives_identical_outputs(wf: dict[str, Any],
                                                            client: Any) -> None:
    root = wf["root"]
    before = {n: (root / n).read_bytes() for n in ("folds.parquet", "oos_equity.parquet")}
    again = quiet_wf(SPEC, client, wf["out"])
    assert again.sweep.chunks_run == 0
    assert again.sweep.chunks_skipped == again.sweep.chunks_total > 0
    assert_frame_equal(pl.read_parquet(root / "folds.parquet"), wf["folds"], check_exact=True)
    assert_frame_equal(pl.read_parquet(root / "oos_equity.parquet"), wf["oos"],
                       check_exact=True)
    assert {n: (root / n).read_bytes() for n in before} == before
    meta = read_meta(root)
    assert meta["walk_forward"] == wf["meta"]["walk_forward"]
    assert meta["overfit"] == wf["meta"]["overfit"]
    assert_frame_equal(read_store(root).sort("run_id"), wf["runs"].sort("run_id"),
                       check_exact=True)


def test_cli_walk_forward_then_report(wf: dict[str, Any], tmp_path: Path) -> None:
    config = write_toml(tmp_path / "wf.toml", TOML)
    out = tmp_path / "results"
    proc = run_cli("walk-forward", config, "--workers", "2", "--out", out, "--no-progress",
                   timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "walk-forward: 4 folds; out of sample: total return" in proc.stdout
    assert "walk-forward efficiency" in proc.stdout and "PBO" in proc.stdout
    root = out / "wf"
    # The same walk-forward on another cluster gives the same folds and curve.
    assert_frame_equal(pl.read_parquet(root / "folds.parquet"), wf["folds"], check_exact=True)
    assert_frame_equal(pl.read_parquet(root / "oos_equity.parquet"), wf["oos"],
                       check_exact=True)
    report = tmp_path / "report.html"
    proc = run_cli("report", root, "-o", report)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = report.read_text()
    assert 'id="oos-equity-line"' in text and 'id="verdict-pbo"' in text
    assert "<script" not in text.lower()


def test_walk_forward_calendar_units_anchored(client: Any, panel: Any, tmp_path: Path) -> None:
    """Calendar lengths, anchored: the store's train windows are the folds' (all starting
    at the first bar), and the stitched curve has every test bar once, in order."""
    spec = SweepSpec(name="cal", strategy="ma_cross", data=DATA,
                     grid={"fast": [3, 8], "slow": [20, 40]},
                     walk_forward={"train": "1Y", "test": "2M", "purge": 2, "anchored": True})
    result = quiet_wf(spec, client, tmp_path)
    folds = make_folds(panel, WalkForwardConfig.from_dict(spec.walk_forward))
    assert result.summary.n_folds == len(folds) >= 12
    runs = read_store(tmp_path / "cal")
    ts = panel.timestamps.astype("datetime64[ns]")
    for f in folds:
        w = runs.filter(pl.col("window") == f.fold)
        assert w["n_bars"].unique().to_list() == [f.train[1]]
        assert w["window_start"].cast(pl.Datetime("ns")).to_numpy()[0] == ts[0]
    oos_ts = result.oos_equity["timestamp"].to_numpy()
    repeated = int((np.diff(oos_ts) <= np.timedelta64(0)).sum())
    assert repeated == 0, f"{repeated} duplicated/unordered timestamps in oos_equity"
    np.testing.assert_array_equal(oos_ts, ts[folds[0].test[0]:folds[-1].test[1]])


def test_step_shorter_than_test_is_refused_or_stitched_without_overlap(
        client: Any, tmp_path: Path) -> None:
    """Overlapping test windows (step < test) cannot be stitched into one curve: either
    the config is refused up front, or each bar appears once in oos_equity.parquet."""
    spec = spec_with(train=300, test=150, step=100)
    try:
        result = quiet_wf(spec, client, tmp_path)
    except SpecError as exc:
        assert "step" in str(exc)
        assert not (tmp_path / "wf").exists()
        return
    ts = result.oos_equity["timestamp"].to_numpy()
    repeated = int((np.diff(ts) <= np.timedelta64(0)).sum())
    assert repeated == 0, f"{repeated} duplicated/unordered timestamps in oos_equity"


def test_oos_metrics_annualise_by_bar_frequency_when_tests_have_gaps(
        client: Any, panel: Any, tmp_path: Path) -> None:
    """step > test leaves untested bars between test windows. The stitched curve's
    returns are still daily returns: its volatility and Sharpe must be annualised by the
    data's bars per year, not by the stitched timestamps' span (which counts the gaps)."""
    spec = SweepSpec(name="gaps", strategy="ma_cross", data=DATA,
                     grid={"fast": [3, 8], "slow": [20, 40]},
                     walk_forward={"train": 300, "test": 100, "step": 200})
    result = quiet_wf(spec, client, tmp_path)
    eq = result.oos_equity["equity"].to_numpy()
    prev = np.concatenate([[1e6], eq[:-1]])
    r = eq / prev - 1
    t = panel.timestamps.astype("datetime64[ns]")
    ppy = (len(t) - 1) / ((t[-1] - t[0]) / np.timedelta64(1, "D") / 365.25)
    om = result.summary.oos_metrics
    assert om["volatility"] == pytest.approx(r.std(ddof=1) * math.sqrt(ppy), rel=0.01)
    assert om["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(ppy), rel=0.01)


def test_all_folds_in_cash_when_nothing_passes_the_filters(client: Any,
                                                           tmp_path: Path) -> None:
    spec = SweepSpec(name="cash", strategy="ma_cross", data=DATA,
                     grid={"fast": [3, 8], "slow": [20, 40]},
                     walk_forward={"train": 300, "test": 150, "min_trades": 10**6})
    result = quiet_wf(spec, client, tmp_path)
    folds = pl.read_parquet(tmp_path / "cash" / "folds.parquet")
    assert folds.height == 4
    assert folds["fast"].null_count() == 4 and folds["oos_sharpe"].null_count() == 4
    assert (result.oos_equity["equity"] == 1e6).all()
    s = result.summary
    assert s.oos_metrics["total_return"] == 0.0 and s.wfe is None
    assert s.dsr is None
    # The one-paragraph summary the CLI prints must not crash on undefined metrics.
    text = result.describe()
    assert "4 folds" in text and "n/a" in text


# ================================================= DSR and PBO in a plain sweep's summary
PLAIN = SweepSpec(name="plain", strategy="ma_cross", data=DATA,
                  grid={"fast": [3, 5, 8, 13], "slow": [20, 40, 60], "kind": ["sma", "ema"]},
                  engine={"commission": 0.001},
                  windows={"ranges": [["2010-01-01", "2011-06-30"], ["2011-07-01", "2013-12-31"]]})


@pytest.fixture(scope="module")
def plain(client: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("plain")
    summary = sweep.run_sweep(PLAIN, client, out, progress=False)
    assert summary.ok and summary.n_runs == 48
    return out / PLAIN.name


def test_plain_sweep_summary_has_dsr_and_pbo_per_window(plain: Path, panel: Any) -> None:
    meta = read_meta(plain)
    assert meta["objective"] == "sharpe"
    verdicts = meta["overfit"]
    assert [w["window"] for w in verdicts] == [0, 1]
    rate = data_rate(panel)
    assert [w["bars_per_year"] for w in meta["windows"]] == [rate, rate]
    runs = read_store(plain).sort("combo")
    for w in verdicts:
        trials = runs.filter(pl.col("window") == w["window"])
        assert w["n_trials"] == trials.height == 24
        assert isinstance(w["dsr"], float) and 0 <= w["dsr"] <= 1
        assert isinstance(w["pbo"], float) and 0 <= w["pbo"] <= 1
        best = max(trials.iter_rows(named=True), key=lambda r: (r["sharpe"], -r["combo"]))
        assert w["best_run_id"] == best["run_id"]
        # PBO: CSCV over the stored block columns gives the same number.
        assert w["pbo"] == _stored_pbo(trials)
        # DSR by hand from the stored metrics.
        assert w["dsr"] == pytest.approx(_hand_dsr(trials, best, rate), rel=1e-9, abs=1e-12)
        # The block stats are the run's returns: their Sharpe is the stored one per bar,
        # annualised with the data's bars per year (the same in every window).
        s1, s2, n = (np.asarray(best[c]) for c in ("block_sum", "block_sumsq", "block_n"))
        assert n.sum() == best["n_bars"]
        total, sq, cnt = s1.sum(), s2.sum(), n.sum()
        per_bar = (total / cnt) / math.sqrt((sq - total * total / cnt) / (cnt - 1))
        assert best["sharpe"] == pytest.approx(per_bar * math.sqrt(rate), rel=1e-9)


def _scipy_dsr(trials: pl.DataFrame) -> float:
    """The paper's DSR (Bailey & Lopez de Prado 2014, eqs. for SR0 and PSR) computed with
    scipy from what does not depend on annualisation: per-bar Sharpe ratios from the
    stored block sums of returns, and the stored skew and raw kurtosis."""
    from scipy.stats import norm

    def per_bar(r: dict[str, Any]) -> float:
        s1, s2, n = (float(np.sum(r[c])) for c in ("block_sum", "block_sumsq", "block_n"))
        return (s1 / n) / math.sqrt((s2 - s1 * s1 / n) / (n - 1))

    rows = [r for r in trials.iter_rows(named=True) if math.isfinite(r["sharpe"])]
    srs = np.array([per_bar(r) for r in rows])
    best = max(rows, key=lambda r: (per_bar(r), -r["combo"]))
    big_n, v = len(srs), np.var(srs, ddof=1)
    sr0 = math.sqrt(v) * ((1 - np.euler_gamma) * norm.ppf(1 - 1 / big_n)
                          + np.euler_gamma * norm.ppf(1 - 1 / (big_n * math.e)))
    sr, n = per_bar(best), best["n_bars"]
    g3, g4 = best["skew"], best["kurtosis"]
    return float(norm.cdf((sr - sr0) * math.sqrt(n - 1)
                          / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr * sr)))


def test_dsr_does_not_depend_on_periods_per_year(client: Any, tmp_path: Path) -> None:
    """The same 24-run sweep annualised with 252 and with 52 bars a year stores different
    Sharpe ratios but the same deflated Sharpe ratio: the one the paper's formula gives
    on per-bar Sharpe ratios (before this fix it was 0.94 against 0.76)."""
    dsr = {}
    for ppy in (252, 52):
        spec = dataclasses.replace(PLAIN, name=f"ppy{ppy}", windows=None,
                                   engine={"commission": 0.001, "periods_per_year": ppy})
        assert sweep.run_sweep(spec, client, tmp_path, progress=False).ok
        meta = read_meta(tmp_path / spec.name)
        assert meta["windows"][0]["bars_per_year"] == ppy
        trials = read_store(tmp_path / spec.name)
        assert trials.height == 24
        dsr[ppy] = meta["overfit"][0]["dsr"]
        assert dsr[ppy] == pytest.approx(_scipy_dsr(trials), rel=1e-9)
    assert 0.0 < dsr[252] < 1.0
    assert dsr[252] == pytest.approx(dsr[52], rel=1e-12)
