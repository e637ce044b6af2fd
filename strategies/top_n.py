"""Top-N ranking: hold the N assets with the best feature score, rebalanced periodically."""

from collections.abc import Mapping

import numpy as np

from engine import Panel
from strategies.base import Param, Strategy, StrategyError, weights_kernel
from strategies.signals import rank_rows, top_bottom_row

__all__ = ["TOP_N"]


@weights_kernel
def _kernel(data, row, out):
    close = data[0]
    score = data[int(row[2])]
    ranked = data[int(row[2]) + 1]
    n_pick = int(row[0])
    every = int(row[1])
    long_short = row[3] != 0.0
    score_weighted = row[4] != 0.0
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
    rows = np.column_stack([
        cols["n"], cols["rebalance_every"], 1 + 2 * slot, cols["long_short"],
        cols["weighting"] == "score",
    ]).astype(np.float64)
    return data, np.ascontiguousarray(rows)


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
