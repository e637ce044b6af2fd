"""Top-N ranking: hold the N assets with the best feature score, rebalanced periodically."""

from collections.abc import Mapping

import numpy as np

from engine import Panel
from strategies.base import Param, Strategy, StrategyError, weights_kernel
from strategies.signals import rank_rows, top_bottom_row

__all__ = ["TOP_N"]

# The columns of a run's row (``rows[r]``): written by _prepare, read by _kernel.
N_PICK = 0          # assets held (a side)
EVERY = 1           # bars between rebalances
SCORE = 2           # slot in ``data`` of the feature; its per-bar ranking is the next slot
LONG_SHORT = 3      # 1.0: also short the lowest scores
SCORE_WEIGHTED = 4  # 1.0: weights proportional to the score above the mean
ROW_FIELDS = 5


@weights_kernel
def _kernel(data, row, out):
    close = data[0]
    score = data[int(row[SCORE])]
    ranked = data[int(row[SCORE]) + 1]
    n_pick = int(row[N_PICK])
    every = int(row[EVERY])
    long_short = row[LONG_SHORT] != 0.0
    score_weighted = row[SCORE_WEIGHTED] != 0.0
    for t in range(close.shape[0]):
        if t % every != 0:
            for n in range(close.shape[1]):
                out[t, n] = np.nan
        else:
            top_bottom_row(ranked, score, close, t, n_pick, long_short, score_weighted, out)


def _prepare(panel: Panel, cols: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    names, slot = np.unique(cols["feature"], return_inverse=True)
    for name in names.tolist():
        if name not in panel.features:
            raise StrategyError(
                f"parameter 'feature': {name!r} is not a feature of the panel; it has "
                f"{sorted(panel.features) or 'no features'}"
            )
    data = np.empty((1 + 2 * names.shape[0], *panel.shape))
    data[0] = panel.close
    for i, name in enumerate(names.tolist()):  # each feature, then its per-bar ranking
        data[1 + 2 * i] = panel.features[name]
        data[2 + 2 * i] = rank_rows(data[1 + 2 * i], panel.close)
    rows = np.empty((slot.shape[0], ROW_FIELDS))
    rows[:, N_PICK] = cols["n"]
    rows[:, EVERY] = cols["rebalance_every"]
    rows[:, SCORE] = 1 + 2 * slot
    rows[:, LONG_SHORT] = cols["long_short"]
    rows[:, SCORE_WEIGHTED] = cols["weighting"] == "score"
    return data, rows


TOP_N = Strategy(
    name="top_n",
    params={
        "n": Param("int", 25, 1, 100_000, doc="assets held (per side when long-short)"),
        "rebalance_every": Param("int", 21, 1, 100_000, doc="bars between rebalances"),
        "feature": Param("str", "ml_score", doc="panel feature to rank by (higher = better)"),
        "long_short": Param("bool", False, doc="also short the N lowest scores"),
        "weighting": Param("choice", "equal", choices=("equal", "score"),
                           doc="equal weights, or proportional to score above the mean"),
    },
    prepare=_prepare,
    kernel=_kernel,
    lookback_fn=lambda **_: 0,
    doc=(
        "Every `rebalance_every` bars, rank the assets that have a bar and a score by "
        "`feature` and hold the top `n` (and short the bottom `n` if long_short), equal- or "
        "score-weighted; all other listed assets are closed. Between rebalances: no "
        "instruction. The seeds' top-25 ML strategy."
    ),
)
