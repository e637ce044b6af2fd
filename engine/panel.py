"""The market data panel: T bars x N assets of OHLCV plus named numeric features."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

__all__ = ["PRICE_COLUMNS", "Panel", "PanelError", "RowLabel", "parse_timestamps"]

PRICE_COLUMNS = ("open", "high", "low", "close")
_KEY_COLUMNS = ("timestamp", "asset")
_BASE_COLUMNS = (*_KEY_COLUMNS, *PRICE_COLUMNS, "volume")
# Relative slack for OHLC consistency checks: adjusted prices are products of two floats.
_OHLC_RTOL = 1e-9

DateLike = str | dt.date | dt.datetime | np.datetime64
# What Panel.read takes: a file, folder or glob, or a list of them.
FileSources = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
# Names row i of a table in an error message ("row 7"); file readers pass one that names
# the file and its line, since their table is several files stacked.
RowLabel = Callable[[int], str]


def _row(i: int) -> str:
    return f"row {i}"


class PanelError(ValueError):
    """Market data that cannot form a valid panel; the message names file, column and row."""


def _to_datetime64(value: DateLike | None) -> np.datetime64 | None:
    if value is None:
        return None
    try:
        return np.datetime64(value, "ns")
    except (ValueError, TypeError) as exc:
        raise PanelError(f"cannot parse {value!r} as a date") from exc


@dataclass(frozen=True, eq=False)
class Panel:
    """T bars x N assets. Prices are float64 (T, N) arrays with NaN where an asset has no bar.

    Build one with :meth:`from_frame`, :meth:`read_parquet` or :meth:`from_arrays`; the
    constructor itself does no validation.

    Example:
        >>> import numpy as np
        >>> p = Panel.from_arrays(np.array(["2024-01-02", "2024-01-03"], "datetime64[ns]"),
        ...                       ["A"], close=np.array([[10.0], [11.0]]))
        >>> p.close.shape
        (2, 1)
    """

    timestamps: np.ndarray
    assets: tuple[str, ...]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    features: Mapping[str, np.ndarray] = field(default_factory=dict)

    # ------------------------------------------------------------------ shape
    @property
    def n_bars(self) -> int:
        return int(self.close.shape[0])

    @property
    def n_assets(self) -> int:
        return int(self.close.shape[1])

    @property
    def shape(self) -> tuple[int, int]:
        return self.n_bars, self.n_assets

    def __repr__(self) -> str:
        span = ""
        if self.n_bars:
            ts = self.timestamps
            intraday = bool((ts != ts.astype("datetime64[D]")).any())
            width = 16 if intraday else 10  # "2017-04-19T09:00" for hourly bars
            span = f", {ts[0]!s:.{width}} .. {ts[-1]!s:.{width}}"
        feats = f", features={sorted(self.features)}" if self.features else ""
        return f"Panel({self.n_bars} bars x {self.n_assets} assets{span}{feats})"

    @cached_property
    def last_bars(self) -> np.ndarray:
        """Per asset, the index of its last bar with a close (-1 if none): where the
        engine closes a delisted asset's position. Computed once per panel."""
        from engine.nb.simulate import last_valid_bars  # kernels load with the engine

        return last_valid_bars(self.close)

    @cached_property
    def fingerprint(self) -> str:
        """Hex digest of the content (timestamps, assets, prices, features)."""
        h = hashlib.blake2b(digest_size=16)
        h.update(self.timestamps.astype("datetime64[ns]").view(np.int64).tobytes())
        h.update("\x1f".join(self.assets).encode())
        for name in (*PRICE_COLUMNS, "volume"):
            h.update(name.encode())
            h.update(np.ascontiguousarray(getattr(self, name)).tobytes())
        for name in sorted(self.features):
            h.update(name.encode())
            h.update(np.ascontiguousarray(self.features[name]).tobytes())
        return h.hexdigest()

    # ------------------------------------------------------------ constructors
    @classmethod
    def from_arrays(
        cls,
        timestamps: Sequence[Any] | np.ndarray,
        assets: Sequence[str],
        *,
        close: np.ndarray,
        open: np.ndarray | None = None,
        high: np.ndarray | None = None,
        low: np.ndarray | None = None,
        volume: np.ndarray | None = None,
        features: Mapping[str, np.ndarray] | None = None,
    ) -> Panel:
        """Build a panel from (T, N) arrays; NaN close = no bar. Missing open/high/low = close.

        Rows are sorted by timestamp if needed; duplicate timestamps are refused.
        """
        try:
            ts = np.asarray(timestamps, dtype="datetime64[ns]")
        except (ValueError, TypeError) as exc:
            raise PanelError(f"timestamps: cannot parse as datetimes ({exc})") from exc
        if ts.ndim != 1:
            raise PanelError(f"timestamps must be 1-D, got shape {ts.shape}")
        names = tuple(str(a) for a in assets)
        if len(set(names)) != len(names):
            dup = next(a for a in names if names.count(a) > 1)
            raise PanelError(f"assets: duplicate asset id {dup!r}")
        shape = (ts.shape[0], len(names))

        def as_matrix(name: str, arr: Any) -> np.ndarray:
            try:
                out = np.array(arr, dtype=np.float64)  # a copy: the panel owns its arrays
            except (ValueError, TypeError) as exc:
                raise PanelError(f"column {name!r}: not numeric ({exc})") from exc
            if out.shape != shape:
                raise PanelError(
                    f"column {name!r}: shape {out.shape} does not match (bars, assets) {shape}"
                )
            return out

        c = as_matrix("close", close)
        o = as_matrix("open", open) if open is not None else c.copy()
        h = as_matrix("high", high) if high is not None else c.copy()
        lo = as_matrix("low", low) if low is not None else c.copy()
        v = as_matrix("volume", volume) if volume is not None else np.full(shape, np.nan)
        feats = {str(k): as_matrix(str(k), a) for k, a in (features or {}).items()}
        for k in feats:
            if k in _BASE_COLUMNS:
                raise PanelError(f"feature {k!r}: name clashes with a base column")
        # NaN close = no bar: nothing else may hold a value there (to_frame would drop it,
        # and the engine must never fill at the open of a bar that does not exist).
        no_bar = np.isnan(c)
        for arr in (o, h, lo, v, *feats.values()):
            arr[no_bar] = np.nan

        order = np.argsort(ts, kind="stable")
        if not np.array_equal(order, np.arange(ts.shape[0])):
            ts = ts[order]
            o, h, lo, c, v = (a[order] for a in (o, h, lo, c, v))
            feats = {k: a[order] for k, a in feats.items()}
        if np.isnat(ts).any():
            raise PanelError(f"timestamps: NaT at row {int(np.flatnonzero(np.isnat(ts))[0])}")
        dup = np.flatnonzero(ts[1:] == ts[:-1])
        if dup.size:
            raise PanelError(f"timestamps: duplicate timestamp {ts[dup[0]]}")
        panel = cls(ts, names, o, h, lo, c, v, feats)
        _validate(panel, source=None, row_of=None)
        return panel

    @classmethod
    def from_frame(cls, df: pl.DataFrame | Any, *, source: str | None = None,
                   rows: RowLabel | None = None) -> Panel:
        """Build a panel from a long table: timestamp, asset, close [, open, high, low, volume,
        numeric feature columns...]. One row per (timestamp, asset) bar.

        Accepts a polars or pandas DataFrame. Errors name ``source``, the column and a row;
        ``rows(i)`` words row ``i`` of ``df`` (default ``"row i"``; the file readers of
        :mod:`engine.data.files` name the file and line).

        Example:
            >>> import polars as pl
            >>> df = pl.DataFrame({"timestamp": ["2024-01-02", "2024-01-02"],
            ...                    "asset": ["A", "A"], "close": [1.0, 2.0]})
            >>> Panel.from_frame(df, source="x.csv")
            Traceback (most recent call last):
            ...
            engine.panel.PanelError: x.csv: duplicate (timestamp, asset) rows [0, 1]: (2024-01-02 00:00:00, 'A')
        """  # noqa: E501 - a doctest line cannot wrap
        where = f"{source}: " if source else ""
        at = rows or _row
        if not isinstance(df, pl.DataFrame):
            try:
                df = pl.from_pandas(df) if hasattr(df, "to_numpy") else pl.DataFrame(df)
            except Exception as exc:
                raise PanelError(f"{where}cannot read the table ({exc})") from exc
        missing = [c for c in (*_KEY_COLUMNS, "close") if c not in df.columns]
        if missing:
            raise PanelError(
                f"{where}missing required column(s) {missing}; found {df.columns}"
            )
        df = df.with_row_index("__row")
        df = df.with_columns(parse_timestamps(df["timestamp"], where=where, rows=at),
                             pl.col("asset").cast(pl.String))
        if df["asset"].null_count():
            row = df.filter(pl.col("asset").is_null())["__row"][0]
            raise PanelError(f"{where}column 'asset' is null at {at(row)}")

        value_cols = [c for c in df.columns if c not in ("__row", *_KEY_COLUMNS)]
        for name in value_cols:
            dtype = df.schema[name]
            if not (dtype.is_numeric() or dtype == pl.Boolean or dtype == pl.Null):
                example = df[name].drop_nulls().head(1).to_list()
                raise PanelError(
                    f"{where}column {name!r} has type {dtype}, expected numbers"
                    + (f" (e.g. {example[0]!r})" if example else "")
                )

        dups = df.filter(pl.struct(_KEY_COLUMNS).is_duplicated()).sort("__row")
        if dups.height:
            r = dups.row(0, named=True)
            first = dups.filter(
                (pl.col("timestamp") == r["timestamp"]) & (pl.col("asset") == r["asset"])
            )["__row"].to_list()
            # Plain row numbers by default ("rows [1, 4]"), the readers' wording otherwise.
            shown = str(first) if rows is None else ", ".join(at(i) for i in first)
            raise PanelError(
                f"{where}duplicate (timestamp, asset) rows {shown}: "
                f"({r['timestamp']}, {r['asset']!r})"
            )

        ts_unique = df["timestamp"].unique().sort()
        assets = tuple(sorted(df["asset"].unique().to_list()))
        t_idx = ts_unique.search_sorted(df["timestamp"]).to_numpy()
        a_lookup = {a: i for i, a in enumerate(assets)}
        a_idx = np.fromiter((a_lookup[a] for a in df["asset"].to_list()), np.int64, df.height)
        shape = (ts_unique.len(), len(assets))

        def scatter(col: str) -> np.ndarray:
            out = np.full(shape, np.nan)
            out[t_idx, a_idx] = df[col].cast(pl.Float64).fill_null(np.nan).to_numpy()
            return out

        row_of = np.full(shape, -1, dtype=np.int64)
        row_of[t_idx, a_idx] = df["__row"].to_numpy()
        for col in PRICE_COLUMNS:
            if col in df.columns and df[col].null_count():
                row = df.filter(pl.col(col).is_null())["__row"][0]
                raise PanelError(f"{where}column {col!r} is null at {at(row)}")
        if df["close"].dtype.is_float() and df["close"].is_nan().any():
            row = df.filter(pl.col("close").is_nan())["__row"][0]
            raise PanelError(
                f"{where}column 'close' is NaN at {at(row)} "
                "(a row is a bar: leave the row out when there is no bar)"
            )
        close = scatter("close")
        prices = {c: scatter(c) if c in df.columns else close.copy() for c in PRICE_COLUMNS}
        volume = scatter("volume") if "volume" in df.columns else np.full(shape, np.nan)
        feats = {c: scatter(c) for c in value_cols if c not in _BASE_COLUMNS}
        ts = ts_unique.cast(pl.Datetime("ns")).to_numpy().astype("datetime64[ns]")
        panel = cls(ts, assets, prices["open"], prices["high"], prices["low"], close, volume,
                    feats)
        _validate(panel, source=source, row_of=row_of, rows=at)
        return panel

    @classmethod
    def read(cls, source: FileSources, *, adjust: bool = False,
             features: FileSources | None = None) -> Panel:
        """Read market data files in any layout :func:`engine.data.load_panel` accepts.

        ``source``: a CSV/CSV.gz/Parquet file (long, wide or one asset's OHLCV), a folder, a
        glob, a hive dataset, or a list of those. See docs/data.md.

        Example:
            >>> Panel.read("prices/*.csv", adjust=True)  # doctest: +SKIP
            Panel(3270 bars x 5 assets, 2000-03-01 .. 2013-03-01)
        """
        from engine.data.files import load_panel  # engine.data imports this module

        return load_panel(source, adjust=adjust, features=features)

    @classmethod
    def read_parquet(cls, path: str | os.PathLike[str]) -> Panel:
        """Read a long-format Parquet file (see :meth:`from_frame`)."""
        path = Path(path)
        if not path.exists():
            raise PanelError(f"{path}: no such file")
        try:
            df = pl.read_parquet(path)
        except Exception as exc:
            raise PanelError(f"{path}: not a readable Parquet file ({exc})") from exc
        return cls.from_frame(df, source=str(path))

    # ----------------------------------------------------------------- output
    def to_frame(self) -> pl.DataFrame:
        """The long table (one row per existing bar), sorted by timestamp then asset."""
        t_idx, a_idx = np.nonzero(np.isfinite(self.close))
        cols: dict[str, Any] = {
            "timestamp": self.timestamps[t_idx],
            "asset": np.asarray(self.assets, dtype=object)[a_idx],
        }
        for name in (*PRICE_COLUMNS, "volume"):
            cols[name] = getattr(self, name)[t_idx, a_idx]
        for name, arr in self.features.items():
            cols[name] = arr[t_idx, a_idx]
        return pl.DataFrame(cols).with_columns(
            pl.col("timestamp").cast(pl.Datetime("ns")), pl.col("asset").cast(pl.String)
        )

    def write_parquet(self, path: str | os.PathLike[str]) -> Path:
        """Write the long table atomically (temp file in the same folder, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Not mkstemp: its files are private (0600); this one gets the umask's permissions,
        # like any file the user writes.
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        try:
            self.to_frame().write_parquet(tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    # ---------------------------------------------------------------- slicing
    def index_range(self, start: DateLike | None = None, end: DateLike | None = None
                    ) -> tuple[int, int]:
        """Row bounds ``[i0, i1)`` of the bars with ``start <= timestamp <= end``."""
        s, e = _to_datetime64(start), _to_datetime64(end)
        i0 = 0 if s is None else int(np.searchsorted(self.timestamps, s, side="left"))
        i1 = self.n_bars if e is None else int(np.searchsorted(self.timestamps, e, side="right"))
        return i0, max(i0, i1)

    def slice(self, start: DateLike | None = None, end: DateLike | None = None) -> Panel:
        """Bars with ``start <= timestamp <= end`` (both inclusive; None = open-ended)."""
        i0, i1 = self.index_range(start, end)
        if i1 <= i0:
            raise PanelError(
                f"date range {start} .. {end} holds no bars; the panel spans "
                f"{self.timestamps[0]} .. {self.timestamps[-1]}"
            )
        return self.take(i0, i1)

    def take(self, i0: int, i1: int) -> Panel:
        """Bars ``i0 .. i1-1`` by position."""
        sl = slice(i0, i1)
        return Panel(
            self.timestamps[sl], self.assets, self.open[sl], self.high[sl], self.low[sl],
            self.close[sl], self.volume[sl], {k: v[sl] for k, v in self.features.items()},
        )


def parse_timestamps(values: pl.Series, *, where: str = "", rows: RowLabel | None = None
                     ) -> pl.Series:
    """A date column as naive ``Datetime("ns")``; an error names the column and row.

    Strings are parsed by polars (format inferred from the first value); dates become
    midnight; a time zone is dropped, keeping the wall-clock time. ``where`` prefixes error
    messages (``"file.csv: "``) and ``rows(i)`` words row ``i`` (default ``"row i"``).

    Example:
        >>> parse_timestamps(pl.Series("timestamp", ["2024-01-02", "2024-01-03 10:00"]))
        ... # doctest: +NORMALIZE_WHITESPACE
        shape: (2,)
        Series: 'timestamp' [datetime[ns]]
        [
            2024-01-02 00:00:00
            2024-01-03 10:00:00
        ]
    """
    at = rows or _row
    name, dtype = values.name, values.dtype
    if values.null_count():
        i = int(values.is_null().arg_true()[0])
        raise PanelError(f"{where}column {name!r} is null at {at(i)}")
    if isinstance(dtype, pl.Datetime):
        out = values.dt.replace_time_zone(None) if dtype.time_zone else values
        return out.cast(pl.Datetime("ns"))
    if dtype == pl.Date:
        return values.cast(pl.Datetime("ns"))
    if dtype == pl.String:
        parsed = _parse_date_strings(values, where=where, at=at)
        bad = parsed.is_null()
        if bad.any():
            i = int(bad.arg_true()[0])
            raise PanelError(f"{where}column {name!r}: cannot parse {values[i]!r} at {at(i)}")
        if isinstance(parsed.dtype, pl.Datetime) and parsed.dtype.time_zone:
            parsed = parsed.dt.replace_time_zone(None)  # offsets were converted to UTC
        return parsed.cast(pl.Datetime("ns")).alias(name)
    raise PanelError(f"{where}column {name!r} has type {dtype}, expected datetimes or dates")


# Slashed dates: polars alone reads "01/02/2020" day first; US files write month first.
_SLASHED = re.compile(r"\d{1,2}/\d{1,2}/\d{4}")
_SLASH_TIMES = ("", " %H:%M", " %H:%M:%S")


def _parse_date_strings(values: pl.Series, *, where: str, at: RowLabel) -> pl.Series:
    """Date strings to datetimes (nulls where a value does not parse).

    polars infers the format from the first value. Two cases it cannot settle are settled
    here: compact ``20200102`` dates, and slashed dates, whose day/month order is the one
    every value fits (both fitting every value is an error, not a guess).
    """
    first = values[0].strip() if len(values) else ""  # the caller refused nulls
    if _SLASHED.match(first):
        fits = []
        for order in ("%m/%d/%Y", "%d/%m/%Y"):
            for clock in _SLASH_TIMES:
                out = values.str.strip_chars().str.to_datetime(
                    order + clock, strict=False, time_unit="ns")
                if out.null_count() == 0:
                    fits.append((order, out))
                    break
        if len(fits) == 1:
            return fits[0][1]
        if len(fits) == 2:
            raise PanelError(
                f"{where}column {values.name!r}: dates like {first!r} read as month/day and "
                "as day/month alike (no day above 12); write them as YYYY-MM-DD"
            )
    try:
        return values.str.to_datetime(strict=False, time_unit="ns")
    except pl.exceptions.PolarsError:  # no format polars knows fits the first value
        if re.fullmatch(r"\d{8}", first):
            return values.str.to_datetime("%Y%m%d", strict=False, time_unit="ns")
        raise PanelError(
            f"{where}column {values.name!r}: cannot tell the date format of {first!r} at "
            f"{at(0)}; write dates as YYYY-MM-DD (optionally with a time, HH:MM:SS)"
        ) from None


def _validate(panel: Panel, *, source: str | None, row_of: np.ndarray | None,
              rows: RowLabel = _row) -> None:
    """Check price consistency; name the column, timestamp, asset (and input row) of a bad bar."""
    where = f"{source}: " if source else ""

    def fail(col: str, mask: np.ndarray, problem: str) -> None:
        t, n = (int(x[0]) for x in np.nonzero(mask))
        row = f"{rows(int(row_of[t, n]))}, " if row_of is not None else ""
        value = getattr(panel, col)[t, n] if col in _BASE_COLUMNS else None
        shown = f" (value {float(value)!r})" if value is not None else ""
        raise PanelError(
            f"{where}column {col!r}: {problem} at {row}timestamp {panel.timestamps[t]}, "
            f"asset {panel.assets[n]!r}{shown}; {int(mask.sum())} bad bar(s) in all"
        )

    has_bar = ~np.isnan(panel.close)
    for col in PRICE_COLUMNS:
        arr = getattr(panel, col)
        bad = ~np.isfinite(arr) & (has_bar | ~np.isnan(arr))
        if bad.any():
            fail(col, bad, "non-finite price" if col != "close" else "infinite price")
        bad = has_bar & (arr <= 0)
        if bad.any():
            fail(col, bad, "non-positive price")
    with np.errstate(invalid="ignore"):
        tol_h = np.abs(panel.high) * _OHLC_RTOL
        bad = has_bar & (panel.high < panel.low - tol_h)
        if bad.any():
            fail("high", bad, "high below low")
        for col in ("close", "open"):
            arr = getattr(panel, col)
            bad = has_bar & ((arr > panel.high + tol_h) | (arr < panel.low - tol_h))
            if bad.any():
                fail(col, bad, f"{col} outside [low, high]")
    vol = panel.volume
    bad = np.isinf(vol) | (vol < 0)
    if bad.any():
        fail("volume", bad, "negative or infinite volume")
    for name, arr in panel.features.items():
        bad = np.isinf(arr)
        if bad.any():
            fail(name, bad, "infinite feature value")
