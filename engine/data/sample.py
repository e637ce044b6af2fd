"""Real market data shipped by installable packages (optional dependencies); nothing is
downloaded.

:func:`sample_stocks`: daily US stock prices from the ``bokeh-sampledata`` package. Five
stocks (AAPL, FB, GOOG, IBM, MSFT), 2000-03-01 .. 2013-03-01, from the public-domain Quandl
WIKI prices. The source gives unadjusted OHLC plus a split- and dividend-adjusted
close; :func:`sample_stocks` scales open, high, low and close by ``adj_close / close`` so
that splits (AAPL halved its price on 2000-06-21 and 2005-02-28) do not look like crashes.
Volume stays the raw share count.

:func:`sample_eurusd`: hourly EUR/USD bars from the ``backtesting`` package (backtesting.py),
5,000 bars from 2017-04-19 to 2018-02-07, read from the package's own CSV file.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from engine.panel import Panel

__all__ = ["SAMPLE_TICKERS", "sample_eurusd", "sample_stocks"]

SAMPLE_TICKERS = ("AAPL", "FB", "GOOG", "IBM", "MSFT")

_INSTALL_HINT = (
    'the sample stock data needs the optional package bokeh-sampledata: '
    'pip install "backsweep[examples]" (or pip install bokeh-sampledata)'
)
_EURUSD_HINT = (
    "the hourly EURUSD sample ships with the optional package backtesting (backtesting.py): "
    "pip install backtesting"
)


def sample_stocks(tickers: Iterable[str] | None = None) -> Panel:
    """Daily adjusted OHLCV of AAPL, FB, GOOG, IBM and MSFT (or the ``tickers`` subset).

    Timestamps are the union of the chosen stocks' trading days; a stock has NaN bars
    before its first trading day (FB listed 2012-05-18, GOOG 2004-08-19). Assets are in
    sorted order. Ticker names are case-insensitive.

    Bars whose open or close lies outside [low, high] in the source would be repaired by
    widening high/low to include them (the source's high/low are the suspect values there);
    the current data needs no repair.

    Raises:
        ImportError: ``bokeh-sampledata`` is not installed.
        ValueError: an unknown ticker, or an empty selection.

    Example:
        >>> p = sample_stocks(["AAPL", "msft"])
        >>> p.assets, str(p.timestamps[0])[:10]
        (('AAPL', 'MSFT'), '2000-03-01')
    """
    chosen = _select(tickers)
    try:
        from bokeh_sampledata import stocks
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc

    series = [getattr(stocks, t) for t in chosen]
    dates = [np.asarray(s["date"], dtype="datetime64[D]") for s in series]
    timestamps = np.unique(np.concatenate(dates))
    shape = (timestamps.size, len(chosen))
    cols = {k: np.full(shape, np.nan) for k in ("open", "high", "low", "close", "volume")}
    for j, (s, d) in enumerate(zip(series, dates, strict=True)):
        rows = np.searchsorted(timestamps, d)
        raw_close = np.asarray(s["close"], dtype=np.float64)
        factor = np.asarray(s["adj_close"], dtype=np.float64) / raw_close
        for k in ("open", "high", "low", "close"):
            cols[k][rows, j] = np.asarray(s[k], dtype=np.float64) * factor
        cols["volume"][rows, j] = np.asarray(s["volume"], dtype=np.float64)
    cols["high"], cols["low"] = _repair_ohlc(cols["open"], cols["high"], cols["low"],
                                             cols["close"])
    return Panel.from_arrays(timestamps.astype("datetime64[ns]"), chosen, **cols)


def _select(tickers: Iterable[str] | None) -> list[str]:
    if tickers is None:
        return list(SAMPLE_TICKERS)
    if isinstance(tickers, str):  # a lone "AAPL" would otherwise iterate letters
        tickers = [tickers]
    wanted = [str(t).strip().upper() for t in tickers]
    unknown = [t for t in wanted if t not in SAMPLE_TICKERS]
    if unknown:
        raise ValueError(
            f"unknown sample ticker(s) {unknown}; available: {', '.join(SAMPLE_TICKERS)}"
        )
    if not wanted:
        raise ValueError(f"no tickers selected; available: {', '.join(SAMPLE_TICKERS)}")
    return sorted(set(wanted))


def _repair_ohlc(open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Widen high/low just enough to contain open and close; NaN bars stay NaN.

    Vendor data occasionally has a close a cent above the day's high; refusing the whole
    data set for that would be unhelpful, and moving the close would change returns.
    """
    has_bar = ~np.isnan(close)
    top = np.fmax(open_, close)
    bottom = np.fmin(open_, close)
    new_high = np.where(has_bar, np.fmax(high, top), high)
    new_low = np.where(has_bar, np.fmin(low, bottom), low)
    return new_high, new_low



def sample_eurusd() -> Panel:
    """Hourly EUR/USD OHLCV bars, 2017-04-19 09:00 .. 2018-02-07 15:00 (5,000 bars, one asset
    ``EURUSD``), from the CSV file the ``backtesting`` package installs.

    The file is read by :func:`engine.data.load_panel` (its date column is pandas' unnamed
    index); the package itself is not imported, so pandas and bokeh are not loaded. The
    bars skip weekends, so bar counts, not calendar time, measure its windows best.

    Raises:
        ImportError: ``backtesting`` is not installed (or no longer ships the file).

    Example:
        >>> p = sample_eurusd()
        >>> p.shape, p.assets, str(p.timestamps[1] - p.timestamps[0])
        ((5000, 1), ('EURUSD',), '3600000000000 nanoseconds')
    """
    from engine.data.files import load_panel

    spec = importlib.util.find_spec("backtesting")  # finds the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(_EURUSD_HINT)
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "test" / "EURUSD.csv"
        if path.is_file():
            return load_panel(path)
    raise ImportError(f"{_EURUSD_HINT} (the installed version has no test/EURUSD.csv)")
