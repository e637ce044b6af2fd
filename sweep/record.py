"""``sweep.json``: the typed record of one sweep, written and read only through here.

The record says what the runs in ``runs/`` are (the spec, its digest, the data's
fingerprint, the windows with their bars per year, the chunk plan) and what became of the
sweep (status, counts, timing, the overfitting summary, the walk-forward and search
summaries). It carries a schema version: a record of another version is refused with a
message saying how to rerun, never misread.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> rec = SweepRecord(name="demo", digest="ab12", spec={}, fingerprint="ff",
    ...                   data=DataInfo("synthetic", 100, 5, "2010-01-04", "2010-05-21"),
    ...                   plan=Plan(10, 40, 1))
    >>> path = Path(tempfile.mkdtemp()) / "sweep.json"
    >>> rec.write(path)
    >>> SweepRecord.read(path).plan.n_chunks
    4
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweep.location import atomic_write, location
from sweep.plan import Plan
from sweep.windows import Window

__all__ = [
    "SCHEMA_VERSION",
    "ComputeRate",
    "DataInfo",
    "FoldInfo",
    "RecordError",
    "SearchInfo",
    "StudyInfo",
    "SweepRecord",
    "WalkForwardInfo",
    "WindowInfo",
    "WindowVerdict",
    "finite_or_none",
    "now",
]

SCHEMA_VERSION = 3
"""Version of this record's layout (and of the chunk layout it describes). Version 3:
the first typed record; older sweep.json files have no ``schema`` key."""


class RecordError(ValueError):
    """A sweep.json that cannot be read as this version's record."""


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def finite_or_none(x: Any) -> float | None:
    """A float for JSON, or None for missing, NaN and infinite values."""
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else x


@dataclass
class DataInfo:
    """The data a sweep ran on: its source as given, its shape and date span."""

    source: Any
    bars: int
    assets: int
    start: str
    end: str


@dataclass
class WindowInfo:
    """One window as stored: index, first and last bars' timestamps, bars, bars per year
    (a :class:`sweep.windows.Window` in JSON)."""

    window: int
    start: str
    end: str
    bars: int
    bars_per_year: float
    start_bar: int
    end_bar: int

    @classmethod
    def of(cls, w: Window) -> WindowInfo:
        return cls(w.index, str(w.start), str(w.end), w.bars, w.bars_per_year, w.start_bar,
                   w.end_bar)


@dataclass
class ComputeRate:
    """What one call computed: runs, seconds from its first task to its last result."""

    runs: int
    seconds: float
    worker_threads: int


@dataclass
class WindowVerdict:
    """A window's overfitting statistics: the deflated Sharpe ratio of its best run by the
    objective (after the filters) and PBO over its trials."""

    window: int
    n_trials: int
    dsr: float | None = None
    pbo: float | None = None
    best_run_id: str | None = None
    pbo_note: str | None = None


@dataclass
class FoldInfo:
    fold: int
    train: list[str]
    test: list[str]


@dataclass
class WalkForwardInfo:
    """The walk-forward summary (what ``folds.parquet`` and ``oos_equity.parquet`` add up
    to)."""

    n_folds: int
    objective: str
    oos_metrics: dict[str, float | None]
    is_mean_cagr: float | None
    wfe: float | None
    dsr: float | None
    pbo: float | None
    dsr_by_fold: list[float | None]
    pbo_by_fold: list[float | None]
    param_stability: dict[str, Any]
    folds: list[FoldInfo]


@dataclass
class StudyInfo:
    """One seeded search of an adaptive search (one a walk-forward fold, else one over
    all the windows): its windows, seed, trials and best trial."""

    study: int
    windows: list[int]
    seed: int
    n_trials: int = 0
    best_value: float | None = None
    best_trial: int | None = None
    n_pruned: int = 0
    n_failed: int = 0
    exhausted: bool = False


@dataclass
class SearchInfo:
    """An adaptive search: the method, the sampler's settings, trials asked and run.

    ``n_trials``: distinct parameter sets evaluated (each a row of the store in every
    window it ran on), pruned ones included; ``n_proposals``: the sampler's proposals,
    of which ``n_repeats`` named a parameter set already tried (its trial keeps its stored
    result, nothing run; told to the sampler as pruned) and ``n_rejected`` broke the
    constraints (told as pruned, never run).
    ``sampler_seconds``: the client's time in the sampler (ask, tell, pruner) during the
    last call, over its ``n_proposals`` (a resumed search re-asks every stored trial);
    ``run_seconds``: worker time of the ``runs_computed`` runs that call computed.
    ``exhausted``: some study stopped early because its sampler kept proposing only
    parameter sets already tried or forbidden."""

    method: str
    settings: dict[str, Any]
    n_trials: int = 0
    objective: str = "sharpe"
    best_value: float | None = None
    sampler_seconds: float = 0.0
    n_proposals: int = 0
    n_repeats: int = 0
    n_rejected: int = 0
    n_pruned: int = 0
    n_failed: int = 0
    best_trial: int | None = None
    run_seconds: float = 0.0
    runs_computed: int = 0
    complete: bool = False
    exhausted: bool = False
    studies: list[StudyInfo] = field(default_factory=list)

    @property
    def sampler_ms(self) -> float | None:
        """Milliseconds of sampler time a proposal."""
        return 1e3 * self.sampler_seconds / self.n_proposals if self.n_proposals else None

    @property
    def run_ms(self) -> float | None:
        """Milliseconds of worker time a run (a trial on one window)."""
        return 1e3 * self.run_seconds / self.runs_computed if self.runs_computed else None


@dataclass
class SweepRecord:
    """Everything ``OUT/NAME/sweep.json`` holds. ``status``: planned, running,
    interrupted, incomplete (chunks missing or failed) or complete."""

    name: str
    digest: str
    spec: dict[str, Any]
    fingerprint: str
    data: DataInfo
    plan: Plan
    windows: list[WindowInfo] = field(default_factory=list)
    n_runs: int = 0
    objective: str = "sharpe"
    versions: dict[str, str | None] = field(default_factory=dict)
    created_at: str = field(default_factory=now)
    status: str = "planned"
    runs_written: int = 0
    runs_failed: int = 0
    failed_chunks: dict[str, str] = field(default_factory=dict)
    finished_at: str | None = None
    seconds_last_call: float | None = None
    compute_last_call: ComputeRate | None = None
    overfit: list[WindowVerdict] | None = None
    walk_forward: WalkForwardInfo | None = None
    search: SearchInfo | None = None
    schema: int = SCHEMA_VERSION

    # -------------------------------------------------------------- derived facts
    def window_label(self, k: int) -> str:
        """``"2010-01-04 .. 2014-12-31"`` of window ``k`` ("" if unknown)."""
        for w in self.windows:
            if w.window == k:
                return f"{w.start[:10]} .. {w.end[:10]}"
        return ""

    def mean(self, key: str) -> float | None:
        """The mean over windows of a verdict field ("dsr", "pbo"), None if none has it."""
        vals = [getattr(v, key) for v in self.overfit or () if getattr(v, key) is not None]
        return sum(vals) / len(vals) if vals else None

    # ------------------------------------------------------------------------ I/O
    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True, default=str)

    def write(self, path: str | os.PathLike[str] | Any) -> None:
        """Write atomically (sweep.location.atomic_write: a temp file renamed, or one
        whole-object upload)."""
        text = self.to_json() + "\n"
        atomic_write(location(path), lambda tmp: Path(tmp).write_text(text))

    @classmethod
    def read(cls, path: str | os.PathLike[str] | Any) -> SweepRecord:
        """The record in ``path``; RecordError when it is unreadable, of an older layout
        or not a sweep record (the message says how to rerun)."""
        path = location(path)
        try:
            raw = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RecordError(f"{path}: unreadable ({exc}); rerun the sweep with "
                              "--overwrite to replace it") from None
        if not isinstance(raw, dict):
            raise RecordError(f"{path}: not a sweep record (expected a JSON object)")
        version = raw.get("schema")
        if version != SCHEMA_VERSION:
            era = "an older backsweep" if version is None or (
                isinstance(version, int) and version < SCHEMA_VERSION) else "another backsweep"
            raise RecordError(
                f"{path} was written by {era} (record schema {version or 'before 3'}, this "
                f"one reads {SCHEMA_VERSION}); rerun the sweep with --overwrite to recompute "
                "its results in this layout, or run it into another --out")
        try:
            return _build(cls, raw)
        except (TypeError, ValueError, KeyError) as exc:
            raise RecordError(f"{path}: not a valid sweep record ({exc}); rerun the sweep "
                              "with --overwrite") from None


def _build(tp: Any, value: Any) -> Any:
    """``value`` (parsed JSON) as an instance of the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        return _build(options[0], value) if len(options) == 1 else value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise TypeError(f"{tp.__name__}: expected an object, got {value!r}")
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = set(value) - names
        if unknown:
            raise KeyError(f"{tp.__name__}: unknown field(s) {sorted(unknown)}")
        return tp(**{k: _build(hints[k], v) for k, v in value.items()})
    if origin is list:
        (item,) = typing.get_args(tp)
        return [_build(item, v) for v in value]
    return value
