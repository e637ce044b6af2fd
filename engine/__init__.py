"""backsweep's backtest engine: market data panel, Numba simulation kernels, metrics.

Example:
    >>> import numpy as np
    >>> from engine import EngineConfig, run_backtest
    >>> from engine.data import synthetic_panel
    >>> panel = synthetic_panel(n_assets=5, n_bars=300, seed=1, listing_fraction=0)
    >>> w = np.full(panel.shape, np.nan); w[20] = 0.2          # buy 20% of each on bar 20
    >>> res = run_backtest(panel, w, EngineConfig(commission=0.001))
    >>> res.metrics["n_trades"]
    5.0
"""

from engine.kernel_cache import guard_package

# Before any kernel module is imported: see engine/kernel_cache.py.
guard_package(__name__, ("nb/*.py", "config.py"))

from engine.backtest import BacktestResult, run_backtest, run_batch
from engine.config import EngineConfig
from engine.metrics import METRIC_NAMES
from engine.panel import Panel, PanelError
from engine.series import MarketSeries, load_series, market_series

__all__ = [
    "METRIC_NAMES",
    "BacktestResult",
    "EngineConfig",
    "MarketSeries",
    "Panel",
    "PanelError",
    "load_series",
    "market_series",
    "run_backtest",
    "run_batch",
]
