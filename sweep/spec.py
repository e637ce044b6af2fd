"""Sweep specifications (TOML or Python) and their validation before any cluster work.

:class:`SweepSpec` is what the user wrote (plain data; its digest is the identity of the
runs it describes). :meth:`SweepSpec.resolve` checks everything against the strategy, the
engine and the data and returns a :class:`ResolvedSweep`: the strategy, the engine
config, the grid, the loaded panel, the windows (``sweep.windows.Window``; for a
``[walk_forward]`` table, the folds' train windows) and the runs schema.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

import strategies
from engine import EngineConfig, Panel, PanelError
from engine.metrics import bars_per_year
from strategies import Strategy, StrategyError
from sweep.grid import Grid, GridError, engine_values, strategy_columns
from sweep.schema import RunsSchema
from sweep.search.config import SearchError, is_search, resolve_search
from sweep.select import SELECTION_KEYS, Selection, SelectionError
from sweep.windows import (
    Fold,
    Length,
    Schedule,
    Window,
    WindowError,
    make_folds,
    parse_length,
    windows_from_spec,
)

__all__ = ["DEFAULT_PBO_BLOCKS", "ResolvedSweep", "SpecError", "SweepSpec",
           "WalkForwardConfig"]

_TOP_KEYS = {
    "name", "strategy", "data", "constraints", "engine", "grid", "windows", "samples", "seed",
    "walk_forward", "description", "pbo_blocks", "modules", "search",
}
_DATA_KEYS = {"source", "adjust", "features"}
_WF_KEYS = {"train", "test", "step", "anchored", "purge", *SELECTION_KEYS}
DEFAULT_PBO_BLOCKS = 16


class SpecError(ValueError):
    """A sweep spec that cannot run; the message names the file, key and value."""


@dataclass(frozen=True)
class WalkForwardConfig:
    """A ``[walk_forward]`` table: train windows rolling (or expanding) by ``step``, each
    followed after ``purge`` by a test window of ``test``; the winner of a train window
    by ``selection`` trades its test window."""

    schedule: Schedule
    test: Length
    purge: Length = 0
    selection: Selection = field(default_factory=Selection)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> WalkForwardConfig:
        """Example:
        >>> WalkForwardConfig.from_dict({"train": "2Y", "test": "6M"}).schedule.step
        '6mo'
        """
        unknown = sorted(set(raw) - _WF_KEYS)
        if unknown:
            raise WindowError(f"unknown key(s) {unknown}; known: {sorted(_WF_KEYS)}")
        for key in ("train", "test"):
            if key not in raw:
                raise WindowError(f"'{key}' is required (bars, or a duration like '2Y')")
        test = parse_length(raw["test"], "test")
        schedule = Schedule.parse(raw["train"], raw.get("step", raw["test"]),
                                  raw.get("anchored", False), ("train", "step"))
        return cls(schedule, test, parse_length(raw.get("purge", 0), "purge", minimum=0),
                   Selection.from_dict(raw))


@dataclass(frozen=True)
class SweepSpec:
    """What to sweep: data, strategy, grid, engine settings and date windows.

    ``data`` is a data string (``"synthetic:..."``, ``"sample:stocks"``, a file, folder or
    glob) or a table ``{source, adjust, features}``.

    Example:
        >>> spec = SweepSpec(name="demo", strategy="ma_cross",
        ...                  data="synthetic:assets=5,bars=300,seed=1",
        ...                  grid={"fast": [5, 10], "slow": [20, 50]})
        >>> spec.resolve().n_runs
        4
    """

    name: str
    strategy: str
    data: str | Mapping[str, Any]
    grid: Mapping[str, Any] = field(default_factory=dict)
    constraints: tuple[str, ...] = ()
    engine: Mapping[str, Any] = field(default_factory=dict)
    windows: Mapping[str, Any] | None = None
    samples: int | None = None
    seed: int = 0
    walk_forward: Mapping[str, Any] | None = None
    pbo_blocks: int = DEFAULT_PBO_BLOCKS  # blocks of per-run return stats for PBO (0 = none)
    modules: tuple[str, ...] = ()  # user strategy files / modules, imported before resolving
    search: Mapping[str, Any] | None = None  # [search]: an adaptive search (sweep.search)
    source: str | None = None  # where the spec came from, for error messages

    # ----------------------------------------------------------------- loading
    @classmethod
    def from_toml(cls, path: str | Path) -> SweepSpec:
        """Read a TOML config; relative file paths are relative to the config file."""
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise SpecError(f"{path}: no such config file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"{path}: cannot read ({exc})") from None
        except tomllib.TOMLDecodeError as exc:
            raise SpecError(f"{path}: invalid TOML ({exc})") from None
        return cls.from_dict(_relative_to(raw, path.parent), source=str(path))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, source: str | None = None) -> SweepSpec:
        where = f"{source}: " if source else ""
        unknown = sorted(set(raw) - _TOP_KEYS)
        if unknown:
            raise SpecError(f"{where}unknown key(s) {unknown}; known keys: {sorted(_TOP_KEYS)}")
        for key in ("name", "strategy"):
            if not isinstance(raw.get(key), str) or not raw[key].strip():
                raise SpecError(f"{where}'{key}' is required and must be a non-empty string")
        name = raw["name"]
        if any(c in name for c in "/\\") or name.startswith("."):
            raise SpecError(f"{where}'name' {name!r} must be a plain folder name")
        data = _data_value(raw.get("data"), where)
        tables = {"grid": raw.get("grid", {}), "engine": raw.get("engine", {})}
        for key, value in tables.items():
            if not isinstance(value, Mapping):
                raise SpecError(f"{where}[{key}] must be a table")
        constraints = raw.get("constraints", [])
        if isinstance(constraints, str):
            constraints = [constraints]
        if not isinstance(constraints, list | tuple) or not all(isinstance(c, str)
                                                                for c in constraints):
            raise SpecError(f"{where}'constraints' must be a list of strings")
        samples = raw.get("samples")
        if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int)
                                    or samples < 1):
            raise SpecError(f"{where}'samples' must be a positive integer, got {samples!r}")
        seed = raw.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise SpecError(f"{where}'seed' must be a non-negative integer, got {seed!r}")
        blocks = raw.get("pbo_blocks", DEFAULT_PBO_BLOCKS)
        if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 0 \
                or blocks % 2 or blocks == 2:
            raise SpecError(
                f"{where}'pbo_blocks' must be 0 (no PBO) or an even number >= 4, got {blocks!r}"
            )
        modules = raw.get("modules", [])
        if not isinstance(modules, list | tuple) or not all(isinstance(m, str)
                                                            for m in modules):
            raise SpecError(f"{where}'modules' must be a list of .py paths or module names")
        for key in ("windows", "walk_forward", "search"):
            if raw.get(key) is not None and not isinstance(raw[key], Mapping):
                raise SpecError(f"{where}[{key}] must be a table")
        if raw.get("windows") is not None and raw.get("walk_forward"):
            raise SpecError(f"{where}[windows] and [walk_forward] exclude each other: the "
                            "folds are the windows")
        return cls(
            name=name, strategy=raw["strategy"], data=data, grid=dict(tables["grid"]),
            constraints=tuple(constraints), engine=dict(tables["engine"]),
            windows=dict(raw["windows"]) if raw.get("windows") is not None else None,
            samples=samples, seed=seed, pbo_blocks=blocks, modules=tuple(modules),
            walk_forward=dict(raw["walk_forward"]) if raw.get("walk_forward") else None,
            search=dict(raw["search"]) if raw.get("search") is not None else None,
            source=source,
        )

    # ------------------------------------------------------------ identity
    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (what sweep.json stores and what workers rebuild)."""
        out: dict[str, Any] = {
            "name": self.name, "strategy": self.strategy, "data": _plain(self.data),
            "grid": _plain(self.grid), "constraints": list(self.constraints),
            "engine": _plain(self.engine), "windows": _plain(self.windows),
            "samples": self.samples, "seed": self.seed, "pbo_blocks": self.pbo_blocks,
        }
        if self.modules:
            out["modules"] = list(self.modules)
        if self.walk_forward is not None:
            out["walk_forward"] = _plain(self.walk_forward)
        if is_search(self.search):  # method "grid" is the sweep without the table
            out["search"] = _plain(self.search)
        return out

    @property
    def digest(self) -> str:
        """Hash of what decides the runs (not of where the spec came from, nor of how
        walk-forward picks its winners: choosing by another objective reuses the runs)."""
        content = self.to_dict()
        if "walk_forward" in content:
            content["walk_forward"] = {k: v for k, v in content["walk_forward"].items()
                                       if k not in SELECTION_KEYS}
        if "search" in content:  # more trials continue the same search
            content["search"] = {k: v for k, v in content["search"].items() if k != "trials"}
        text = json.dumps(content, sort_keys=True, default=str)
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()

    @property
    def data_source(self) -> str:
        """The data string (``data``, or its table's ``source``)."""
        return self.data if isinstance(self.data, str) else str(self.data["source"])

    @property
    def data_is_recipe(self) -> bool:
        """Data a worker rebuilds from the string itself rather than receives: synthetic
        data (a few bytes instead of the panel). Everything else travels as the panel, so
        workers need neither the files nor the packages that bundle samples."""
        return isinstance(self.data, str) and self.data.startswith("synthetic")

    # ---------------------------------------------------------- validation
    def resolve(self, panel: Panel | None = None, *, load_modules: bool = True,
                series: Mapping[str, np.ndarray] | None = None) -> ResolvedSweep:
        """Check everything (strategy, grid, engine, data, windows) and load the data.

        ``modules`` are imported first (so their strategies register) unless
        ``load_modules`` is False (on workers, where cluster.prepare ships them).
        ``series``: the benchmark / risk-free arrays already loaded from their files (a
        worker gets them with the data instead of reading the files).
        Raises SpecError naming the problem; nothing has been computed or written then.
        """
        where = f"{self.source}: " if self.source else ""
        for module in self.modules if load_modules else ():
            try:
                strategies.load_module(module)
            except StrategyError as exc:
                raise SpecError(f"{where}modules: {exc}") from None
        try:
            strategy = strategies.get(self.strategy)
        except StrategyError as exc:
            raise SpecError(f"{where}{exc}") from None
        engine_table, files = _series_files(engine_values(self.engine))
        try:
            config = EngineConfig.from_dict(engine_table)
        except (ValueError, TypeError) as exc:
            raise SpecError(f"{where}[engine] {exc}") from None
        try:
            grid = Grid.build(strategy, self.grid, self.constraints)
        except (GridError, StrategyError) as exc:
            raise SpecError(f"{where}[grid] {exc}") from None
        if panel is None:
            panel = _load_data(self.data, where)
        rate = bars_per_year(panel.timestamps, config.periods_per_year)
        if series is None:
            series = {k: _read_series(f, panel, where) for k, f in files.items()}
        market = _market(panel, config, series, where)
        folds = None
        selection = Selection()
        try:
            if self.walk_forward:
                wf = WalkForwardConfig.from_dict(self.walk_forward)
                selection = wf.selection
                folds = make_folds(panel, wf.schedule, wf.test, wf.purge, rate)
                _check_folds(folds, self.walk_forward, panel)
                windows = [f.train for f in folds]
            else:
                windows = windows_from_spec(panel, self.windows, rate)
        except (WindowError, SelectionError) as exc:
            table = "walk_forward" if self.walk_forward else "windows"
            raise SpecError(f"{where}[{table}] {exc}") from None
        try:
            search, selection = resolve_search(
                self.search, seed=self.seed, samples=self.samples, grid_size=grid.size,
                n_windows=len(windows), selection=selection, walk_forward=folds is not None)
        except SearchError as exc:
            raise SpecError(f"{where}[search] {exc}") from None
        combos = _combos(grid, self.samples, self.seed)
        if (combos is not None and combos.size == 0) or (combos is None and _empty(grid)):
            raise SpecError(
                f"{where}the grid is empty after the constraints {list(grid.constraints)} "
                f"({grid.size} combinations before them)"
            )
        # Catch parameter errors that only prepare() can see (e.g. a missing feature) now,
        # on one combination, rather than in every task on the cluster.
        probe = _probe(grid, combos)
        if probe.height:
            try:
                strategy.prepare(panel.take(0, min(panel.n_bars, 2)),
                                 strategy_columns(strategy, probe))
            except StrategyError as exc:
                raise SpecError(f"{where}{exc}") from None
            except Exception:
                pass  # not a bad parameter: such runs fail one by one and are recorded
        return ResolvedSweep(self, strategy, config, grid, panel, tuple(windows),
                             None if folds is None else tuple(folds), combos, selection,
                             search=search, market=market, series=dict(series))


def _check_folds(folds: list[Fold], raw: Mapping[str, Any], panel: Panel) -> None:
    overlap = [(a.index, b.index) for a, b in itertools.pairwise(folds)
               if b.test.start_bar < a.test.end_bar]
    if overlap:
        raise WindowError(
            f"step {raw.get('step')!r} is shorter than test {raw['test']!r}: the test "
            f"windows of folds {overlap[0]} overlap and cannot be stitched into one "
            "out-of-sample curve")
    if not folds:
        raise WindowError(
            f"no fold fits: train {raw['train']!r} + purge {raw.get('purge', 0)!r} + test "
            f"{raw['test']!r} is longer than the data ({panel.n_bars} bars, "
            f"{panel.timestamps[0]!s:.10} .. {panel.timestamps[-1]!s:.10})")


@dataclass(frozen=True, eq=False)
class ResolvedSweep:
    """A validated spec with its data loaded: everything needed to plan and run."""

    spec: SweepSpec
    strategy: Strategy
    config: EngineConfig
    grid: Grid
    panel: Panel
    windows: tuple[Window, ...]
    folds: tuple[Fold, ...] | None  # walk-forward: windows are the folds' train windows
    combos: np.ndarray | None  # sampled combination indices (sorted); None = whole grid
    selection: Selection  # how the best run of a window is chosen (overfit summary, WF)
    search: Any = None  # a sweep.search.SearchConfig: an adaptive search (None: the grid)
    market: Any = None  # engine.MarketSeries: per-bar benchmark returns and risk-free rates
    series: Mapping[str, np.ndarray] = field(default_factory=dict)  # from files, by kwarg

    @property
    def market_inputs(self) -> dict[str, np.ndarray]:
        """The series read from files, as ``run_backtest`` takes them (``benchmark_prices``,
        ``risk_free``): what a replayed run needs to give the stored metrics."""
        return dict(self.series)

    @cached_property
    def fingerprint(self) -> str:
        """The data's identity: the panel's fingerprint, and the series read from files."""
        if not self.series:
            return self.panel.fingerprint
        h = hashlib.blake2b(self.panel.fingerprint.encode(), digest_size=16)
        for name in sorted(self.series):
            h.update(name.encode() + np.ascontiguousarray(self.series[name]).tobytes())
        return h.hexdigest()

    @property
    def n_combos(self) -> int:
        """Combination indices to visit (before constraints when the grid is not sampled)."""
        return self.grid.size if self.combos is None else int(self.combos.size)

    @cached_property
    def n_runs(self) -> int:
        """Runs after constraints, over all windows (exact; counts block by block); for a
        search, its trials on every window (pruned trials run on fewer)."""
        if self.search is not None:
            return self.search.trials * len(self.windows)
        if self.combos is not None:
            return int(self.combos.size) * len(self.windows)
        valid = 0
        step = 1_000_000
        for start in range(0, self.grid.size, step):
            valid += self.grid.block(start, start + step).height
        return valid * len(self.windows)

    @cached_property
    def schema(self) -> RunsSchema:
        """The columns of this sweep's runs files."""
        params = self.grid.block(0, 0).drop("combo").schema
        return RunsSchema(tuple(params.items()), self.spec.pbo_blocks,
                          trial=self.search is not None)

    def combos_table(self, start: int, stop: int) -> pl.DataFrame:
        """Grid rows for combination positions ``start .. stop-1`` (constraints applied)."""
        if self.combos is None:
            return self.grid.block(start, stop)
        return self.grid.take(self.combos[start:stop])


# [engine] keys that may name a series file (or a table {file, column, scale}) rather than
# a value: the benchmark's prices, annual risk-free rates. The engine takes them as
# arrays aligned to the panel (run_backtest's keyword of the same meaning).
_SERIES_KEYS = {"benchmark": "benchmark_prices", "risk_free": "risk_free"}
_FILE_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")


def _is_file(value: Any) -> bool:
    return isinstance(value, Mapping) or (isinstance(value, str) and (
        value.lower().endswith(_FILE_SUFFIXES) or "/" in value or "\\" in value))


def _series_files(table: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The [engine] table without its series files, and those files by run_backtest's
    keyword (a path, or a table {file, column, scale})."""
    rest = {k: v for k, v in table.items() if not (k in _SERIES_KEYS and _is_file(v))}
    files = {_SERIES_KEYS[k]: v for k, v in table.items() if k in _SERIES_KEYS and _is_file(v)}
    return rest, files


def _read_series(spec: Any, panel: Panel, where: str) -> np.ndarray:
    from engine import load_series

    options = dict(spec) if isinstance(spec, Mapping) else {"file": spec}
    unknown = sorted(set(options) - {"file", "column", "scale"})
    if unknown or "file" not in options:
        raise SpecError(f"{where}[engine] a series is a file path or a table {{file, "
                        f"column, scale}}, got {spec!r}")
    path = options.pop("file")
    try:
        return load_series(path, panel.timestamps, **options)
    except (ValueError, OSError) as exc:
        raise SpecError(f"{where}[engine] series {path!r}: {exc}") from None


def _market(panel: Panel, config: EngineConfig, series: Mapping[str, np.ndarray],
            where: str) -> Any:
    from engine import market_series

    try:
        return market_series(panel, config, **series)
    except ValueError as exc:
        raise SpecError(f"{where}[engine] {exc}") from None


def _relative_to(raw: dict[str, Any], folder: Path) -> dict[str, Any]:
    """File paths of a TOML config (data, features, modules) made relative to its
    folder; data strings with a scheme ("synthetic:", "sample:", "s3://") stay."""
    raw = dict(raw)

    def path(value: Any) -> Any:
        if isinstance(value, str) and value and ":" not in value.split("/")[0] \
                and not Path(value).is_absolute():
            return str((folder / value).resolve())
        return value

    data = raw.get("data")
    if isinstance(data, str):
        raw["data"] = path(data)
    elif isinstance(data, Mapping):
        raw["data"] = {k: path(v) if k in ("source", "features") else v
                       for k, v in data.items()}
    engine = raw.get("engine")
    if isinstance(engine, Mapping):
        raw["engine"] = {k: (path(v) if isinstance(v, str) and _is_file(v) else
                             {**v, "file": path(v["file"])} if isinstance(v, Mapping)
                             and isinstance(v.get("file"), str) else v)
                         if k in _SERIES_KEYS else v for k, v in engine.items()}
    modules = raw.get("modules")
    if isinstance(modules, list):
        raw["modules"] = [path(m) if isinstance(m, str) and m.endswith(".py") else m
                          for m in modules]
    return raw


def _data_value(data: Any, where: str) -> str | dict[str, Any]:
    if isinstance(data, str) and data.strip():
        return data
    if isinstance(data, Mapping):
        unknown = sorted(set(data) - _DATA_KEYS)
        if unknown:
            raise SpecError(f"{where}[data] unknown key(s) {unknown}; known: "
                            f"{sorted(_DATA_KEYS)}")
        if not isinstance(data.get("source"), str) or not data["source"].strip():
            raise SpecError(f"{where}[data] needs 'source' (a data string or path)")
        if not isinstance(data.get("adjust", False), bool):
            raise SpecError(f"{where}[data] 'adjust' must be true or false")
        if "features" in data and not isinstance(data["features"], str):
            raise SpecError(f"{where}[data] 'features' must be a file path")
        return dict(data)
    raise SpecError(f"{where}'data' is required: a data string or path, or a [data] table")


def _load_data(data: str | Mapping[str, Any], where: str) -> Panel:
    from engine.data import parse_data_spec

    source = data if isinstance(data, str) else data["source"]
    options = {} if isinstance(data, str) else {k: v for k, v in data.items()
                                                if k != "source"}
    try:
        return parse_data_spec(source, **options)
    except (PanelError, ValueError, ImportError, OSError) as exc:
        raise SpecError(f"{where}data {source!r}: {exc}") from None


def _combos(grid: Grid, samples: int | None, seed: int) -> np.ndarray | None:
    """K distinct valid combination indices drawn with the seed (None: the whole grid)."""
    if samples is None:
        return None
    rng = np.random.default_rng(seed)
    if samples >= grid.size:
        return grid.frame()["combo"].to_numpy()
    chosen: np.ndarray = np.empty(0, dtype=np.int64)
    for _ in range(64):  # rejection sampling against the constraints
        need = samples - chosen.size
        draw = rng.choice(grid.size, size=min(grid.size, max(4 * need, 64)), replace=False)
        # keep the draw's random order: the first `need` valid ones are a uniform sample
        valid = grid.take(draw[~np.isin(draw, chosen)])["combo"].to_numpy()
        chosen = np.union1d(chosen, valid[: need] if valid.size > need else valid)
        if chosen.size >= samples:
            break
    return np.sort(chosen[:samples])


def _probe(grid: Grid, combos: np.ndarray | None, limit: int = 100_000) -> pl.DataFrame:
    """Valid combinations that hold every value of every axis (as far as the constraints
    and the first ``limit`` combinations allow): what validation runs prepare() on."""
    table = grid.block(0, limit) if combos is None else grid.take(combos[:limit])
    if not grid.names or table.height == 0:
        return table.head(1)
    rows: set[int] = set()
    indexed = table.with_row_index("__row")
    for name in grid.names:
        rows.update(indexed.group_by(name).agg(pl.col("__row").min())["__row"].to_list())
    return table[sorted(rows)]


def _empty(grid: Grid) -> bool:
    step = 1_000_000
    return all(grid.block(s, s + step).height == 0 for s in range(0, grid.size, step))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return [_plain(v) for v in value]
    return value
