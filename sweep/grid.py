"""Parameter grids: axes of values, their cartesian product by index arithmetic, constraints.

A grid never needs to exist as a list of dicts: combination ``i`` is decoded from its index
(mixed radix, last axis fastest, like ``itertools.product``), so any block of a
million-run grid is materialised on its own.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from engine import EngineConfig
from engine.config import PYTHON_ONLY
from strategies import Strategy, StrategyError
from sweep.schema import is_param_column

__all__ = ["ENGINE_AXES", "OPTIONAL_ENGINE_FIELDS", "Grid", "GridError", "engine_values",
           "expand_values"]

# Engine fields that may be swept as grid axes: those the kernels read per run. Not the
# Python-only ones (fill mode, bars per year, the benchmark) nor the risk-free rate: they
# describe the market the runs share (engine.series.MarketSeries), one for the sweep.
ENGINE_AXES = tuple(
    f.name for f in dataclasses.fields(EngineConfig)
    if f.metadata != PYTHON_ONLY and f.name != "risk_free"
)
# Engine fields that may be None ("no stop"): TOML has no null, so "none" stands for it.
OPTIONAL_ENGINE_FIELDS = frozenset(
    name for name, hint in typing.get_type_hints(EngineConfig).items()
    if type(None) in typing.get_args(hint)
)


def _none_word(name: str, value: Any) -> Any:
    """``"none"`` (any case) for an optional engine field means None; else the value."""
    if name in OPTIONAL_ENGINE_FIELDS and isinstance(value, str) \
            and value.strip().lower() == "none":
        return None
    return value


def engine_values(table: Mapping[str, Any]) -> dict[str, Any]:
    """An [engine] table with ``"none"`` read as None for the optional fields.

    Example:
        >>> engine_values({"stop_loss": "None", "commission": 0.001})
        {'stop_loss': None, 'commission': 0.001}
    """
    return {k: _none_word(k, v) for k, v in table.items()}


class GridError(StrategyError):
    """A grid that cannot be built; the message names the axis, value or constraint."""


def expand_values(name: str, spec: Any) -> list[Any]:
    """Values of one axis: a list, a scalar, or a range table.

    Ranges: ``{start, stop, step}`` (stop inclusive when it lands on the step) or
    ``{start, stop, num, log = true}`` (``num`` values geometrically spaced; ints rounded
    and de-duplicated for integer endpoints).

    Example:
        >>> expand_values("fast", {"start": 5, "stop": 20, "step": 5})
        [5, 10, 15, 20]
        >>> expand_values("commission", {"start": 0.0001, "stop": 0.01, "num": 3, "log": True})
        [0.0001, 0.001, 0.01]
    """
    if isinstance(spec, Mapping):
        keys = set(spec)
        known = {"start", "stop", "step", "num", "log"}
        if keys - known:
            raise GridError(f"grid axis {name!r}: unknown range key(s) {sorted(keys - known)}")
        if not {"start", "stop"} <= keys:
            raise GridError(f"grid axis {name!r}: a range needs start and stop, got {spec}")
        start, stop = spec["start"], spec["stop"]
        nums = (start, stop, spec.get("step", 1), spec.get("num", 1))
        if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in nums):
            raise GridError(f"grid axis {name!r}: range values must be numbers, got {spec}")
        ints = all(isinstance(x, int) for x in (start, stop, spec.get("step", 1)))
        if spec.get("log"):
            num = spec.get("num")
            if not isinstance(num, int) or num < 1 or start <= 0 or stop <= 0:
                raise GridError(
                    f"grid axis {name!r}: a log range needs num >= 1 and positive start/stop"
                )
            vals = np.geomspace(start, stop, num)
            if ints:
                return sorted({round(v) for v in vals.tolist()})
            return [float(f"{v:.12g}") for v in vals.tolist()]
        if "num" in spec:
            num = spec["num"]
            if not isinstance(num, int) or num < 1:
                raise GridError(f"grid axis {name!r}: num must be an integer >= 1")
            vals = np.linspace(start, stop, num)
            return sorted({round(v) for v in vals.tolist()}) if ints else vals.tolist()
        step = spec.get("step", 1)
        if step == 0 or (stop - start) * step < 0:
            raise GridError(f"grid axis {name!r}: step {step} never reaches stop from start")
        count = math.floor((stop - start) / step + 1e-9) + 1
        if count > 10_000_000:
            raise GridError(f"grid axis {name!r}: {count} values is too many for one axis")
        vals = [start + i * step for i in range(count)]
        return vals if ints else [float(f"{v:.12g}") for v in vals]
    if isinstance(spec, list | tuple):
        if not spec:
            raise GridError(f"grid axis {name!r} has no values")
        return list(spec)
    return [spec]


@dataclass(frozen=True)
class Grid:
    """The cartesian product of named axes, filtered by constraints.

    Example:
        >>> import strategies
        >>> g = Grid.build(strategies.get("ma_cross"), {"fast": [5, 10], "slow": [10, 50]},
        ...                constraints=["fast < slow"])
        >>> g.size, g.frame().height
        (4, 3)
    """

    strategy: Strategy
    axes: tuple[tuple[str, tuple[Any, ...]], ...]
    constraints: tuple[str, ...] = ()

    @classmethod
    def build(
        cls,
        strategy: Strategy,
        spec: Mapping[str, Any],
        constraints: Iterable[str] = (),
    ) -> Grid:
        """Validate every axis value against the strategy's parameters or EngineConfig."""
        axes = []
        for name, raw in spec.items():
            if not is_param_column(name):
                raise GridError(f"grid axis {name!r} clashes with a reserved result column")
            values = [_none_word(name, v) for v in expand_values(name, raw)]
            if name in strategy.params:
                p = strategy.params[name]
                values = [p.check(name, v) for v in values]
            elif name in ENGINE_AXES:
                kind = type(getattr(EngineConfig(), name))
                if kind is float or name in OPTIONAL_ENGINE_FIELDS:
                    # 0 and 0.001 on one axis are both fractions
                    values = [float(v) if isinstance(v, int) and not isinstance(v, bool)
                              else v for v in values]
                for v in values:
                    try:
                        EngineConfig().replace(**{name: v})
                    except (ValueError, TypeError) as exc:
                        raise GridError(f"grid axis {name!r}: {exc}") from None
            else:
                close = difflib.get_close_matches(name, [*strategy.params, *ENGINE_AXES], n=1)
                raise GridError(
                    f"grid axis {name!r} is neither a parameter of strategy "
                    f"{strategy.name!r} ({', '.join(strategy.params)}) nor an engine field "
                    f"({', '.join(ENGINE_AXES)})"
                    + (f"; did you mean {close[0]!r}?" if close else "")
                )
            if len(set(map(repr, values))) != len(values):
                raise GridError(f"grid axis {name!r} repeats a value: {values}")
            axes.append((name, tuple(values)))
        grid = cls(strategy, tuple(axes), tuple(constraints))
        grid._check_constraints()
        return grid

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.axes)

    @property
    def size(self) -> int:
        """Combinations before constraints."""
        return math.prod(len(v) for _, v in self.axes)

    def block(self, start: int = 0, stop: int | None = None) -> pl.DataFrame:
        """Combinations ``start .. stop-1`` that pass the constraints, with their index in
        the column ``combo``."""
        stop = self.size if stop is None else min(stop, self.size)
        return self.take(np.arange(start, max(start, stop), dtype=np.int64))

    def take(self, combos: np.ndarray) -> pl.DataFrame:
        """The combinations with these indices (any order) that pass the constraints."""
        idx = np.asarray(combos, dtype=np.int64)
        cols: dict[str, Any] = {}
        radix = 1
        for name, values in reversed(self.axes):
            cols[name] = pl.Series(name, values, strict=False)[(idx // radix) % len(values)]
            radix *= len(values)
        frame = pl.DataFrame({"combo": idx} | {n: cols[n] for n in self.names})
        return frame.filter(self._predicate()) if self.constraints else frame

    def frame(self) -> pl.DataFrame:
        """Every combination that passes the constraints."""
        return self.block(0, self.size)

    def _predicate(self) -> pl.Expr:
        exprs = [pl.sql_expr(c) for c in self.constraints]
        out = exprs[0]
        for e in exprs[1:]:
            out = out & e
        return out

    def _check_constraints(self) -> None:
        sample = pl.DataFrame({name: [values[0]] for name, values in self.axes})
        for c in self.constraints:
            if not isinstance(c, str) or not c.strip():
                raise GridError(f"constraint {c!r} is not an expression")
            try:
                result = sample.select(pl.sql_expr(c).alias("ok"))
            except Exception as exc:
                raise GridError(
                    f"constraint {c!r} cannot be evaluated over the grid axes "
                    f"{list(self.names)}: {str(exc).splitlines()[0]}"
                ) from None
            if result.schema["ok"] != pl.Boolean:
                raise GridError(f"constraint {c!r} is not a true/false condition")


def strategy_columns(strategy: Strategy, table: pl.DataFrame) -> dict[str, np.ndarray]:
    """One array per strategy parameter (grid column, or the default repeated)."""
    n = table.height
    out = {}
    for name, p in strategy.params.items():
        if name in table.columns:
            out[name] = table[name].to_numpy()
        else:
            out[name] = np.full(n, p.default, dtype=object if isinstance(p.default, str)
                                else None)
    return out


def engine_axes(table: pl.DataFrame) -> Sequence[str]:
    return [c for c in table.columns if c in ENGINE_AXES]
