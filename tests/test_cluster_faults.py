"""Faults and limits of a sweep on a real cluster, seen from outside: ``dask scheduler`` and
``dask worker`` processes on 127.0.0.1, ``backsweep run --cluster tcp://...`` (or
``sweep.run_sweep``), the Parquet store on disk, and a scheduler plugin that counts what
the scheduler holds (tests/cluster_fixtures.py):

* a worker that joins mid-sweep gets the sweep's data and takes tasks;
* a worker whose rebuilt data differs from the client's (another data generator) is
  refused, with the reason said, and computes nothing;
* client-writes mode (workers in their own mount namespace, with the output folder
  hidden: a cluster without a shared filesystem): a worker SIGKILLed mid-sweep, and the
  client SIGKILLed mid-sweep then the sweep resumed: every run stored exactly once;
* a 200,000-run plan never has more tasks on the scheduler than the bound in flight;
* the calibrated chunk size gives tasks of about the target time;
* a TLS scheduler that requires encryption refuses workers without a valid certificate.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
from pathlib import Path
from typing import Any

import pytest
from cluster_fixtures import (
    REPO,
    DaskProcesses,
    count_tasks,
    kill_group,
    part_files,
    read_meta,
    read_runs,
    run_cli,
    same_runs,
    start_cli,
    task_counts,
    wait_for,
    write_toml,
)

pytestmark = pytest.mark.timeout(420)

# 1,280 runs in 160 chunks of 8: ~15 s on one single-threaded worker, so that a worker
# can join, or be killed, while most of the work is still ahead.
CONFIG = """
name = "cfaults"
strategy = "ma_cross"
data = "synthetic:assets=60,bars=2000,seed=13"
[engine]
commission = 0.001
[grid]
fast = {start = 2, stop = 40, step = 2}
slow = {start = 45, stop = 200, step = 5}
kind = ["sma", "ema"]
"""
N_RUNS = 20 * 32 * 2
CHUNK = 8
N_CHUNKS = N_RUNS // CHUNK
STARTED = 6  # chunk files on disk when the fault is injected


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_toml(tmp_path_factory.mktemp("cfaults") / "cfaults.toml", CONFIG)


@pytest.fixture(scope="module")
def reference(config: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The same sweep, undisturbed, on a local cluster."""
    out = tmp_path_factory.mktemp("cfaults-ref")
    res = run_cli("run", config, "--workers", "2", "--out", out, "--chunk-size", CHUNK,
                  "--no-progress", timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return read_runs(out / "cfaults")


@pytest.fixture
def procs(tmp_path: Path) -> Any:
    cluster = DaskProcesses(tmp_path / "dask")
    cluster.tmp.mkdir()
    try:
        cluster.start_scheduler()
        yield cluster
    finally:
        cluster.close()


def _cli(procs: DaskProcesses, config: Path, out: Path, log: Path) -> Any:
    return start_cli("run", config, "--cluster", procs.address, "--out", out, "--chunk-size",
                     CHUNK, "--no-progress", log=log)


def _finish(proc: Any, log: Path, timeout: float = 300) -> tuple[int, str]:
    try:
        rc = proc.wait(timeout=timeout)
    finally:
        kill_group(proc, signal.SIGKILL)
    return rc, log.read_text(errors="replace")


def _exactly_once(root: Path, reference: Any) -> None:
    runs = read_runs(root)
    assert runs.height == N_RUNS, f"{runs.height} rows for {N_RUNS} runs"
    assert runs["run_id"].n_unique() == N_RUNS
    assert len(part_files(root)) == N_CHUNKS
    same_runs(runs, reference)
    assert read_meta(root)["status"] == "complete"


# --------------------------------------------------------------- elastic workers
def test_worker_joining_mid_sweep_gets_the_data_and_tasks(procs: DaskProcesses, config: Path,
                                                          reference: Any, tmp_path: Path
                                                          ) -> None:
    procs.add_worker("first")
    procs.wait_workers(1)
    client = procs.client()
    count_tasks(client)
    root = tmp_path / "out" / "cfaults"
    proc = _cli(procs, config, tmp_path / "out", tmp_path / "cli.log")
    wait_for(lambda: len(part_files(root)) >= STARTED or proc.poll() is not None, 180,
             "the first chunks on disk")
    procs.add_worker("late")
    procs.wait_workers(2)
    joined_at = len(part_files(root))
    rc, log = _finish(proc, tmp_path / "cli.log")
    assert rc == 0, log[-3000:]
    assert joined_at < N_CHUNKS // 2, "the sweep was nearly over when the worker joined"
    done_by = task_counts(client)["done_by"]
    assert done_by.get("late", 0) >= 3, f"the worker that joined took no tasks: {done_by}"
    _exactly_once(root, reference)


def test_workers_joining_after_the_start_all_get_tasks(procs: DaskProcesses, config: Path,
                                                      reference: Any, tmp_path: Path) -> None:
    """A cluster that grows after the sweep started (a SLURM or Kubernetes cluster whose
    workers arrive after the scheduler, an adaptive one): the sweep starts with no worker
    at all, five single-threaded workers join, and the scheduler sees enough of the
    sweep's tasks in flight for each of them to have one."""
    client = procs.client()
    count_tasks(client)
    root = tmp_path / "out" / "cfaults"
    proc = _cli(procs, config, tmp_path / "out", tmp_path / "cli.log")
    wait_for(lambda: task_counts(client)["peak"] > 0 or proc.poll() is not None, 120,
             "the sweep's first tasks on the scheduler")
    for i in range(5):
        procs.add_worker(f"grow{i}")
    procs.wait_workers(5)
    rc, log = _finish(proc, tmp_path / "cli.log")
    assert rc == 0, log[-3000:]
    counts = task_counts(client)
    busy = {name: n for name, n in counts["done_by"].items() if n}
    assert counts["peak_in_flight"] >= 5, (
        f"at most {counts['peak_in_flight']} tasks in flight for 5 worker threads "
        f"(tasks done by: {busy})")
    _exactly_once(root, reference)


OTHER_GENERATOR = '''

# --- tests/test_cluster_faults.py: a worker whose data generator differs ---------------
_backsweep_test_original = synthetic_panel


def synthetic_panel(n_assets=500, n_bars=2520, seed=0, **kwargs):  # noqa: F811
    return _backsweep_test_original(n_assets, n_bars, seed + 1, **kwargs)
'''


def _other_engine(folder: Path) -> Path:
    """A copy of the engine package (with its compiled kernel caches, times kept) whose
    synthetic data generator differs: a worker with another version of the data code
    that the version check cannot tell apart (same package versions)."""
    shutil.copytree(REPO / "engine", folder / "engine", copy_function=shutil.copy2)
    target = folder / "engine" / "data" / "synthetic.py"
    assert "def synthetic_panel(" in target.read_text(), "synthetic_panel moved: update test"
    with open(target, "a") as f:
        f.write(OTHER_GENERATOR)
    return folder


def _mentions_data_mismatch(text: str) -> bool:
    return bool(re.search(r"fingerprint|differs from the client|data .*differ", text,
                          re.IGNORECASE))


def test_worker_with_other_data_is_refused(procs: DaskProcesses, config: Path,
                                           reference: Any, tmp_path: Path) -> None:
    """One good worker, one that rebuilds other data from the same recipe: the sweep says
    why, and nothing the odd worker computed is stored (the sweep refuses to start, or it
    runs on the good worker alone)."""
    other = _other_engine(tmp_path / "other")
    procs.add_worker("good")
    procs.add_worker("oddworker", pythonpath=[other])
    procs.wait_workers(2)
    client = procs.client()
    origin = client.run(lambda: __import__("engine").__file__)
    [odd_address] = [addr for addr, path in origin.items() if str(other) in path]
    count_tasks(client)
    out = tmp_path / "out"
    res = run_cli("run", config, "--cluster", procs.address, "--out", out, "--chunk-size",
                  CHUNK, "--no-progress", timeout=300)
    said = res.stdout + res.stderr
    assert _mentions_data_mismatch(said), f"no reason given:\n{said[-3000:]}"
    assert "Traceback" not in said, said[-3000:]
    assert odd_address in said or "oddworker" in said, f"the worker is not named:\n{said[-3000:]}"
    done_by = task_counts(client)["done_by"]
    assert done_by.get("oddworker", 0) == 0, f"the odd worker computed chunks: {done_by}"
    if res.returncode == 0:
        _exactly_once(out / "cfaults", reference)
    else:
        assert res.returncode == 2, said[-3000:]
        assert not part_files(out / "cfaults")


def test_worker_with_other_data_joining_mid_sweep_is_refused(
        procs: DaskProcesses, config: Path, reference: Any, tmp_path: Path) -> None:
    """A worker that rebuilds other data joins while the sweep runs: it computes nothing,
    its log says why, and the sweep completes with every run once, as computed by the
    good worker."""
    other = _other_engine(tmp_path / "other")
    procs.add_worker("good")
    procs.wait_workers(1)
    client = procs.client()
    count_tasks(client)
    root = tmp_path / "out" / "cfaults"
    proc = _cli(procs, config, tmp_path / "out", tmp_path / "cli.log")
    wait_for(lambda: len(part_files(root)) >= STARTED or proc.poll() is not None, 180,
             "the first chunks on disk")
    odd = procs.add_worker("oddworker", pythonpath=[other])
    rc, log = _finish(proc, tmp_path / "cli.log")
    assert rc == 0, log[-3000:]
    done_by = task_counts(client)["done_by"]
    assert done_by.get("oddworker", 0) == 0, f"the odd worker computed chunks: {done_by}"
    _exactly_once(root, reference)
    odd_log = (procs.tmp / "worker-oddworker.log").read_text(errors="replace")
    assert _mentions_data_mismatch(odd_log), odd_log[-3000:]
    del odd


# ---------------------------------------------------------- client-writes mode
@pytest.fixture
def hidden_out(procs: DaskProcesses, tmp_path: Path) -> Path:
    """Two workers that do not see ``tmp_path/out`` (an empty tmpfs over it in their own
    mount namespace): the client writes every chunk."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "visible-to-the-client-only").write_text("x")
    for name in ("w1", "w2"):
        procs.add_worker(name, hide=[out])
    procs.wait_workers(2)
    seen = procs.client().run(lambda: sorted(os.listdir(out)))
    assert all(listing == [] for listing in seen.values()), seen
    return out


def test_client_writes_with_a_worker_killed(procs: DaskProcesses, hidden_out: Path,
                                            config: Path, reference: Any, tmp_path: Path
                                            ) -> None:
    root = hidden_out / "cfaults"
    proc = _cli(procs, config, hidden_out, tmp_path / "cli.log")
    wait_for(lambda: len(part_files(root)) >= STARTED or proc.poll() is not None, 180,
             "the first chunks on disk")
    assert proc.poll() is None, (tmp_path / "cli.log").read_text()[-3000:]
    procs.kill_worker(procs.workers[0])
    killed_at = len(part_files(root))
    rc, log = _finish(proc, tmp_path / "cli.log")
    assert rc == 0, log[-3000:]
    assert killed_at < N_CHUNKS - 10
    _exactly_once(root, reference)
    # the workers never saw the store: the client wrote all of it
    seen = procs.client().run(lambda: os.listdir(hidden_out))
    assert all(listing == [] for listing in seen.values()), seen


def test_client_writes_with_the_client_killed_then_resumed(
        procs: DaskProcesses, hidden_out: Path, config: Path, reference: Any,
        tmp_path: Path) -> None:
    root = hidden_out / "cfaults"
    proc = _cli(procs, config, hidden_out, tmp_path / "cli.log")
    wait_for(lambda: len(part_files(root)) >= STARTED or proc.poll() is not None, 180,
             "the first chunks on disk")
    assert proc.poll() is None, (tmp_path / "cli.log").read_text()[-3000:]
    kill_group(proc, signal.SIGKILL)
    on_disk = len(part_files(root))
    assert 0 < on_disk < N_CHUNKS
    res = run_cli("run", config, "--cluster", procs.address, "--out", hidden_out,
                  "--chunk-size", CHUNK, "--no-progress", timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    match = re.search(r"(\d+) already on disk", res.stdout)
    assert match and int(match.group(1)) >= on_disk, res.stdout
    _exactly_once(root, reference)


# ---------------------------------------------------------------------- limits
BIG = """
name = "big"
strategy = "ma_cross"
data = "synthetic:assets=1,bars=700,seed=2"
[grid]
fast = {start = 1, stop = 500, step = 1}
slow = {start = 501, stop = 900, step = 1}
"""
BIG_RUNS = 500 * 400


def test_tasks_in_flight_stay_bounded_for_a_200000_run_plan(procs: DaskProcesses,
                                                            tmp_path: Path) -> None:
    """200,000 runs in 400 chunks: the scheduler never has more than ``max_in_flight`` of
    the sweep's tasks unfinished at once, nor holds many more at all (submitting
    everything would put 400 there; a finished task is held until the client, having
    stored its result, releases it: finished tasks are taken in batches, so up to a batch
    of them, at most ``max_in_flight``, wait for their release next to the running ones)."""
    import sweep

    procs.ensure_workers(2)
    client = procs.client()
    count_tasks(client)
    spec = sweep.SweepSpec.from_toml(write_toml(tmp_path / "big.toml", BIG))
    bound = 5
    summary = sweep.run_sweep(spec, client=procs.address, out=tmp_path / "out",
                              chunk_size=500, max_in_flight=bound, progress=False)
    counts = task_counts(client)
    assert summary.ok and summary.n_runs == BIG_RUNS
    assert sum(counts["done_by"].values()) == BIG_RUNS // 500
    assert 2 <= counts["peak_in_flight"] <= bound, sorted(counts["at_peak"].items())
    assert counts["peak"] <= 2 * bound + 2, sorted(counts["at_peak"].items())
    assert counts["live"] == 0  # nothing left behind on the scheduler


# 2,832 runs of 100 assets, 4.4-4.7 ms each here: ~13 s of one thread's work, so chunks
# of ~0.5 s make ~25 (a grid of half the runs on 50 assets made 5 chunks on CI, at 1.63 ms
# a run: too few for a median)
CALIBRATED = """
name = "calibrated"
strategy = "ma_cross"
data = "synthetic:assets=100,bars=2520,seed=7"
constraints = ["fast < slow"]
[grid]
fast = {start = 2, stop = 60, step = 1}
slow = {start = 20, stop = 250, step = 10}
kind = ["sma", "ema"]
"""


def test_calibrated_chunk_size_lands_in_its_target_band(procs: DaskProcesses,
                                                        tmp_path: Path) -> None:
    """Chunks are sized to ~0.5-2 s of work (DESIGN.md, "Distributed layer"): the median
    compute time of a chunk on the workers, measured by the scheduler, lies in 0.25-2 s (a
    loaded 2-core machine blurs the low end). A task may hold several consecutive chunks
    when the client measures its own cost a task as high (``sweep.plan.chunks_per_task``):
    its key names its combination range, so its time is shared among its chunks."""
    procs.ensure_workers(2)
    client = procs.client()
    count_tasks(client)
    config = write_toml(tmp_path / "calibrated.toml", CALIBRATED)
    res = run_cli("run", config, "--cluster", procs.address, "--out", tmp_path / "out",
                  "--no-progress", timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    plan = read_meta(tmp_path / "out" / "calibrated")["plan"]
    tasks = task_counts(client)["seconds"]
    seconds, chunks = [], 0
    for key, took in tasks:
        start, stop = (int(x) for x in key.rsplit("-", 2)[-2:])
        held = -(-(stop - start) // plan["chunk_size"])
        chunks += held
        seconds += [took / held] * held
    assert chunks == -(-plan["n_combos"] // plan["chunk_size"]), (plan, tasks)
    assert len(tasks) >= 6, (plan, tasks)
    median = statistics.median(seconds)
    assert 0.25 <= median <= 2.0, (
        f"median chunk {median:.3f} s (chunk size {plan['chunk_size']}, chunks "
        f"{sorted(round(s, 3) for s in seconds)})")


# ------------------------------------------------------------------------ TLS
def test_tls_scheduler_requiring_encryption_refuses_workers_without_certificates(
        tmp_path: Path) -> None:
    """A ``dask scheduler --protocol tls`` with ``require-encryption``: a worker with a
    certificate of the cluster's CA joins; a worker without certificates, one with a
    certificate of another CA and one that speaks plain tcp never join, and each says
    why in its log."""
    from test_cluster_support import DaskProcesses as TLSProcesses
    from test_cluster_support import make_certs

    import cluster

    certs = make_certs(tmp_path / "certs")
    tls = {"ca": certs["ca"], "cert": certs["node_cert"], "key": certs["node_key"]}
    procs = TLSProcesses(tmp_path, tls=tls)
    require = {"DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True"}
    try:
        procs.start_scheduler(env=require)
        assert procs.address.startswith("tls://")
        procs.add_worker("good", env=require)
        procs.add_worker("bare", env=require, tls=False)
        procs.add_worker("rogue", env=require, tls={
            "ca": certs["ca"], "cert": certs["rogue_cert"], "key": certs["rogue_key"]})
        procs.add_worker("plain", tls=False,
                         address="tcp://" + procs.address.removeprefix("tls://"))
        with cluster.connect(procs.address, tls_ca_file=certs["ca"],
                             tls_cert=certs["client_cert"], tls_key=certs["client_key"],
                             timeout=20) as client:
            from test_cluster_support import wait_for_worker_names

            wait_for_worker_names(client, {"good"})
            for name in ("bare", "rogue", "plain"):
                wait_for(lambda n=name: _refusal_logged(procs.workers[n].output()), 90,
                         f"worker {name!r} to report its refusal")
            names = {w["name"] for w in client.scheduler_info(n_workers=-1)["workers"]
                     .values()}
            assert names == {"good"}, names
            assert client.submit(sum, [1, 2]).result(timeout=60) == 3
        scheduler_log = procs.scheduler.output()
        assert "good" in scheduler_log or "Register worker" in scheduler_log
    finally:
        procs.stop()


def _refusal_logged(text: str) -> bool:
    return bool(re.search(r"ssl|tls|certificate|timed out|Timed out|closed|refused", text,
                          re.IGNORECASE))
