"""Data sources for the engine: synthetic panels, real sample data, market data files, and
the data-spec strings that sweep configs use to name them.

Example:
    >>> from engine.data import parse_data_spec
    >>> parse_data_spec("synthetic:assets=5,bars=60,seed=7").shape
    (60, 5)
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.data.files import Source, add_features, load_panel
from engine.data.sample import SAMPLE_TICKERS, sample_eurusd, sample_stocks
from engine.data.summary import bar_spacing, format_spacing, missing_bars
from engine.data.synthetic import synthetic_panel
from engine.panel import Panel

__all__ = [
    "SAMPLE_TICKERS",
    "Source",
    "add_features",
    "bar_spacing",
    "format_spacing",
    "load_panel",
    "missing_bars",
    "parse_data_spec",
    "sample_eurusd",
    "sample_stocks",
    "synthetic_panel",
]

# spec key -> (synthetic_panel argument, converter)
_SYNTHETIC_KEYS: dict[str, tuple[str, Any]] = {
    "assets": ("n_assets", int),
    "bars": ("n_bars", int),
    "seed": ("seed", int),
    "ic": ("ic", float),
    "start": ("start", str),
}
# "word:" at the start; two letters or more so that a Windows drive ("C:\...") is a path.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9_-]+):")
_SAMPLES = "'sample:stocks', 'sample:eurusd'"


def parse_data_spec(spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *,
                    adjust: bool = False,
                    features: Source | Sequence[Source] | None = None) -> Panel:
    """Resolve a data string (a sweep's ``data = ...``) to a :class:`~engine.panel.Panel`.

    Accepted forms:

    * ``"synthetic"`` or ``"synthetic:assets=50,bars=2520,seed=7,ic=0.05,start=2012-01-02"``
      (any subset of the keys; the rest keep :func:`synthetic_panel`'s defaults);
    * ``"sample:stocks"`` (all five) or ``"sample:stocks:AAPL,MSFT"``: real daily stocks
      (needs bokeh-sampledata);
    * ``"sample:eurusd"``: real hourly EUR/USD, 5,000 bars (needs backtesting);
    * anything else is files, read by :func:`load_panel`: a CSV, CSV.gz or Parquet file
      (long; wide, one close column per asset; or one asset's OHLCV named by the file
      stem), a folder or glob of per-asset files (``"prices/*.csv"``), a hive-partitioned
      Parquet dataset (``symbol=XYZ/``), or a list of those. Column names match in any
      case: date/datetime/time/timestamp (or an unnamed first column), open/high/low/
      close/adj close/volume, symbol/ticker/asset. See docs/data.md.

    ``adjust`` (files only) scales open/high/low/close by adj close / close. ``features``
    names a file (or folder, glob) of feature values joined onto the bars, for any source
    (:func:`add_features`).

    Raises:
        ValueError: a malformed spec; the message names the offending key or value.
            (:class:`~engine.panel.PanelError`, a ValueError, for bad files: it names the
            file, row and column.)
        ImportError: a sample source whose package is not installed.

    Example:
        >>> p = parse_data_spec("synthetic:assets=3,bars=10,seed=1")
        >>> p.shape
        (10, 3)
        >>> parse_data_spec("sample:eurusd").shape
        (5000, 1)
        >>> parse_data_spec("prices/*.csv", adjust=True)  # doctest: +SKIP
        Panel(3270 bars x 5 assets, 2000-03-01 .. 2013-03-01)
        >>> parse_data_spec("synthetic:asets=3")
        Traceback (most recent call last):
        ...
        ValueError: data spec 'synthetic:asets=3': unknown key 'asets'; valid keys: assets, bars, seed, ic, start
    """  # noqa: E501 - a doctest line cannot wrap
    if isinstance(spec, os.PathLike) or (isinstance(spec, Sequence)
                                         and not isinstance(spec, str)):
        return load_panel(spec, adjust=adjust, features=features)
    if not isinstance(spec, str):
        raise ValueError(f"data spec must be a string or a path, got {type(spec).__name__}")
    text = spec.strip()
    m = _SCHEME.match(text)
    kind = m.group(1).lower() if m else text.lower()
    if kind in ("synthetic", "sample"):
        if adjust:
            raise ValueError(f"data spec {spec!r}: adjust applies to files; {kind} data "
                             "needs no adjusting")
        if kind == "synthetic":
            kwargs = _synthetic_kwargs(spec, text[len("synthetic:"):])
            try:
                panel = synthetic_panel(**kwargs)
            except ValueError as exc:
                raise ValueError(f"data spec {spec!r}: {_spec_words(str(exc))}") from None
        else:
            panel = _sample(spec, text[len("sample:"):])
        return panel if features is None else add_features(panel, features)
    if m and not Path(text).exists():
        raise ValueError(
            f"data spec {spec!r}: unknown source {m.group(1)!r}; expected 'synthetic:...', "
            f"{_SAMPLES}, or a file, folder or glob"
        )
    if not text:
        raise ValueError(f"data spec is empty; expected 'synthetic:...', {_SAMPLES}, or a file, "
                         "folder or glob")
    return load_panel(text, adjust=adjust, features=features)


def _synthetic_kwargs(spec: str, body: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    seen: set[str] = set()
    for item in filter(None, (part.strip() for part in body.split(","))):
        key, eq, value = (s.strip() for s in item.partition("="))
        if key not in _SYNTHETIC_KEYS:
            raise ValueError(
                f"data spec {spec!r}: unknown key {key!r}; valid keys: "
                + ", ".join(_SYNTHETIC_KEYS)
            )
        if not eq or not value:
            raise ValueError(f"data spec {spec!r}: key {key!r} needs a value ({key}=...)")
        if key in seen:
            raise ValueError(f"data spec {spec!r}: key {key!r} given twice")
        seen.add(key)
        arg, convert = _SYNTHETIC_KEYS[key]
        try:
            kwargs[arg] = convert(value)
        except ValueError:
            raise ValueError(
                f"data spec {spec!r}: bad value {value!r} for key {key!r} "
                f"(expected {convert.__name__})"
            ) from None
    return kwargs


def _spec_words(message: str) -> str:
    """Say 'assets' rather than synthetic_panel's 'n_assets' in an error about a spec."""
    for key, (arg, _) in _SYNTHETIC_KEYS.items():
        if message.startswith(arg):
            return f"key {key!r}: {message}"
    return message


def _sample(spec: str, body: str) -> Panel:
    name, _, tickers = body.partition(":")
    name = name.strip().lower()
    if name == "eurusd":
        if tickers.strip():
            raise ValueError(f"data spec {spec!r}: 'sample:eurusd' is one asset; it takes no "
                             "tickers")
        return sample_eurusd()
    if name != "stocks":
        raise ValueError(
            f"data spec {spec!r}: unknown sample {name!r}; expected 'sample:stocks', "
            "'sample:stocks:AAPL,MSFT' or 'sample:eurusd'"
        )
    chosen = [t for t in (s.strip() for s in tickers.split(",")) if t]
    return sample_stocks(chosen or None)
