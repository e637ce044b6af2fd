"""Cross-sectional momentum: hold the assets with the best past return, skipping the last
few bars (the short-term reversal)."""

import math
from collections.abc import Mapping

import numpy as np

from engine import Panel
from strategies.base import Param, Strategy, StrategyError, weights_kernel
from strategies.signals import n_ranked, rank_rows, top_bottom_row

__all__ = ["MOMENTUM"]

# The columns of a run's row (``rows[r]``): written by _prepare, read by _kernel.
SCORE = 0        # slot in ``data`` of the past return; its per-bar ranking is the next slot
QUANTILE = 1     # fraction of the ranked assets held (a side)
EVERY = 2        # bars between rebalances
LONG_SHORT = 3   # 1.0: also short the worst quantile
ROW_FIELDS = 4


@weights_kernel
def _kernel(data, row, out):
    close = data[0]
    score = data[int(row[SCORE])]
    ranked = data[int(row[SCORE]) + 1]
    quantile = row[QUANTILE]
    every = int(row[EVERY])
    long_short = row[LONG_SHORT] != 0.0
    for t in range(close.shape[0]):
        if t % every != 0:
            for n in range(close.shape[1]):
                out[t, n] = np.nan
            continue
        n_pick = max(1, math.ceil(quantile * n_ranked(ranked, t) - 1e-9))
        top_bottom_row(ranked, score, close, t, n_pick, long_short, False, out)


def _past_return(close: np.ndarray, lookback: int, skip: int) -> np.ndarray:
    """close[t - skip] / close[t - lookback] - 1, by bar index (NaN before enough bars)."""
    out = np.full(close.shape, np.nan)
    out[lookback:] = close[lookback - skip:close.shape[0] - skip] / close[:-lookback] - 1.0
    return out


def _prepare(panel: Panel, cols: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    lookback = cols["lookback"].astype(np.int64)
    skip = cols["skip"].astype(np.int64)
    bad = np.flatnonzero(skip >= lookback)
    if bad.size:
        raise StrategyError(
            f"momentum: skip ({skip[bad[0]]}) must be smaller than lookback "
            f"({lookback[bad[0]]})"
        )
    pairs, slot = np.unique(np.column_stack([lookback, skip]), axis=0, return_inverse=True)
    data = np.empty((1 + 2 * pairs.shape[0], *panel.shape))
    data[0] = panel.close
    for i, (lb, sk) in enumerate(pairs.tolist()):  # each score, then its per-bar ranking
        data[1 + 2 * i] = _past_return(panel.close, lb, sk)
        data[2 + 2 * i] = rank_rows(data[1 + 2 * i], panel.close)
    rows = np.empty((lookback.shape[0], ROW_FIELDS))
    rows[:, SCORE] = 1 + 2 * slot.ravel()
    rows[:, QUANTILE] = cols["quantile"]
    rows[:, EVERY] = cols["rebalance_every"]
    rows[:, LONG_SHORT] = cols["long_short"]
    return data, rows


MOMENTUM = Strategy(
    name="momentum",
    params={
        "lookback": Param("int", 252, 2, 100_000, doc="formation period (bars)"),
        "skip": Param("int", 21, 0, 100_000, doc="most recent bars left out of the return"),
        "quantile": Param("float", 0.2, 0.0001, 1.0, doc="fraction of assets held (a side)"),
        "rebalance_every": Param("int", 21, 1, 100_000, doc="bars between rebalances"),
        "long_short": Param("bool", False, doc="also short the worst quantile"),
    },
    prepare=_prepare,
    kernel=_kernel,
    lookback_fn=lambda lookback, **_: lookback,
    doc=(
        "Every `rebalance_every` bars, score each asset by its return from `lookback` bars "
        "ago to `skip` bars ago and hold the top `quantile` equally weighted (short the "
        "bottom quantile too if long_short)."
    ),
)
