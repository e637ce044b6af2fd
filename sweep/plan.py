"""Planning: runs split into chunks (a contiguous block of combinations x every window),
sized to about half a second of work by timing a sample, enumerated by index arithmetic.

A chunk holds all the windows of its combinations because a run's weights are computed
once for all of them (walk-forward's train windows cost one strategy pass, not one a
fold); it is stored as one file per window, all with the chunk's id.

An adaptive search's chunks are :class:`TrialChunk`: the combinations its sampler chose
(a list of grid indices, not a range), with their trial numbers, on the windows they are
to be evaluated on (all of them, or one at a time when pruning)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sweep.spec import ResolvedSweep

__all__ = ["ORCHESTRATION_SHARE", "TARGET_SECONDS", "TASK_COST", "Chunk", "Plan",
           "TrialChunk", "calibrate_chunk_size", "chunk_seconds", "chunks_per_task",
           "seconds_per_combo"]

# A task should take ~0.5-2 s: far above Dask's per-task cost (a few ms on the
# scheduler and the client), and short enough that the last tasks end together.
TARGET_SECONDS = 0.5
# On a big cluster a chunk lasts longer: the client and the scheduler handle every task,
# each in one process, and together they should need at most this share of a core ...
ORCHESTRATION_SHARE = 0.25
# ... at what a task costs them (CPU seconds, client + scheduler) before the sweep has
# measured it (sweep.execute measures it as it goes and puts more chunks in a task when
# it costs more; see docs/cluster.md, "Going big").
TASK_COST = 0.001
CALIBRATION_CALLS = 7      # timed calls of the sample, at most ...
CALIBRATION_SECONDS = 0.5  # ... or until they took this long
MAX_CHUNK = 200_000

# Chunks are grouped into segments of about this many combination positions: a worker
# prepares the strategy's indicators for a whole segment once and keeps it, because
# consecutive chunks share most indicators (a block of an MA grid spans few fast but
# nearly all slow windows) and preparing per chunk would recompute them chunk after chunk.
SEGMENT_COMBOS = 262_144


@dataclass(frozen=True)
class Chunk:
    """Combination positions ``start .. stop-1``, on every window; ``segment`` is the
    range of positions whose indicators a worker prepares together."""

    chunk_id: int
    start: int
    stop: int
    segment: tuple[int, int]

    @property
    def size(self) -> int:
        return self.stop - self.start

    @property
    def name(self) -> str:
        """What tells the chunk apart in a task's key."""
        return f"{self.start}-{self.stop}"


@dataclass(frozen=True)
class TrialChunk:
    """Trials of an adaptive search: grid combinations ``combos`` (each passes the
    constraints) with their trial numbers ``trials``, on the windows ``windows``
    (indices into the sweep's windows). The worker returns each run's value by
    ``objective`` after ``filters`` (see sweep.search.objective). ``hold``: the client
    writes the rows (it marks pruned trials first), so a worker returns them even when it
    sees the store.

    Example:
        >>> c = TrialChunk(3, combos=(17, 4), trials=(0, 1), windows=(0,), objective="sharpe")
        >>> c.size, c.name
        (2, 't3')
    """

    chunk_id: int
    combos: tuple[int, ...]
    trials: tuple[int, ...]
    windows: tuple[int, ...]
    objective: str
    filters: tuple[str, ...] = ()
    hold: bool = False

    @property
    def size(self) -> int:
        return len(self.combos)

    @property
    def name(self) -> str:
        return f"t{self.chunk_id}"


@dataclass(frozen=True)
class Plan:
    """Chunk boundaries. Stored in sweep.json so a resumed sweep cuts the same chunks.

    Example:
        >>> plan = Plan(chunk_size=400, n_combos=1000, n_windows=2)
        >>> plan.n_chunks, plan.chunk(2).start, plan.chunk(2).stop
        (3, 800, 1000)
    """

    chunk_size: int
    n_combos: int
    n_windows: int
    seconds_per_combo: float | None = None  # the calibration (one thread), if measured

    @property
    def chunk_seconds(self) -> float | None:
        """About how long a chunk takes on one worker thread (None: not calibrated)."""
        if not self.seconds_per_combo:
            return None
        return self.seconds_per_combo * self.chunk_size

    @property
    def n_chunks(self) -> int:
        return -(-self.n_combos // self.chunk_size)

    def chunk(self, chunk_id: int) -> Chunk:
        start = chunk_id * self.chunk_size
        per_segment = max(1, SEGMENT_COMBOS // self.chunk_size) * self.chunk_size
        seg = start // per_segment * per_segment
        return Chunk(chunk_id, start, min(start + self.chunk_size, self.n_combos),
                     (seg, min(seg + per_segment, self.n_combos)))

    def chunks(self) -> Iterator[Chunk]:
        for chunk_id in range(self.n_chunks):
            yield self.chunk(chunk_id)


def chunk_seconds(threads: int, task_cost: float = TASK_COST) -> float:
    """How long a chunk should take on a cluster of ``threads`` worker threads: half a
    second, or longer when the cluster is so big that ``threads`` tasks of half a second
    would keep the client and the scheduler busy more than ORCHESTRATION_SHARE of a core
    (``task_cost`` CPU seconds a task).

    Example:
        >>> chunk_seconds(2), chunk_seconds(1000)
        (0.5, 4.0)
    """
    return max(TARGET_SECONDS, max(threads, 1) * task_cost / ORCHESTRATION_SHARE)


def chunks_per_task(threads: int, chunk_seconds: float, task_cost: float,
                    pending: int | None = None) -> int:
    """Chunks one task should hold so that the client and the scheduler, at ``task_cost``
    CPU seconds a task, need at most ORCHESTRATION_SHARE of a core to keep ``threads``
    worker threads busy with chunks of ``chunk_seconds``; fewer near the end (``pending``
    chunks left), so that every thread still gets a share of the last ones.

    Example:
        >>> chunks_per_task(1000, 0.5, 0.002), chunks_per_task(1000, 0.5, 0.002, 3000)
        (16, 1)
    """
    want = math.ceil(max(threads, 1) * task_cost
                     / (ORCHESTRATION_SHARE * max(chunk_seconds, 1e-6)))
    if pending is not None:
        want = min(want, pending // (2 * max(threads, 1)))
    return max(1, want)


def calibrate_chunk_size(resolved: ResolvedSweep, target_seconds: float = TARGET_SECONDS,
                         per_combo: float | None = None) -> int:
    """Combination positions per chunk so that a chunk takes about ``target_seconds``
    (``per_combo``: :func:`seconds_per_combo`, measured here when not given)."""
    if per_combo is None:
        per_combo = seconds_per_combo(resolved)
    return int(min(MAX_CHUNK, max(1, target_seconds / max(per_combo, 1e-9))))


def seconds_per_combo(resolved: ResolvedSweep, sample: int = 64) -> float:
    """Seconds of one worker thread a combination position costs (all windows): times
    the compiled loop (with the PBO block statistics, as a task runs it) on a sample of
    combinations spread evenly over the grid.

    The strategy's ``prepare`` is not timed: a worker prepares a whole segment's
    indicators once (see SEGMENT_COMBOS), so a chunk's time is the loop's. (Timed in, it
    made chunks several times too small: a 64-run sample pays for ~64 moving averages
    that a chunk shares with thousands of runs.) A spread sample, because runs differ
    along the grid (an MA grid's shortest windows trade most and cost most).
    """
    from sweep.evaluate import evaluate_windows
    from sweep.grid import strategy_columns

    n = resolved.n_combos
    picks = np.unique(np.linspace(0, max(n - 1, 0), min(sample, n)).astype(np.int64))
    if resolved.combos is None:
        table = resolved.grid.take(picks)  # positions are grid indices (constraints thin)
        if table.height == 0:  # the constraints reject every pick: a leading block
            table = resolved.combos_table(0, min(n, 10_000)).head(sample)
            picks = table["combo"].to_numpy()
            spread = int(picks.max() - picks.min() + 1) if picks.size else 1
        else:
            spread = picks.size
    else:
        table = resolved.grid.take(resolved.combos[picks])
        spread = picks.size
    if table.height == 0:
        return 0.0
    panel, strategy = resolved.panel, resolved.strategy
    evaluate_windows(panel, strategy, table.head(1), resolved.config, resolved.windows,
                     market=resolved.market)  # compile or load the kernels
    prepared = strategy.prepare(panel, strategy_columns(strategy, table))
    # The fastest of a few calls: one call may take only milliseconds, and the cluster is
    # starting on the same cores meanwhile, so a single timing is at the mercy of a
    # context switch (sizes varied 2x from one run to the next).
    best = float("inf")
    spent = 0.0
    for _ in range(CALIBRATION_CALLS):
        started = time.perf_counter()
        evaluate_windows(panel, strategy, table, resolved.config, resolved.windows,
                         blocks=resolved.spec.pbo_blocks, prepared=prepared,
                         market=resolved.market)
        took = time.perf_counter() - started
        best = min(best, took)
        spent += took
        if spent > CALIBRATION_SECONDS:
            break
    return best / spread
