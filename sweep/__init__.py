"""Grids, date windows, in-process evaluation and distributed sweeps over the engine.

Example:
    >>> import sweep
    >>> from engine.data import synthetic_panel
    >>> panel = synthetic_panel(n_assets=5, n_bars=300, seed=2)
    >>> sweep.evaluate(panel, "top_n", {"n": [1, 2]}).height
    2
"""

from sweep.evaluate import evaluate
from sweep.grid import Grid, GridError
from sweep.runner import SweepSummary, run_sweep
from sweep.spec import SpecError, SweepSpec
from sweep.store import load_results
from sweep.walkforward import WalkForwardResult, walk_forward

__all__ = [
    "Grid",
    "GridError",
    "SpecError",
    "SweepSpec",
    "SweepSummary",
    "WalkForwardResult",
    "evaluate",
    "load_results",
    "run_sweep",
    "walk_forward",
]
