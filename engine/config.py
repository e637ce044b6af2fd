"""Engine configuration: a frozen dataclass, and its packed form for the Numba kernels."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np

__all__ = ["CONFIG_DTYPE", "FILL_MODES", "EngineConfig", "pack_configs"]

FILL_MODES = ("next_open", "close")

# The kernels read configs as records of this dtype (one source of truth: EngineConfig;
# `pack_configs` derives the records). Unset optional stops are NaN.
CONFIG_DTYPE = np.dtype(
    [
        ("init_cash", np.float64),
        ("fill_close", np.bool_),
        ("commission", np.float64),
        ("fixed_fee", np.float64),
        ("slippage", np.float64),
        ("fractional", np.bool_),
        ("min_trade_value", np.float64),
        ("min_weight_change", np.float64),
        ("allow_short", np.bool_),
        ("max_leverage", np.float64),
        ("cash_account", np.bool_),
        ("stop_loss", np.float64),
        ("take_profit", np.float64),
        ("trailing_stop", np.float64),
        ("atr_stop", np.float64),
        ("atr_window", np.int64),
    ],
    align=True,
)


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
    fill: Literal["next_open", "close"] = "next_open"
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
    periods_per_year: float | None = None

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
    for name in ("fractional", "allow_short"):
        if not isinstance(getattr(cfg, name), bool):
            yield f"{name} must be true or false, got {getattr(cfg, name)!r}"


def pack_configs(configs: list[EngineConfig] | tuple[EngineConfig, ...]) -> np.ndarray:
    """Records of CONFIG_DTYPE for the kernels, one per config."""
    out = np.zeros(len(configs), dtype=CONFIG_DTYPE)
    nan = float("nan")
    for i, c in enumerate(configs):
        out[i] = (
            c.init_cash, c.fill == "close", c.commission, c.fixed_fee, c.slippage, c.fractional,
            c.min_trade_value, c.min_weight_change, c.allow_short, c.max_leverage,
            c.cash_account,
            nan if c.stop_loss is None else c.stop_loss,
            nan if c.take_profit is None else c.take_profit,
            nan if c.trailing_stop is None else c.trailing_stop,
            nan if c.atr_stop is None else c.atr_stop,
            c.atr_window,
        )
    return out
