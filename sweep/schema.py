"""The runs table: its columns, their types, and the one way to read a results folder.

One row a run. Every column list in the sweep layer is derived from here: the key columns,
one column per parameter (a grid axis), one per metric (``engine.METRIC_NAMES``), the PBO
block columns, an adaptive search's ``trial`` number and ``pruned`` flag, and ``error``. On
disk the table is a hive-partitioned Parquet dataset ``runs/window=K/part-NNNNNNN.parquet``
(``window`` comes from the folder name).

Example:
    >>> from sweep.schema import is_param_column
    >>> is_param_column("fast"), is_param_column("sharpe"), is_param_column("run_id")
    (True, False, False)
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from engine import METRIC_NAMES

__all__ = [
    "BLOCK_COLUMNS",
    "ERROR",
    "KEY_COLUMNS",
    "PART_GLOB",
    "PRUNED",
    "TRIAL",
    "DamagedFileError",
    "RunsSchema",
    "check_part",
    "is_param_column",
    "param_columns",
    "part_files",
    "scan_runs",
]

KEY_COLUMNS = ("run_id", "chunk_id", "strategy", "window", "window_start", "window_end",
               "combo")
"""Columns that identify a run (``window`` is the hive partition, not stored in a file)."""
TRIAL = "trial"
"""An adaptive search's trial number (absent from grid sweeps)."""
PRUNED = "pruned"
"""True on every row of a search trial that pruning stopped early (absent from grid
sweeps); such a trial has rows only in the windows it was evaluated on."""
BLOCK_COLUMNS = ("block_sum", "block_sumsq", "block_n")
"""Per-run, per-block return statistics for PBO (see sweep.overfit)."""
ERROR = "error"
"""Null when the run succeeded, else why it failed."""

_NOT_PARAMS = frozenset({*KEY_COLUMNS, TRIAL, PRUNED, *BLOCK_COLUMNS, ERROR, *METRIC_NAMES,
                         "run"})  # "run": sweep.evaluate's row number
PART_GLOB = "window=*/part-*.parquet"
_PART = re.compile(r"^part-(\d+)\.parquet$")
_WINDOW = re.compile(r"^window=(\d+)$")
_MAGIC = b"PAR1"


def is_param_column(name: str) -> bool:
    """Is ``name`` a parameter column (a grid axis: strategy parameter or engine field)?"""
    return name not in _NOT_PARAMS


def param_columns(names: Iterable[str]) -> list[str]:
    """The parameter columns among ``names``, in their order."""
    return [n for n in names if is_param_column(n)]


@dataclass(frozen=True)
class RunsSchema:
    """The columns of one sweep's runs files, in order, with their polars types.

    ``params``: (name, dtype) of every grid axis; ``blocks``: PBO blocks a run (0 = no
    block columns); ``trial``: whether runs carry a search's trial number and pruned flag.

    Example:
        >>> s = RunsSchema((("fast", pl.Int64),), blocks=0)
        >>> s.names[:3], s.names[-1]
        (('run_id', 'chunk_id', 'strategy'), 'error')
    """

    params: tuple[tuple[str, pl.DataType], ...]
    blocks: int = 0
    trial: bool = False

    @property
    def polars(self) -> pl.Schema:
        """The schema of a chunk's file (every column but the hive ``window``)."""
        cols: list[tuple[str, Any]] = [
            ("run_id", pl.String), ("chunk_id", pl.Int64), ("strategy", pl.String),
            ("window_start", pl.Datetime("ns")), ("window_end", pl.Datetime("ns")),
            ("combo", pl.Int64),
        ]
        if self.trial:
            cols += [(TRIAL, pl.Int64), (PRUNED, pl.Boolean)]
        cols += list(self.params)
        cols += [(m, pl.Float64) for m in METRIC_NAMES]
        if self.blocks:
            cols += [(c, pl.Array(pl.Float64, self.blocks)) for c in BLOCK_COLUMNS]
        cols.append((ERROR, pl.String))
        return pl.Schema(cols)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.polars.names())

    @property
    def arrow(self) -> Any:
        """The same as a pyarrow schema (what workers cast their tables to)."""
        return pl.DataFrame(schema=self.polars).to_arrow().schema


# ------------------------------------------------------------------- reading files
class DamagedFileError(ValueError):
    """A runs file that is not a whole Parquet file of the sweep's schema; the message
    names the file and what to do."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(
            f"{path} is damaged ({problem}); rerun the sweep (the same command) to move it "
            "into the store's .quarantine/ folder and recompute its chunk")


def part_files(runs: Path) -> list[tuple[int, int, Path]]:
    """``(window, chunk_id, path)`` of every part file under ``runs/``, sorted."""
    out = []
    if not runs.is_dir():
        return out
    for folder in runs.iterdir():
        w = _WINDOW.match(folder.name)
        if not w or not folder.is_dir():
            continue
        for f in folder.iterdir():
            m = _PART.match(f.name)
            if m:
                out.append((int(w.group(1)), int(m.group(1)), f))
    return sorted(out)


def check_part(path: Path, names: Sequence[str] | None = None,
               rows: int | None = None) -> str | None:
    """What is wrong with a part file, or None: cheap checks first (its size and the
    Parquet magic bytes at both ends), then its footer (column names, row count).

    ``names``: the columns the file must hold (None: not checked); ``rows``: how many
    rows it must hold (None: any)."""
    import pyarrow.parquet as pq

    try:
        size = path.stat().st_size
        if size < 12:
            return f"{size} bytes, too small to be a Parquet file"
        with path.open("rb") as f:
            head = f.read(4)
            f.seek(size - 4)
            tail = f.read(4)
            if head != _MAGIC or tail != _MAGIC:
                return "not a Parquet file, or truncated (no Parquet marker at both ends)"
            f.seek(0)
            meta = pq.read_metadata(f)
    except OSError as exc:
        return f"unreadable: {exc}"
    except Exception as exc:  # pyarrow's errors for a damaged footer
        return f"unreadable Parquet footer: {str(exc)[:200]}"
    if names is not None:
        have = set(meta.schema.to_arrow_schema().names)
        missing = [n for n in names if n not in have]
        if missing:
            return f"wrong schema: no column(s) {', '.join(missing[:5])}"
    if rows is not None and meta.num_rows != rows:
        return f"{meta.num_rows} rows where its chunk has {rows}"
    return None


def first_damaged(files: Sequence[Path], names: Sequence[str] | None = None
                  ) -> DamagedFileError | None:
    """The first damaged file among ``files`` (footers read on a few threads), or None."""
    if not files:
        return None
    with ThreadPoolExecutor(max_workers=min(8, len(files))) as pool:
        for path, problem in zip(files, pool.map(lambda p: check_part(p, names), files),
                                 strict=True):
            if problem is not None:
                return DamagedFileError(path, problem)
    return None


def scan_runs(root: str | os.PathLike[str] | Any, *, check: bool = True) -> pl.LazyFrame:
    """A sweep's runs as a polars LazyFrame (``root`` = ``OUT/NAME`` or its ``runs``).

    With ``check`` (default), every part file's ends and footer are read first and a
    damaged one raises :class:`DamagedFileError` naming it; the columns every file must
    hold are those of the first file. Raises FileNotFoundError when there are no runs.

    Example:
        >>> scan_runs("results/ma_demo").sort("sharpe", descending=True)  # doctest: +SKIP
    """
    from sweep.location import location

    path = location(root)
    runs = path if path.name == "runs" else path / "runs"
    files = [f for _, _, f in part_files(runs)]
    if not files:
        raise FileNotFoundError(f"{runs}: no sweep results here (no {PART_GLOB} files)")
    if check:
        damaged = first_damaged(files[:1])
        if damaged is None:
            import pyarrow.parquet as pq

            with files[0].open("rb") as f:
                names = list(pq.read_schema(f).names)
            damaged = first_damaged(files[1:], names)
        if damaged is not None:
            raise damaged
    return pl.scan_parquet(f"{runs}/**/part-*.parquet", hive_partitioning=True)
