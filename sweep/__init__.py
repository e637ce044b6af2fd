"""Grids, date windows, in-process evaluation and distributed sweeps over the engine.

Example:
    >>> import sweep
    >>> from engine.data import synthetic_panel
    >>> panel = synthetic_panel(n_assets=5, n_bars=300, seed=2)
    >>> sweep.evaluate(panel, "top_n", {"n": [1, 2]}).height
    2
"""
# ruff: noqa: E402 (the Numba cache guard runs before the kernel modules are imported)

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from engine.kernel_cache import guard_package

guard_package(__name__, ("kernels.py", "cscv.py"), depends_on=("engine", "strategies.base"))

from sweep.evaluate import evaluate
from sweep.grid import Grid, GridError
from sweep.spec import SpecError, SweepSpec

if TYPE_CHECKING:
    from sweep.playback import export, replay
    from sweep.runner import SweepSummary, run_sweep
    from sweep.store import load_results
    from sweep.walkforward import WalkForwardResult, walk_forward

# Imported on first use: the distributed runner and the Parquet store bring in Dask and
# pyarrow (~60 MB and ~0.3 s), which an in-process `sweep.evaluate` never needs.
_LAZY = {
    "SweepSummary": "sweep.runner",
    "run_sweep": "sweep.runner",
    "load_results": "sweep.store",
    "WalkForwardResult": "sweep.walkforward",
    "walk_forward": "sweep.walkforward",
    "replay": "sweep.playback",
    "export": "sweep.playback",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sweep' has no attribute {name!r}")


__all__ = [
    "Grid",
    "GridError",
    "SpecError",
    "SweepSpec",
    "SweepSummary",
    "WalkForwardResult",
    "evaluate",
    "export",
    "load_results",
    "replay",
    "run_sweep",
    "walk_forward",
]
