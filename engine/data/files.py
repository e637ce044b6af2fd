"""Market data from the files researchers already have, read into a :class:`Panel`.

Layouts (CSV, CSV.gz or Parquet; see docs/data.md for the full rules):

* long: a date column, an asset column (symbol/ticker/asset) and price columns;
* one asset's OHLCV: no asset column, price columns (open/high/low/close/adj close/volume);
  the asset is the file's stem (``AAPL.csv`` -> ``AAPL``);
* wide: a date column plus one numeric column per asset, read as closes;
* a folder or a glob of such files, and a hive-partitioned Parquet dataset (``symbol=XYZ/``).

polars reads every file (``scan_csv`` / ``scan_parquet``, collected once per file); this
module only recognises columns and stacks the files into one long table, which
:meth:`Panel.from_frame` checks. Errors are :class:`PanelError` naming the file, the row
(and, for CSV, the line) and the column.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from engine.data.summary import format_spacing
from engine.panel import Panel, PanelError, RowLabel, parse_timestamps

__all__ = ["CSV_SUFFIXES", "PARQUET_SUFFIXES", "Source", "add_features", "load_panel"]

Source = str | os.PathLike[str]
CSV_SUFFIXES = (".csv.gz", ".csv")
PARQUET_SUFFIXES = (".parquet", ".pq")

# Normalised column name -> role. Names are compared in lower case with runs of spaces,
# underscores, hyphens and colons made one "_": "Adj Close", "adj_close", "ADJ-CLOSE" match.
_ROLE_OF = {
    "date": "timestamp", "datetime": "timestamp", "time": "timestamp", "timestamp": "timestamp",
    "open": "open", "high": "high", "low": "low", "close": "close", "volume": "volume",
    "adj_close": "adj_close", "adjclose": "adj_close", "adjusted_close": "adj_close",
    "symbol": "asset", "ticker": "asset", "asset": "asset",
}
_PRICE_ROLES = ("open", "high", "low", "close", "adj_close", "volume")
_ROLE_WORDS = {"timestamp": "date", "asset": "asset", "adj_close": "adj close"}
# What an index written by pandas is called: "" (to_csv), "Unnamed: 0" (read_csv then
# to_csv again), "index" (reset_index); Parquet keeps an unnamed index as __index_level_0__.
_UNNAMED_FIRST = ("", "unnamed_0", "index")
_PANDAS_INDEX = "__index_level_0__"
# pandas' default missing-value markers, as vendors write them: null, not a parse error.
_NULLS = ["", "null", "NULL", "Null", "NaN", "nan", "-nan", "NA", "N/A", "n/a", "#N/A",
          "None", "<NA>"]
# Rows polars looks at to guess CSV column types; a value it guessed wrong makes the file
# be read again as text and converted column by column (slower, exact errors).
_INFER_ROWS = 10_000
# Largest / smallest median bar spacing tolerated among files: daily data has a median
# gap of 1d whatever its holidays; daily next to weekly (7x) or hourly (24x) is a mistake.
_MAX_SPACING_RATIO = 1.5
_FID, _FROW, _PATH = "__file_id", "__file_row", "__file_path"


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-:]+", "_", name.strip().lower())


# ------------------------------------------------------------------ public API
def load_panel(source: Source | Sequence[Source], *, adjust: bool = False,
               features: Source | Sequence[Source] | None = None) -> Panel:
    """Read market data files in any supported layout into a :class:`Panel`.

    Args:
        source: a CSV, CSV.gz or Parquet file (long, wide or one asset's OHLCV), a folder
            of per-asset files, a glob (``"prices/*.csv"``), a hive-partitioned Parquet
            dataset (``symbol=XYZ/...``), or a list of those, merged (an asset may come from
            only one of them).
        adjust: scale open, high, low and close by ``adj close / close`` (every price file
            then needs both columns). Without it an adj close column is dropped, or used as
            the close when the file has no close column.
        features: a separate file, folder or glob of feature values joined onto the
            panel's (timestamp, asset) bars: long (date, asset, one numeric column per
            feature) or wide (date, one numeric column per asset; the feature is named
            after the file's stem). See :func:`add_features`.

    Raises:
        PanelError: unreadable or inconsistent input; the message names the file, row and
            column (mixed bar frequencies, duplicate (timestamp, asset) rows, unparseable
            dates or numbers, no date column, a wide file with no numeric column, an empty
            folder or glob).

    Example:
        >>> load_panel("prices/*.csv", adjust=True)  # doctest: +SKIP
        Panel(3270 bars x 5 assets, 2000-03-01 .. 2013-03-01)
        >>> load_panel(["stocks.csv.gz", "fx/"], features="scores.parquet")  # doctest: +SKIP
        Panel(5120 bars x 7 assets, 2000-03-01 .. 2018-02-07, features=['score'])
    """
    files = _Files()
    df, label = _read_sources(source, files, role="prices", adjust=adjust)
    if df.height == 0:
        raise PanelError(f"{label}: no bars (the files hold no rows with prices)")
    where = files.paths[0] if len(files.paths) == 1 else label
    _check_frequencies(df, files, where)
    panel = Panel.from_frame(df.drop(_FID, _FROW), source=where,
                             rows=files.row_labels(df, with_path=len(files.paths) > 1))
    if features is not None:
        panel = add_features(panel, features)
    return panel


def add_features(panel: Panel, features: Source | Sequence[Source]) -> Panel:
    """The panel with feature columns read from files joined onto its (timestamp, asset) bars.

    A long features file has a date column, an asset column and one numeric column per
    feature; a wide one has a date column and one numeric column per asset, and its feature
    is named after the file's stem (``ml_score.csv`` -> ``ml_score``). Timestamps must
    equal the bars' exactly. Feature rows without a price bar are left out; bars without a
    feature value get NaN.

    Raises:
        PanelError: no row matches a bar; a feature name already in the panel or naming a
            price column; duplicate (timestamp, asset) rows; infinite values (the message
            names the file, row and column).

    Example:
        >>> from engine.data import sample_stocks
        >>> add_features(sample_stocks(), "scores.csv").features.keys()  # doctest: +SKIP
        dict_keys(['score'])
    """
    files = _Files()
    df, label = _read_sources(features, files, role="features", adjust=False)
    names = [c for c in df.columns if c not in ("timestamp", "asset", _FID, _FROW)]
    with_path = len(files.paths) > 1
    where = files.paths[0] if len(files.paths) == 1 else label
    if not names:
        raise PanelError(f"{where}: no feature columns")
    clash = sorted(set(names) & set(panel.features))
    if clash:
        raise PanelError(f"{where}: feature(s) {clash} are already in the price data")
    at = files.row_labels(df, with_path=with_path)
    for name in names:  # per feature: wide files of several features stack as null rows
        values = df.with_row_index("__i").filter(pl.col(name).is_not_null())
        inf = values.filter(pl.col(name).is_infinite())
        if inf.height:
            raise PanelError(f"{where}: column {name!r}: infinite value at "
                             f"{at(int(inf['__i'][0]))}")
        dups = values.filter(pl.struct("timestamp", "asset").is_duplicated())
        if dups.height:
            r = dups.row(0, named=True)
            same = dups.filter((pl.col("timestamp") == r["timestamp"])
                               & (pl.col("asset") == r["asset"]))["__i"].to_list()
            raise PanelError(f"{where}: column {name!r}: duplicate (timestamp, asset) rows "
                             f"{', '.join(at(i) for i in same)}: ({r['timestamp']}, "
                             f"{r['asset']!r})")

    grid_t = pl.DataFrame({"timestamp": pl.Series(panel.timestamps).cast(pl.Datetime("ns")),
                           "__t": np.arange(panel.n_bars)})
    grid_a = pl.DataFrame({"asset": pl.Series(list(panel.assets), dtype=pl.String),
                           "__a": np.arange(panel.n_assets)})
    hits = df.join(grid_t, on="timestamp").join(grid_a, on="asset")
    t_idx, a_idx = hits["__t"].to_numpy(), hits["__a"].to_numpy()
    if hits.height == 0 or not np.isfinite(panel.close[t_idx, a_idx]).any():
        from engine.data.summary import format_span

        assets = df["asset"].unique().sort().to_list()
        raise PanelError(
            f"{where}: no (timestamp, asset) of the features is a bar of the prices "
            f"(features: {format_span(df['timestamp'].sort().to_numpy())}, assets "
            f"{assets[:5]}{' ...' if len(assets) > 5 else ''}; prices: "
            f"{format_span(panel.timestamps)}, assets {list(panel.assets[:5])}"
            f"{' ...' if panel.n_assets > 5 else ''}); timestamps must be equal, time of "
            "day included"
        )
    added = {}
    for name in names:
        arr = np.full(panel.shape, np.nan)
        known = hits[name].is_not_null().to_numpy()  # another file's rows are null here
        arr[t_idx[known], a_idx[known]] = hits[name].to_numpy()[known]
        added[name] = arr
    return Panel.from_arrays(panel.timestamps, panel.assets, close=panel.close,
                             open=panel.open, high=panel.high, low=panel.low,
                             volume=panel.volume, features={**panel.features, **added})


# ------------------------------------------------------------------ the files
@dataclass
class _Files:
    """Every file read, so that a row of the stacked table can be traced to its file."""

    paths: list[str] = field(default_factory=list)
    csv: list[bool] = field(default_factory=list)

    def add(self, path: str, csv: bool) -> int:
        self.paths.append(path)
        self.csv.append(csv)
        return len(self.paths) - 1

    def row_text(self, fid: int, frow: int, with_path: bool) -> str:
        text = f"row {frow}" + (f" of {self.paths[fid]}" if with_path else "")
        # Line numbers count the header line and start at 1, as editors do.
        return text + (f" (line {frow + 2})" if self.csv[fid] else "")

    def row_labels(self, df: pl.DataFrame, *, with_path: bool) -> RowLabel:
        fid, frow = df[_FID].to_numpy(), df[_FROW].to_numpy()
        return lambda i: self.row_text(int(fid[i]), int(frow[i]), with_path)


@dataclass(frozen=True)
class _Part:
    """What polars scans in one go: a file, or a whole hive dataset folder."""

    path: Path
    csv: bool
    hive_keys: tuple[str, ...] = ()

    @property
    def stem(self) -> str:
        name = self.path.name
        for suffix in (*CSV_SUFFIXES, *PARQUET_SUFFIXES):
            if name.lower().endswith(suffix):
                return name[: -len(suffix)]
        return self.path.stem


def _suffix_kind(path: Path) -> Literal["csv", "parquet"] | None:
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    return None


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _parts(source: Source) -> list[_Part]:
    """The files (or hive dataset) a source names."""
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.is_dir():
        keys = _hive_keys(path)
        if keys:
            return [_Part(path, csv=False, hive_keys=keys)]
        found = sorted(p for p in path.iterdir()
                       if p.is_file() and not p.name.startswith((".", "_"))
                       and _suffix_kind(p) is not None)
        if not found:
            raise PanelError(f"{text}: the folder holds no CSV, CSV.gz or Parquet files "
                             "(subfolders are not searched: use a glob such as "
                             f"'{Path(text) / '**' / '*.csv'}')")
        return [_Part(p, csv=_suffix_kind(p) == "csv") for p in found]
    if path.is_file():
        # Any other suffix is read as Parquet, as Panel.read_parquet always did.
        return [_Part(path, csv=_suffix_kind(path) == "csv")]
    if _is_glob(text):
        matched = [Path(m) for m in sorted(glob.glob(os.path.expanduser(text), recursive=True))]
        found = [p for p in matched if p.is_file()]
        if not found:
            raise PanelError(f"{text}: the glob matches no files")
        other = [str(p) for p in found if _suffix_kind(p) is None]
        if other:
            raise PanelError(f"{text}: the glob matches {other[:3]}, not CSV, CSV.gz or Parquet "
                             "files (.csv, .csv.gz, .parquet, .pq); narrow the pattern")
        return [_Part(p, csv=_suffix_kind(p) == "csv") for p in found]
    raise PanelError(f"{text}: no such file or folder")


def _hive_keys(root: Path) -> tuple[str, ...]:
    """Partition keys of a hive dataset (folders named ``key=value``), outermost first."""
    keys: list[str] = []
    for dirpath, dirnames, _ in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith((".", "_"))]
        for d in dirnames:
            key, eq, _ = d.partition("=")
            if eq and key and key not in keys:
                keys.append(key)
        if dirpath == os.fspath(root) and not keys:
            return ()  # plain folder: no need to walk it
    return tuple(keys)


def _read_sources(source: Source | Sequence[Source], files: _Files, *,
                  role: Literal["prices", "features"], adjust: bool
                  ) -> tuple[pl.DataFrame, str]:
    """All files of one or more sources, stacked; and a label naming the sources."""
    sources = [source] if isinstance(source, str | os.PathLike) else list(source)
    if not sources:
        raise PanelError("no data source given")
    label = ", ".join(os.fspath(s) for s in sources)
    frames: list[pl.DataFrame] = []
    owner: dict[str, str] = {}
    for src in sources:
        parts = [_read_part(p, files, role=role, adjust=adjust) for p in _parts(src)]
        frame = pl.concat(parts, how="diagonal_relaxed")
        if len(sources) > 1 and role == "prices":  # separate sources, separate assets
            for asset in frame["asset"].unique().sort().to_list():
                if asset in owner:
                    raise PanelError(f"asset {asset!r} is in both {owner[asset]} and "
                                     f"{os.fspath(src)}; each asset must come from one source")
                owner[asset] = os.fspath(src)
        frames.append(frame)
    return pl.concat(frames, how="diagonal_relaxed"), label


# ------------------------------------------------------------------ one part
@dataclass(frozen=True)
class _Layout:
    """Which column is what, in one file's own spelling."""

    kind: Literal["long", "single", "wide"]
    date: str
    asset: str | None
    prices: dict[str, str]  # role -> column
    values: list[str]       # features (long, single) or assets (wide)
    drop: list[str]         # pandas index columns, hive keys other than the asset


def _layout(columns: list[str], part: _Part, role: Literal["prices", "features"]) -> _Layout:
    where = f"{part.path}: "
    by_role: dict[str, list[str]] = {}
    other: list[str] = []
    for c in columns:
        r = _ROLE_OF.get(_norm(c))
        (by_role.setdefault(r, []) if r else other).append(c)
    for r, cols in by_role.items():
        if len(cols) > 1:
            hint = " (join date and time into one column first)" if r == "timestamp" else ""
            raise PanelError(f"{where}columns {cols} all name the {_ROLE_WORDS.get(r, r)}; "
                             f"keep one{hint}")
    unnamed = [c for i, c in enumerate(columns)
               if c == _PANDAS_INDEX or (i == 0 and _norm(c) in _UNNAMED_FIRST)]
    other = [c for c in other if c not in unnamed]
    drop = [k for k in part.hive_keys if _ROLE_OF.get(_norm(k)) != "asset"]
    other = [c for c in other if c not in drop]
    if "timestamp" in by_role:
        date = by_role["timestamp"][0]
        drop += unnamed  # an index pandas wrote beside the real date column
    elif unnamed:
        date, drop = unnamed[0], drop + unnamed[1:]
    else:
        seps = sorted({sep for c in columns for sep in (";", "\t", "|") if sep in c})
        hint = f" (only commas separate CSV fields; this header holds {seps})" if seps else ""
        raise PanelError(
            f"{where}no date column: expected one named date, datetime, time or timestamp "
            f"(any case), or an unnamed first column; found {columns}{hint}"
        )
    asset = by_role.get("asset", [None])[0]
    prices = {r: by_role[r][0] for r in _PRICE_ROLES if r in by_role}
    if role == "features":
        if prices:
            raise PanelError(f"{where}column(s) {list(prices.values())} are prices; a features "
                             "file holds a date, an asset and feature columns (or a date and "
                             "one column per asset)")
        return _Layout("long" if asset else "wide", date, asset, {}, other, drop)
    if asset is None and part.hive_keys:
        raise PanelError(f"{where}hive dataset with no asset partition key or column "
                         f"(symbol=..., ticker=... or asset=...); keys {list(part.hive_keys)}")
    kind: Literal["long", "single", "wide"] = (
        "long" if asset else "single" if prices else "wide")
    if kind != "wide" and "close" not in prices and "adj_close" not in prices:
        raise PanelError(f"{where}no close column: price columns {list(prices.values())} "
                         "but neither close nor adj close")
    return _Layout(kind, date, asset, prices, other, drop)


def _read_part(part: _Part, files: _Files, *, role: Literal["prices", "features"],
               adjust: bool) -> pl.DataFrame:
    """One file (or hive dataset) as a long table: timestamp, asset, float columns,
    and the file id and row of each row."""
    layout = _layout(_column_names(part), part, role)
    df = _collect(part, layout, files)
    with_path = bool(part.hive_keys)  # a hive part spans files: name the file in rows
    where = f"{part.path}: "
    at = files.row_labels(df, with_path=with_path)
    df = df.drop(layout.drop)

    numeric = [*layout.prices.values(), *layout.values]
    df = _numbers(df, numeric, where, at, layout)
    dates = df[layout.date]
    if not layout.date.strip():  # "column ''" would puzzle: say which one it is
        dates = dates.alias("(unnamed first column)")
    ts = parse_timestamps(dates, where=where, rows=at)
    df = df.with_columns(ts.alias("timestamp"))
    if layout.date != "timestamp":
        df = df.drop(layout.date)

    if layout.kind == "wide":
        value = "close" if role == "prices" else part.stem
        if adjust:
            raise PanelError(f"{where}a wide file holds closes only (one column per asset); "
                             "it cannot be adjusted: drop adjust, or give OHLC with adj close")
        return (df.unpivot(index=["timestamp", _FID, _FROW], on=layout.values,
                           variable_name="asset", value_name=value)
                .filter(pl.col(value).is_not_null() & pl.col(value).is_not_nan())
                .select("timestamp", "asset", value, _FID, _FROW))

    renames = {col: r for r, col in layout.prices.items() if col != r}
    clash = [r for r in renames.values() if r in layout.values]
    if clash:
        raise PanelError(f"{where}column(s) {clash} clash with the renamed price columns")
    df = df.rename(renames)
    if layout.asset:
        df = df.rename({layout.asset: "asset"}).with_columns(pl.col("asset").cast(pl.String))
    else:
        df = df.with_columns(pl.lit(part.stem, dtype=pl.String).alias("asset"))
    if role == "prices":
        df = _prices(df, layout, where, at, adjust)
    return df.select("timestamp", "asset", *(c for c in df.columns
                                              if c not in ("timestamp", "asset")))


def _column_names(part: _Part) -> list[str]:
    try:
        if part.csv:
            return pl.scan_csv(part.path, infer_schema=False).collect_schema().names()
        if part.hive_keys:
            return [c for c in _scan_hive(part).collect_schema().names() if c != _PATH]
        return pl.scan_parquet(part.path).collect_schema().names()
    except (pl.exceptions.PolarsError, OSError) as exc:
        kind = "CSV" if part.csv else "Parquet"
        raise PanelError(f"{part.path}: not a readable {kind} file ({_first_line(exc)})"
                         ) from None


def _scan_hive(part: _Part) -> pl.LazyFrame:
    # Partition values stay text: ticker "0700" must not become the number 700.
    return pl.scan_parquet(part.path, hive_partitioning=True,
                           hive_schema={k: pl.String for k in part.hive_keys},
                           include_file_paths=_PATH)


def _collect(part: _Part, layout: _Layout, files: _Files) -> pl.DataFrame:
    """Read the part, with each row's file id and row number within its file."""
    kind = "CSV" if part.csv else "Parquet"
    try:
        if part.hive_keys:
            df = _scan_hive(part).with_columns(
                pl.int_range(pl.len(), dtype=pl.Int64).over(_PATH).alias(_FROW)).collect()
            paths = df[_PATH].unique(maintain_order=True).to_list()
            ids = [files.add(p, csv=False) for p in paths]
            return df.with_columns(
                pl.col(_PATH).replace_strict(paths, ids, return_dtype=pl.Int32).alias(_FID)
            ).drop(_PATH)
        if part.csv:
            df = _collect_csv(part, layout)
        else:
            df = pl.scan_parquet(part.path).with_row_index(_FROW).collect()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise PanelError(f"{part.path}: not a readable {kind} file ({_first_line(exc)})"
                         ) from None
    fid = files.add(str(part.path), csv=part.csv)
    return df.with_columns(pl.col(_FROW).cast(pl.Int64), pl.lit(fid, dtype=pl.Int32).alias(_FID))


def _collect_csv(part: _Part, layout: _Layout) -> pl.DataFrame:
    # Dates and asset ids stay text (parsed below; "0700" stays "0700"). The fast read lets
    # polars type the numbers; a value it cannot read as the type it guessed from the first
    # rows sends the file through the all-text read, converted column by column below.
    text = {c: pl.String for c in (layout.date, layout.asset) if c is not None}
    try:
        return (pl.scan_csv(part.path, infer_schema_length=_INFER_ROWS, null_values=_NULLS,
                            schema_overrides=text)
                .with_row_index(_FROW).collect())
    except pl.exceptions.PolarsError:
        return (pl.scan_csv(part.path, infer_schema=False, null_values=_NULLS)
                .with_row_index(_FROW).collect())


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _numbers(df: pl.DataFrame, cols: list[str], where: str, at: RowLabel,
             layout: _Layout) -> pl.DataFrame:
    """The columns as Float64; text that is not a number is an error naming row and column."""
    casts: list[pl.Expr] = []
    text: list[str] = []
    for c in cols:
        dtype = df.schema[c]
        if dtype.is_numeric() or dtype in (pl.Boolean, pl.Null):
            casts.append(pl.col(c).cast(pl.Float64))
        elif dtype == pl.String:
            text.append(c)
        else:
            raise PanelError(f"{where}column {c!r} has type {dtype}, expected numbers")
    if layout.kind == "wide" and not cols:
        raise PanelError(f"{where}no numeric columns: a file without an asset column "
                         "(symbol/ticker/asset) and without price columns is read as wide "
                         "(a date column, then one close column per asset), but it has only "
                         f"the date column {layout.date!r}")
    parsed = df.select(pl.col(text).cast(pl.Float64, strict=False)) if text else df.clear()
    bad: dict[str, tuple[int, str, bool]] = {}  # column -> (first bad row, value, all bad)
    for c in text:
        wrong = parsed[c].is_null() & df[c].is_not_null()
        if wrong.any():
            i = int(wrong.arg_true()[0])
            bad[c] = (i, df[c][i], parsed[c].is_not_null().sum() == 0)
    if not bad:
        return df.with_columns(*casts, *(parsed[c] for c in text))
    if layout.kind == "wide" and not casts and all(v[2] for v in bad.values()):
        c, (i, value, _) = next(iter(bad.items()))
        raise PanelError(f"{where}no numeric columns: read as wide (no asset column, no price "
                         f"column), but column(s) {list(bad)} hold text (e.g. {value!r} in "
                         f"column {c!r} at {at(i)}); an asset column must be named symbol, "
                         "ticker or asset")
    c, (i, value, all_text) = next(iter(bad.items()))
    hint = ""
    if all_text and layout.kind != "long":
        hint = "; an asset column must be named symbol, ticker or asset"
    raise PanelError(f"{where}column {c!r}: cannot read {value!r} as a number at {at(i)}{hint}")


def _prices(df: pl.DataFrame, layout: _Layout, where: str, at: RowLabel,
            adjust: bool) -> pl.DataFrame:
    """Adjust (or drop) adj close, leave out rows with no price at all, fill missing OHLC."""
    have = [r for r in _PRICE_ROLES if r in layout.prices and r != "volume"]
    # A row with no price at all is a bar that does not exist (Yahoo's "null" rows for
    # holidays); a row with some prices but no close is an error Panel.from_frame reports.
    empty = pl.all_horizontal([pl.col(r).is_null() | pl.col(r).is_nan() for r in have])
    df = df.with_row_index("__i").filter(~empty)
    if adjust:
        if "close" not in layout.prices or "adj_close" not in layout.prices:
            found = [layout.prices[r] for r in ("close", "adj_close") if r in layout.prices]
            raise PanelError(f"{where}adjust needs a close and an adj close column; found "
                             f"{found} among {list(layout.prices.values())}")
        gap = df.filter(pl.col("adj_close").is_null() & pl.col("close").is_not_null())
        if gap.height:
            raise PanelError(f"{where}column {layout.prices['adj_close']!r} is empty at "
                             f"{at(int(gap['__i'][0]))}; adjust needs it on every bar")
        # factor first, then each price times it: the same float operations as sample_stocks
        factor = pl.col("adj_close") / pl.col("close")
        df = df.with_columns(pl.col(r) * factor for r in ("open", "high", "low", "close")
                             if r in layout.prices)
        df = df.drop("adj_close")
    elif "close" in layout.prices:
        df = df.drop("adj_close", strict=False)
    else:
        df = df.rename({"adj_close": "close"})
    missing = [r for r in ("open", "high", "low") if r not in layout.prices]
    return df.with_columns(pl.col("close").alias(r) for r in missing).drop("__i")


# ------------------------------------------------------------------ whole-source checks
def _check_frequencies(df: pl.DataFrame, files: _Files, where: str) -> None:
    """One bar frequency per panel: compare each file's (and asset's) median bar spacing."""
    spacing = (df.group_by(_FID, "asset")
               .agg(pl.col("timestamp").sort().diff().median().alias("gap"),
                    pl.len().alias("n"))
               .filter((pl.col("n") >= 3) & (pl.col("gap") > pl.duration(seconds=0)))
               .sort("gap", _FID, "asset"))
    if spacing.height < 2:
        return
    lo, hi = spacing.row(0, named=True), spacing.row(-1, named=True)
    if hi["gap"] < _MAX_SPACING_RATIO * lo["gap"]:
        return

    def name(g: dict) -> str:
        path = files.paths[g[_FID]]
        stem = _Part(Path(path), csv=False).stem
        return path if g["asset"] == stem else f"{path} (asset {g['asset']!r})"

    raise PanelError(
        f"{where}: mixed bar frequencies: {name(hi)} has a median bar spacing of "
        f"{format_spacing(hi['gap'])}, {name(lo)} of {format_spacing(lo['gap'])}; a panel "
        "has one bar frequency: resample to one, or read them separately"
    )
