"""The strategy protocol: declared parameters, a prepare step and a compiled weights kernel.

A strategy turns a panel and one parameter set into target weights (T, N). To sweep a grid
without Python work per run it is split in two:

* ``prepare(panel, columns) -> (data, rows)``: Python, once per grid (or grid chunk).
  ``columns`` maps each parameter to an array with one value per run. It computes every
  indicator the grid needs *once per distinct value* (a 50-bar average is built once for all
  runs that use it), stacks them into ``data`` (K, T, N), and encodes each run as a float row
  of ``rows`` (R, P): parameter values and the slots of its indicators in ``data``.
* ``kernel(data, row, out)``: a Numba function with the fixed signature
  :data:`WEIGHTS_SIGNATURE` (make one with :func:`weights_kernel`) that writes the (T, N)
  weights of one run into ``out``. Row t may use data up to bar t only.

Optionally, ``fused``: the same strategy for a one-asset panel, as a function of the
fixed signature :data:`FUSED_SIGNATURE` (make one with :func:`fused_kernel`) that finds a
run's instructions (the bars where the kernel would write a finite weight, and those
weights) and hands them to the engine's one-asset run, ``engine.nb.single.run_events``:
no weights array, no per-bar series, and the signal may be found for every run of the
grid at once in ``prepare`` (ma_cross finds all its runs' crosses from one sort of its
averages a bar). The sweep uses it when the panel has one asset with a close on every
bar and no run has stops, a benchmark or a risk-free series; its metrics are those of
the kernel's weights, to the bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numba import from_dtype, njit, types

from engine import Panel
from engine.config import CONFIG_DTYPE
from engine.nb.jit import LOOP_HELPER_OPTIONS

__all__ = ["FUSED_SIGNATURE", "WEIGHTS_SIGNATURE", "Param", "Strategy", "StrategyError",
           "fused_kernel", "weights_kernel"]

WEIGHTS_SIGNATURE = types.void(
    types.float64[:, :, ::1], types.float64[::1], types.float64[:, ::1]
)
WEIGHTS_KERNEL_TYPE = types.FunctionType(WEIGHTS_SIGNATURE)

FUSED_SIGNATURE = types.int64(
    types.float64[:, :, ::1],              # data (K, T, 1), as from prepare
    types.float64[::1],                    # the run's row
    types.float64[::1],                    # open (T,) of the one asset
    types.float64[::1],                    # close (T,)
    from_dtype(CONFIG_DTYPE)[::1],         # engine configs (engine.config.pack_configs)
    types.int64,                           # the run's config
    types.int64,                           # t0: the window's first bar
    types.int64,                           # t1: one past its last
    types.float64,                         # bars per year
    types.float64[:, ::1],                 # per-block return stats to add to (S, 3)
    types.float64[::1],                    # the metrics (N_METRICS,)
    types.float64[:, ::1],                 # scratch for the instructions (2, T + 1)
)
"""A fused one-asset run: writes the window's metrics, adds its block statistics and
returns the number of negative weights refused (allow_short off), as
``engine.nb.single.run_events`` does with the run's instructions."""
FUSED_KERNEL_TYPE = types.FunctionType(FUSED_SIGNATURE)

ParamKind = Literal["int", "float", "bool", "choice", "str"]


class StrategyError(ValueError):
    """A bad strategy name, parameter or value; the message names it."""


def weights_kernel(func: Callable[..., None]) -> Any:
    """Compile a weights kernel ``(data, row, out) -> None`` with the fixed signature.

    Example:
        >>> @weights_kernel
        ... def hold_first(data, row, out):
        ...     out[:] = np.nan
        ...     out[0, 0] = row[0]
        >>> out = np.empty((3, 2))
        >>> hold_first(np.zeros((1, 3, 2)), np.array([0.5]), out)
        >>> out[0].tolist()
        [0.5, nan]
    """
    try:
        return njit(WEIGHTS_SIGNATURE, nogil=True, cache=True)(func)
    except RuntimeError as exc:
        # Code without a source file (a REPL, exec, a doctest) has nowhere to keep Numba's
        # cache; such a kernel is compiled again in each process. Jupyter cells do have one.
        if "no locator available" not in str(exc):
            raise
        return njit(WEIGHTS_SIGNATURE, nogil=True)(func)


def fused_kernel(func: Callable[..., int]) -> Any:
    """Compile a fused one-asset kernel with :data:`FUSED_SIGNATURE` (see the module
    docstring; strategies/ma_cross.py has one). It is called once a run and window, so it
    is compiled as the engine's loop helpers are (``engine.nb.jit.loop_helper``), without
    reference counting: a count on entry and exit of each of its eight array arguments
    was ~4 % of the MA grid. So it must not allocate an array (Numba refuses to compile
    one that does): it gets its scratch, ``ev``."""
    return njit(FUSED_SIGNATURE, **LOOP_HELPER_OPTIONS)(func)


@dataclass(frozen=True)
class Param:
    """One sweepable parameter.

    ``kind``: "int", "float", "bool", "choice" (one of ``choices``) or "str" (free text
    checked by the strategy, e.g. a feature name). ``low``/``high`` are inclusive bounds.
    """

    kind: ParamKind
    default: Any
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    doc: str = ""

    def check(self, name: str, value: Any) -> Any:
        """The value converted to the parameter's type, or a StrategyError naming it."""
        def bad(why: str) -> StrategyError:
            return StrategyError(f"parameter {name!r}: {value!r} {why}")

        if self.kind == "bool":
            if isinstance(value, bool | np.bool_):
                return bool(value)
            raise bad("is not true/false")
        if self.kind in ("choice", "str"):
            if self.kind == "choice" and value not in (self.choices or ()):
                raise bad(f"is not one of {list(self.choices or ())}")
            if not isinstance(value, str):
                raise bad("is not a string")
            return value
        if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
            raise bad(f"is not a number ({self.kind} expected)")
        if self.kind == "int":
            if not float(value).is_integer():
                raise bad("is not an integer")
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise bad("is not finite")
        if self.low is not None and value < self.low:
            raise bad(f"is below the lower bound {self.low}")
        if self.high is not None and value > self.high:
            raise bad(f"is above the upper bound {self.high}")
        return value

    def describe(self) -> str:
        if self.kind in ("choice",):
            rng = "{" + ", ".join(map(str, self.choices or ())) + "}"
        elif self.low is not None or self.high is not None:
            lo = "" if self.low is None else f"{self.low:g}"
            hi = "" if self.high is None else f"{self.high:g}"
            rng = f"[{lo}, {hi}]"
        else:
            rng = ""
        return f"{self.kind:6} default={self.default!s:8} {rng:14} {self.doc}"


Prepare = Callable[[Panel, Mapping[str, np.ndarray]], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Strategy:
    """A named, sweepable, look-ahead-free signal generator.

    Example:
        >>> import strategies
        >>> s = strategies.get("ma_cross")
        >>> s.lookback(fast=10, slow=50)
        50
    """

    name: str
    params: Mapping[str, Param]
    prepare: Prepare
    kernel: Any
    lookback_fn: Callable[..., int]
    doc: str = ""
    fused: Any = None
    _param_order: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_param_order", tuple(self.params))

    def resolve(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults filled in and every value checked; unknown names are an error."""
        unknown = [k for k in params if k not in self.params]
        if unknown:
            raise StrategyError(
                f"strategy {self.name!r} has no parameter {unknown[0]!r}; "
                f"its parameters: {', '.join(self.params)}"
            )
        return {k: p.check(k, params.get(k, p.default)) for k, p in self.params.items()}

    def lookback(self, **params: Any) -> int:
        """Bars of history the signal needs before its first meaningful weight."""
        return int(self.lookback_fn(**self.resolve(params)))

    def weights(self, panel: Panel, **params: Any) -> np.ndarray:
        """Target weights (T, N) for one parameter set (NaN = no instruction)."""
        resolved = self.resolve(params)
        columns = {k: np.array([v]) for k, v in resolved.items()}
        data, rows = self.prepare(panel, columns)
        out = np.empty(panel.shape)
        self.kernel(data, np.ascontiguousarray(rows[0]), out)
        return out
