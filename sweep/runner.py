"""``run_sweep``: validate, plan (or resume), run chunks on a Dask cluster, store results."""

from __future__ import annotations

import contextlib
import functools
import platform
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import polars as pl

import cluster
from strategies import unregister_module
from sweep.plan import LAYOUT, Plan, calibrate_chunk_size
from sweep.spec import ResolvedSweep, SpecError, SweepSpec
from sweep.store import ResultStore, StoreChangedError
from sweep.warmup import warm_up
from sweep.worker import TOKEN_FILE, StoreTarget, SweepContextPlugin, run_chunk, sees_store

__all__ = ["SweepSummary", "run_sweep"]

_VERSIONED = ("backsweep", "numba", "numpy", "polars", "pyarrow", "dask", "distributed")


@dataclass
class SweepSummary:
    """What a call to run_sweep did; ``ok`` is False when runs or chunks failed."""

    path: Path
    n_runs: int = 0
    n_errors: int = 0
    chunks_total: int = 0
    chunks_run: int = 0
    chunks_skipped: int = 0
    failed_chunks: dict[int, str] = field(default_factory=dict)
    seconds: float = 0.0
    runs_computed: int = 0        # by this call (resumed chunks are not counted)
    compute_seconds: float = 0.0  # first task submitted -> last result in
    worker_threads: int = 0       # the cluster's, when the first tasks were submitted

    @property
    def ok(self) -> bool:
        return not self.n_errors and not self.failed_chunks

    @property
    def runs_per_second(self) -> float | None:
        """The rate the cluster ran at in this call: runs computed / compute seconds
        (start-up, planning and the overfitting summary are left out)."""
        if not self.runs_computed or self.compute_seconds <= 0:
            return None
        return self.runs_computed / self.compute_seconds

    def describe(self) -> str:
        lines = [
            f"{self.path}: {self.n_runs} runs in {self.chunks_total} "
            f"chunk{'' if self.chunks_total == 1 else 's'} "
            f"({self.chunks_run} computed now, {self.chunks_skipped} already on disk) "
            f"in {self.seconds:.1f} s"
        ]
        if self.runs_per_second is not None:
            lines.append(
                f"  computed {self.runs_computed:,} runs in {self.compute_seconds:.1f} s on "
                f"{self.worker_threads} worker thread{'' if self.worker_threads == 1 else 's'}"
                f": {self.runs_per_second:,.0f} runs/s"
            )
        if self.n_errors:
            lines.append(f"  {self.n_errors} run(s) failed: see the 'error' column")
        for cid, why in list(self.failed_chunks.items())[:5]:
            lines.append(f"  chunk {cid} failed: {why}")
        if len(self.failed_chunks) > 5:
            lines.append(f"  ... and {len(self.failed_chunks) - 5} more failed chunks")
        if self.failed_chunks:
            lines.append("  rerun the same command to retry the missing chunks")
        return "\n".join(lines)


def run_sweep(
    spec: SweepSpec | str | Path,
    client: Any = None,
    out: str | Path | None = None,
    *,
    workers: int | None = None,
    cluster_config: str | Path | None = None,
    overwrite: bool = False,
    chunk_size: int | None = None,
    max_in_flight: int | None = None,
    worker_writes: bool = True,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> SweepSummary:
    """Run a sweep on a Dask cluster and write ``OUT/NAME``; resumes what is on disk.

    ``client``: a distributed.Client, a scheduler address, "local" or None (a local
    cluster of ``workers`` processes), a ``scheduler-file:PATH`` or a profile name from the
    cluster config file (``cluster_config``, see docs/cluster.md). Invalid specs raise
    SpecError before any work.

    ``worker_writes``: True (default) lets each worker write its chunks' files itself when
    it sees the output folder (a local cluster, or a shared filesystem; checked with a
    token file) and send them to the client otherwise; False always sends them.

    Example:
        >>> import sweep
        >>> spec = sweep.SweepSpec.from_toml("examples/ma_demo.toml")   # doctest: +SKIP
        >>> summary = sweep.run_sweep(spec, out="results")              # doctest: +SKIP
        >>> sweep.load_results("results/ma_demo").collect()             # doctest: +SKIP
    """
    started = time.perf_counter()
    if not isinstance(spec, SweepSpec):
        spec = SweepSpec.from_toml(spec)
    resolved = spec.resolve()
    store = ResultStore(Path(out or "results") / spec.name)
    existing = _existing_meta(store, resolved, overwrite)  # refuses before writing anything
    finished = existing is not None and _plan(existing).n_chunks <= len(
        store.done_chunks(len(resolved.windows)))
    with contextlib.ExitStack() as stack:
        # Connect (or start the local cluster) before writing: an unreachable cluster is
        # bad input with nothing written. A finished sweep needs no cluster at all.
        c = None if finished else stack.enter_context(
            cluster.connect(client, workers=workers, config=cluster_config))
        meta = _prepare_store(store, resolved, overwrite, chunk_size)
        plan = _plan(meta)
        done = store.done_chunks(plan.n_windows)
        todo = [cid for cid in range(plan.n_chunks) if cid not in done]
        summary = SweepSummary(store.root, chunks_total=plan.n_chunks,
                               chunks_skipped=plan.n_chunks - len(todo))
        if todo:
            meta["status"] = "running"
            store.write_meta(meta)
            try:
                _execute(resolved, plan, todo, store, c, workers, max_in_flight,
                         worker_writes, progress, echo, summary, meta["n_runs"])
            except KeyboardInterrupt:
                meta["status"] = "interrupted"
                store.write_meta(meta)
                echo(f"interrupted: finished chunks are kept in {store.root}; rerun to resume")
                raise
    summary.n_runs, summary.n_errors = _count(store)
    complete = len(store.done_chunks(plan.n_windows)) == plan.n_chunks
    if complete:
        # A worker SIGKILLed inside a write leaves its temp file (never read); with every
        # chunk on disk and no task of this call left running, none is still being written.
        store.clean_temp_files()
    if complete and summary.n_runs and (todo or "summary" not in meta):
        meta["summary"] = _overfit_summary(store, len(resolved.windows))
    summary.seconds = time.perf_counter() - started
    meta.update(
        status="complete" if complete else "incomplete",
        runs_written=summary.n_runs, runs_failed=summary.n_errors,
        failed_chunks={str(k): v for k, v in summary.failed_chunks.items()},
        finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        seconds_last_call=round(summary.seconds, 3),
        compute_last_call={"runs": summary.runs_computed,
                           "seconds": round(summary.compute_seconds, 3),
                           "worker_threads": summary.worker_threads},
    )
    store.write_meta(meta)
    return summary


def _existing_meta(store: ResultStore, resolved: ResolvedSweep, overwrite: bool
                   ) -> dict[str, Any] | None:
    """The stored sweep.json of this same sweep (None: none, or --overwrite will replace
    it); SpecError when OUT/NAME holds another sweep or an unreadable sweep.json."""
    spec = resolved.spec
    try:
        meta = store.read_meta()
    except ValueError as exc:
        if overwrite:
            return None
        raise SpecError(str(exc)) from None
    identity = {"digest": spec.digest, "fingerprint": resolved.panel.fingerprint}
    if meta is not None and {k: meta.get(k) for k in identity} != identity:
        if not overwrite:
            raise SpecError(
                f"{store.root} holds results of a different sweep (spec {meta.get('digest')}, "
                f"data {str(meta.get('fingerprint'))[:12]}) than this one (spec "
                f"{spec.digest}, data {resolved.panel.fingerprint[:12]}); pass --overwrite "
                "to replace them, or use another name or --out"
            )
        return None
    if meta is not None and meta.get("plan", {}).get("layout") != LAYOUT:
        if not overwrite:
            raise SpecError(
                f"{store.root} holds results of this sweep written by an older backsweep "
                "with another chunk layout, which cannot be resumed; pass --overwrite to "
                "recompute them, or use another name or --out")
        return None
    return meta


def _plan(meta: dict[str, Any]) -> Plan:
    return Plan(**meta["plan"])


def _prepare_store(store: ResultStore, resolved: ResolvedSweep, overwrite: bool,
                   chunk_size: int | None) -> dict[str, Any]:
    """The sweep.json to run under: the existing one when resuming the same sweep."""
    spec = resolved.spec
    identity = {"digest": spec.digest, "fingerprint": resolved.panel.fingerprint}
    meta = _existing_meta(store, resolved, overwrite)
    if meta is None:
        store.clear()  # --overwrite of another sweep or of an unreadable sweep.json
        meta = None
    store.clean_temp_files()
    if meta is not None:
        return meta
    size = chunk_size or calibrate_chunk_size(resolved)
    plan = Plan(size, resolved.n_combos, len(resolved.windows))
    meta = {
        **identity,
        "name": spec.name,
        "spec": spec.to_dict(),
        "plan": plan.to_dict(),
        "n_runs": resolved.n_runs,
        "windows": [
            {"window": k, "start": str(resolved.panel.timestamps[i0]),
             "end": str(resolved.panel.timestamps[i1 - 1]), "bars": i1 - i0}
            for k, (i0, i1) in enumerate(resolved.windows)
        ],
        "data": {"source": spec.data, "bars": resolved.panel.n_bars,
                 "assets": resolved.panel.n_assets},
        "versions": _versions(),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "status": "planned",
    }
    store.write_meta(meta)
    return meta


def _execute(resolved: ResolvedSweep, plan: Plan, todo: list[int], store: ResultStore,
             client: Any, workers: int | None, max_in_flight: int | None,
             worker_writes: bool, progress: bool, echo: Callable[[str], None],
             summary: SweepSummary, total_runs: int) -> None:
    from distributed import as_completed

    # One context per call: a concurrent sweep of the same spec (maybe cut into other
    # chunks) never shares its tasks or its context, and unregistering it is safe.
    key = f"{resolved.spec.digest}-{resolved.panel.fingerprint[:8]}-{uuid.uuid4().hex[:8]}"
    with contextlib.ExitStack() as stack:
        c = stack.enter_context(cluster.connect(client, workers=workers))
        if c.dashboard_link:
            echo(f"dashboard: {c.dashboard_link}")
        # Same package versions everywhere, single-threaded warmed-up Numba, and the
        # spec's user modules importable on every worker (also on ones joining later).
        cluster.prepare(c, modules=resolved.spec.modules, on_unload=unregister_module,
                        warm_up=functools.partial(warm_up, strategies=[resolved.strategy.name]))
        plugin = SweepContextPlugin(key, resolved)
        c.register_plugin(plugin, name=plugin.name)
        summary.worker_threads = sum(c.nthreads().values())
        slots = max_in_flight or max(4, 3 * summary.worker_threads)
        bar = _progress_bar(total_runs, progress)
        bar.update(_runs_on_disk(store))
        pending = iter(todo)
        chunk_of: dict[Any, int] = {}

        def submit(cid: int) -> Any:
            chunk = plan.chunk(cid)
            fut = c.submit(run_chunk, key, chunk, target, retries=2,
                           key=f"backsweep-{key}-{chunk.start}-{chunk.stop}")
            chunk_of[fut.key] = cid
            return fut

        # The token marks the folder as this call's: workers that read it write their
        # chunks themselves, and nobody (worker or client) writes once it has changed
        # (another sweep took the folder over with --overwrite).
        owner = StoreTarget(str(store.root.resolve()), uuid.uuid4().hex)
        token = store.root / TOKEN_FILE
        token.write_text(owner.token)
        stack.callback(_release_token, owner)
        target = owner if worker_writes else None
        first_submit = time.perf_counter()
        running = as_completed([submit(cid) for _, cid in zip(range(slots), pending,
                                                                 strict=False)])
        try:
            for fut in running:
                cid = chunk_of.pop(fut.key)
                try:
                    result = fut.result()
                except Exception as exc:  # e.g. KilledWorker after its retries
                    summary.failed_chunks[cid] = f"{type(exc).__name__}: {exc}"[:500]
                else:
                    try:
                        for window, table in enumerate(result):
                            if isinstance(table, int):  # the worker wrote it
                                runs = table
                            else:
                                store.write_chunk(window, cid, table,
                                                  still_ours=lambda: sees_store(owner))
                                runs = table.num_rows
                            bar.update(runs)
                            summary.runs_computed += runs
                        summary.chunks_run += 1
                        summary.compute_seconds = time.perf_counter() - first_submit
                    except StoreChangedError as exc:
                        summary.failed_chunks[cid] = f"not written: {exc}"
                fut.release()
                nxt = next(pending, None)
                if nxt is not None:
                    running.add(submit(nxt))
        except BaseException:
            running.clear()
            raise
        finally:
            bar.close()
            # Don't leave the sweep's data on a long-lived cluster (teardown drops it).
            with contextlib.suppress(Exception):
                c.unregister_worker_plugin(plugin.name)


def _release_token(owner: StoreTarget) -> None:
    """Remove the folder's token if it is still this call's (another call of the same
    sweep may have taken the folder over since)."""
    if sees_store(owner):
        (Path(owner.root) / TOKEN_FILE).unlink(missing_ok=True)


def _progress_bar(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="runs", unit_scale=True, disable=not enabled,
                smoothing=0.1, dynamic_ncols=True)


def _runs_on_disk(store: ResultStore) -> int:
    if not store.done_chunks():
        return 0
    return int(pl.scan_parquet(store.runs / "**" / "part-*.parquet", hive_partitioning=True)
               .select(pl.len()).collect().item())


def _count(store: ResultStore) -> tuple[int, int]:
    if not store.done_chunks():
        return 0, 0
    lf = pl.scan_parquet(store.runs / "**" / "part-*.parquet", hive_partitioning=True)
    row = lf.select(pl.len().alias("n"), pl.col("error").is_not_null().sum().alias("e")) \
        .collect().row(0)
    return int(row[0]), int(row[1])


# PBO holds every trial's block stats in memory at once: beyond this many trials in a
# window it is skipped (the sweep itself still scales; DSR needs only metric columns).
PBO_MAX_TRIALS = 200_000


def _overfit_summary(store: ResultStore, n_windows: int) -> dict[str, Any]:
    """DSR of each window's best run by Sharpe and PBO over its trials (sweep.json)."""
    from sweep.evaluate import BLOCK_COLUMNS
    from sweep.trials import window_overfit_stats

    runs = pl.scan_parquet(store.runs / "**" / "part-*.parquet", hive_partitioning=True)
    counts = dict(runs.group_by("window").agg(pl.len()).collect().iter_rows())
    by_window = []
    for k in range(n_windows):
        lf = runs
        if counts.get(k, 0) > PBO_MAX_TRIALS:
            lf = runs.drop(list(BLOCK_COLUMNS), strict=False)
        stats = window_overfit_stats(lf, k)
        if counts.get(k, 0) > PBO_MAX_TRIALS:
            stats["pbo_note"] = f"skipped: more than {PBO_MAX_TRIALS} trials"
        by_window.append(stats)

    def mean(key: str) -> float | None:
        vals = [w[key] for w in by_window if w.get(key) is not None]
        return sum(vals) / len(vals) if vals else None

    return {"objective": "sharpe", "dsr": mean("dsr"), "pbo": mean("pbo"),
            "by_window": by_window}


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
