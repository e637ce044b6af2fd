"""Faults on a real cluster: ``dask scheduler`` + 2 ``dask worker`` subprocesses on
127.0.0.1 and ``backsweep run --cluster tcp://...`` subprocesses.

* a worker SIGKILLed mid-sweep: the sweep completes, every run exactly once;
* the client SIGKILLed mid-sweep: the rerun computes only the missing chunks and ends with
  the table of an uninterrupted run;
* Ctrl-C (SIGINT) mid-sweep: a prompt non-zero exit, and the rerun resumes; also with the
  default local cluster, SIGINT to the whole process group as a terminal sends it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from cluster_fixtures import (
    DaskProcesses,
    kill_group,
    part_files,
    read_meta,
    read_runs,
    run_cli,
    same_runs,
    start_cli,
    wait_for,
    write_toml,
)

from sweep import SweepSpec, run_sweep

# 640 runs in 160 chunks of 4: several seconds on two single-threaded workers.
CONFIG = """
name = "faults"
strategy = "ma_cross"
data = "synthetic:assets=40,bars=1500,seed=11"
[engine]
commission = 0.001
[grid]
fast = {start = 2, stop = 40, step = 2}
slow = {start = 45, stop = 120, step = 5}
kind = ["sma", "ema"]
"""
N_RUNS = 20 * 16 * 2
CHUNK = 4
N_CHUNKS = N_RUNS // CHUNK
STARTED = 10  # part files on disk when a fault is injected (of N_CHUNKS)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_toml(tmp_path_factory.mktemp("config") / "faults.toml", CONFIG)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    procs = DaskProcesses(tmp_path_factory.mktemp("dask"))
    try:
        procs.start_scheduler()
        procs.ensure_workers(2)
        yield procs
    finally:
        procs.close()


@pytest.fixture
def two_workers(dask_cluster: DaskProcesses) -> DaskProcesses:
    """The cluster with two live workers, before and after the test."""
    dask_cluster.ensure_workers(2)
    yield dask_cluster
    dask_cluster.ensure_workers(2)


@pytest.fixture(scope="module")
def reference(dask_cluster: DaskProcesses, config: Path,
              tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The uninterrupted run (run_sweep in this process, given the scheduler address)."""
    dask_cluster.ensure_workers(2)
    out = tmp_path_factory.mktemp("reference")
    summary = run_sweep(SweepSpec.from_toml(config), dask_cluster.address, out,
                        chunk_size=CHUNK, progress=False)
    assert summary.ok and summary.n_runs == N_RUNS and summary.chunks_run == N_CHUNKS
    table = read_runs(out / "faults")
    assert table.height == N_RUNS
    return table


def start_sweep(config: Path, out: Path, address: str | None, log: Path,
                *extra: str) -> subprocess.Popen[bytes]:
    target = ["--cluster", address] if address else []
    return start_cli("run", config, "--out", out, *target, "--chunk-size", str(CHUNK),
                     "--no-progress", *extra, log=log)


def wait_for_stable_count(root: Path, quiet: float = 3.0, timeout: float = 120.0) -> int:
    """Part files on disk once their number has not changed for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    count, since = len(part_files(root)), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = len(part_files(root))
        if now != count:
            count, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return count
    raise AssertionError(f"part files still appearing after {timeout} s")


def wait_until_started(proc: subprocess.Popen[bytes], root: Path, log: Path) -> int:
    """Wait for some part files; fail if the sweep ended (or had done them all) first."""
    def started() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the sweep ended before the fault (exit {proc.returncode})"
                                 f":\n{log.read_text(errors='replace')[-3000:]}")
        return len(part_files(root)) >= STARTED

    wait_for(started, 180, f"{STARTED} part files in {root}")
    n = len(part_files(root))
    assert n < N_CHUNKS, "the sweep finished before the fault could be injected"
    return n


def check_exactly_once(root: Path) -> Any:
    table = read_runs(root)
    assert table.height == N_RUNS
    assert table["run_id"].n_unique() == N_RUNS
    assert sorted(set(table["chunk_id"])) == list(range(N_CHUNKS))
    assert table["error"].null_count() == N_RUNS
    assert not [p for p in root.rglob("*.tmp") if p.is_file()]  # no temp file left
    meta = read_meta(root)
    assert meta["status"] == "complete" and meta["runs_written"] == N_RUNS
    return table


def test_worker_killed_mid_sweep(two_workers: DaskProcesses, config: Path, reference: Any,
                                 tmp_path: Path) -> None:
    root = tmp_path / "out" / "faults"
    log = tmp_path / "run.log"
    proc = start_sweep(config, tmp_path / "out", two_workers.address, log)
    try:
        wait_until_started(proc, root, log)
        victim = two_workers.alive_workers()[0]
        two_workers.kill_worker(victim)
        assert victim.poll() is not None
        proc.wait(180)
    finally:
        kill_group(proc)
    output = log.read_text(errors="replace")
    assert proc.returncode == 0, output[-3000:]
    assert f"{N_RUNS} runs in {N_CHUNKS} chunks ({N_CHUNKS} computed now, 0 already" in output
    same_runs(reference, check_exactly_once(root))


def test_client_killed_mid_sweep_then_rerun_resumes(two_workers: DaskProcesses, config: Path,
                                                    reference: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    root = out / "faults"
    log = tmp_path / "run.log"
    proc = start_sweep(config, out, two_workers.address, log)
    try:
        wait_until_started(proc, root, log)
    finally:
        kill_group(proc, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    # The workers see the output folder and write their chunks themselves: the tasks they
    # were running when the client died still finish and write whole files (the token the
    # client left behind is still there). Count once they have stopped.
    done = wait_for_stable_count(root)
    assert 0 < done < N_CHUNKS
    assert read_meta(root)["status"] == "running"
    result = run_cli("run", config, "--out", out, "--cluster", two_workers.address,
                     "--chunk-size", str(CHUNK), "--no-progress")
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert (f"{N_RUNS} runs in {N_CHUNKS} chunks ({N_CHUNKS - done} computed now, "
            f"{done} already on disk)") in result.stdout
    same_runs(reference, check_exactly_once(root))


def test_ctrl_c_exits_promptly_and_rerun_resumes(two_workers: DaskProcesses, config: Path,
                                                 reference: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    root = out / "faults"
    log = tmp_path / "run.log"
    proc = start_sweep(config, out, two_workers.address, log)
    try:
        wait_until_started(proc, root, log)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            pytest.fail("backsweep run still running 120 s after SIGINT")
        seconds = time.monotonic() - sent
    finally:
        kill_group(proc)
    output = log.read_text(errors="replace")
    assert proc.returncode != 0, output[-3000:]
    assert seconds < 120  # a hang guard (loaded machines start Python slowly), not a speed test
    assert "interrupted" in output and "rerun to resume" in output
    assert read_meta(root)["status"] == "interrupted"
    done = len(part_files(root))
    assert 0 < done < N_CHUNKS
    result = run_cli("run", config, "--out", out, "--cluster", two_workers.address,
                     "--chunk-size", str(CHUNK), "--no-progress")
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert f"({N_CHUNKS - done} computed now, {done} already on disk)" in result.stdout
    same_runs(reference, check_exactly_once(root))


def test_ctrl_c_on_the_local_cluster_stops_everything(config: Path, reference: Any,
                                                      tmp_path: Path) -> None:
    """The default (a LocalCluster of --workers 2): SIGINT to the whole process group, as
    a terminal's Ctrl-C sends it. The CLI exits non-zero promptly, no worker process
    outlives it, and the finished chunks are kept."""
    psutil = pytest.importorskip("psutil")
    out = tmp_path / "out"
    root = out / "faults"
    log = tmp_path / "run.log"
    proc = start_sweep(config, out, None, log, "--workers", "2")
    children: list[Any] = []
    try:
        wait_until_started(proc, root, log)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "no worker processes?"
        sent = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            pytest.fail("backsweep run still running 120 s after Ctrl-C")
        seconds = time.monotonic() - sent

        def all_gone() -> bool:
            return not [c for c in children
                        if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]

        wait_for(all_gone, 30, "the local cluster's processes to exit")
    finally:
        kill_group(proc)
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.kill()
    output = log.read_text(errors="replace")
    assert proc.returncode != 0, output[-3000:]
    assert seconds < 120  # a hang guard (loaded machines start Python slowly), not a speed test
    assert "rerun to resume" in output
    done = part_files(root)
    assert 0 < len(done) < N_CHUNKS
    # what was kept is exactly what the uninterrupted run has for those chunks
    kept = read_runs(root)
    ids = set(kept["chunk_id"])
    same_runs(reference.filter(reference["chunk_id"].is_in(list(ids))), kept)
    assert read_meta(root)["status"] == "interrupted"


# ------------------------------------------------------------------ scheduler loss
WINDOW = 5  # seconds the scheduler may be unreachable (distributed.comm.timeouts.connect)


@pytest.mark.parametrize("how", ["SIGKILL", "SIGSTOP"])
def test_a_lost_scheduler_ends_the_sweep_promptly_and_a_rerun_resumes(
        how: str, config: Path, reference: Any, tmp_path: Path) -> None:
    """The scheduler SIGKILLed (gone) or SIGSTOPped (hung: the connection stays open and
    nothing answers) once chunks have landed: the CLI exits 1 within a bound, naming the
    scheduler and how many chunks are on disk, and saying that a rerun resumes; the rerun
    on a fresh cluster ends with the uninterrupted sweep's table."""
    procs = DaskProcesses(tmp_path / "dask1")
    (tmp_path / "dask1").mkdir()
    out = tmp_path / "out"
    root = out / "faults"
    log = tmp_path / "run.log"
    try:
        address = procs.start_scheduler()
        procs.ensure_workers(2)
        proc = start_cli("run", config, "--out", out, "--cluster", address, "--chunk-size",
                         str(CHUNK), "--no-progress", log=log,
                         DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=f"{WINDOW}s")
        wait_until_started(proc, root, log)
        lost_at = time.monotonic()
        os.kill(procs.scheduler.pid, signal.SIGKILL if how == "SIGKILL" else signal.SIGSTOP)
        try:
            proc.wait(timeout=WINDOW + 60)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            raise AssertionError(f"backsweep still running {WINDOW + 60} s after the "
                                 f"scheduler was {how}ed:\n{log.read_text()[-3000:]}") from None
        took = time.monotonic() - lost_at
        text = log.read_text(errors="replace")
        assert proc.returncode == 1, text[-3000:]
        assert f"lost the Dask scheduler at {address}" in text, text[-3000:]
        done = len({p.name for p in part_files(root)})
        assert f"{done} of {N_CHUNKS} chunks are safely on disk in {root}" in text
        assert "rerun the same command against a live cluster to resume" in text
        assert "Traceback" not in text
        assert took < WINDOW + 30, f"took {took:.1f} s to give up"
        assert read_meta(root)["status"] == "interrupted"
    finally:
        if procs.scheduler is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(procs.scheduler.pid, signal.SIGCONT)
        procs.close()
    fresh = DaskProcesses(tmp_path / "dask2")
    (tmp_path / "dask2").mkdir()
    try:
        fresh.start_scheduler()
        fresh.ensure_workers(2)
        proc = run_cli("run", config, "--out", out, "--cluster", fresh.address,
                       "--no-progress", timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "already on disk" in proc.stdout and " 0 already on disk" not in proc.stdout
    finally:
        fresh.close()
    same_runs(check_exactly_once(root), reference)
