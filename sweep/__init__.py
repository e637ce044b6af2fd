"""Grids, date windows, evaluation and (later) distributed sweeps over the engine.

Example:
    >>> import sweep
    >>> from engine.data import synthetic_panel
    >>> panel = synthetic_panel(n_assets=5, n_bars=300, seed=2)
    >>> sweep.evaluate(panel, "top_n", {"n": [1, 2]}).height
    2
"""

from sweep.evaluate import evaluate
from sweep.grid import Grid, GridError

__all__ = ["Grid", "GridError", "evaluate"]
