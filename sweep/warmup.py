"""Compiling (or loading from Numba's disk cache) the kernels a sweep will run, on a tiny
panel, before its first chunk: what the sweep layer hands to ``cluster.prepare`` as the
workers' warm-up (the cluster package knows nothing of strategies)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

__all__ = ["warm_up"]


def warm_up(n_assets: int = 4, n_bars: int = 300,
            strategies: Iterable[str] | None = None) -> dict[str, Any]:
    """A one-run ``sweep.evaluate`` on a tiny synthetic panel of each built-in strategy
    in ``strategies``. With ``strategies=None`` (a generic warm-up, e.g. building an
    image): every built-in strategy, and one backtest for ``run_backtest``'s kernels (a
    sweep never calls them). User strategies are skipped: their own parameters may not
    fit a tiny panel. Returns seconds per step and any errors (never raises for one).

    Example:
        >>> from sweep.warmup import warm_up
        >>> list(warm_up(n_assets=2, n_bars=60, strategies=["ma_cross"])["seconds"])
        ['ma_cross']
    """
    import numpy as np

    import strategies as registry
    from engine import EngineConfig, run_backtest
    from engine.data import synthetic_panel
    from sweep.evaluate import evaluate

    started = time.perf_counter()
    seconds: dict[str, float] = {}
    errors: dict[str, str] = {}
    panel = synthetic_panel(n_assets=n_assets, n_bars=n_bars, seed=0)
    cfg = EngineConfig()
    if strategies is None:
        t = time.perf_counter()
        try:
            run_backtest(panel, np.full(panel.close.shape, 1.0 / n_assets), cfg)
        except Exception as exc:
            errors["backtest"] = f"{type(exc).__name__}: {exc}"
        seconds["backtest"] = time.perf_counter() - t
    wanted = set(registry.BUILTIN_NAMES) if strategies is None else set(strategies)
    for name in sorted(wanted & set(registry.BUILTIN_NAMES)):
        t = time.perf_counter()
        try:
            evaluate(panel, name, {}, cfg)
        except Exception as exc:
            errors[name] = f"{type(exc).__name__}: {exc}"
        seconds[name] = time.perf_counter() - t
    return {"seconds": seconds, "errors": errors, "total": time.perf_counter() - started}
