"""Data sources for the engine: synthetic panels, real sample stocks, and the data-spec
strings that sweep configs use to name them.

Example:
    >>> from engine.data import parse_data_spec
    >>> parse_data_spec("synthetic:assets=5,bars=60,seed=7").shape
    (60, 5)
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from engine.data.sample import SAMPLE_TICKERS, sample_stocks
from engine.data.synthetic import synthetic_panel
from engine.panel import Panel

__all__ = ["SAMPLE_TICKERS", "parse_data_spec", "sample_stocks", "synthetic_panel"]

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


def parse_data_spec(spec: str | os.PathLike[str]) -> Panel:
    """Resolve a data string to a :class:`~engine.panel.Panel`.

    Accepted forms:

    * ``"synthetic"`` or ``"synthetic:assets=50,bars=2520,seed=7,ic=0.05,start=2012-01-02"``
      (any subset of the keys; the rest keep :func:`synthetic_panel`'s defaults);
    * ``"sample:stocks"`` (all five) or ``"sample:stocks:AAPL,MSFT"``;
    * anything else is a path to a long-format Parquet file (:meth:`Panel.read_parquet`).

    Raises:
        ValueError: a malformed spec; the message names the offending key or value.
            (:class:`~engine.panel.PanelError`, a ValueError, for an unreadable file.)

    Example:
        >>> p = parse_data_spec("synthetic:assets=3,bars=10,seed=1")
        >>> p.shape
        (10, 3)
        >>> parse_data_spec("synthetic:asets=3")
        Traceback (most recent call last):
        ...
        ValueError: data spec 'synthetic:asets=3': unknown key 'asets'; valid keys: assets, bars, seed, ic, start
    """  # noqa: E501 - a doctest line cannot wrap
    if isinstance(spec, os.PathLike):
        return Panel.read_parquet(spec)
    if not isinstance(spec, str):
        raise ValueError(f"data spec must be a string or a path, got {type(spec).__name__}")
    text = spec.strip()
    m = _SCHEME.match(text)
    kind = m.group(1).lower() if m else text.lower()
    if kind == "synthetic":
        kwargs = _synthetic_kwargs(spec, text[len("synthetic:"):])
        try:
            return synthetic_panel(**kwargs)
        except ValueError as exc:
            raise ValueError(f"data spec {spec!r}: {_spec_words(str(exc))}") from None
    if kind == "sample":
        return _sample(spec, text[len("sample:"):])
    if m and not Path(text).exists():
        raise ValueError(
            f"data spec {spec!r}: unknown source {m.group(1)!r}; expected 'synthetic:...', "
            "'sample:stocks' or a Parquet file path"
        )
    if not text:
        raise ValueError("data spec is empty; expected 'synthetic:...', 'sample:stocks' or a path")
    return Panel.read_parquet(text)


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
    if name.strip().lower() != "stocks":
        raise ValueError(
            f"data spec {spec!r}: unknown sample {name.strip()!r}; expected 'sample:stocks' "
            "or 'sample:stocks:AAPL,MSFT'"
        )
    chosen = [t for t in (s.strip() for s in tickers.split(",")) if t]
    return sample_stocks(chosen or None)
