"""``run_sweep`` for a spec with an adaptive ``[search]``: the same store checks, cluster
start, record, execution loop and overfitting summary as a grid sweep (:mod:`sweep.runner`,
:mod:`sweep.execute`), with a :class:`~sweep.search.driver.SearchDriver` choosing the
chunks.

* A new search connects first (its ``batch`` defaults from the cluster's worker threads),
  then writes its record, whose ``search.settings`` keep the batch: a resumed search asks
  in the same batches whatever cluster it runs on.
* A rerun replays the stored trials before connecting: if the store already holds every
  trial, no cluster is started.
"""

from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path
from typing import Any

import cluster
from sweep.execute import execute
from sweep.plan import Plan, TrialChunk, calibrate_chunk_size, seconds_per_combo
from sweep.record import SweepRecord
from sweep.runner import (
    SweepSummary,
    _default_client,
    _finish,
    _fresh_store,
    _new_record,
    interrupted,
)
from sweep.search.driver import SearchDriver, stored_values
from sweep.spec import ResolvedSweep
from sweep.store import ResultStore, StoreChangedError
from sweep.worker import sees_store

__all__ = ["describe_search", "run_search"]

logger = logging.getLogger("backsweep")


def run_search(resolved: ResolvedSweep, record: SweepRecord | None, store: ResultStore,
               summary: SweepSummary, started: float, *, client: Any, workers: int | None,
               cluster_config: Any, overwrite: bool, chunk_size: int | None,
               worker_writes: bool, progress: bool) -> SweepSummary:
    """The search part of :func:`sweep.runner.run_sweep` (after the store checks)."""
    cfg = resolved.search
    driver: SearchDriver | None = None
    first: list[TrialChunk] = []
    if record is not None:
        summary.quarantined = _check_files(store, resolved)
        settings = record.search.settings if record.search is not None else {}
        driver = _driver(resolved, store, int(settings.get("batch") or
                                              cfg.default_batch(1)), record.plan.chunk_size)
        # ``trials`` is not part of the digest: more trials continue the same search
        record.n_runs = resolved.n_runs
        record.plan = Plan(record.plan.chunk_size, cfg.trials * _n_studies(resolved),
                           record.plan.n_windows)
        first = driver.start()
    with contextlib.ExitStack() as stack:
        c = None
        if driver is None or first:
            c = stack.enter_context(cluster.connect(_default_client(client), workers=workers,
                                                    config=cluster_config))
        if driver is None:
            _fresh_store(store, overwrite)
            threads = max(1, sum(c.nthreads().values()))
            batch = cfg.batch or cfg.default_batch(threads)
            chunk = chunk_size or _chunk_trials(resolved, batch, threads)
            record = _new_record(resolved, chunk)
            record.plan = Plan(chunk, cfg.trials * _n_studies(resolved),
                               len(resolved.windows))
            driver = _driver(resolved, store, batch, chunk)
            record.search = driver.info(cfg.method, _settings(resolved, batch))
            store.write_record(record)
            first = driver.start()
        assert record is not None
        if first:
            record.status = "running"
            store.write_record(record)
            work = _SearchWork(driver, first, store, summary)
            with interrupted(store, record, update=lambda r: _update(r, driver)):
                execute(resolved, record, work, store, c, worker_writes, progress, summary)
    _update(record, driver)
    summary.chunks_total = summary.chunks_run + len(summary.failed_chunks)
    if driver.mismatched:
        logger.warning(
            "%d stored run(s) came from another history of this search (another Optuna "
            "version, or a search that lost a chunk and went on): kept and counted, but "
            "their trial numbers differ from this replay's; --overwrite reruns it afresh",
            driver.mismatched)
    complete = driver.finished and not summary.failed_chunks
    summary.search = record.search
    return _finish(store, resolved, record, summary, bool(first), started, complete)


def _n_studies(resolved: ResolvedSweep) -> int:
    return len(resolved.windows) if resolved.folds is not None else 1


def _settings(resolved: ResolvedSweep, batch: int) -> dict[str, Any]:
    out = resolved.search.settings(batch)
    out["filters"] = list(resolved.selection.filters)
    out["walk_forward"] = resolved.folds is not None
    return out


def _update(record: SweepRecord, driver: SearchDriver) -> None:
    settings = dict(record.search.settings) if record.search is not None else {}
    settings["trials"] = driver.config.trials
    record.search = driver.info(driver.config.method, settings)


def _driver(resolved: ResolvedSweep, store: ResultStore, batch: int, chunk: int
            ) -> SearchDriver:
    """The search's driver, told what the store already holds."""
    stored = stored_values(store.root, resolved.search.objective, resolved.selection.filters)
    ids = store.chunk_files()
    return SearchDriver(resolved, resolved.search, batch=batch, chunk_trials=chunk,
                        stored=stored, first_chunk_id=max(ids, default=-1) + 1)


def _chunk_trials(resolved: ResolvedSweep, batch: int, threads: int) -> int:
    """Trials a task: about half a second of work, but no more than spreads a batch over
    every worker thread."""
    per_trial = seconds_per_combo(resolved)
    if resolved.folds is not None:  # a fold's trial runs on its own window only
        per_trial /= max(1, len(resolved.windows))
    return max(1, min(calibrate_chunk_size(resolved, per_combo=per_trial),
                      math.ceil(batch / threads)))


def _check_files(store: ResultStore, resolved: ResolvedSweep) -> list[Path]:
    """Every stored file checked (its Parquet ends and columns); a damaged one moved into
    the quarantine folder, so its runs are computed again."""
    _, moved = store.verified_chunks(len(resolved.windows), resolved.schema.names,
                                     lambda cid: None)  # type: ignore[arg-type,return-value]
    for path in moved:
        logger.warning("damaged chunk file moved aside, its runs will be recomputed: %s",
                       path)
    return moved


class _SearchWork:
    """The search's chunks for :func:`sweep.execute.execute`."""

    def __init__(self, driver: SearchDriver, first: list[TrialChunk], store: ResultStore,
                 summary: SweepSummary) -> None:
        self.driver = driver
        self.first_chunks = first
        self.store = store
        self.summary = summary
        self.owner: Any = None
        self.bar: Any = None
        driver.write = self._write
        driver.on_trial = self._on_trial

    def progress_bar(self, enabled: bool) -> Any:
        from tqdm.auto import tqdm

        d = self.driver
        self.bar = tqdm(total=d.total, initial=d.n_trials, unit="trials", disable=not enabled,
                        smoothing=0.1, dynamic_ncols=True)
        self._postfix()
        return self.bar

    def _postfix(self) -> None:
        best, study = self.driver.best()
        if best is not None and self.bar is not None:
            fold = f" (fold {study.index})" if len(self.driver.studies) > 1 else ""
            self.bar.set_postfix_str(f"best {self.driver.config.objective} {best:.4g}{fold}",
                                     refresh=False)

    def _on_trial(self, study: Any, trial: Any) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self._postfix()

    def _write(self, window: int, chunk_id: int, table: Any) -> None:
        self.store.write_chunk(window, chunk_id, table,
                               still_ours=lambda: sees_store(self.owner))

    def first(self, threads: int) -> list[TrialChunk]:
        out, self.first_chunks = self.first_chunks, []
        return out

    def collect(self, chunk: TrialChunk, result: list[Any]) -> list[TrialChunk]:
        before = self.driver.runs_computed
        try:
            nxt = self.driver.collect(chunk, result)
        except StoreChangedError as exc:
            return self.failed(chunk, f"not written: {exc}")
        self.summary.chunks_run += 1
        self.summary.runs_computed += self.driver.runs_computed - before
        return nxt

    def failed(self, chunk: TrialChunk, why: str) -> list[TrialChunk]:
        self.summary.failed_chunks[chunk.chunk_id] = why
        return self.driver.failed(chunk)


def describe_search(summary: SweepSummary) -> list[str]:
    """The closing summary's lines of a search (``SweepSummary.describe``)."""
    s = summary.search
    studies = len(s.studies)
    head = (f"{summary.path}: {s.method} search, {s.n_trials} trials"
            + (f" over {studies} folds" if studies > 1 else "")
            + f" ({summary.n_runs} runs stored; {summary.chunks_run} chunk"
            f"{'' if summary.chunks_run == 1 else 's'} computed now) in "
            f"{summary.seconds:.1f} s" + ("" if s.complete else ", not finished"))
    lines = [head]
    if s.best_value is not None:
        where = "" if studies > 1 else f" at trial {s.best_trial}"
        lines.append(f"  best {s.objective} {s.best_value:.4g}{where}"
                     + ("; per fold: " + ", ".join(
                         "n/a" if st.best_value is None else f"{st.best_value:.4g}"
                         for st in s.studies) if studies > 1 else ""))
    extra = [f"{s.n_repeats} repeated an earlier trial (nothing run)" if s.n_repeats else "",
             f"{s.n_rejected} broke the constraints (never run)" if s.n_rejected else ""]
    extra = [e for e in extra if e]
    lines.append(f"  {s.n_proposals} proposals" + (": " + "; ".join(extra) if extra else "")
                 + (f"; {s.n_pruned} trials pruned" if s.n_pruned else "")
                 + (f"; {s.n_failed} trials failed" if s.n_failed else ""))
    cost = f"  sampler {s.sampler_seconds:.2f} s"
    if s.sampler_ms is not None:
        cost += f", {s.sampler_ms:.2f} ms a proposal"
    if s.run_ms is not None:
        cost += f"; runs {s.run_ms:.2f} ms of worker time each ({s.runs_computed} this call)"
    lines.append(cost)
    if s.exhausted:
        lines.append("  stopped early: the sampler kept proposing parameter sets already "
                     "tried or forbidden (the space is exhausted, or the search converged)")
    return lines
