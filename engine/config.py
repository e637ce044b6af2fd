"""Engine configuration: a frozen dataclass, and its packed form for the Numba kernels."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import numpy as np

__all__ = ["CONFIG_DTYPE", "FILL_MODES", "EngineConfig", "pack_configs"]

FILL_MODES = ("next_open", "close")

# A field with this metadata stays in Python: the kernels get it another way (``fill`` as
# the derived ``fill_close``, ``periods_per_year`` as an argument per window, ``benchmark``
# as the benchmark's per-bar returns, engine.series.market_series).
PYTHON_ONLY = {"kernel": False}


@dataclass(frozen=True)
class EngineConfig:
    """How orders are filled and charged. See docs/engine.md for the exact semantics.

    Example:
        >>> cfg = EngineConfig(commission=0.001, stop_loss=0.05)
        >>> cfg.fill
        'next_open'
        >>> cfg.replace(fill="close").fill
        'close'
    """

    init_cash: float = 1_000_000.0
    fill: Literal["next_open", "close"] = field(default="next_open", metadata=PYTHON_ONLY)
    commission: float = 0.0
    fixed_fee: float = 0.0
    slippage: float = 0.0
    fractional: bool = True
    min_trade_value: float = 0.0
    min_weight_change: float = 0.0
    allow_short: bool = False
    max_leverage: float = 1.0
    stop_loss: float | None = None
    take_profit: float | None = None
    trailing_stop: float | None = None
    atr_stop: float | None = None
    atr_window: int = 14
    periods_per_year: float | None = field(default=None, metadata=PYTHON_ONLY)
    risk_free: float = 0.0
    benchmark: str | None = field(default=None, metadata=PYTHON_ONLY)

    def __post_init__(self) -> None:
        problems = list(_problems(self))
        if problems:
            raise ValueError("invalid EngineConfig: " + "; ".join(problems))

    @property
    def cash_account(self) -> bool:
        """True when cash may never go negative: long-only with leverage <= 1."""
        return not self.allow_short and self.max_leverage <= 1.0

    def replace(self, **changes: Any) -> EngineConfig:
        """A copy with some fields changed (validated like the original)."""
        unknown = set(changes) - set(self.field_names())
        if unknown:
            raise ValueError(
                f"unknown EngineConfig field(s) {sorted(unknown)}; "
                f"known: {', '.join(self.field_names())}"
            )
        return dataclasses.replace(self, **changes)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EngineConfig:
        """Build from a mapping (e.g. a TOML [engine] table); unknown keys are an error."""
        return cls().replace(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _problems(cfg: EngineConfig):
    def number(name: str, *, optional: bool = False) -> float | None:
        v = getattr(cfg, name)
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ValueError(f"invalid EngineConfig: {name} must be a finite number, got {v!r}")
        return float(v)

    if cfg.fill not in FILL_MODES:
        yield f"fill must be one of {FILL_MODES}, got {cfg.fill!r}"
    if number("init_cash") <= 0:
        yield f"init_cash must be > 0, got {cfg.init_cash!r}"
    for name in ("commission", "fixed_fee", "slippage", "min_trade_value", "min_weight_change"):
        if number(name) < 0:
            yield f"{name} must be >= 0, got {getattr(cfg, name)!r}"
    if cfg.commission >= 1:
        yield f"commission is a fraction of notional and must be < 1, got {cfg.commission!r}"
    if cfg.slippage >= 1:
        yield f"slippage is a fraction of price and must be < 1, got {cfg.slippage!r}"
    if number("max_leverage") < 0:
        yield f"max_leverage must be >= 0, got {cfg.max_leverage!r}"
    for name in ("stop_loss", "take_profit", "trailing_stop", "atr_stop"):
        v = number(name, optional=True)
        if v is not None and v <= 0:
            yield f"{name} must be > 0 (or None for no stop), got {v!r}"
    for name in ("stop_loss", "trailing_stop"):
        v = getattr(cfg, name)
        if v is not None and v >= 1:
            yield f"{name} is a fraction of price and must be < 1, got {v!r}"
    if isinstance(cfg.atr_window, bool) or not isinstance(cfg.atr_window, int) \
            or cfg.atr_window < 1:
        yield f"atr_window must be an integer >= 1, got {cfg.atr_window!r}"
    ppy = number("periods_per_year", optional=True)
    if ppy is not None and ppy <= 0:
        yield f"periods_per_year must be > 0, got {ppy!r}"
    if number("risk_free") <= -1:
        yield f"risk_free is an annual rate and must be > -1, got {cfg.risk_free!r}"
    if cfg.benchmark is not None and (not isinstance(cfg.benchmark, str) or
                                      not cfg.benchmark):
        yield (f"benchmark must be an asset name of the panel (or None), got "
               f"{cfg.benchmark!r}; a benchmark price series goes to run_backtest("
               "benchmark_prices=...) or engine.market_series")
    for name in ("fractional", "allow_short"):
        if not isinstance(getattr(cfg, name), bool):
            yield f"{name} must be true or false, got {getattr(cfg, name)!r}"


# Kernel fields computed from the config rather than copied from one field, declared once:
# name -> (dtype, value).
DERIVED_FIELDS: dict[str, tuple[type, Callable[[EngineConfig], Any]]] = {
    "fill_close": (np.bool_, lambda c: c.fill == "close"),
    "cash_account": (np.bool_, lambda c: c.cash_account),
}


def _kernel_columns() -> list[tuple[str, type, Callable[[EngineConfig], Any]]]:
    """(name, dtype, value) of each kernel field: every EngineConfig field not marked
    PYTHON_ONLY, by its annotation (float, bool, int; ``float | None`` is NaN when None),
    then DERIVED_FIELDS. A field of any other type must be PYTHON_ONLY or derived."""
    hints = typing.get_type_hints(EngineConfig)
    columns = []
    for f in fields(EngineConfig):
        if not f.metadata.get("kernel", True):
            continue
        kind = hints[f.name]
        if kind in (float, bool, int):
            dtype = {float: np.float64, bool: np.bool_, int: np.int64}[kind]
            columns.append((f.name, dtype, _getter(f.name, optional=False)))
        elif typing.get_origin(kind) in (typing.Union, types.UnionType) and \
                set(typing.get_args(kind)) == {float, type(None)}:
            columns.append((f.name, np.float64, _getter(f.name, optional=True)))
        else:
            raise TypeError(f"EngineConfig.{f.name}: {kind} has no kernel type; mark it "
                            "PYTHON_ONLY or give the kernels a derived field")
    columns += [(name, dtype, value) for name, (dtype, value) in DERIVED_FIELDS.items()]
    return columns


def _getter(name: str, *, optional: bool) -> Callable[[EngineConfig], Any]:
    if not optional:
        return lambda c: getattr(c, name)
    return lambda c: math.nan if getattr(c, name) is None else getattr(c, name)


_KERNEL_COLUMNS = _kernel_columns()

CONFIG_DTYPE = np.dtype([(name, dtype) for name, dtype, _ in _KERNEL_COLUMNS], align=True)
"""The record the kernels read a config as (``cfg.commission``, ``cfg.fill_close``, ...):
derived from the EngineConfig fields, so a new field reaches the kernels by itself."""


def pack_configs(configs: list[EngineConfig] | tuple[EngineConfig, ...]) -> np.ndarray:
    """Records of CONFIG_DTYPE for the kernels, one per config.

    Example:
        >>> rec = pack_configs([EngineConfig(fill="close", stop_loss=0.1)])[0]
        >>> bool(rec["fill_close"]), float(rec["stop_loss"]), float(rec["take_profit"])
        (True, 0.1, nan)
    """
    out = np.zeros(len(configs), dtype=CONFIG_DTYPE)
    for name, _, value in _KERNEL_COLUMNS:
        out[name] = [value(c) for c in configs]
    return out
