"""The search's client side: Optuna studies asked and told in a fixed order, their trials
cut into chunks for the cluster, their results taken back.

A study is one seeded Optuna study (one over all the windows; in a walk-forward one a
fold's train window). Its trials are asked in batches of ``batch`` new parameter sets:

* Two batches are in flight: batch k+2 is asked as soon as batch k is done, while batch
  k+1 runs, so the workers always have the next trials queued while the sampler works.
* A batch's results are taken in as they come but told to the sampler only when the whole
  batch is in, in trial order. So the sampler sees the same history at every ask, whatever
  the number of workers or the order results came back in: with a seed and a fixed batch,
  the same trials. Trials still running count for the sampler as running (TPE's constant
  liar keeps parallel proposals apart).
* A proposal is snapped to a grid combination (sweep.search.space). One that breaks the
  constraints is told as pruned (the sampler learns to avoid it) and never run. One
  already tried (a repeat) runs nothing either: its trial keeps its stored outcome, the
  repeat is told as pruned (as Optuna's FAQ advises for frequent duplicates) and the
  nearest parameter set not tried yet is enqueued as the next proposal
  (``Study.enqueue_trial``). A converging TPE otherwise proposes ever more repeats: on the
  benchmark's MA grid with a 20 % budget it stalled at 845 trials after 6,164 proposals
  (60 ms each by then), against 990 trials in about 2,050 proposals with the nudge.
  Neither is a trial of its own. A study that proposes nothing new for many proposals in
  a row stops (``exhausted``).
* With ``prune``, a batch is evaluated window by window: after each window every running
  trial reports the mean of its values so far and the pruner stops the poor ones; the
  batch's rows are written when it is done, every row of a pruned trial marked.
* Resume: the store is the study. Runs already stored (by window and combination) are
  never run again: replaying the asks with the same seed proposes the same trials, which
  find their results on disk, and the search continues where it stopped.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from sweep.plan import TrialChunk
from sweep.record import SearchInfo, StudyInfo, finite_or_none
from sweep.schema import PRUNED, TRIAL, scan_runs
from sweep.search.config import SearchConfig
from sweep.search.objective import run_value_expr, trial_value
from sweep.search.space import Space

__all__ = ["DEPTH", "SearchDriver", "stored_values", "study_seed"]

DEPTH = 2
"""Batches of a study in flight at once."""

Stored = dict[tuple[int, int], tuple[float, int]]  # (window, combo) -> (value, trial)


def study_seed(seed: int, study: int, n_studies: int) -> int:
    """The seed of a study: ``seed`` itself for a single study; for a walk-forward's folds
    one seed each, drawn from ``seed`` and the fold.

    Example:
        >>> study_seed(7, 0, 1), study_seed(7, 0, 3) != study_seed(7, 1, 3)
        (7, True)
    """
    if n_studies == 1:
        return seed
    return int(np.random.SeedSequence([seed, study]).generate_state(1)[0])


def stored_values(root: Any, objective: str, filters: tuple[str, ...] = ()) -> Stored:
    """What the store already holds of a search: each stored run's value and trial number
    by (window, combination)."""
    try:
        lf = scan_runs(root, check=False)
    except FileNotFoundError:
        return {}
    if TRIAL not in lf.collect_schema().names():
        return {}
    frame = (lf.filter(pl.col(TRIAL).is_not_null())
             .select(pl.col("window").cast(pl.Int64), "combo", TRIAL,
                     run_value_expr(objective, filters).alias("v"))
             .collect())
    out: Stored = {}
    for w, combo, trial, v in frame.iter_rows():
        out.setdefault((w, combo), (float(v), trial))
    return out


@dataclass(eq=False)
class _Trial:
    number: int
    combo: int
    handle: Any  # optuna.Trial
    values: dict[int, float] = field(default_factory=dict)  # window -> run value
    state: str = "running"  # complete, pruned, failed
    value: float = math.nan
    steps: list[float] = field(default_factory=list)  # pruning: values in window order


@dataclass(eq=False)
class _Batch:
    k: int
    trials: list[_Trial] = field(default_factory=list)
    stage: int = 0
    outstanding: int = 0
    done: bool = False
    held: dict[int, list[pa.Table]] = field(default_factory=dict)  # window -> tables


class _Study:
    def __init__(self, index: int, windows: tuple[int, ...], seed: int,
                 config: SearchConfig, prune: bool) -> None:
        import optuna

        self.index = index
        self.windows = windows
        self.seed = seed
        self.stages = [(w,) for w in windows] if prune else [windows]
        pruner = config.make_pruner(len(windows)) if prune else optuna.pruners.NopPruner()
        self.study = optuna.create_study(direction=config.direction,
                                         sampler=config.make_sampler(seed), pruner=pruner,
                                         study_name=f"backsweep-study-{index}")
        self.trials: list[_Trial] = []
        self.by_combo: dict[int, _Trial] = {}
        self.forbidden: set[int] = set()
        self.batches: deque[_Batch] = deque()
        self.asked = 0
        self.proposals = self.repeats = self.rejected = self.pruned = self.failed = 0
        self.misses = 0
        self.exhausted = self.broken = False
        self.best: float | None = None
        self.best_trial: int | None = None


class SearchDriver:
    """Runs the studies of one search (see the module docstring); knows nothing of Dask.

    The runner calls :meth:`start`, then :meth:`collect` with each chunk's results (or
    :meth:`failed`), submitting the chunks each call returns, until none is in flight.
    ``write(window, chunk_id, table)`` stores rows the client writes (a worker that does
    not see the store, or the held rows of a pruned search); ``on_trial(study, trial)``
    is called as each trial gets its outcome (the progress bar).
    """

    def __init__(self, resolved: Any, config: SearchConfig, *, batch: int,
                 chunk_trials: int, stored: Stored | None = None,
                 first_chunk_id: int = 0) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.resolved = resolved
        self.config = config
        self.batch = batch
        self.chunk_trials = max(1, chunk_trials)
        self.space = Space.build(resolved.grid, resolved.spec.grid)
        self.dists = self.space.distributions()
        self.filters = tuple(resolved.selection.filters)
        self.hold = config.prune is not None
        self.stored = stored or {}
        self.next_chunk_id = first_chunk_id
        n_windows = len(resolved.windows)
        groups = [(w,) for w in range(n_windows)] if resolved.folds is not None \
            else [tuple(range(n_windows))]
        with _quiet():
            self.studies = [_Study(i, g, study_seed(config.seed, i, len(groups)), config,
                                   self.hold) for i, g in enumerate(groups)]
        self.sampler_seconds = 0.0
        self.run_seconds = 0.0
        self.runs_computed = 0
        self.chunks_run = 0
        self.mismatched = 0  # stored runs whose trial number the replay gave another trial
        self.write: Callable[[int, int, pa.Table], None] = _no_writer
        self.on_trial: Callable[[_Study, _Trial], None] = lambda st, tr: None
        self._chunks: dict[int, tuple[_Study, _Batch]] = {}
        self._new: list[TrialChunk] = []

    # ------------------------------------------------------------------ progress
    @property
    def total(self) -> int:
        """Trials of every study when the search is done (fewer if a study exhausts)."""
        return self.config.trials * len(self.studies)

    @property
    def n_trials(self) -> int:
        """Trials with an outcome (complete, pruned or failed), over the studies."""
        return sum(_told(st) for st in self.studies)

    @property
    def finished(self) -> bool:
        """Every study is done: its trials all told, none to ask."""
        return all(not st.broken and not st.batches and not self._can_ask(st)
                   for st in self.studies)

    @property
    def in_flight(self) -> int:
        return len(self._chunks)

    def best(self) -> tuple[float | None, _Study | None]:
        """The best value over the studies so far, and its study."""
        found = [(st.best, st) for st in self.studies if st.best is not None]
        if not found:
            return None, None
        pick = max if self.config.direction == "maximize" else min
        return pick(found, key=lambda x: x[0])

    # ------------------------------------------------------------------ the loop
    def start(self) -> list[TrialChunk]:
        """Ask the first batches (replaying what the store already holds); the chunks to
        run."""
        self._advance()
        return self._drain()

    def collect(self, chunk: TrialChunk, results: list[Any]) -> list[TrialChunk]:
        """Take in a chunk's results (``TrialResult`` a window); the chunks to run next.
        Rows a worker returned are written first (``write`` may raise: the chunk then
        counts as failed, see :meth:`failed`)."""
        if not chunk.hold:
            for r in results:
                if not isinstance(r.rows, int):
                    self.write(r.window, chunk.chunk_id, r.rows)
        _, batch = self._chunks.pop(chunk.chunk_id)
        by_combo = {tr.combo: tr for tr in batch.trials}
        for r in results:
            for combo, v in zip(chunk.combos, r.values.tolist(), strict=True):
                by_combo[combo].values[r.window] = float(v)
            rows = r.rows if isinstance(r.rows, int) else r.rows.num_rows
            if chunk.hold:
                batch.held.setdefault(r.window, []).append(r.rows)
            self.runs_computed += rows
        self.run_seconds += max((r.seconds for r in results), default=0.0)
        self.chunks_run += 1
        batch.outstanding -= 1
        self._advance()
        return self._drain()

    def failed(self, chunk: TrialChunk) -> list[TrialChunk]:
        """A chunk that could not run (or be written): its study stops asking, since its
        history can no longer be told in order; a rerun computes the chunk again."""
        st, batch = self._chunks.pop(chunk.chunk_id, (None, None))
        if st is not None:
            st.broken = True
            batch.outstanding -= 1
        return self._drain()

    def _drain(self) -> list[TrialChunk]:
        out, self._new = self._new, []
        return out

    def _can_ask(self, st: _Study) -> bool:
        return not (st.exhausted or st.broken) and len(st.trials) < self.config.trials

    def _advance(self) -> None:
        """Process every event that is ready, in each study's fixed order: top up the
        pipeline (ask), then take the oldest batch's next stage once all its chunks are
        in."""
        for st in self.studies:
            while not st.broken:
                while len(st.batches) < DEPTH and self._can_ask(st):
                    self._ask(st)
                if not st.batches or st.batches[0].outstanding:
                    break
                batch = st.batches[0]
                self._stage(st, batch)
                if batch.done:
                    st.batches.popleft()
                    self._close_batch(batch)

    # ------------------------------------------------------------------ asking
    def _ask(self, st: _Study) -> None:
        import optuna

        batch = _Batch(st.asked)
        st.asked += 1
        limit = max(100, 10 * self.batch)
        started = time.perf_counter()
        with _quiet():
            while len(batch.trials) < self.batch and len(st.trials) < self.config.trials:
                handle = st.study.ask(self.dists)
                st.proposals += 1
                combo = self.space.combo(handle.params)
                if combo in st.by_combo:  # a repeat: its trial keeps its outcome
                    st.repeats += 1
                    st.misses += 1
                    st.study.tell(handle, state=optuna.trial.TrialState.PRUNED)
                    self._nudge(st, combo)
                elif not self._allowed(st, combo):
                    st.rejected += 1
                    st.misses += 1
                    st.study.tell(handle, state=optuna.trial.TrialState.PRUNED)
                else:
                    tr = _Trial(len(st.trials), combo, handle)
                    st.trials.append(tr)
                    st.by_combo[combo] = tr
                    batch.trials.append(tr)
                    st.misses = 0
                if st.misses >= limit:
                    st.exhausted = True
                    break
        self.sampler_seconds += time.perf_counter() - started
        if batch.trials:
            st.batches.append(batch)
            self._submit(st, batch)

    def _allowed(self, st: _Study, combo: int) -> bool:
        if combo in st.forbidden:
            return False
        if self.space.allowed(combo):
            return True
        st.forbidden.add(combo)
        return False

    def _nudge(self, st: _Study, combo: int) -> None:
        """After a repeat, the nearest parameter set not tried yet (and allowed) is
        enqueued as the next proposal (Optuna's ``enqueue_trial``): where the sampler
        wanted to go, one step aside, instead of a run of repeats."""
        rng = np.random.default_rng([st.seed, st.proposals])
        nb = self.space.nearest(combo, lambda c: c not in st.by_combo
                                and self._allowed(st, c), rng)
        if nb is not None:
            st.study.enqueue_trial(self.space.values(nb))

    def _submit(self, st: _Study, batch: _Batch) -> None:
        """Chunks for the batch's current stage: the running trials' runs that the store
        does not hold yet (a stored run gives its value now)."""
        wins = st.stages[batch.stage]
        need: dict[tuple[int, ...], list[_Trial]] = {}
        for tr in batch.trials:
            if tr.state != "running":
                continue
            missing = []
            for w in wins:
                hit = self.stored.get((w, tr.combo))
                if hit is None:
                    missing.append(w)
                else:
                    tr.values[w] = hit[0]
                    self.mismatched += hit[1] != tr.number
            if missing:
                need.setdefault(tuple(missing), []).append(tr)
        for missing, trials in need.items():
            for part in _parts(trials, self.chunk_trials):
                chunk = TrialChunk(self.next_chunk_id, tuple(t.combo for t in part),
                                   tuple(t.number for t in part), missing,
                                   self.config.objective, self.filters, self.hold)
                self.next_chunk_id += 1
                self._chunks[chunk.chunk_id] = (st, batch)
                batch.outstanding += 1
                self._new.append(chunk)

    # ------------------------------------------------------------------ telling
    def _stage(self, st: _Study, batch: _Batch) -> None:
        """All the batch's runs of its current stage are in: tell (or prune) its trials in
        trial order, then start the next stage or end the batch."""
        last = batch.stage == len(st.stages) - 1
        window = self.config.objective_window
        started = time.perf_counter()
        with _quiet():
            for tr in batch.trials:
                if tr.state != "running":
                    continue
                if self.hold:
                    (w,) = st.stages[batch.stage]
                    v = tr.values[w]
                    if math.isnan(v):
                        self._close(st, tr, "failed")
                        continue
                    tr.steps.append(v)
                    mean = float(np.mean(tr.steps))
                    tr.handle.report(mean, step=len(tr.steps))
                    if last:
                        tr.value = mean
                        self._close(st, tr, "complete")
                    elif tr.handle.should_prune():
                        self._close(st, tr, "pruned")
                else:
                    tr.value = trial_value([tr.values[w] for w in st.windows], window)
                    self._close(st, tr, "failed" if math.isnan(tr.value) else "complete")
        self.sampler_seconds += time.perf_counter() - started
        if last or all(tr.state != "running" for tr in batch.trials):
            batch.done = True
        else:
            batch.stage += 1
            self._submit(st, batch)

    def _close(self, st: _Study, tr: _Trial, state: str) -> None:
        tr.state = state
        self._tell(st, tr.handle, tr)
        if state == "pruned":
            st.pruned += 1
        elif state == "failed":
            st.failed += 1
        elif st.best is None or _better(tr.value, st.best, self.config.direction):
            st.best, st.best_trial = tr.value, tr.number
        self.on_trial(st, tr)

    def _tell(self, st: _Study, handle: Any, tr: _Trial) -> None:
        from optuna.trial import TrialState

        if tr.state == "complete":
            st.study.tell(handle, tr.value)
        elif tr.state == "pruned":
            st.study.tell(handle, state=TrialState.PRUNED)
        else:
            st.study.tell(handle, state=TrialState.FAIL)

    def _close_batch(self, batch: _Batch) -> None:
        """A pruned search's batch is done: write its rows, pruned trials marked."""
        if not batch.held:
            return
        pruned = {tr.number for tr in batch.trials if tr.state == "pruned"}
        cid = self.next_chunk_id
        self.next_chunk_id += 1
        for window, tables in sorted(batch.held.items()):
            table = pa.concat_tables(tables)
            trials = table.column(TRIAL).to_pylist()
            table = _set(table, PRUNED, pa.array([t in pruned for t in trials]))
            table = _set(table, "chunk_id", pa.array([cid] * table.num_rows, pa.int64()))
            self.write(window, cid, table)
        batch.held.clear()

    # ------------------------------------------------------------------ the record
    def info(self, method: str, settings: dict[str, Any]) -> SearchInfo:
        """The search as sweep.json records it."""
        studies = [StudyInfo(st.index, list(st.windows), st.seed, _told(st),
                             finite_or_none(st.best), st.best_trial, st.pruned, st.failed,
                             st.exhausted) for st in self.studies]
        best, where = self.best()
        return SearchInfo(
            method=method, settings=settings, n_trials=self.n_trials,
            objective=self.config.objective, best_value=finite_or_none(best),
            sampler_seconds=round(self.sampler_seconds, 4),
            n_proposals=sum(st.proposals for st in self.studies),
            n_repeats=sum(st.repeats for st in self.studies),
            n_rejected=sum(st.rejected for st in self.studies),
            n_pruned=sum(st.pruned for st in self.studies),
            n_failed=sum(st.failed for st in self.studies),
            best_trial=None if where is None else where.best_trial,
            run_seconds=round(self.run_seconds, 4), runs_computed=self.runs_computed,
            complete=self.finished, exhausted=any(st.exhausted for st in self.studies),
            studies=studies,
        )

@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Optuna's own warnings (experimental features, adjusted ranges) silenced: the spec
    was checked, and they would repeat at every ask."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"optuna(\.|$)")
        yield


def _told(st: _Study) -> int:
    return sum(1 for tr in st.trials if tr.state != "running")


def _better(a: float, b: float, direction: str) -> bool:
    return a > b if direction == "maximize" else a < b


def _parts(items: list[_Trial], size: int) -> Iterator[list[_Trial]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _set(table: pa.Table, name: str, column: pa.Array) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(i, table.schema.field(i), column.cast(table.schema.field(i).type))


def _no_writer(window: int, chunk_id: int, table: pa.Table) -> None:
    raise RuntimeError("SearchDriver.write is not set: the runner writes returned rows")
