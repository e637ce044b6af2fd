"""Data sources: synthetic_panel, sample_stocks, parse_data_spec and the `backsweep data` CLI."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from engine.data import SAMPLE_TICKERS, parse_data_spec, sample_stocks, synthetic_panel
from engine.data.sample import _repair_ohlc
from engine.panel import Panel, PanelError
from sweep.cli import main

REPO = Path(__file__).resolve().parents[1]


def ranks(x: np.ndarray) -> np.ndarray:
    out = np.empty(x.shape[0])
    out[np.argsort(x)] = np.arange(x.shape[0])
    return out


def mean_rank_corr(a: np.ndarray, b: np.ndarray, min_assets: int = 10) -> float:
    """Mean over rows of the Spearman correlation of a[t] and b[t] (finite pairs only)."""
    out = []
    for t in range(a.shape[0]):
        ok = np.isfinite(a[t]) & np.isfinite(b[t])
        if ok.sum() >= min_assets:
            out.append(np.corrcoef(ranks(a[t, ok]), ranks(b[t, ok]))[0, 1])
    return float(np.mean(out))


def mean_spearman_ic(score: np.ndarray, close: np.ndarray) -> float:
    """Mean Spearman IC of score[t] against the next return close[t+1] / close[t] - 1."""
    return mean_rank_corr(score[:-1], close[1:] / close[:-1] - 1.0)


def life_bounds(close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    has = np.isfinite(close)
    first = has.argmax(axis=0)
    last = close.shape[0] - 1 - has[::-1].argmax(axis=0)
    return first, last


@pytest.fixture(scope="module")
def big() -> Panel:
    return synthetic_panel(200, 1000, seed=3, ic=0.1, halt_probability=0.002)


# ------------------------------------------------------------------ synthetic
def test_synthetic_is_deterministic_per_seed() -> None:
    a = synthetic_panel(30, 250, seed=1)
    b = synthetic_panel(30, 250, seed=1)
    c = synthetic_panel(30, 250, seed=2)
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint != c.fingerprint
    assert not np.allclose(a.close[np.isfinite(a.close) & np.isfinite(c.close)],
                           c.close[np.isfinite(a.close) & np.isfinite(c.close)])


def test_synthetic_shape_names_and_business_days() -> None:
    p = synthetic_panel(12, 40, seed=0, start="2021-01-02")  # a Saturday
    assert p.shape == (40, 12)
    assert p.assets == tuple(f"A{i:04d}" for i in range(12))
    assert list(p.assets) == sorted(p.assets)
    assert str(p.timestamps[0])[:10] == "2021-01-04"
    assert p.timestamps.dtype == np.dtype("datetime64[ns]")
    days = p.timestamps.astype("datetime64[D]")
    assert np.is_busday(days).all()
    assert (np.diff(days).astype(int) >= 1).all()
    # Consecutive business days: no weekday is skipped.
    assert (np.busday_count(days[:-1], days[1:]) == 1).all()
    assert set(p.features) == {"ml_score"}
    assert synthetic_panel(3, 1).shape == (1, 3)
    assert synthetic_panel(12_000, 2, listing_fraction=0, delisting_fraction=0).assets[-1] \
        == "A11999"


def test_synthetic_ohlc_is_consistent(big: Panel) -> None:
    has = np.isfinite(big.close)
    o, h, lo, c, v = (a[has] for a in (big.open, big.high, big.low, big.close, big.volume))
    assert (o > 0).all() and (h > 0).all() and (lo > 0).all() and (c > 0).all()
    assert (h >= np.maximum(o, c)).all()
    assert (lo <= np.minimum(o, c)).all()
    assert (h > lo).all()
    assert (v > 0).all() and (v == np.rint(v)).all()
    # No-bar cells are NaN in every column, and only there.
    for arr in (big.open, big.high, big.low, big.volume, big.features["ml_score"]):
        np.testing.assert_array_equal(np.isfinite(arr), has)
    # Opens gap away from the previous close (not a copy of it).
    both = has[1:] & has[:-1]
    gap = big.open[1:][both] / big.close[:-1][both] - 1.0
    assert (np.abs(gap) > 1e-12).mean() > 0.99
    assert np.abs(gap).max() > 0.02


def test_synthetic_listings_delistings_and_halts(big: Panel) -> None:
    T, N = big.shape
    first, last = life_bounds(big.close)
    assert (first > 0).sum() == round(0.2 * N)
    assert (last < T - 1).sum() == round(0.1 * N)
    assert (first < last).all()
    has = np.isfinite(big.close)
    inside = (np.arange(T)[:, None] > first) & (np.arange(T)[:, None] < last)
    halts = inside & ~has
    assert halts.sum() > 0
    # Single-bar halts: a halted bar is never followed by another halted bar.
    assert not (halts[1:] & halts[:-1]).any()
    # Outside an asset's life everything is NaN; every bar has at least one asset.
    assert not has[~((np.arange(T)[:, None] >= first) & (np.arange(T)[:, None] <= last))].any()
    assert has.any(axis=1).all()
    quiet = synthetic_panel(20, 100, seed=1, listing_fraction=0, delisting_fraction=0,
                            halt_probability=0)
    assert np.isfinite(quiet.close).all()
    crowded = synthetic_panel(10, 50, seed=1, listing_fraction=1, delisting_fraction=1)
    assert np.isfinite(crowded.close).any(axis=1).all()


def test_synthetic_round_trips_through_parquet(big: Panel, tmp_path: Path) -> None:
    path = big.write_parquet(tmp_path / "big.parquet")
    assert Panel.read_parquet(path).fingerprint == big.fingerprint


def test_ml_score_has_requested_spearman_ic(big: Panel) -> None:
    ic = mean_spearman_ic(big.features["ml_score"], big.close)
    # Sampling s.d. of the mean is about 1 / sqrt(200 * 1000) = 0.0022.
    assert abs(ic - 0.1) < 0.012
    neg = synthetic_panel(200, 500, seed=4, ic=-0.05)
    assert abs(mean_spearman_ic(neg.features["ml_score"], neg.close) + 0.05) < 0.015
    none = synthetic_panel(200, 500, seed=5, ic=0.0)
    assert abs(mean_spearman_ic(none.features["ml_score"], none.close)) < 0.015


def test_ml_score_is_cross_sectionally_standardized(big: Panel) -> None:
    s = big.features["ml_score"]
    np.testing.assert_allclose(np.nanmean(s, axis=1), 0.0, atol=1e-9)
    np.testing.assert_allclose(np.nanstd(s, axis=1), 1.0, atol=1e-9)


def test_ml_score_does_not_know_the_current_bar(big: Panel) -> None:
    # It forecasts the next return; against the return into the same bar it is noise.
    s, c = big.features["ml_score"], big.close
    assert abs(mean_rank_corr(s[1:], c[1:] / c[:-1] - 1.0)) < 0.012


def test_returns_have_fat_tails_and_common_factors(big: Panel) -> None:
    lr = np.log(big.close[1:] / big.close[:-1])
    z = (lr - np.nanmean(lr, axis=0)) / np.nanstd(lr, axis=0)
    z = z[np.isfinite(z)]
    excess_kurtosis = float(np.mean(z**4) - 3.0)
    assert excess_kurtosis > 0.5
    # Correlations over full histories: assets that list, delist or halt are left out.
    calm = synthetic_panel(100, 750, seed=8, halt_probability=0)
    lr = np.log(calm.close[1:] / calm.close[:-1])
    full = np.isfinite(lr).all(axis=0)
    assert full.sum() >= 60
    corr = np.corrcoef(lr[:, full].T)
    mean_pairwise = (corr.sum() - corr.shape[0]) / (corr.size - corr.shape[0])
    assert 0.05 < mean_pairwise < 0.6


def test_volatility_is_around_annual_vol() -> None:
    for target in (0.15, 0.40):
        p = synthetic_panel(300, 756, seed=9, annual_vol=target)
        lr = np.log(p.close[1:] / p.close[:-1])
        realized = np.nanmedian(np.nanstd(lr, axis=0)) * math.sqrt(252)
        assert abs(realized / target - 1.0) < 0.15


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"n_assets": 0}, "n_assets"),
    ({"n_bars": 0}, "n_bars"),
    ({"n_bars": 2.5}, "n_bars"),
    ({"seed": -1}, "seed"),
    ({"ic": 1.0}, "ic"),
    ({"ic": float("nan")}, "ic"),
    ({"listing_fraction": 1.5}, "listing_fraction"),
    ({"delisting_fraction": -0.1}, "delisting_fraction"),
    ({"halt_probability": 1.0}, "halt_probability"),
    ({"annual_vol": 0.0}, "annual_vol"),
    ({"tail_df": 2.0}, "tail_df"),
    ({"n_factors": -1}, "n_factors"),
    ({"start": "not a date"}, "start"),
])
def test_synthetic_rejects_bad_arguments(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        synthetic_panel(**{"n_assets": 5, "n_bars": 10, **kwargs})


# ---------------------------------------------------------------- sample data
@pytest.fixture(scope="module")
def stocks() -> Panel:
    pytest.importorskip("bokeh_sampledata")
    return sample_stocks()


def test_sample_stocks_contents(stocks: Panel) -> None:
    assert stocks.assets == ("AAPL", "FB", "GOOG", "IBM", "MSFT")
    assert str(stocks.timestamps[0])[:10] == "2000-03-01"
    assert str(stocks.timestamps[-1])[:10] == "2013-03-01"
    first, last = life_bounds(stocks.close)
    dates = stocks.timestamps.astype("datetime64[D]").astype(str)
    assert dict(zip(stocks.assets, dates[first], strict=True)) == {
        "AAPL": "2000-03-01", "FB": "2012-05-18", "GOOG": "2004-08-19",
        "IBM": "2000-03-01", "MSFT": "2000-03-01",
    }
    assert (last == stocks.n_bars - 1).all()
    assert np.isfinite(stocks.close[:, [0, 3, 4]]).all()  # the 2000 listers never miss a day
    assert (stocks.volume[np.isfinite(stocks.close)] > 0).all()


def test_sample_stocks_are_split_adjusted(stocks: Panel) -> None:
    from bokeh_sampledata import stocks as src

    dates = list(stocks.timestamps.astype("datetime64[D]").astype(str))
    aapl = stocks.close[:, stocks.assets.index("AAPL")]
    for split_day in ("2000-06-21", "2005-02-28"):  # AAPL 2:1 splits
        i = dates.index(split_day)
        raw = src.AAPL["close"][src.AAPL["date"].index(split_day)] / \
            src.AAPL["close"][src.AAPL["date"].index(dates[i - 1])] - 1
        assert raw < -0.4  # the unadjusted series halves ...
        assert abs(aapl[i] / aapl[i - 1] - 1) < 0.2  # ... the adjusted one does not
    ret = stocks.close[1:] / stocks.close[:-1] - 1
    assert np.nanmin(ret) > -0.6  # AAPL's real -52% day (2000-09-29) is the worst
    # Close is the source's adjusted close; OHLC are scaled by the same factor.
    np.testing.assert_allclose(aapl[-1], src.AAPL["adj_close"][-1])
    j, i = stocks.assets.index("MSFT"), 100
    k = src.MSFT["date"].index(dates[i])
    factor = src.MSFT["adj_close"][k] / src.MSFT["close"][k]
    np.testing.assert_allclose(stocks.high[i, j], src.MSFT["high"][k] * factor)
    assert stocks.volume[i, j] == src.MSFT["volume"][k]


def test_sample_stocks_round_trip(stocks: Panel, tmp_path: Path) -> None:
    path = stocks.write_parquet(tmp_path / "stocks.parquet")
    assert Panel.read_parquet(path).fingerprint == stocks.fingerprint


def test_sample_stocks_subset_and_errors() -> None:
    pytest.importorskip("bokeh_sampledata")
    two = sample_stocks(["msft", "AAPL"])
    assert two.assets == ("AAPL", "MSFT")
    fb = sample_stocks("FB")
    assert fb.assets == ("FB",) and fb.n_bars == 196 and np.isfinite(fb.close).all()
    with pytest.raises(ValueError, match=r"unknown sample ticker.*'TSLA'.*AAPL, FB"):
        sample_stocks(["AAPL", "TSLA"])
    with pytest.raises(ValueError, match="no tickers"):
        sample_stocks([])
    assert SAMPLE_TICKERS == ("AAPL", "FB", "GOOG", "IBM", "MSFT")


def test_sample_stocks_without_package_says_how_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules is Python's own way to make an import fail.
    monkeypatch.setitem(sys.modules, "bokeh_sampledata", None)
    monkeypatch.setitem(sys.modules, "bokeh_sampledata.stocks", None)
    with pytest.raises(ImportError, match=r'pip install "backsweep\[examples\]"'):
        sample_stocks()


def test_repair_ohlc_widens_high_low_only_where_needed() -> None:
    o = np.array([[10.0, np.nan], [10.0, 5.0]])
    c = np.array([[10.6, np.nan], [9.0, 5.0]])
    h = np.array([[10.5, np.nan], [10.5, 5.5]])
    lo = np.array([[9.5, np.nan], [9.5, 4.5]])
    new_h, new_lo = _repair_ohlc(o, h, lo, c)
    np.testing.assert_array_equal(new_h, [[10.6, np.nan], [10.5, 5.5]])
    np.testing.assert_array_equal(new_lo, [[9.5, np.nan], [9.0, 4.5]])


# ------------------------------------------------------------- data specs
def test_parse_synthetic_specs() -> None:
    p = parse_data_spec("synthetic:assets=8,bars=60,seed=7")
    assert p.fingerprint == synthetic_panel(8, 60, 7).fingerprint
    q = parse_data_spec(" synthetic: assets = 8 , bars=60, seed=7, ic=0.2, start=2015-06-01 ")
    assert q.fingerprint == synthetic_panel(8, 60, 7, ic=0.2, start="2015-06-01").fingerprint
    assert parse_data_spec("SYNTHETIC:assets=3,bars=5").shape == (5, 3)
    assert parse_data_spec("synthetic").shape == (2520, 500)


def test_parse_sample_specs() -> None:
    pytest.importorskip("bokeh_sampledata")
    assert parse_data_spec("sample:stocks").assets == SAMPLE_TICKERS
    assert parse_data_spec("sample:stocks:MSFT, ibm").assets == ("IBM", "MSFT")


def test_parse_sample_eurusd_spec() -> None:
    fx = parse_data_spec("sample:eurusd")
    assert fx.shape == (5000, 1) and fx.assets == ("EURUSD",)
    assert (np.diff(fx.timestamps[:5]) == np.timedelta64(1, "h")).all()


def test_parse_file_specs_take_adjust_and_features(tmp_path: Path) -> None:
    p = synthetic_panel(4, 50, seed=3)
    df = p.to_frame()
    df.drop("ml_score").write_csv(tmp_path / "prices.csv")
    df.select("timestamp", "asset", "ml_score").write_parquet(tmp_path / "scores.parquet")
    got = parse_data_spec(str(tmp_path / "prices.csv"), features=tmp_path / "scores.parquet")
    assert got.fingerprint == p.fingerprint
    with pytest.raises(PanelError, match="adjust needs a close and an adj close column"):
        parse_data_spec(str(tmp_path / "prices.csv"), adjust=True)
    # Features join onto generated data too; a name it already has is refused.
    with pytest.raises(PanelError, match=r"feature\(s\) \['ml_score'\] are already"):
        parse_data_spec("synthetic:assets=4,bars=50,seed=3", features=tmp_path / "scores.parquet")
    df.select("timestamp", "asset", pl.col("ml_score").alias("copy")).write_csv(
        tmp_path / "copy.csv")
    q = parse_data_spec("synthetic:assets=4,bars=50,seed=3", features=tmp_path / "copy.csv")
    np.testing.assert_array_equal(q.features["copy"], p.features["ml_score"])


def test_parse_path_specs(tmp_path: Path) -> None:
    p = synthetic_panel(5, 30, seed=2)
    path = p.write_parquet(tmp_path / "p.parquet")
    assert parse_data_spec(str(path)).fingerprint == p.fingerprint
    assert parse_data_spec(path).fingerprint == p.fingerprint
    # A file whose name looks like a source kind is still a file.
    odd = p.write_parquet(tmp_path / "synth:x.parquet")
    assert parse_data_spec(str(odd)).fingerprint == p.fingerprint


@pytest.mark.parametrize(("spec", "words"), [
    ("synthetic:asets=3", "unknown key 'asets'"),
    ("synthetic:assets=abc", "bad value 'abc' for key 'assets'"),
    ("synthetic:ic=high", "key 'ic'"),
    ("synthetic:assets=0", "key 'assets'"),
    ("synthetic:ic=1.5", "key 'ic'"),
    ("synthetic:seed=-3", "key 'seed'"),
    ("synthetic:start=someday", "key 'start'"),
    ("synthetic:seed=1,seed=2", "key 'seed' given twice"),
    ("synthetic:seed=", "key 'seed' needs a value"),
    ("synthetic:seed", "key 'seed' needs a value"),
    ("sample:bonds", "unknown sample 'bonds'"),
    ("sample:eurusd:EUR", "takes no tickers"),
    ("sample:stocks:AAPL,XOM", "XOM"),
    ("synth:assets=3", "unknown source 'synth'"),
    ("", "empty"),
])
def test_parse_spec_errors(spec: str, words: str) -> None:
    if spec.startswith("sample:stocks:"):
        pytest.importorskip("bokeh_sampledata")
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        parse_data_spec(spec)


def test_parse_spec_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PanelError, match="no such file"):
        parse_data_spec(str(tmp_path / "missing.parquet"))


# ------------------------------------------------------------------------ CLI
def test_cli_version_and_help() -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["--version"])
    assert res.exit_code == 0 and "backsweep" in res.output
    res = runner.invoke(main, ["data", "--help"])
    assert res.exit_code == 0 and "synth" in res.output and "sample" in res.output


def test_cli_data_synth_writes_the_same_panel(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "s.parquet"
    res = CliRunner().invoke(main, ["data", "synth", "-o", str(out), "--assets", "15",
                                    "--bars", "200", "--seed", "4", "--ic", "0.2"])
    assert res.exit_code == 0, res.output
    expected = synthetic_panel(15, 200, 4, ic=0.2)
    assert Panel.read_parquet(out).fingerprint == expected.fingerprint
    line = res.output.strip()
    assert "\n" not in line
    assert line.startswith("wrote 200 bars x 15 assets, 2010-01-04 .. ")
    assert line.endswith(str(out))
    assert sorted(f.name for f in out.parent.iterdir()) == ["s.parquet"]


def test_cli_data_synth_defaults_match_the_function(tmp_path: Path) -> None:
    out = tmp_path / "d.parquet"
    res = CliRunner().invoke(main, ["data", "synth", "-o", str(out), "--assets", "4"])
    assert res.exit_code == 0, res.output
    assert Panel.read_parquet(out).fingerprint == synthetic_panel(4).fingerprint


def test_cli_data_sample(tmp_path: Path) -> None:
    pytest.importorskip("bokeh_sampledata")
    out = tmp_path / "stocks.parquet"
    res = CliRunner().invoke(main, ["data", "sample", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "3270 bars x 5 assets, 2000-03-01 .. 2013-03-01" in res.output
    assert Panel.read_parquet(out).fingerprint == sample_stocks().fingerprint
    out2 = tmp_path / "two.parquet"
    res = CliRunner().invoke(main, ["data", "sample", "-o", str(out2), "--tickers", "IBM,MSFT"])
    assert res.exit_code == 0, res.output
    assert Panel.read_parquet(out2).assets == ("IBM", "MSFT")


@pytest.mark.parametrize("args", [
    ["data", "synth", "--assets", "0"],
    ["data", "synth", "--bars", "-5"],
    ["data", "synth", "--seed", "-1"],
    ["data", "synth", "--ic", "1.5"],
    ["data", "synth", "--assets", "many"],
    ["data", "synth", "--start", "someday"],
    ["data", "synth", "--colour", "blue"],
    ["data", "sample", "--tickers", "AAPL,XOM"],
    ["data", "sample", "--tickers", ""],
    ["data", "nonsense"],
])
def test_cli_bad_arguments_exit_2_and_write_nothing(tmp_path: Path, args: list[str]) -> None:
    out = tmp_path / "out.parquet"
    res = CliRunner().invoke(main, [*args, "-o", str(out)])
    assert res.exit_code == 2, res.output
    assert "Error" in res.output
    assert list(tmp_path.iterdir()) == []


def test_cli_missing_output_and_directory_output(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["data", "synth", "--assets", "3"])
    assert res.exit_code == 2 and "--output" in res.output
    res = CliRunner().invoke(main, ["data", "synth", "-o", str(tmp_path)])
    assert res.exit_code == 2 and "directory" in res.output
    assert list(tmp_path.iterdir()) == []


def test_cli_subprocess_run_matches_synthetic_panel(tmp_path: Path) -> None:
    out = tmp_path / "sub.parquet"
    proc = subprocess.run(
        [sys.executable, "-m", "sweep.cli", "data", "synth", "-o", str(out),
         "--assets", "25", "--bars", "300", "--seed", "5", "--ic", "0.1"],
        cwd=REPO, env=os.environ.copy(), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("wrote 300 bars x 25 assets")
    expected = synthetic_panel(25, 300, 5, ic=0.1)
    assert Panel.read_parquet(out).fingerprint == expected.fingerprint
