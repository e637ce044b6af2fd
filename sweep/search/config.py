"""The ``[search]`` table of a sweep spec: an adaptive search's method, budget and options,
checked before any cluster work.

``method`` is "grid" (the default: every combination, as without the table), "random",
"tpe", "cmaes", or any Optuna sampler by its class name ("QMCSampler", "qmc",
"NSGAIISampler", ...). ``options`` are keyword arguments of that sampler, checked against
its signature (and the sampler built once, so a bad value is refused here too); the seed
is ``seed``, never an option. ``prune`` is "successive_halving" or "hyperband" (or any
Optuna pruner by class name) with ``prune_options``.

Example:
    >>> cfg = SearchConfig.from_dict({"method": "tpe", "trials": 50, "seed": 3})
    >>> cfg.sampler, cfg.trials, cfg.direction
    ('TPESampler', 50, 'maximize')
    >>> SearchConfig.from_dict({"method": "grid"}) is None
    True
    >>> SearchConfig.from_dict({"method": "tpe", "trials": 0})
    Traceback (most recent call last):
    ...
    sweep.search.config.SearchError: 'trials' must be a positive integer, got 0
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine import METRIC_NAMES
from sweep.select import descending

__all__ = ["METHODS", "PRUNERS", "SEARCH_KEYS", "SearchConfig", "SearchError", "is_search",
           "resolve_search"]

METHODS = {"random": "RandomSampler", "tpe": "TPESampler", "cmaes": "CmaEsSampler"}
"""The short method names, and the Optuna sampler each one is."""
PRUNERS = {"successive_halving": "SuccessiveHalvingPruner", "hyperband": "HyperbandPruner"}
SEARCH_KEYS = ("method", "trials", "seed", "objective", "batch", "prune", "objective_window",
               "options", "prune_options")
# Samplers a config cannot drive: they need Python objects, or enumerate a grid of their own.
_NOT_BY_NAME = {"PartialFixedSampler": "it wraps another sampler object",
                "GridSampler": "use method = \"grid\" (every combination of [grid])"}
# Packages a sampler imports only when it first samples (so building it proves nothing).
_REQUIRES = {"GPSampler": ("torch", "scipy"), "QMCSampler": ("scipy",),
             "CmaEsSampler": ("cmaes",)}


class SearchError(ValueError):
    """A ``[search]`` table that cannot run; the message names the key and value."""


def is_search(raw: Mapping[str, Any] | None) -> bool:
    """Does a ``[search]`` table ask for an adaptive search (not the grid)?

    Example:
        >>> is_search(None), is_search({"method": "grid"}), is_search({"method": "tpe"})
        (False, False, True)
    """
    if not raw:
        return False
    method = raw.get("method", "grid")
    return not (isinstance(method, str) and method.strip().lower() == "grid")


def _positive(raw: Mapping[str, Any], key: str, *, minimum: int = 1) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise SearchError(f"{key!r} must be {what}, got {value!r}")
    return value


def _table(raw: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, Mapping):
        raise SearchError(f"{key!r} must be a table of keyword arguments, got {value!r}")
    return dict(value)


@dataclass(frozen=True)
class SearchConfig:
    """A checked ``[search]`` table (see the module docstring). ``batch`` None: chosen
    from the cluster's worker threads when the search starts (:meth:`default_batch`)."""

    method: str
    sampler: str
    trials: int
    seed: int = 0
    objective: str = "sharpe"
    batch: int | None = None
    prune: str | None = None
    objective_window: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    prune_options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None, *, seed: int = 0,
                  objective: str = "sharpe") -> SearchConfig | None:
        """The table checked (None for the grid). ``seed`` and ``objective``: the
        defaults (the spec's top-level seed; the walk-forward's objective)."""
        if raw is None:
            return None
        if not isinstance(raw, Mapping):
            raise SearchError("must be a table")
        unknown = sorted(set(raw) - set(SEARCH_KEYS))
        if unknown:
            raise SearchError(f"unknown key(s) {unknown}; known: {list(SEARCH_KEYS)}")
        method = raw.get("method", "grid")
        if not isinstance(method, str) or not method.strip():
            raise SearchError(f"'method' must be a name, got {method!r}")
        if not is_search(raw):
            extra = sorted(set(raw) - {"method"})
            if extra:
                raise SearchError(f"{extra} apply to an adaptive search; method \"grid\" runs "
                                  "every combination of [grid] (set method = \"tpe\", "
                                  "\"random\", \"cmaes\" or an Optuna sampler)")
            return None
        if "trials" not in raw:
            raise SearchError("'trials' is required: how many parameter sets to evaluate")
        trials = _positive(raw, "trials")
        batch = _positive(raw, "batch")
        seed = raw.get("seed", seed)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise SearchError(f"'seed' must be a non-negative integer, got {seed!r}")
        objective = raw.get("objective", objective)
        if objective not in METRIC_NAMES:
            raise SearchError(f"objective {objective!r} is not a metric; metrics: "
                              f"{', '.join(METRIC_NAMES)}")
        window = _positive(raw, "objective_window", minimum=0)
        prune = raw.get("prune")
        if prune is not None and (not isinstance(prune, str) or not prune.strip()):
            raise SearchError(f"'prune' must be \"successive_halving\" or \"hyperband\", got "
                              f"{prune!r}")
        if isinstance(prune, str) and prune.strip().lower() in ("none", ""):
            prune = None
        options, prune_options = _table(raw, "options"), _table(raw, "prune_options")
        if prune_options and prune is None:
            raise SearchError("'prune_options' given without 'prune'")
        cfg = cls(method=method.strip().lower(), sampler=sampler_name(method), trials=trials,
                  seed=seed, objective=objective, batch=batch,
                  prune=None if prune is None else pruner_name(prune),
                  objective_window=window, options=options, prune_options=prune_options)
        cfg.make_sampler(cfg.seed)  # the options checked against the signature, then built
        if cfg.prune is not None:
            cfg.make_pruner(2)
        return cfg

    # ---------------------------------------------------------------- cross-checks
    def check(self, *, grid_size: int, n_windows: int, walk_forward: bool) -> None:
        """What the table cannot know alone: the grid's size, the windows, walk-forward."""
        if self.trials > grid_size:
            raise SearchError(
                f"trials = {self.trials} is more than the grid's {grid_size:,} combinations; "
                "a search evaluates each combination at most once (use method = \"grid\" "
                "to run them all)")
        if self.objective_window is not None:
            if walk_forward:
                raise SearchError("'objective_window' does not apply to a walk-forward: each "
                                  "fold's search optimises its own train window")
            if self.objective_window >= n_windows:
                raise SearchError(f"objective_window = {self.objective_window}, but the sweep "
                                  f"has {n_windows} window(s) (0 .. {n_windows - 1})")
        if self.prune is not None:
            if walk_forward:
                raise SearchError("'prune' evaluates a trial window by window; in a "
                                  "walk-forward each fold's search has one window")
            if n_windows < 2:
                raise SearchError("'prune' evaluates a trial window by window and stops the "
                                  "poor ones early: it needs two or more [windows]")
            if self.objective_window is not None:
                raise SearchError("'prune' and 'objective_window' exclude each other: the "
                                  "pruner judges the mean over the windows seen so far")
            self.make_pruner(n_windows)

    # ---------------------------------------------------------------- optuna objects
    @property
    def direction(self) -> str:
        """"maximize" or "minimize": the objective metric's own direction."""
        return "maximize" if descending(self.objective) else "minimize"

    def make_sampler(self, seed: int) -> Any:
        """The Optuna sampler with ``options`` and ``seed`` (when it takes one)."""
        import optuna

        cls = getattr(optuna.samplers, self.sampler)
        params = inspect.signature(cls).parameters
        if "seed" in self.options:
            raise SearchError("give the sampler's seed as [search] seed, not in 'options'")
        kwargs = dict(self.options)
        if "seed" in params:
            kwargs["seed"] = seed
        return _build(cls, kwargs, "options")

    def make_pruner(self, n_windows: int) -> Any:
        """The Optuna pruner (None without ``prune``). A trial's resource is its number of
        windows evaluated (1 .. n_windows), so successive halving and Hyperband start at
        one window and Hyperband's largest resource is every window, unless
        ``prune_options`` say otherwise."""
        if self.prune is None:
            return None
        import optuna

        cls = getattr(optuna.pruners, self.prune)
        params = inspect.signature(cls).parameters
        kwargs: dict[str, Any] = {}
        if "min_resource" in params:
            kwargs["min_resource"] = 1
        if "max_resource" in params:
            kwargs["max_resource"] = n_windows
        return _build(cls, kwargs | dict(self.prune_options), "prune_options")

    def settings(self, batch: int) -> dict[str, Any]:
        """What sweep.json records of the search's setup."""
        return {"sampler": self.sampler, "options": dict(self.options), "seed": self.seed,
                "trials": self.trials, "batch": batch, "direction": self.direction,
                "prune": self.prune, "prune_options": dict(self.prune_options),
                "objective_window": self.objective_window}

    @staticmethod
    def default_batch(worker_threads: int) -> int:
        """Trials asked together when ``batch`` is not set: two a worker thread, at least
        four. (Up to two batches are in flight, so every thread has the next trial queued
        while the sampler works.)"""
        return max(4, 2 * worker_threads)


def _build(cls: Any, kwargs: dict[str, Any], key: str) -> Any:
    import importlib.util

    missing = [m for m in _REQUIRES.get(cls.__name__, ()) if importlib.util.find_spec(m) is None]
    if missing:
        raise SearchError(f"{cls.__name__} needs {' and '.join(missing)}, not installed here "
                          f"(pip install {' '.join(missing)})")
    params = inspect.signature(cls).parameters
    accepts = [n for n, p in params.items()
               if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and n != "seed"]
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise SearchError(f"{key}: {cls.__name__} takes no option(s) {unknown}; its options: "
                          f"{', '.join(accepts) or 'none'}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cls(**kwargs)
    except ImportError as exc:
        raise SearchError(f"{cls.__name__} needs a package that is not installed: "
                          f"{exc}") from None
    except Exception as exc:
        raise SearchError(f"{key}: {cls.__name__}({_args(kwargs)}) refused: "
                          f"{type(exc).__name__}: {exc}") from None


def _args(kwargs: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def _names(module: Any, suffix: str) -> dict[str, str]:
    return {n.lower(): n for n in dir(module)
            if n.endswith(suffix) and not n.startswith(("Base", "_"))}


def sampler_name(method: str) -> str:
    """The Optuna sampler class a method names (case-insensitive, "Sampler" optional).

    Example:
        >>> sampler_name("tpe"), sampler_name("qmc"), sampler_name("NSGAIISampler")
        ('TPESampler', 'QMCSampler', 'NSGAIISampler')
    """
    import optuna

    key = method.strip().lower()
    known = _names(optuna.samplers, "Sampler")
    name = METHODS.get(key) or known.get(key) or known.get(key + "sampler")
    if name in _NOT_BY_NAME:
        raise SearchError(f"method {method!r}: {name} cannot be set up from a config: "
                          f"{_NOT_BY_NAME[name]}")
    if name is None:
        others = sorted(v for v in known.values() if v not in _NOT_BY_NAME
                        and v not in METHODS.values())
        raise SearchError(f"unknown method {method!r}; methods: grid, "
                          f"{', '.join(METHODS)}, or an Optuna sampler ({', '.join(others)})")
    return name


def pruner_name(prune: str) -> str:
    """The Optuna pruner class ``prune`` names."""
    import optuna

    key = prune.strip().lower()
    known = _names(optuna.pruners, "Pruner")
    name = PRUNERS.get(key) or known.get(key) or known.get(key.replace("_", "") + "pruner")
    if name is None or name == "NopPruner":
        raise SearchError(f"unknown prune {prune!r}; prune: {', '.join(PRUNERS)} (or an "
                          f"Optuna pruner: {', '.join(sorted(known.values()))})")
    return name


def resolve_search(raw: Mapping[str, Any] | None, *, seed: int, samples: int | None,
                   grid_size: int, n_windows: int, selection: Any, walk_forward: bool
                   ) -> tuple[SearchConfig | None, Any]:
    """The spec's ``[search]`` table checked against the rest of the spec, and the
    selection a sweep's best runs are chosen by: the search's objective (a walk-forward
    keeps its own, and the search must optimise the same). SearchError when it cannot
    run."""
    cfg = SearchConfig.from_dict(raw, seed=seed, objective=selection.objective)
    if cfg is None:
        return None, selection
    if samples is not None:
        raise SearchError("'samples' (random grid points) and an adaptive search exclude "
                          "each other; for random points use method = \"random\"")
    if walk_forward and cfg.objective != selection.objective:
        raise SearchError(f"objective {cfg.objective!r} differs from the walk-forward's "
                          f"{selection.objective!r}: each fold's search must optimise what "
                          "the fold's winner is chosen by")
    cfg.check(grid_size=grid_size, n_windows=n_windows, walk_forward=walk_forward)
    if not walk_forward:
        selection = type(selection)(cfg.objective)
    return cfg, selection
