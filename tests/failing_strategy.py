"""A user strategy for the sweep tests whose prepare step raises for one parameter value.

``explosive_ma`` is ``ma_cross`` with an extra parameter ``fuse``: any run with
``fuse == 13`` makes ``prepare`` raise, so a sweep must record those runs with their error
and go on with the others. Dask workers import it by name (``client.upload_file`` of this
file), like any user strategy module; it reuses ma_cross's compiled kernel.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

import strategies
from engine import Panel
from strategies import Param, Strategy

__all__ = ["BAD_FUSE", "EXPLOSIVE_MA"]

BAD_FUSE = 13
_MA = strategies.get("ma_cross")


def _prepare(panel: Panel, cols: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    fuse = np.asarray(cols["fuse"])
    if (fuse == BAD_FUSE).any():
        raise ValueError(f"explosive_ma: fuse {BAD_FUSE} blew up")
    return _MA.prepare(panel, {k: v for k, v in cols.items() if k != "fuse"})


EXPLOSIVE_MA = strategies.register(
    Strategy(
        name="explosive_ma",
        params={**_MA.params, "fuse": Param("int", 0, 0, 1000, doc="13 raises in prepare")},
        prepare=_prepare,
        kernel=_MA.kernel,
        lookback_fn=lambda fuse, **params: _MA.lookback_fn(**params),
        doc="ma_cross whose prepare raises for fuse = 13 (a test strategy).",
    ),
    replace=True,
)
