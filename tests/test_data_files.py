"""Market data from files (engine.data.files): every layout, written by the test from the
sample stocks, reads back to the same panel and the same sweep metrics; bad input is named
by file, row and column; the hourly EURUSD sample; ``backsweep data import``."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

import sweep
from engine import Panel, PanelError
from engine.data import (
    add_features,
    bar_spacing,
    format_spacing,
    load_panel,
    missing_bars,
    parse_data_spec,
    sample_eurusd,
    sample_stocks,
)
from sweep.cli import main

REPO = Path(__file__).resolve().parents[1]
EURUSD_CSV = Path(__import__("importlib.util").util.find_spec("backtesting")
                  .submodule_search_locations[0]) / "test" / "EURUSD.csv"
MA_GRID = {"fast": [5, 10], "slow": [50]}


# ------------------------------------------------------------------ the layouts
@pytest.fixture(scope="module")
def stocks() -> Panel:
    return sample_stocks()


@pytest.fixture(scope="module")
def closes_only(stocks: Panel) -> Panel:
    """What a wide file of closes holds: open = high = low = close, no volume."""
    return Panel.from_arrays(stocks.timestamps, stocks.assets, close=stocks.close)


def _per_asset(stocks: Panel) -> dict[str, pl.DataFrame]:
    long = stocks.to_frame()
    return {a: long.filter(pl.col("asset") == a).drop("asset") for a in stocks.assets}


@pytest.fixture(scope="module")
def layouts(stocks: Panel, closes_only: Panel, tmp_path_factory: pytest.TempPathFactory
            ) -> dict[str, object]:
    """Each layout of the sample stocks on disk; name -> what to pass to load_panel."""
    root = tmp_path_factory.mktemp("layouts")
    long = stocks.to_frame()
    out: dict[str, object] = {}

    out["long_parquet"] = stocks.write_parquet(root / "long.parquet")
    # Long CSV as vendors spell it: "Date" and "Symbol", dates without a time.
    vendor = long.with_columns(pl.col("timestamp").dt.date()).rename(
        {"timestamp": "Date", "asset": "Symbol", "open": "Open", "close": "Close"})
    vendor.write_csv(root / "long.csv")
    out["long_csv"] = root / "long.csv"
    with gzip.open(root / "long.csv.gz", "wb") as f:
        long.rename({"asset": "ticker"}).write_csv(f)
    out["long_csv_gz"] = root / "long.csv.gz"

    # Per-ticker CSVs in a folder: mixed-case headers and the date column unnamed, as
    # pandas' DataFrame.to_csv writes its index.
    (root / "csv").mkdir()
    for a, df in _per_asset(stocks).items():
        df.with_columns(pl.col("timestamp").dt.date()).rename(
            {"timestamp": "", "open": "Open", "high": "HIGH", "low": "low", "close": "Close",
             "volume": "VoLuMe"}).write_csv(root / "csv" / f"{a}.csv")
    out["csv_folder"] = root / "csv"
    # The same five files, named one by one (one OHLCV file per asset).
    out["ohlcv_files"] = [root / "csv" / f"{a}.csv" for a in stocks.assets]

    # A glob of per-ticker Parquet files, typed dates in a "Date" column.
    (root / "pq").mkdir()
    for a, df in _per_asset(stocks).items():
        df.rename({"timestamp": "Date", "close": "Close"}).write_parquet(
            root / "pq" / f"{a}.parquet")
    out["parquet_glob"] = str(root / "pq" / "*.parquet")

    # A hive-partitioned dataset, one folder per symbol.
    for a, df in _per_asset(stocks).items():
        (root / "hive" / f"symbol={a}").mkdir(parents=True)
        df.write_parquet(root / "hive" / f"symbol={a}" / "part-0.parquet")
    out["hive"] = root / "hive"

    # Wide: one close column per asset, the date column unnamed.
    wide = (long.pivot(on="asset", index="timestamp", values="close").sort("timestamp")
            .with_columns(pl.col("timestamp").dt.date()).rename({"timestamp": ""}))
    wide.write_csv(root / "wide.csv")
    out["wide_csv"] = root / "wide.csv"
    out["closes_parquet"] = closes_only.write_parquet(root / "closes.parquet")
    return out


FULL_LAYOUTS = ["long_parquet", "long_csv", "long_csv_gz", "csv_folder", "ohlcv_files",
                "parquet_glob", "hive"]


@pytest.mark.parametrize("name", FULL_LAYOUTS)
def test_every_layout_reads_to_the_same_panel(layouts: dict, stocks: Panel, name: str) -> None:
    panel = load_panel(layouts[name])
    assert panel.assets == stocks.assets
    assert panel.fingerprint == stocks.fingerprint


def test_wide_csv_reads_as_closes(layouts: dict, stocks: Panel, closes_only: Panel) -> None:
    panel = load_panel(layouts["wide_csv"])
    np.testing.assert_array_equal(panel.close, stocks.close)
    np.testing.assert_array_equal(panel.open, stocks.close)
    assert np.isnan(panel.volume).all()
    assert panel.fingerprint == closes_only.fingerprint


def test_long_parquet_reads_as_read_parquet_does(layouts: dict) -> None:
    path = layouts["long_parquet"]
    assert load_panel(path).fingerprint == Panel.read_parquet(path).fingerprint
    assert parse_data_spec(str(path)).fingerprint == Panel.read_parquet(path).fingerprint


@pytest.fixture(scope="module")
def reference_metrics(layouts: dict) -> dict[str, pl.DataFrame]:
    return {
        "full": sweep.evaluate(Panel.read_parquet(layouts["long_parquet"]), "ma_cross", MA_GRID),
        "closes": sweep.evaluate(Panel.read_parquet(layouts["closes_parquet"]), "ma_cross",
                                 MA_GRID),
    }


@pytest.mark.parametrize("name", [*FULL_LAYOUTS, "wide_csv"])
def test_the_same_sweep_on_every_layout_gives_identical_metrics(
        layouts: dict, reference_metrics: dict, name: str) -> None:
    got = sweep.evaluate(load_panel(layouts[name]), "ma_cross", MA_GRID)
    expected = reference_metrics["closes" if name == "wide_csv" else "full"]
    assert got.height == 2
    assert got.equals(expected)


def test_data_specs_and_panel_read_take_every_layout(layouts: dict, stocks: Panel) -> None:
    for name in ("csv_folder", "parquet_glob", "hive", "long_csv_gz"):
        assert parse_data_spec(str(layouts[name])).fingerprint == stocks.fingerprint
        assert Panel.read(layouts[name]).fingerprint == stocks.fingerprint
    assert parse_data_spec(layouts["ohlcv_files"]).fingerprint == stocks.fingerprint


def test_one_ohlcv_file_is_one_asset_named_by_its_stem(layouts: dict) -> None:
    panel = load_panel(layouts["ohlcv_files"][0])
    assert panel.assets == ("AAPL",)
    assert panel.fingerprint == sample_stocks(["AAPL"]).fingerprint


def test_extra_numeric_columns_stay_features(tmp_path: Path, stocks: Panel) -> None:
    for a, df in _per_asset(stocks).items():
        df.with_columns((pl.col("close") / pl.col("open")).alias("Close/Open")).rename(
            {"timestamp": "Datetime"}).write_parquet(tmp_path / f"{a}.pq")
    panel = load_panel(tmp_path)
    assert list(panel.features) == ["Close/Open"]
    np.testing.assert_allclose(panel.features["Close/Open"], stocks.close / stocks.open)


def test_pandas_index_columns_are_the_date_or_dropped(tmp_path: Path, stocks: Panel) -> None:
    aapl = _per_asset(stocks)["AAPL"]
    # pandas read_csv + to_csv again: "Unnamed: 0" holds the dates.
    aapl.rename({"timestamp": "Unnamed: 0"}).write_csv(tmp_path / "AAPL.csv")
    assert load_panel(tmp_path / "AAPL.csv").fingerprint == sample_stocks(["AAPL"]).fingerprint
    # A RangeIndex written beside a real date column is dropped, not made a feature.
    aapl.with_row_index("").select("", pl.all().exclude("")).write_csv(tmp_path / "X.csv")
    panel = load_panel(tmp_path / "X.csv")
    assert panel.features == {} and panel.assets == ("X",)
    # Parquet from pandas keeps an unnamed DatetimeIndex as __index_level_0__, last.
    aapl.select(pl.all().exclude("timestamp"), pl.col("timestamp").alias("__index_level_0__")
                ).write_parquet(tmp_path / "AAPL.parquet")
    assert load_panel(tmp_path / "AAPL.parquet").fingerprint == \
        sample_stocks(["AAPL"]).fingerprint


def test_yahoo_null_rows_are_no_bars(tmp_path: Path) -> None:
    (tmp_path / "Y.csv").write_text(
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        "2020-01-02,10,12,9,11,5.5,100\n"
        "2020-01-03,null,null,null,null,null,null\n"
        "2020-01-06,11,12,10,12,6,100\n")
    panel = load_panel(tmp_path / "Y.csv")
    assert panel.shape == (2, 1)
    np.testing.assert_array_equal(panel.close[:, 0], [11.0, 12.0])


# ------------------------------------------------------------------ adjust
@pytest.fixture(scope="module")
def raw_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The source's unadjusted OHLC with its Adj Close, one Yahoo-style CSV per ticker."""
    from bokeh_sampledata import stocks as src

    root = tmp_path_factory.mktemp("raw")
    for t in ("AAPL", "FB", "GOOG", "IBM", "MSFT"):
        s = getattr(src, t)
        pl.DataFrame({"Date": s["date"], "Open": s["open"], "High": s["high"],
                      "Low": s["low"], "Close": s["close"], "Adj Close": s["adj_close"],
                      "Volume": s["volume"]}).write_csv(root / f"{t}.csv")
    return root


def test_adjust_scales_ohlc_by_adj_close(raw_folder: Path, stocks: Panel) -> None:
    adjusted = load_panel(raw_folder, adjust=True)
    # sample_stocks applies the same factor to the same numbers: bit for bit.
    assert adjusted.fingerprint == stocks.fingerprint


def test_without_adjust_adj_close_is_dropped_or_is_the_close(raw_folder: Path,
                                                             tmp_path: Path) -> None:
    from bokeh_sampledata import stocks as src

    raw = load_panel(raw_folder)
    j = raw.assets.index("AAPL")
    aapl = raw.close[:, j][np.isfinite(raw.close[:, j])]
    np.testing.assert_array_equal(aapl, src.AAPL["close"])
    assert raw.features == {}
    # No close column: the adj close is the close.
    df = pl.read_csv(raw_folder / "IBM.csv").select("Date", "Adj Close", "Volume")
    df.write_csv(tmp_path / "IBM.csv")
    ibm = load_panel(tmp_path / "IBM.csv")
    np.testing.assert_array_equal(ibm.close[:, 0], src.IBM["adj_close"])


def test_adjust_needs_both_columns(raw_folder: Path, layouts: dict, tmp_path: Path) -> None:
    with pytest.raises(PanelError, match=r"AAPL\.csv: adjust needs a close and an adj close"):
        load_panel(layouts["csv_folder"], adjust=True)
    with pytest.raises(PanelError, match=r"wide\.csv: a wide file holds closes only"):
        load_panel(layouts["wide_csv"], adjust=True)
    lines = (raw_folder / "MSFT.csv").read_text().splitlines()
    fields = lines[5].split(",")
    fields[5] = ""
    lines[5] = ",".join(fields)
    (tmp_path / "MSFT.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(PanelError) as err:
        load_panel(tmp_path / "MSFT.csv", adjust=True)
    msg = str(err.value)
    assert "MSFT.csv" in msg and "'Adj Close'" in msg and "row 4 (line 6)" in msg
    with pytest.raises(ValueError, match="adjust applies to files"):
        parse_data_spec("sample:stocks", adjust=True)


# ------------------------------------------------------------------ features
def _momentum(close: np.ndarray, bars: int = 20) -> np.ndarray:
    out = np.full(close.shape, np.nan)
    out[bars:] = close[bars:] / close[:-bars] - 1.0
    return out


def _long_scores(panel: Panel, values: np.ndarray, name: str) -> pl.DataFrame:
    t, a = np.nonzero(np.isfinite(values))
    return pl.DataFrame({"date": panel.timestamps[t], "Ticker": np.asarray(panel.assets)[a],
                         name: values[t, a]}).with_columns(pl.col("date").dt.date())


def test_features_file_joins_onto_the_bars_and_drives_top_n(layouts: dict, stocks: Panel,
                                                            tmp_path: Path) -> None:
    mom = _momentum(stocks.close)
    _long_scores(stocks, mom, "score").write_csv(tmp_path / "scores.csv")
    panel = load_panel(layouts["csv_folder"], features=tmp_path / "scores.csv")
    expected = Panel.from_arrays(stocks.timestamps, stocks.assets, close=stocks.close,
                                 open=stocks.open, high=stocks.high, low=stocks.low,
                                 volume=stocks.volume, features={"score": mom})
    assert list(panel.features) == ["score"]
    assert panel.fingerprint == expected.fingerprint
    grid = {"n": [2], "rebalance_every": [5, 21], "feature": ["score"]}
    got = sweep.evaluate(panel, "top_n", grid)
    assert got.equals(sweep.evaluate(expected, "top_n", grid))
    assert (got["n_trades"] > 0).all()
    # The same from a spec string, and onto a sample panel.
    assert parse_data_spec(str(layouts["hive"]), features=str(tmp_path / "scores.csv")
                           ).fingerprint == expected.fingerprint
    assert parse_data_spec("sample:stocks", features=tmp_path / "scores.csv"
                           ).fingerprint == expected.fingerprint


def test_wide_features_file_is_named_by_its_stem(stocks: Panel, tmp_path: Path) -> None:
    mom = _momentum(stocks.close, 5)
    wide = pl.DataFrame({"timestamp": stocks.timestamps,
                         **{a: mom[:, j] for j, a in enumerate(stocks.assets)}})
    wide.write_parquet(tmp_path / "mom5.parquet")
    _long_scores(stocks, -mom, "rev").write_parquet(tmp_path / "rev.parquet")
    panel = add_features(stocks, [tmp_path / "mom5.parquet", tmp_path / "rev.parquet"])
    assert sorted(panel.features) == ["mom5", "rev"]
    np.testing.assert_array_equal(panel.features["mom5"], mom)
    np.testing.assert_array_equal(panel.features["rev"], -mom)
    got = sweep.evaluate(panel, "top_n", {"n": [1], "feature": ["mom5", "rev"]})
    assert got.height == 2 and not got["sharpe"].is_null().any()


def test_features_errors_name_file_row_and_column(stocks: Panel, tmp_path: Path) -> None:
    scores = _long_scores(stocks, _momentum(stocks.close), "score")
    bad = pl.concat([scores.head(3), scores.slice(1, 1), scores.slice(3)])
    bad.write_csv(tmp_path / "dup.csv")
    with pytest.raises(PanelError) as err:
        add_features(stocks, tmp_path / "dup.csv")
    msg = str(err.value)
    assert "dup.csv" in msg and "'score'" in msg and "duplicate (timestamp, asset)" in msg
    assert "row 1 (line 3), row 3 (line 5)" in msg
    late = scores.with_columns(pl.col("date").cast(pl.Datetime) + pl.duration(hours=1))
    late.write_parquet(tmp_path / "late.pq")
    with pytest.raises(PanelError, match=r"late\.pq: no \(timestamp, asset\) of the features"):
        add_features(stocks, tmp_path / "late.pq")
    scores.rename({"score": "close"}).write_csv(tmp_path / "prices.csv")
    with pytest.raises(PanelError, match=r"prices\.csv: column\(s\) \['close'\] are prices"):
        add_features(stocks, tmp_path / "prices.csv")
    scores.write_csv(tmp_path / "score.csv")
    twice = add_features(stocks, tmp_path / "score.csv")
    with pytest.raises(PanelError, match=r"feature\(s\) \['score'\] are already"):
        add_features(twice, tmp_path / "score.csv")


# ------------------------------------------------------------------ bad input
def _error(source: object, **kwargs: object) -> str:
    with pytest.raises(PanelError) as err:
        load_panel(source, **kwargs)  # type: ignore[arg-type]
    assert isinstance(err.value, ValueError)
    return str(err.value)


def test_mixed_frequencies_name_both_files_and_spacings(layouts: dict, tmp_path: Path) -> None:
    shutil.copy(layouts["csv_folder"] / "IBM.csv", tmp_path / "IBM.csv")
    shutil.copy(EURUSD_CSV, tmp_path / "EURUSD.csv")
    msg = _error(tmp_path)
    assert "mixed bar frequencies" in msg
    assert f"{tmp_path / 'EURUSD.csv'} of 1h" in msg
    assert f"{tmp_path / 'IBM.csv'} has a median bar spacing of 1d" in msg
    # Also within one long file: the assets are named.
    fx = pl.read_csv(EURUSD_CSV).rename(str.lower).rename({"": "time"}).with_columns(
        asset=pl.lit("EURUSD"))
    ibm = pl.read_csv(tmp_path / "IBM.csv").rename(str.lower).rename({"": "time"}).with_columns(
        asset=pl.lit("IBM"), time=pl.col("time") + " 00:00:00")
    pl.concat([fx, ibm], how="diagonal_relaxed").write_csv(tmp_path / "both.csv")
    msg = _error(tmp_path / "both.csv")
    assert "(asset 'IBM')" in msg and "(asset 'EURUSD')" in msg


def test_duplicate_rows_name_the_file_and_both_lines(layouts: dict, tmp_path: Path) -> None:
    lines = (layouts["csv_folder"] / "IBM.csv").read_text().splitlines()
    (tmp_path / "IBM.csv").write_text("\n".join([*lines[:10], lines[5], *lines[10:]]) + "\n")
    shutil.copy(layouts["csv_folder"] / "MSFT.csv", tmp_path / "MSFT.csv")
    msg = _error(tmp_path)
    assert "duplicate (timestamp, asset) rows" in msg
    assert f"row 4 of {tmp_path / 'IBM.csv'} (line 6)" in msg
    assert f"row 9 of {tmp_path / 'IBM.csv'} (line 11)" in msg and "'IBM'" in msg
    # Two files holding the same asset's bars (AAPL.csv and AAPL.parquet in one folder).
    clash = tmp_path / "clash"
    clash.mkdir()
    shutil.copy(layouts["csv_folder"] / "AAPL.csv", clash / "AAPL.csv")
    shutil.copy(Path(layouts["parquet_glob"]).parent / "AAPL.parquet", clash / "AAPL.parquet")
    msg = _error(clash)
    assert f"row 0 of {clash / 'AAPL.csv'} (line 2)" in msg
    assert f"row 0 of {clash / 'AAPL.parquet'}" in msg


def test_unparseable_date_names_file_column_row_and_value(layouts: dict, tmp_path: Path) -> None:
    lines = (layouts["csv_folder"] / "MSFT.csv").read_text().splitlines()
    lines[8] = "2000-13-45" + lines[8][10:]
    (tmp_path / "MSFT.csv").write_text("\n".join(lines) + "\n")
    msg = _error(tmp_path / "MSFT.csv")
    assert str(tmp_path / "MSFT.csv") in msg and "'2000-13-45'" in msg
    assert "(unnamed first column)" in msg and "row 7 (line 9)" in msg
    vendor = pl.read_csv(layouts["long_csv"], infer_schema=False)
    vendor[100, "Date"] = "someday"
    vendor.write_csv(tmp_path / "long.csv")
    msg = _error(tmp_path / "long.csv")
    assert "column 'Date'" in msg and "'someday'" in msg and "row 100 (line 102)" in msg


@pytest.mark.parametrize(("body", "expected"), [
    ("20200102,1\n20200103,2\n", ["2020-01-02T00:00", "2020-01-03T00:00"]),
    ("01/02/2020,1\n01/13/2020,2\n", ["2020-01-02T00:00", "2020-01-13T00:00"]),  # US
    ("13/02/2020,1\n14/02/2020,2\n", ["2020-02-13T00:00", "2020-02-14T00:00"]),  # day first
    ("01/02/2020 09:30,1\n01/13/2020 10:30,2\n", ["2020-01-02T09:30", "2020-01-13T10:30"]),
    ("2020-01-02T10:00:00+01:00,1\n2020-01-02T11:00:00+01:00,2\n",
     ["2020-01-02T09:00", "2020-01-02T10:00"]),  # offsets: UTC wall time
    ("01/02/2020,1\n02/03/2020,2\n", "read as month/day and as day/month alike"),
    ("Jan 2 2020,1\n", "cannot tell the date format of 'Jan 2 2020' at row 0 (line 2)"),
])
def test_date_formats(tmp_path: Path, body: str, expected: list[str] | str) -> None:
    (tmp_path / "D.csv").write_text("Date,Close\n" + body)
    if isinstance(expected, str):
        msg = _error(tmp_path / "D.csv")
        assert "D.csv: column 'Date'" in msg and expected in msg
    else:
        ts = load_panel(tmp_path / "D.csv").timestamps
        assert [str(t)[:16] for t in ts] == expected


def test_semicolon_csv_gets_a_hint(tmp_path: Path) -> None:
    (tmp_path / "S.csv").write_text("Date;Close\n2020-01-02;1\n")
    assert "only commas separate CSV fields" in _error(tmp_path / "S.csv")


def test_values_past_the_rows_polars_types_from(tmp_path: Path) -> None:
    from engine.data import synthetic_panel

    p = synthetic_panel(10, 1500, seed=3, listing_fraction=0, delisting_fraction=0,
                        halt_probability=0)
    df = p.to_frame()  # 15,000 rows; polars guesses the types from the first 10,000
    vol = df["volume"].cast(pl.Int64).cast(pl.String).to_list()
    vol[12_000] = "1.5e3"  # an integer column turns float late: read exactly, no error
    df.with_columns(volume=pl.Series(vol)).write_csv(tmp_path / "late.csv")
    got = load_panel(tmp_path / "late.csv")
    t, a = divmod(12_000, 10)
    assert got.volume[t, a] == 1500.0
    closes = df["close"].cast(pl.String).to_list()
    closes[13_001] = "n.a."
    df.with_columns(close=pl.Series(closes)).write_csv(tmp_path / "bad.csv")
    msg = _error(tmp_path / "bad.csv")
    assert "bad.csv: column 'close': cannot read 'n.a.' as a number at row 13001 (line 13003)" \
        in msg


def test_text_in_a_price_column_names_file_column_and_row(layouts: dict, tmp_path: Path
                                                          ) -> None:
    lines = (layouts["csv_folder"] / "GOOG.csv").read_text().splitlines()
    fields = lines[1500].split(",")
    fields[4] = "12,5"  # a decimal comma: two fields, so quote it as a spreadsheet would
    lines[1500] = ",".join(fields[:4]) + ',"12,5",' + ",".join(fields[5:])
    (tmp_path / "GOOG.csv").write_text("\n".join(lines) + "\n")
    msg = _error(tmp_path / "GOOG.csv")
    assert "GOOG.csv: column 'Close': cannot read '12,5' as a number" in msg
    assert "row 1499 (line 1501)" in msg


def test_wide_file_with_no_numeric_columns(tmp_path: Path) -> None:
    (tmp_path / "names.csv").write_text("date,name,sector\n2020-01-02,Apple,Tech\n")
    msg = _error(tmp_path / "names.csv")
    assert "names.csv: no numeric columns" in msg
    assert "'Apple' in column 'name' at row 0 (line 2)" in msg
    (tmp_path / "dates.csv").write_text("Date\n2020-01-02\n2020-01-03\n")
    assert "dates.csv: no numeric columns" in _error(tmp_path / "dates.csv")


def test_empty_glob_folder_and_missing_path(tmp_path: Path) -> None:
    assert "the glob matches no files" in _error(str(tmp_path / "*.csv"))
    assert "holds no CSV, CSV.gz or Parquet files" in _error(tmp_path)
    (tmp_path / "notes.txt").write_text("not data")
    assert "not CSV, CSV.gz or Parquet" in _error(str(tmp_path / "*"))
    assert "no such file or folder" in _error(tmp_path / "missing.csv")
    with pytest.raises(PanelError, match="no such file"):
        parse_data_spec(str(tmp_path / "missing.parquet"))


def test_no_recognisable_date_column(tmp_path: Path) -> None:
    (tmp_path / "A.csv").write_text("when,close\n2020-01-02,1.5\n")
    msg = _error(tmp_path / "A.csv")
    assert "A.csv: no date column" in msg and "['when', 'close']" in msg


def test_other_column_problems(tmp_path: Path, layouts: dict) -> None:
    (tmp_path / "two.csv").write_text("Date,Close,close\n2020-01-02,1.5,1.5\n")
    assert "columns ['Close', 'close'] all name the close" in _error(tmp_path / "two.csv")
    (tmp_path / "noclose.csv").write_text("Date,Open,Volume\n2020-01-02,1.5,10\n")
    assert "noclose.csv: no close column" in _error(tmp_path / "noclose.csv")
    (tmp_path / "kaggle.csv").write_text("date,open,high,low,close,volume,Name\n"
                                         "2020-01-02,1,1,1,1,5,AAL\n")
    msg = _error(tmp_path / "kaggle.csv")
    assert "column 'Name'" in msg and "row 0 (line 2)" in msg and "symbol, ticker or asset" in msg
    # Checks of Panel.from_frame, with the file and line: a close outside [low, high].
    lines = (layouts["csv_folder"] / "IBM.csv").read_text().splitlines()
    fields = lines[30].split(",")
    fields[4] = "1000"
    lines[30] = ",".join(fields)
    (tmp_path / "IBM.csv").write_text("\n".join(lines) + "\n")
    msg = _error(tmp_path / "IBM.csv")
    assert "IBM.csv: column 'close': close outside [low, high] at row 29 (line 31)" in msg


def test_several_sources_merge_but_assets_must_not_collide(layouts: dict, stocks: Panel
                                                          ) -> None:
    csv = layouts["csv_folder"]
    merged = load_panel([csv / "AAPL.csv", str(Path(layouts["parquet_glob"]).parent / "[F-I]*"),
                         csv / "MSFT.csv"])
    assert merged.fingerprint == stocks.fingerprint
    msg = _error([layouts["csv_folder"], layouts["hive"]])
    assert "asset 'AAPL' is in both" in msg and str(layouts["hive"]) in msg


# ------------------------------------------------------------------ hourly EURUSD
def test_sample_eurusd_is_hourly_and_matches_the_package_file() -> None:
    fx = sample_eurusd()
    assert fx.shape == (5000, 1) and fx.assets == ("EURUSD",)
    assert str(fx.timestamps[0]) == "2017-04-19T09:00:00.000000000"
    assert str(fx.timestamps[-1])[:10] == "2018-02-07"
    assert format_spacing(bar_spacing(fx.timestamps)) == "1h"
    gaps = np.diff(fx.timestamps).astype("timedelta64[m]").astype(int)
    assert (gaps == 60).mean() > 0.95  # weekends and a few holes are the rest
    assert np.isfinite(fx.close).all() and (fx.volume > 0).all()
    raw = pl.read_csv(EURUSD_CSV)
    np.testing.assert_array_equal(fx.close[:, 0], raw["Close"].to_numpy())
    assert parse_data_spec("sample:eurusd").fingerprint == fx.fingerprint
    assert parse_data_spec(" SAMPLE:EURUSD ").fingerprint == fx.fingerprint
    res = sweep.evaluate(fx, "ma_cross", {"fast": [12], "slow": [48]})
    assert res["n_bars"][0] == 5000 and res["n_trades"][0] > 10


def test_sample_eurusd_without_the_package_says_how_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "backtesting", None)  # Python's own "not importable"
    with pytest.raises(ImportError, match="pip install backtesting"):
        sample_eurusd()
    with pytest.raises(ImportError, match="pip install backtesting"):
        parse_data_spec("sample:eurusd")


def test_summary_helpers(stocks: Panel) -> None:
    gaps = missing_bars(stocks)
    assert gaps["missing"].sum() == 0
    assert dict(zip(gaps["asset"], gaps["span"], strict=True))["FB"] == 196
    holed = Panel.from_arrays(stocks.timestamps, stocks.assets,
                              close=np.where(np.arange(stocks.n_bars)[:, None] % 100 == 7,
                                             np.nan, stocks.close))
    worst = missing_bars(holed).row(0, named=True)
    assert worst["asset"] in ("AAPL", "IBM", "MSFT") and worst["missing"] == 33


# ------------------------------------------------------------------ CLI
def _import(*args: object) -> object:
    return CliRunner().invoke(main, ["data", "import", *(str(a) for a in args)])


def test_cli_import_converts_and_reports(layouts: dict, stocks: Panel, tmp_path: Path) -> None:
    out = tmp_path / "new" / "panel.parquet"
    res = _import(layouts["csv_folder"], "-o", out)
    assert res.exit_code == 0, res.output
    assert Panel.read_parquet(out).fingerprint == stocks.fingerprint
    lines = res.output.splitlines()
    assert lines[0] == "panel: 3270 bars x 5 assets, 2000-03-01 .. 2013-03-01"
    assert lines[1] == "bar spacing: 1d (median)"
    assert lines[2].startswith("missing bars: none")
    assert lines[-1] == f"wrote 3270 bars x 5 assets, 2000-03-01 .. 2013-03-01 -> {out}"
    assert sorted(p.name for p in out.parent.iterdir()) == ["panel.parquet"]


def test_cli_import_several_sources_features_and_missing_bars(layouts: dict, stocks: Panel,
                                                             tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for a in ("GOOG", "IBM"):
        shutil.copy(layouts["csv_folder"] / f"{a}.csv", src / f"{a}.csv")
    lines = (src / "IBM.csv").read_text().splitlines()
    (src / "IBM.csv").write_text("\n".join([*lines[:100], *lines[103:]]) + "\n")  # 3 holes
    _long_scores(stocks, _momentum(stocks.close), "score").write_csv(tmp_path / "scores.csv")
    out = tmp_path / "p.parquet"
    res = _import(src, layouts["csv_folder"] / "MSFT.csv", "-o", out,
                  "--features", tmp_path / "scores.csv")
    assert res.exit_code == 0, res.output
    panel = Panel.read_parquet(out)
    assert panel.assets == ("GOOG", "IBM", "MSFT") and list(panel.features) == ["score"]
    assert "features: score" in res.output
    assert "missing bars: 3 of " in res.output and "in 1 of 3 assets" in res.output
    assert "  IBM: 3 of 3,270 bars (0.09%)" in res.output


def test_cli_import_adjust_and_hourly(raw_folder: Path, stocks: Panel, tmp_path: Path) -> None:
    res = _import(str(raw_folder / "*.csv"), "-o", tmp_path / "adj.parquet", "--adjust")
    assert res.exit_code == 0, res.output
    assert Panel.read_parquet(tmp_path / "adj.parquet").fingerprint == stocks.fingerprint
    res = _import(EURUSD_CSV, "-o", tmp_path / "fx.parquet")
    assert res.exit_code == 0, res.output
    assert "panel: 5000 bars x 1 assets, 2017-04-19 09:00 .. 2018-02-07 " in res.output
    assert "bar spacing: 1h (median)" in res.output


@pytest.mark.parametrize("case", ["mixed", "collide", "nodate", "empty_glob", "missing"])
def test_cli_import_bad_input_exits_2_and_writes_nothing(layouts: dict, tmp_path: Path,
                                                        case: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    if case == "mixed":
        shutil.copy(layouts["csv_folder"] / "IBM.csv", src / "IBM.csv")
        shutil.copy(EURUSD_CSV, src / "EURUSD.csv")
        args, words = [src], ["mixed bar frequencies", "EURUSD.csv of 1h", "IBM.csv"]
    elif case == "collide":
        args = [layouts["hive"], layouts["csv_folder"] / "IBM.csv"]
        words = ["asset 'IBM' is in both"]
    elif case == "nodate":
        (src / "A.csv").write_text("when,close\n2020-01-02,1.5\n")
        args, words = [src / "A.csv"], ["A.csv: no date column"]
    elif case == "empty_glob":
        args, words = [str(src / "*.parquet")], ["the glob matches no files"]
    else:
        args, words = [src / "nope.csv"], ["nope.csv: no such file or folder"]
    out = tmp_path / "out" / "p.parquet"
    res = _import(*args, "-o", out)
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: ")
    for w in words:
        assert w in res.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", [
    ["data", "synth", "--assets", "3", "--bars", "20"],
    ["data", "sample", "--tickers", "IBM"],
    ["data", "import", "SRC"],
])
def test_cli_output_refusals_write_nothing(layouts: dict, tmp_path: Path,
                                           command: list[str]) -> None:
    command = [str(layouts["csv_folder"] / "IBM.csv") if c == "SRC" else c for c in command]
    runner = CliRunner()
    existing = tmp_path / "mine.parquet"
    existing.write_bytes(b"not written by backsweep")
    res = runner.invoke(main, [*command, "-o", str(existing)])
    assert res.exit_code == 2, res.output
    assert f"error: {existing} exists; pass --overwrite to replace it" in res.output
    assert existing.read_bytes() == b"not written by backsweep"

    folder = tmp_path / "folder.parquet"
    folder.mkdir()
    (folder / "keep").write_text("x")
    for extra in ([], ["--overwrite"]):
        res = runner.invoke(main, [*command, "-o", str(folder), *extra])
        assert res.exit_code == 2, res.output
        assert f"error: {folder} is a directory" in res.output
    assert [p.name for p in folder.iterdir()] == ["keep"]

    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    res = runner.invoke(main, [*command, "-o", str(blocker / "sub" / "p.parquet")])
    assert res.exit_code == 2, res.output
    assert f"cannot write {blocker / 'sub' / 'p.parquet'}: {blocker} is not a directory" \
        in res.output
    res = runner.invoke(main, [*command, "-o", "/proc/x/p.parquet"])
    assert res.exit_code == 2, res.output
    assert "cannot write /proc/x/p.parquet: cannot create files in /proc" in res.output

    # A read-only folder: root ignores permission bits, so root gets one that refuses root.
    if os.geteuid() == 0:
        locked = Path("/sys")
    else:
        locked = tmp_path / "ro"
        locked.mkdir()
        locked.chmod(0o555)
    target = locked / "p.parquet"
    res = runner.invoke(main, [*command, "-o", str(target)])
    assert res.exit_code == 2, res.output
    assert f"cannot write {target}: " in res.output
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "folder.parquet",
                                                          "mine.parquet"] + \
        (["ro"] if os.geteuid() != 0 else [])

    res = runner.invoke(main, [*command, "-o", str(existing), "--overwrite"])
    assert res.exit_code == 0, res.output
    assert Panel.read_parquet(existing).n_assets >= 1


def test_cli_import_subprocess(layouts: dict, stocks: Panel, tmp_path: Path) -> None:
    out = tmp_path / "sub.parquet"
    proc = subprocess.run(
        [sys.executable, "-m", "sweep.cli", "data", "import", str(layouts["parquet_glob"]),
         "-o", str(out)],
        cwd=REPO, env=os.environ.copy(), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("panel: 3270 bars x 5 assets")
    assert Panel.read_parquet(out).fingerprint == stocks.fingerprint
    proc = subprocess.run(
        [sys.executable, "-m", "sweep.cli", "data", "import", str(layouts["parquet_glob"]),
         "-o", str(out)],
        cwd=REPO, env=os.environ.copy(), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2 and "pass --overwrite" in proc.stderr
