"""Adaptive search: Optuna's samplers choose which grid combinations to run, on the
cluster, in the store, counted by DSR and PBO.

A ``[search]`` table in a sweep spec (see docs/search.md) turns the ``[grid]`` axes into a
search space; each trial is a grid combination, so the store, run ids and resume are a
grid sweep's, with a ``trial`` number (and ``pruned`` flag) in every row.

* :mod:`~sweep.search.config`: the table checked (:class:`SearchConfig`), samplers and
  pruners by name with their options;
* :mod:`~sweep.search.space`: axes as distributions, a proposal as a combination;
* :mod:`~sweep.search.objective`: a run's and a trial's value (one definition), the
  convergence read back from the store;
* :mod:`~sweep.search.driver`: the studies asked and told in a fixed order, as chunks.

Nothing here imports Optuna at import time: workers import this package for
:func:`run_values` only.

Example:
    >>> from sweep.search import SearchConfig
    >>> SearchConfig.from_dict({"method": "random", "trials": 20}).sampler
    'RandomSampler'
"""

from sweep.search.config import METHODS, PRUNERS, SearchConfig, SearchError, is_search
from sweep.search.objective import (
    convergence_lines,
    convergence_points,
    run_values,
    trial_value,
    trial_values,
)

__all__ = [
    "METHODS",
    "PRUNERS",
    "SearchConfig",
    "SearchError",
    "convergence_lines",
    "convergence_points",
    "is_search",
    "run_values",
    "trial_value",
    "trial_values",
]
