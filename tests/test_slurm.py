"""The ``slurm`` cluster profile for real: dask-jobqueue's SLURMCluster submits worker jobs
to a private one-node SLURM on this host (the session fixture ``slurm``: munged, slurmctld
and slurmd started here, see tests/slurm_fixtures.py), and ``backsweep`` runs through
``--cluster PROFILE``:

* the profile's dashboards: the printed link is the address that listens (127.0.0.1), and
  the worker jobs' HTTP servers listen on 127.0.0.1 only;
* a sweep through the profile stores the same table as the local cluster's, and its
  summary counts the worker threads it ran on;
* a worker job cancelled with ``scancel`` mid-sweep: every run is stored exactly once;
* a walk-forward through the profile equals the local one.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from cluster_fixtures import (
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
from polars.testing import assert_frame_equal
from slurm_fixtures import listening, node_ip

import cluster

pytestmark = pytest.mark.timeout(420)

# 48 runs over two windows, in 12 chunks of 4.
SWEEP = """
name = "slurm_demo"
strategy = "ma_cross"
data = "synthetic:assets=20,bars=800,seed=5"
constraints = ["fast < slow"]
[engine]
commission = 0.001
[grid]
fast = {start = 5, stop = 30, step = 5}
slow = [40, 60, 80, 100]
kind = ["sma", "ema"]
[windows]
ranges = [["2010-01-01", "2011-06-30"], ["2011-07-01", "2013-01-31"]]
"""

# 640 runs in 160 chunks of 4: long enough to cancel a worker job in the middle.
LONG = """
name = "slurm_long"
strategy = "ma_cross"
data = "synthetic:assets=40,bars=1500,seed=11"
[engine]
commission = 0.001
[grid]
fast = {start = 2, stop = 40, step = 2}
slow = {start = 45, stop = 120, step = 5}
kind = ["sma", "ema"]
"""
LONG_RUNS = 20 * 16 * 2

WALK = """
name = "slurm_wf"
strategy = "ma_cross"
data = "synthetic:assets=20,bars=900,seed=3"
constraints = ["fast < slow"]
[grid]
fast = [5, 10, 20]
slow = [40, 80]
[walk_forward]
train = 300
test = 150
purge = 2
objective = "sharpe"
"""


def _profile(slurm: Any, folder: Path, name: str = "testslurm", **extra: Any) -> Path:
    """A cluster config with one slurm profile: two one-core worker jobs on this node."""
    keys: dict[str, Any] = {
        "kind": '"slurm"', "cores": 1, "memory": '"1GB"', "jobs": 2,
        "walltime": '"00:20:00"', "log_directory": f'"{slurm.root / "jobs"}"',
        "local_directory": f'"{folder / "scratch"}"', "timeout": 120, **extra}
    lines = [f"[profiles.{name}]", *(f"{k} = {v}" for k, v in keys.items())]
    return write_toml(folder / "clusters.toml", "\n".join(lines) + "\n")


def _no_jobs_left(slurm: Any) -> None:
    wait_for(lambda: not slurm.jobs(), 90, "the profile's worker jobs to end")


@pytest.fixture(scope="module")
def configs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("slurm-configs")
    return {name: write_toml(root / f"{name}.toml", text)
            for name, text in (("sweep", SWEEP), ("long", LONG), ("walk", WALK))}


class LocalResults:
    """The local cluster's results of the same configs (the reference), each computed
    once, when a test first asks for it."""

    def __init__(self, configs: dict[str, Path], out: Path) -> None:
        self.configs, self.out, self.done = configs, out, set()

    def get(self, name: str, folder: str) -> Path:
        if name not in self.done:
            command = "walk-forward" if name == "walk" else "run"
            chunk = ["--chunk-size", "4"] if name != "walk" else []
            res = run_cli(command, self.configs[name], "--workers", "2", "--out", self.out,
                          *chunk, "--no-progress", timeout=300)
            assert res.returncode == 0, f"the local reference failed:\n{res.stderr[-3000:]}"
            self.done.add(name)
        return self.out / folder


@pytest.fixture(scope="module")
def local_results(configs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
                  ) -> LocalResults:
    return LocalResults(configs, tmp_path_factory.mktemp("slurm-local"))


@pytest.fixture(scope="module")
def slurm_sweep(slurm: Any, configs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
                ) -> dict[str, Any]:
    """``backsweep run --cluster testslurm``: the CLI starts a SLURMCluster whose two
    worker jobs run on the private SLURM."""
    root = tmp_path_factory.mktemp("slurm-run")
    config = _profile(slurm, root)
    res = run_cli("run", configs["sweep"], "--cluster", "testslurm", "--cluster-config",
                  config, "--out", root / "out", "--chunk-size", "4", "--no-progress",
                  timeout=300)
    _no_jobs_left(slurm)
    return {"res": res, "root": root / "out" / "slurm_demo", "slurm": slurm}


# ------------------------------------------------------------------- dashboards
def _listen_sockets(pid: int) -> list[tuple[str, int]]:
    import psutil

    return [(c.laddr.ip, c.laddr.port) for c in psutil.Process(pid).net_connections("tcp")
            if c.status == psutil.CONN_LISTEN]


def test_profile_dashboards_listen_on_127_0_0_1(slurm: Any, tmp_path: Path) -> None:
    """The printed dashboard link is where the dashboard listens (127.0.0.1 unless the
    profile says otherwise: not the node address the scheduler listens on), and every
    HTTP server of the worker jobs listens on 127.0.0.1 only (their comm ports, which the
    scheduler must reach, excepted)."""
    config = _profile(slurm, tmp_path)
    with cluster.connect("testslurm", config=config) as client:
        client.wait_for_workers(2, timeout=120)
        link = client.dashboard_link
        match = re.fullmatch(r"http://([^:/]+):(\d+)/status", link or "")
        assert match, f"not a dashboard link: {link!r}"
        host, port = match.group(1), int(match.group(2))
        assert host == "127.0.0.1", f"link {link} is not where the dashboard listens"
        assert listening(port, "127.0.0.1")
        assert not listening(port, node_ip()), "the dashboard listens on the node address"

        workers = client.scheduler_info(n_workers=-1)["workers"]
        pids = client.run(os.getpid)
        for addr, info in workers.items():
            comm = {int(addr.rsplit(":", 1)[1])}
            if info.get("nanny"):
                comm.add(int(info["nanny"].rsplit(":", 1)[1]))
            import psutil

            worker = psutil.Process(pids[addr])
            for proc in (worker, worker.parent()):
                for ip, p in _listen_sockets(proc.pid):
                    assert p in comm or ip == "127.0.0.1", (
                        f"{proc.name()} {proc.pid} of worker {addr} listens on {ip}:{p}, "
                        "not 127.0.0.1")
        assert len(slurm.running_jobs()) == 2
    _no_jobs_left(slurm)


def test_profile_may_open_the_worker_dashboards(slurm: Any, tmp_path: Path) -> None:
    """``worker_extra_args`` of the profile that set the HTTP address win."""
    config = _profile(slurm, tmp_path, jobs=1,
                      worker_extra_args='["--dashboard-address", ":0"]')
    with cluster.connect("testslurm", config=config) as client:
        client.wait_for_workers(1, timeout=120)
        addresses = client.run(lambda dask_worker: [
            s.getsockname()[0] for s in dask_worker.http_server._sockets.values()])
        assert all(ips == ["0.0.0.0"] for ips in addresses.values()), addresses
    _no_jobs_left(slurm)


# ------------------------------------------------------------------------ sweeps
def test_sweep_through_the_slurm_profile_equals_the_local_one(
        slurm_sweep: dict[str, Any], local_results: LocalResults) -> None:
    res = slurm_sweep["res"]
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr[-3000:]}"
    assert read_meta(slurm_sweep["root"])["status"] == "complete"
    reference = local_results.get("sweep", "slurm_demo")
    same_runs(read_runs(slurm_sweep["root"]), read_runs(reference))


def test_sweep_prints_the_dashboard_link_that_listens(slurm_sweep: dict[str, Any]) -> None:
    res = slurm_sweep["res"]
    links = re.findall(r"dashboard: (\S+)", res.stderr)
    assert links, f"no dashboard line in:\n{res.stderr[-2000:]}"
    assert all(link.startswith("http://127.0.0.1:") for link in links), links


def test_sweep_summary_counts_the_worker_threads_it_ran_on(
        slurm_sweep: dict[str, Any]) -> None:
    """Two one-core worker jobs computed the sweep: the summary line and sweep.json say
    so (the jobs join after the scheduler starts, so a count taken before the first task
    said 0)."""
    res = slurm_sweep["res"]
    match = re.search(r"computed [\d,]+ runs in [\d.]+ s on (\d+) worker threads?", res.stdout)
    assert match, f"no 'computed ...' line in:\n{res.stdout}"
    threads = int(match.group(1))
    assert 1 <= threads <= 2, res.stdout
    stored = read_meta(slurm_sweep["root"])["compute_last_call"]["worker_threads"]
    assert 1 <= stored <= 2


def test_worker_job_cancelled_mid_sweep(slurm: Any, configs: dict[str, Path],
                                        local_results: LocalResults, tmp_path: Path) -> None:
    """``scancel`` of one of the two worker jobs while the sweep runs: the other job
    finishes the work (Dask retries the lost tasks) and every run is stored exactly once,
    equal to the local cluster's table."""
    config = _profile(slurm, tmp_path)
    root = tmp_path / "out" / "slurm_long"
    proc = start_cli("run", configs["long"], "--cluster", "testslurm", "--cluster-config",
                     config, "--out", tmp_path / "out", "--chunk-size", "4", "--no-progress",
                     log=tmp_path / "cli.log")
    try:
        wait_for(lambda: len(slurm.running_jobs()) == 2 or proc.poll() is not None, 120,
                 "two running worker jobs")
        wait_for(lambda: len(part_files(root)) >= 10 or proc.poll() is not None, 240,
                 "the first chunks on disk")
        assert proc.poll() is None, (tmp_path / "cli.log").read_text()[-3000:]
        jobs = slurm.running_jobs()
        assert len(jobs) == 2, jobs
        done_before = len(part_files(root))
        slurm.cancel(jobs[0])
        wait_for(lambda: jobs[0] not in slurm.jobs(), 60, "the cancelled job to end")
        rc = proc.wait(timeout=300)
    finally:
        kill_group(proc, signal.SIGKILL)
    log = (tmp_path / "cli.log").read_text()
    assert rc == 0, log[-3000:]
    assert done_before < LONG_RUNS // 4, "the sweep ended before the cancel"
    runs = read_runs(root)
    assert runs.height == LONG_RUNS and runs["run_id"].n_unique() == LONG_RUNS
    same_runs(runs, read_runs(local_results.get("long", "slurm_long")))
    _no_jobs_left(slurm)


def test_walk_forward_through_the_slurm_profile(slurm: Any, configs: dict[str, Path],
                                                local_results: LocalResults,
                                                tmp_path: Path) -> None:
    config = _profile(slurm, tmp_path)
    res = run_cli("walk-forward", configs["walk"], "--cluster", "testslurm",
                  "--cluster-config", config, "--out", tmp_path / "out", "--no-progress",
                  timeout=300)
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr[-3000:]}"
    ours, local = tmp_path / "out" / "slurm_wf", local_results.get("walk", "slurm_wf")
    folds = pl.read_parquet(ours / "folds.parquet")
    assert folds.height >= 3
    assert_frame_equal(folds, pl.read_parquet(local / "folds.parquet"), check_exact=True)
    assert_frame_equal(pl.read_parquet(ours / "oos_equity.parquet"),
                       pl.read_parquet(local / "oos_equity.parquet"), check_exact=True)
    _no_jobs_left(slurm)


def test_fixture_cluster_is_private(slurm: Any) -> None:
    """The fixture's SLURM answers on its own config and munge socket only."""
    conf = Path(os.environ["SLURM_CONF"])
    assert conf == slurm.conf and conf.is_file()
    assert f"AuthInfo=socket={slurm.socket}" in conf.read_text()
    out = subprocess.run(["sinfo", "-h", "-o", "%P %a"], capture_output=True, text=True,
                         timeout=30, env={**os.environ, **slurm.env}, check=True)
    assert out.stdout.split() == ["debug*", "up"]
