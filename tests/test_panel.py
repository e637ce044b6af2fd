"""Panel: validation errors, canonical ordering, fingerprint, slicing, Parquet round trip."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine.panel import Panel, PanelError

DAYS = ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08"]


def long_frame() -> pl.DataFrame:
    """3 assets x 5 days in file order (timestamp, asset); asset C has no bar on day 3.

    Feature ``signal`` has a NaN on one existing bar, to check that NaN survives.
    """
    rows = []
    for i, day in enumerate(DAYS):
        for j, asset in enumerate(("A", "B", "C")):
            if asset == "C" and i == 2:
                continue
            close = 10.0 * (j + 1) + i
            rows.append({
                "timestamp": dt.datetime.fromisoformat(day),
                "asset": asset,
                "open": close - 0.5,
                "high": close + 1.0,
                "low": close - 1.0,
                "close": close,
                "volume": 1000.0 * (i + 1),
                "signal": float("nan") if (asset, i) == ("B", 1) else 0.1 * i - 0.05 * j,
            })
    return pl.DataFrame(rows)


def write(df: pl.DataFrame, tmp_path: Path, name: str = "bars.parquet") -> Path:
    path = tmp_path / name
    df.write_parquet(path)
    return path


def set_cell(df: pl.DataFrame, row: int, column: str, value: object) -> pl.DataFrame:
    values = df[column].to_list()
    values[row] = value
    return df.with_columns(pl.Series(column, values, dtype=df.schema[column]))


def read_error(df: pl.DataFrame, tmp_path: Path) -> tuple[str, Path]:
    path = write(df, tmp_path)
    with pytest.raises(PanelError) as info:
        Panel.read_parquet(path)
    return str(info.value), path


# ------------------------------------------------------------------ valid input
def test_long_frame_builds_expected_panel(tmp_path: Path) -> None:
    p = Panel.read_parquet(write(long_frame(), tmp_path))
    assert p.shape == (5, 3)
    assert p.assets == ("A", "B", "C")
    assert p.timestamps.dtype == np.dtype("datetime64[ns]")
    assert [str(t)[:10] for t in p.timestamps] == DAYS
    assert np.isnan(p.close[2, 2]) and np.isnan(p.open[2, 2]) and np.isnan(p.volume[2, 2])
    assert np.isnan(p.features["signal"][1, 1])
    assert p.close[4, 1] == 24.0
    assert set(p.features) == {"signal"}


def test_close_only_frame_fills_ohlc_from_close() -> None:
    df = pl.DataFrame({"timestamp": DAYS[:2], "asset": ["X", "X"], "close": [5.0, 6.0]})
    p = Panel.from_frame(df)
    for arr in (p.open, p.high, p.low):
        np.testing.assert_array_equal(arr, p.close)
    assert np.isnan(p.volume).all()


# ---------------------------------------------------------- validation errors
@pytest.mark.parametrize("missing", ["timestamp", "asset", "close"])
def test_missing_required_column_names_file_and_column(tmp_path: Path, missing: str) -> None:
    msg, path = read_error(long_frame().drop(missing), tmp_path)
    assert str(path) in msg
    assert repr(missing) in msg and "missing" in msg


def test_duplicate_rows_name_file_and_both_rows(tmp_path: Path) -> None:
    df = long_frame()
    df = pl.concat([df.head(4), df.slice(1, 1), df.slice(4)])  # row 4 repeats row 1
    msg, path = read_error(df, tmp_path)
    assert str(path) in msg
    assert "duplicate" in msg and "[1, 4]" in msg
    assert "'B'" in msg


# (column, row, value, expected words in the message)
BAD_VALUES = [
    ("close", 5, float("inf"), "infinite price"),
    ("close", 7, -3.0, "non-positive price"),
    ("close", 3, 0.0, "non-positive price"),
    ("open", 2, float("nan"), "non-finite price"),
    ("open", 9, -1.0, "non-positive price"),
    ("high", 4, float("-inf"), "non-finite price"),
    ("high", 6, float("nan"), "non-finite price"),
    ("low", 0, 0.0, "non-positive price"),
    ("low", 8, float("inf"), "non-finite price"),
    ("high", 10, 1.0, "high below low"),
    ("close", 11, 1000.0, "close outside [low, high]"),
    ("close", 12, 0.5, "close outside [low, high]"),
    ("open", 1, 1000.0, "open outside [low, high]"),
    ("volume", 13, -5.0, "negative or infinite volume"),
    ("volume", 3, float("inf"), "negative or infinite volume"),
    ("signal", 6, float("inf"), "infinite feature value"),
]


@pytest.mark.parametrize(("column", "row", "value", "problem"), BAD_VALUES)
def test_bad_value_names_file_column_and_row(tmp_path: Path, column: str, row: int,
                                             value: float, problem: str) -> None:
    msg, path = read_error(set_cell(long_frame(), row, column, value), tmp_path)
    assert str(path) in msg
    assert f"column {column!r}" in msg
    assert f"row {row}," in msg
    assert problem in msg


@pytest.mark.parametrize("column", ["close", "open", "high", "low"])
def test_null_price_names_file_column_and_row(tmp_path: Path, column: str) -> None:
    msg, path = read_error(set_cell(long_frame(), 6, column, None), tmp_path)
    assert str(path) in msg
    assert f"column {column!r}" in msg and "row 6" in msg and "null" in msg


def test_null_asset_names_row(tmp_path: Path) -> None:
    msg, path = read_error(set_cell(long_frame(), 3, "asset", None), tmp_path)
    assert str(path) in msg and "'asset'" in msg and "row 3" in msg


def test_error_rows_are_input_rows_even_when_input_is_unsorted(tmp_path: Path) -> None:
    df = long_frame().reverse()
    # Input row 2 of the reversed frame is the bar (2024-01-08, A).
    msg, _ = read_error(set_cell(df, 2, "close", -1.0), tmp_path)
    assert "row 2," in msg and "'A'" in msg and "2024-01-08" in msg


def test_non_numeric_feature_column_names_file_and_column(tmp_path: Path) -> None:
    df = long_frame().with_columns(pl.lit("tech").alias("sector"))
    msg, path = read_error(df, tmp_path)
    assert str(path) in msg
    assert "column 'sector'" in msg and "expected numbers" in msg


def test_unparseable_timestamp_string_names_file_column_and_row(tmp_path: Path) -> None:
    df = long_frame().with_columns(pl.col("timestamp").dt.strftime("%Y-%m-%d"))
    df = set_cell(df, 7, "timestamp", "2024-13-45")
    msg, path = read_error(df, tmp_path)
    assert str(path) in msg
    assert "column 'timestamp'" in msg and "row 7" in msg and "2024-13-45" in msg


def test_timestamp_strings_parse_like_datetimes() -> None:
    df = long_frame()
    as_text = df.with_columns(pl.col("timestamp").dt.strftime("%Y-%m-%d"))
    assert Panel.from_frame(as_text).fingerprint == Panel.from_frame(df).fingerprint


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(PanelError, match="no such file"):
        Panel.read_parquet(tmp_path / "nope.parquet")
    junk = tmp_path / "junk.parquet"
    junk.write_text("not parquet")
    with pytest.raises(PanelError, match=re.escape(str(junk))):
        Panel.read_parquet(junk)


def test_from_arrays_errors() -> None:
    ts = np.array(DAYS[:3], dtype="datetime64[ns]")
    close = np.array([[1.0, 2.0], [1.1, 2.1], [1.2, 2.2]])
    with pytest.raises(PanelError, match="duplicate timestamp"):
        Panel.from_arrays(ts[[0, 1, 1]], ["A", "B"], close=close)
    with pytest.raises(PanelError, match="duplicate asset"):
        Panel.from_arrays(ts, ["A", "A"], close=close)
    with pytest.raises(PanelError, match="'open': shape"):
        Panel.from_arrays(ts, ["A", "B"], close=close, open=close[:2])
    with pytest.raises(PanelError, match="timestamps"):
        Panel.from_arrays(["2024-01-02", "garbage", "2024-01-04"], ["A", "B"], close=close)
    with pytest.raises(PanelError, match="clashes"):
        Panel.from_arrays(ts, ["A", "B"], close=close, features={"volume": close})
    bad = close.copy()
    bad[1, 1] = -2.0
    # open/high/low default to close, so open (checked first) is the column named.
    with pytest.raises(PanelError, match=r"non-positive price at timestamp 2024-01-03.*'B'"):
        Panel.from_arrays(ts, ["A", "B"], close=bad)
    with pytest.raises(PanelError, match=r"column 'close': non-positive price"):
        Panel.from_arrays(ts, ["A", "B"], close=bad, open=close, high=close,
                          low=close / 2)


# ------------------------------------------------------------------ ordering
def test_unsorted_frame_gives_same_panel_as_sorted(tmp_path: Path) -> None:
    df = long_frame()
    shuffled = df.sample(fraction=1.0, shuffle=True, seed=11)
    assert shuffled["asset"].to_list() != df["asset"].to_list()
    a = Panel.from_frame(df)
    b = Panel.from_frame(shuffled)
    c = Panel.read_parquet(write(shuffled, tmp_path))
    assert a.fingerprint == b.fingerprint == c.fingerprint
    assert np.all(np.diff(b.timestamps.view(np.int64)) > 0)


def test_unsorted_arrays_are_sorted() -> None:
    ts = np.array(DAYS, dtype="datetime64[ns]")
    close = np.arange(10.0, 20.0).reshape(5, 2)
    feat = close / 100
    order = np.array([3, 0, 4, 2, 1])
    a = Panel.from_arrays(ts, ["A", "B"], close=close, features={"f": feat})
    b = Panel.from_arrays(ts[order], ["A", "B"], close=close[order], features={"f": feat[order]})
    assert a.fingerprint == b.fingerprint
    np.testing.assert_array_equal(b.close, close)


# --------------------------------------------------------------- fingerprint
def test_fingerprint_changes_when_any_single_value_changes() -> None:
    base = Panel.from_frame(long_frame())
    seen = {base.fingerprint}

    def rebuild(**changes: object) -> Panel:
        parts = {
            "timestamps": base.timestamps.copy(), "assets": list(base.assets),
            "open": base.open.copy(), "high": base.high.copy(), "low": base.low.copy(),
            "close": base.close.copy(), "volume": base.volume.copy(),
            "features": {k: v.copy() for k, v in base.features.items()},
        }
        parts.update(changes)
        return Panel.from_arrays(parts.pop("timestamps"), parts.pop("assets"), **parts)

    assert rebuild().fingerprint == base.fingerprint
    for name in ("open", "high", "low", "close", "volume"):
        for t, n in [(0, 0), (3, 1), (4, 2)]:
            arr = getattr(base, name).copy()
            if name in ("open", "close"):
                arr[t, n] = base.low[t, n] + 0.25  # still inside [low, high]
            elif name == "high":
                arr[t, n] += 0.5
            elif name == "low":
                arr[t, n] -= 0.25
            else:
                arr[t, n] += 1.0
            fp = rebuild(**{name: arr}).fingerprint
            assert fp not in seen, (name, t, n)
            seen.add(fp)
    for t, n in [(0, 0), (1, 1), (2, 0)]:  # (1, 1) is NaN: NaN -> number must count too
        f = base.features["signal"].copy()
        f[t, n] = 0.123
        fp = rebuild(features={"signal": f}).fingerprint
        assert fp not in seen
        seen.add(fp)
    ts = base.timestamps.copy()
    ts[-1] += np.timedelta64(1, "D")
    renamed = {"signal2": base.features["signal"]}
    for fp in (
        rebuild(timestamps=ts).fingerprint,
        rebuild(assets=["A", "B", "D"]).fingerprint,
        rebuild(features=renamed).fingerprint,
        rebuild(features={}).fingerprint,
    ):
        assert fp not in seen
        seen.add(fp)


# ------------------------------------------------------------------- slicing
def test_slice_by_dates_is_inclusive() -> None:
    p = Panel.from_frame(long_frame())
    s = p.slice("2024-01-03", "2024-01-05")
    assert [str(t)[:10] for t in s.timestamps] == DAYS[1:4]
    np.testing.assert_array_equal(s.close, p.close[1:4])
    np.testing.assert_array_equal(s.features["signal"], p.features["signal"][1:4])
    assert s.assets == p.assets
    assert p.slice(dt.date(2024, 1, 4), None).n_bars == 3
    assert p.slice(None, np.datetime64("2024-01-02")).n_bars == 1
    # Bounds that fall between bars (a weekend) select the bars inside them.
    assert p.slice("2024-01-06", "2024-01-08").n_bars == 1
    assert p.slice("2024-01-05T12:00", "2024-01-08T00:00").n_bars == 1
    assert p.slice().fingerprint == p.fingerprint


def test_slice_errors() -> None:
    p = Panel.from_frame(long_frame())
    with pytest.raises(PanelError, match="holds no bars"):
        p.slice("2024-01-06", "2024-01-07")
    with pytest.raises(PanelError, match="holds no bars"):
        p.slice("2025-01-01")
    with pytest.raises(PanelError, match="cannot parse"):
        p.slice("yesterday-ish")


# -------------------------------------------------------------------- pandas
def test_pandas_input_matches_polars_input() -> None:
    pd = pytest.importorskip("pandas")
    df = long_frame()
    pdf = pd.DataFrame({c: df[c].to_list() for c in df.columns})
    pdf["timestamp"] = pd.to_datetime(pdf["timestamp"])
    assert Panel.from_frame(pdf).fingerprint == Panel.from_frame(df).fingerprint
    pdf_str = pdf.assign(timestamp=pdf["timestamp"].dt.strftime("%Y-%m-%d"))
    assert Panel.from_frame(pdf_str).fingerprint == Panel.from_frame(df).fingerprint
    with pytest.raises(PanelError, match="missing required column"):
        Panel.from_frame(pdf.drop(columns=["close"]))


# ---------------------------------------------------------------- round trip
def test_parquet_round_trip_preserves_everything(tmp_path: Path) -> None:
    p = Panel.from_frame(long_frame())
    frame = p.to_frame()
    assert frame.columns == ["timestamp", "asset", "open", "high", "low", "close", "volume",
                             "signal"]
    assert frame.height == 14  # 15 cells minus C's missing bar
    assert frame["timestamp"].dtype == pl.Datetime("ns")
    path = p.write_parquet(tmp_path / "sub" / "out.parquet")
    assert path.exists()
    assert not [f for f in path.parent.iterdir() if f.name != "out.parquet"]  # no temp left
    q = Panel.read_parquet(path)
    assert q.fingerprint == p.fingerprint
    np.testing.assert_array_equal(q.timestamps, p.timestamps)
    assert q.assets == p.assets
    for name in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(q, name), getattr(p, name))
    np.testing.assert_array_equal(q.features["signal"], p.features["signal"])
    assert np.isnan(q.close[2, 2]) and np.isnan(q.features["signal"][1, 1])


def test_write_parquet_replaces_existing_file(tmp_path: Path) -> None:
    p = Panel.from_frame(long_frame())
    path = tmp_path / "out.parquet"
    path.write_text("old")
    p.write_parquet(path)
    assert Panel.read_parquet(path).fingerprint == p.fingerprint


def test_repr_names_shape_span_and_features() -> None:
    r = repr(Panel.from_frame(long_frame()))
    assert r == "Panel(5 bars x 3 assets, 2024-01-02 .. 2024-01-08, features=['signal'])"


# ------------------------------------------------- gaps found and fixed in panel.py
def test_null_datetime_timestamp_is_an_error() -> None:
    df = set_cell(long_frame(), 4, "timestamp", None)
    with pytest.raises(PanelError, match="row 4"):
        Panel.from_frame(df)


def test_nan_close_row_is_an_error() -> None:
    df = set_cell(long_frame(), 4, "close", float("nan"))
    with pytest.raises(PanelError, match="row 4"):
        Panel.from_frame(df)


def test_from_arrays_round_trip_with_values_on_no_bar_cells(tmp_path: Path) -> None:
    ts = np.array(DAYS[:2], dtype="datetime64[ns]")
    close = np.array([[10.0, np.nan], [11.0, 12.0]])
    opens = np.array([[10.0, 9.0], [11.0, 12.0]])  # finite open where there is no bar
    p = Panel.from_arrays(ts, ["A", "B"], close=close, open=opens, high=opens + 5,
                          low=np.fmin(opens, close) - 1)
    path = p.write_parquet(tmp_path / "p.parquet")
    assert Panel.read_parquet(path).fingerprint == p.fingerprint


def test_last_bars_are_each_assets_last_close_per_panel_and_window() -> None:
    """Panel.last_bars (what the engine closes a delisted position on) is each asset's
    last bar with a close, -1 for an asset without one; a window's panel has its own."""
    close = np.array([[1.0, np.nan, 5.0, np.nan],
                      [2.0, 3.0, np.nan, np.nan],
                      [np.nan, 4.0, np.nan, np.nan]])
    p = Panel.from_arrays(np.arange(3).astype("datetime64[D]"), ["A", "B", "C", "D"],
                          close=close)
    assert p.last_bars.tolist() == [1, 2, 0, -1]
    assert p.last_bars is p.last_bars  # computed once
    assert p.take(0, 2).last_bars.tolist() == [1, 1, 0, -1]
