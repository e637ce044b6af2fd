"""What lets a sweep feed a big cluster, and what must not change because of it:

* chunk sizing from the cluster (``sweep.plan.chunk_seconds``, ``chunks_per_task``) and
  the calibration kept in the record;
* tasks of several chunks (``sweep.worker.run_chunks``; the execution loop groups
  chunks when a task costs the client and the scheduler more than the cluster can
  afford) store the same table, bit for bit, as one chunk a task;
* a worker that wrote its chunks returns a :class:`~sweep.worker.Written` (its result is
  never fetched);
* a sweep through a ``dask scheduler`` running as a process of its own (docs/cluster.md,
  "Going big"), whose CPU the loop reads while it runs;
* the overfitting summary reads only the columns it needs (a 10M-run sweep's summary
  fits the client's memory) and gives the same verdict as the whole table;
* a local cluster started while a spec is validated is stopped when the spec is bad.

Speed itself is measured by benchmarks/bench_scale.py and bench_sweep.py, never here.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from cluster_fixtures import (
    DaskProcesses,
    read_meta,
    read_runs,
    run_cli,
    same_runs,
    wait_for,
    write_toml,
)

import sweep
import sweep.execute
import sweep.runner
from engine import METRIC_NAMES
from sweep import SweepSpec, run_sweep
from sweep.plan import Plan, chunk_seconds, chunks_per_task
from sweep.record import SweepRecord
from sweep.schema import scan_runs
from sweep.select import Selection, select_best
from sweep.store import TOKEN_NAME
from sweep.trials import window_verdict
from sweep.worker import StoreTarget, SweepContextPlugin, Written, run_chunks

SPEC = SweepSpec(
    name="scale", strategy="ma_cross", data="synthetic:assets=4,bars=500,seed=21",
    grid={"fast": [2, 3, 5, 8, 13], "slow": [20, 30, 50, 80], "kind": ["sma", "ema"],
          "commission": [0.0, 0.0005, 0.001]},
    windows={"ranges": [["2010-01-01", "2010-12-31"], ["2010-07-01", "2011-09-30"]]},
)
N_RUNS = 5 * 4 * 2 * 3 * 2
CHUNK = 5


@pytest.fixture(scope="module")
def reference(client: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SPEC with one chunk of CHUNK combinations a task."""
    out = tmp_path_factory.mktemp("scale-ref")
    summary = run_sweep(SPEC, client, out, chunk_size=CHUNK, progress=False)
    assert summary.ok and summary.n_runs == N_RUNS
    assert summary.tasks_run == summary.chunks_run == math.ceil(N_RUNS / 2 / CHUNK)
    return out / SPEC.name


# ------------------------------------------------------------------ chunk sizing
def test_chunks_last_longer_on_a_bigger_cluster() -> None:
    assert chunk_seconds(1) == chunk_seconds(2) == chunk_seconds(100) == 0.5
    assert chunk_seconds(1000) == pytest.approx(4.0)
    assert chunk_seconds(1000, task_cost=0.002) == pytest.approx(8.0)
    # the client and the scheduler at 25 % of a core: threads x cost / (k x seconds)
    for threads, cost, seconds in [(2, 0.003, 0.5), (1000, 0.002, 0.5), (300, 0.01, 1.0)]:
        k = chunks_per_task(threads, seconds, cost)
        assert threads * cost / (k * seconds) <= 0.25
        assert k == 1 or threads * cost / ((k - 1) * seconds) > 0.25
    # near the end, tasks shrink so that every thread still gets a share
    assert chunks_per_task(1000, 0.5, 0.002, pending=10 ** 6) == 16
    assert chunks_per_task(1000, 0.5, 0.002, pending=8000) == 4
    assert chunks_per_task(1000, 0.5, 0.002, pending=100) == 1


def test_the_calibration_is_kept_in_the_record(tmp_path: Path, reference: Path) -> None:
    record = SweepRecord.read(reference / "sweep.json")
    assert record.plan.seconds_per_combo is None  # chunk_size given: nothing calibrated
    record.plan = Plan(40, 1000, 2, seconds_per_combo=0.0125)
    record.write(tmp_path / "sweep.json")
    back = SweepRecord.read(tmp_path / "sweep.json").plan
    assert back == record.plan and back.chunk_seconds == pytest.approx(0.5)


# ------------------------------------------------------------ several chunks a task
def test_tasks_of_several_chunks_store_the_same_table(client: Any, reference: Path,
                                                      tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch
                                                      ) -> None:
    """The loop puts several chunks in a task when a task costs the client and the
    scheduler too much for the cluster (here: a prior of 1 s a task); the chunks, their
    files and every value stay those of one chunk a task."""
    monkeypatch.setattr(sweep.runner, "calibrate_chunk_size", lambda *a, **k: CHUNK)
    monkeypatch.setattr(sweep.execute, "TASK_COST", 1.0)
    summary = run_sweep(SPEC, client, tmp_path, progress=False)
    assert summary.ok and summary.n_runs == N_RUNS
    assert summary.chunks_run == math.ceil(N_RUNS / 2 / CHUNK)
    assert summary.tasks_run < summary.chunks_run, (summary.tasks_run, summary.chunks_run)
    root = tmp_path / SPEC.name
    assert read_meta(root)["plan"]["chunk_size"] == CHUNK
    same_runs(read_runs(reference), read_runs(root))


def test_a_task_that_wrote_its_chunks_returns_written(tmp_path: Path) -> None:
    resolved = SPEC.resolve()
    SweepContextPlugin("scale-written", resolved).setup()
    plan = Plan(CHUNK, resolved.n_combos, len(resolved.windows))
    chunks = (plan.chunk(0), plan.chunk(1))
    target = StoreTarget(str(tmp_path), "tok")
    sent = run_chunks("scale-written", chunks, target)  # no token: the client writes
    assert not isinstance(sent, Written)
    assert [[t.num_rows for t in tables] for tables in sent] == [[CHUNK, CHUNK]] * 2
    (tmp_path / TOKEN_NAME).write_text("tok")
    wrote = run_chunks("scale-written", chunks, target)
    assert isinstance(wrote, Written) and wrote == ((CHUNK, CHUNK), (CHUNK, CHUNK))
    assert len(list((tmp_path / "runs").rglob("part-*.parquet"))) == 4


# ---------------------------------------------------------- a separate scheduler
def test_a_sweep_through_a_separate_scheduler_process(reference: Path, tmp_path: Path
                                                      ) -> None:
    """``dask scheduler`` and ``dask worker`` as processes of their own (what
    docs/cluster.md recommends for a big cluster): the sweep stores the same table, and
    the loop measured what its tasks cost, the scheduler's process included."""
    procs = DaskProcesses(tmp_path / "dask")
    procs.tmp.mkdir()
    try:
        procs.start_scheduler()
        procs.ensure_workers(2)
        summary = run_sweep(SPEC, procs.address, tmp_path / "out", chunk_size=CHUNK,
                            progress=False)
        assert summary.ok and summary.n_runs == N_RUNS and summary.worker_threads == 2
        assert summary.tasks_run == summary.chunks_run
        assert summary.task_cost > 0
        same_runs(read_runs(reference), read_runs(tmp_path / "out" / SPEC.name))
        # the CLI, with the chunk size it calibrates itself
        config = write_toml(tmp_path / "scale.toml", _toml(SPEC))
        res = run_cli("run", config, "--cluster", procs.address, "--out", tmp_path / "cli",
                      "--no-progress", timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
        meta = read_meta(tmp_path / "cli" / SPEC.name)
        assert meta["status"] == "complete" and meta["plan"]["seconds_per_combo"] > 0
        same_runs(read_runs(reference), read_runs(tmp_path / "cli" / SPEC.name),
                  ignore=["chunk_id"])
    finally:
        procs.close()


def _toml(spec: SweepSpec) -> str:
    import json

    lines = [f'name = "{spec.name}"', f'strategy = "{spec.strategy}"',
             f'data = "{spec.data}"', "[grid]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in spec.grid.items()]
    lines += ["[windows]", f"ranges = {json.dumps(spec.windows['ranges'])}"]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ the summary
@pytest.mark.parametrize("selection", [
    Selection(), Selection("sharpe", ("n_trades >= 10",)), Selection("max_drawdown"),
    Selection("calmar", ("win_rate > 0.3", "n_trades >= 2")),
])
def test_the_summary_reads_only_what_it_needs_and_gives_the_same_verdict(
        reference: Path, selection: Selection) -> None:
    """window_verdict ranks from a few columns and reads one row's DSR inputs: the same
    best run and the same DSR as from every trial's every metric (the former code)."""
    from sweep.overfit import deflated_sharpe_ratio

    runs = scan_runs(reference, check=False)
    for window in SPEC.resolve().windows:
        got = window_verdict(runs, window, selection)
        trials = (runs.filter((pl.col("window") == window.index) & pl.col("error").is_null()
                              & pl.col("sharpe").is_not_nan())
                  .select(["run_id", "combo", *METRIC_NAMES]).collect())
        b = select_best(trials, selection).row(0, named=True)
        scale = math.sqrt(window.bars_per_year)
        dsr = deflated_sharpe_ratio(b["sharpe"] / scale, b["n_bars"], b["skew"],
                                    b["kurtosis"], trial_srs=trials["sharpe"].to_numpy() / scale)
        assert got.best_run_id == b["run_id"]
        assert got.n_trials == trials.height
        assert got.dsr == float(dsr) or (got.dsr is None and not np.isfinite(dsr))


# ------------------------------------------------------ the early local cluster
def test_bad_input_stops_the_local_cluster_started_meanwhile(tmp_path: Path) -> None:
    """The local cluster starts while the spec is checked; a spec that is bad input
    (its data file is missing) exits 2 and leaves no process of that cluster behind."""
    psutil = pytest.importorskip("psutil")
    mark = uuid.uuid4().hex
    config = write_toml(tmp_path / "bad.toml",
                        'name = "bad"\nstrategy = "ma_cross"\n'
                        f'data = "{tmp_path / "missing.parquet"}"\n[grid]\nfast = [3]\n')
    started = time.monotonic()
    res = run_cli("run", config, "--workers", "2", "--out", tmp_path / "out",
                  "--no-progress", BACKSWEEP_TEST_MARK=mark)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "missing.parquet" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "out").exists()

    def marked() -> list[Any]:
        out = []
        for p in psutil.process_iter():
            try:
                if p.environ().get("BACKSWEEP_TEST_MARK") == mark:
                    out.append(p)
            except psutil.Error:
                pass
        return out

    wait_for(lambda: not marked(), 60, "the local cluster's processes to exit")
    assert time.monotonic() - started < 120  # a hang guard, not a speed test
    assert os.environ.get("BACKSWEEP_TEST_MARK") is None
