"""The environment check against a worker that genuinely reports another package version.

The odd worker is a real `dask worker` process whose PYTHONPATH starts with a folder holding
``polars-0.0.1.dist-info/METADATA``: in that process importlib.metadata reports polars
0.0.1 (polars itself still imports). The check code runs unmodified.
"""

from __future__ import annotations

from importlib import metadata

import pytest
from test_cluster_support import (
    DaskProcesses,
    fake_distribution,
    wait_for,
    wait_for_worker_names,
)

import cluster
from cluster import ClusterError
from cluster.environment import compare_versions


@pytest.fixture(scope="module")
def env_procs(tmp_path_factory):
    root = tmp_path_factory.mktemp("environment")
    procs = DaskProcesses(root)
    procs.fake = fake_distribution(root / "fake-site", "polars", "0.0.1")
    try:
        procs.start_scheduler()
        procs.add_worker("good")
        yield procs
    finally:
        procs.stop()


def test_a_worker_with_another_polars_is_named(env_procs) -> None:
    real = metadata.version("polars")
    with cluster.connect(env_procs.address, timeout=10) as client:
        wait_for_worker_names(client, {"good"})
        assert cluster.check_environment(client)["polars"] == real
        env_procs.add_worker("odd", env={"PYTHONPATH": str(env_procs.fake)})
        names = wait_for_worker_names(client, {"good", "odd"})
        with pytest.raises(ClusterError) as info:
            cluster.check_environment(client)
        text = str(info.value)
        assert "polars: client " + real in text
        assert f"0.0.1 on worker {names['odd']} (name 'odd')" in text
        assert f"{real} on 1 other worker(s)" in text
        assert "numba" not in text and "numpy" not in text  # only what differs
        # prepare() refuses the same way, before registering anything
        with pytest.raises(ClusterError, match="polars"):
            cluster.prepare(client)
        plugins = client.run_on_scheduler(lambda dask_scheduler: list(
            dask_scheduler.worker_plugins))
        assert cluster.setup.SETUP_PLUGIN not in plugins
        env_procs.stop_worker("odd")


def test_an_odd_worker_joining_later_leaves(env_procs) -> None:
    """After prepare(), the setup plugin checks each joining worker against the client's
    versions: a worker with another polars leaves instead of taking tasks."""
    with cluster.connect(env_procs.address, timeout=10) as client:
        wait_for(lambda: set(w["name"] for w in client.scheduler_info(n_workers=-1)[
            "workers"].values()) == {"good"}, 30, "the odd worker to be gone")
        cluster.prepare(client)
        late = env_procs.add_worker("late-odd", env={"PYTHONPATH": str(env_procs.fake)})
        wait_for(lambda: not late.alive(), 90, "the late odd worker to exit")
        log = late.output()
        assert "polars" in log and "0.0.1" in log and "leaves the cluster" in log
        names = {w["name"] for w in client.scheduler_info(n_workers=-1)["workers"].values()}
        assert names == {"good"}
        assert client.submit(sum, [2, 3]).result(timeout=30) == 5


def test_compare_versions_lines() -> None:
    client = {"python": "3.11.7.final.0", "numba": "0.60.0", "polars": "1.0"}
    workers = {
        "tcp://w1:1": {"python": "3.11.9.final.0", "numba": "0.60.0", "polars": "1.0"},
        "tcp://w2:1": {"python": "3.12.1.final.0", "numba": None, "polars": "1.0"},
    }
    lines = compare_versions(client, workers, {"python": "3.11.1", "dask": "x"},
                             packages=("numba", "polars", "dask"),
                             names={"tcp://w2:1": "gpu-2"})
    assert lines[0] == ("python: client 3.11; 3.12 on worker tcp://w2:1 (name 'gpu-2'); "
                        "3.11 on 1 other worker(s)")
    assert lines[1].startswith("numba: client 0.60.0; not installed on worker tcp://w2:1")
    assert lines[2] == ("dask: client not installed; x on the scheduler; "
                        "not installed on all 2 worker(s)")
    assert len(lines) == 3
