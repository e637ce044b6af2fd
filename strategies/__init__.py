"""Sweepable, look-ahead-free signal generators producing target weights.

Example:
    >>> import strategies
    >>> [n for n in strategies.names() if n in strategies.BUILTIN_NAMES][:2]
    ['breakout', 'ma_cross']
    >>> s = strategies.get("ma_cross")
    >>> sorted(s.params)
    ['fast', 'kind', 'long_short', 'slow']
"""
# ruff: noqa: E402 (the Numba cache guard runs before the kernel modules are imported)

from engine.kernel_cache import guard_package

guard_package(__name__, depends_on=("engine",))  # this package's Numba caches (its fused
# kernels compile engine.nb in), before its kernels load

from strategies.base import WEIGHTS_SIGNATURE, Param, Strategy, StrategyError, weights_kernel
from strategies.breakout import BREAKOUT
from strategies.ma_cross import MA_CROSS
from strategies.mean_reversion import MEAN_REVERSION
from strategies.momentum import MOMENTUM
from strategies.registry import get, load_module, names, register, unregister_module
from strategies.top_n import TOP_N

BUILTIN_NAMES = tuple(s.name for s in (TOP_N, MA_CROSS, MOMENTUM, MEAN_REVERSION, BREAKOUT))
"""The strategies that ship with backsweep (registered on import)."""

for _builtin in (TOP_N, MA_CROSS, MOMENTUM, MEAN_REVERSION, BREAKOUT):
    register(_builtin)

__all__ = [
    "BUILTIN_NAMES",
    "WEIGHTS_SIGNATURE",
    "Param",
    "Strategy",
    "StrategyError",
    "get",
    "load_module",
    "names",
    "register",
    "unregister_module",
    "weights_kernel",
]
