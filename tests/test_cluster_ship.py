"""User code on real workers: a strategy file and a strategy package from tmp_path (not
installed anywhere) are shipped, imported on every worker, also on workers that join
afterwards; the setup plugin makes workers single-threaded and warms the JIT; workers that
join mid-stream take tasks and a SIGKILLed worker loses none."""

from __future__ import annotations

import shutil
import signal
import sys
import time
import uuid
from pathlib import Path

import cloudpickle
import pytest
from distributed import Event
from test_cluster_support import (
    DaskProcesses,
    wait_for,
    wait_for_worker_names,
    write_user_package,
)

import cluster
import strategies
from cluster import ClusterError
from cluster.setup import SETUP_PLUGIN, choose_numba_cache_dir, default_cache_dir
from sweep.warmup import warm_up

# the functions below run on workers, which cannot import this test module
cloudpickle.register_pickle_by_value(sys.modules[__name__])
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "user_strategy.py"


@pytest.fixture(scope="module")
def ship_procs(tmp_path_factory):
    procs = DaskProcesses(tmp_path_factory.mktemp("ship"))
    try:
        procs.start_scheduler()
        procs.add_worker("a")
        procs.add_worker("b")
        yield procs
    finally:
        procs.stop()


@pytest.fixture(scope="module")
def user_code(tmp_path_factory):
    root = tmp_path_factory.mktemp("user-code")
    rsi = root / "bs_user_rsi.py"
    shutil.copy(EXAMPLE, rsi)
    return {"file": rsi, "package": write_user_package(root / "v1", 1), "root": root}


def _ensure_workers(procs, *names):
    """Start each named worker that is not running (an earlier test may have stopped or
    killed it): every test sets up the workers it needs, in any order."""
    for name in names:
        proc = procs.workers.get(name)
        if proc is None or not proc.alive():
            if proc is not None:
                procs.stop_worker(name)
            procs.add_worker(name)


def _scheduler_names(client):
    return {w["name"] for w in client.scheduler_info(n_workers=-1)["workers"].values()}


def _names():
    import strategies

    return strategies.names()


def _origin(module):
    return getattr(sys.modules.get(module), "__file__", None)


def test_modules_are_imported_on_every_worker_and_on_late_ones(ship_procs, user_code):
    _ensure_workers(ship_procs, "a", "b")
    if "c" in ship_procs.workers:  # left by another test: "c" must join after shipping
        ship_procs.stop_worker("c")
    with cluster.connect(ship_procs.address, timeout=10) as client:
        wait_for_worker_names(client, {"a", "b"})
        wait_for(lambda: "c" not in _scheduler_names(client), 60, "worker c to leave")
        versions = cluster.prepare(client, modules=[user_code["file"], user_code["package"]],
                                   warm_up=warm_up, on_unload=strategies.unregister_module)
        assert versions["backsweep"]
        for names in client.run(_names).values():
            assert {"rsi_reversal", "pkg_ma_v1"} <= set(names)
        origins = client.run(_origin, "bs_user_rsi")
        for _addr, origin in origins.items():
            assert "backsweep-modules" in origin and str(user_code["root"]) not in origin
        # a worker that joins after shipping gets the modules from the scheduler
        ship_procs.add_worker("c")
        late = wait_for_worker_names(client, {"a", "b", "c"})["c"]
        assert {"rsi_reversal", "pkg_ma_v1"} <= set(client.run(_names, workers=[late])[late])

        def evaluate_user_strategy():
            import sweep
            from engine.data import synthetic_panel

            panel = synthetic_panel(n_assets=5, n_bars=300, seed=3)
            out = sweep.evaluate(panel, "rsi_reversal", {"period": [5, 10]})
            out2 = sweep.evaluate(panel, "pkg_ma_v1", {"fast": [5], "slow": [20]})
            return out.height, out2.height, float(out["sharpe"].is_finite().sum())

        rows, rows2, finite = client.submit(evaluate_user_strategy, workers=[late],
                                            pure=False).result(timeout=120)
        assert (rows, rows2) == (2, 1) and finite == 2

        def setup_report(dask_worker):
            import numba

            report = dask_worker.plugins[SETUP_PLUGIN].report
            return report, numba.config.NUMBA_NUM_THREADS, __import__("os").environ[
                "NUMBA_NUM_THREADS"]

        for report, threads, env in client.run(setup_report).values():
            assert threads == 1 and env == "1" and report["numba_threads"] == 1
            assert report["warm_up"]["errors"] == {}
            assert {"backtest", "ma_cross", "top_n"} <= set(report["warm_up"]["seconds"])


def test_shipping_a_changed_package_replaces_it(ship_procs, user_code, tmp_path):
    v2 = write_user_package(tmp_path, 2)
    _ensure_workers(ship_procs, "a", "b")
    with cluster.connect(ship_procs.address, timeout=10) as client:
        wait_for_worker_names(client, {"a", "b"})
        unload = strategies.unregister_module
        cluster.ship_modules(client, [user_code["package"]], on_unload=unload)  # v1 again
        assert cluster.ship_modules(client, [v2], on_unload=unload) == ["bs_userpkg"]

        def state():
            import sys

            import strategies

            return sys.modules["bs_userpkg"].VERSION, [n for n in strategies.names()
                                                       if n.startswith("pkg_ma")]

        for version, names in client.run(state).values():
            assert version == 2 and names == ["pkg_ma_v2"]


def test_a_module_that_fails_to_import_is_refused(ship_procs, user_code, tmp_path):
    bad = tmp_path / "bs_broken_strategy.py"
    bad.write_text("import strategies\nx = 1 / 0\n")
    _ensure_workers(ship_procs, "a", "b")
    with cluster.connect(ship_procs.address, timeout=10) as client:
        wait_for_worker_names(client, {"a", "b"})
        cluster.ship_modules(client, [user_code["file"]])  # a good one, shipped before
        with pytest.raises(ClusterError) as info:
            cluster.ship_modules(client, [bad])
        text = str(info.value)
        assert str(bad) in text and "ZeroDivisionError" in text and "worker tcp://" in text
        plugins = client.run_on_scheduler(
            lambda dask_scheduler: list(dask_scheduler.worker_plugins))
        assert "backsweep-module-bs_broken_strategy" not in plugins
        assert "backsweep-module-bs_user_rsi" in plugins


def test_bad_module_paths(tmp_path):
    for name in ("json.py", "strategies.py", "numpy.py"):
        (tmp_path / name).write_text("")
        with pytest.raises(ClusterError, match="clashes"):
            cluster.ship.collect_module(tmp_path / name)
    (tmp_path / "data.csv").write_text("")
    with pytest.raises(ClusterError, match=r"\.py file or a package"):
        cluster.ship.collect_module(tmp_path / "data.csv")
    (tmp_path / "notpkg").mkdir()
    with pytest.raises(ClusterError, match="__init__"):
        cluster.ship.collect_module(tmp_path / "notpkg")
    with pytest.raises(ClusterError, match="no such file"):
        cluster.ship.collect_module(tmp_path / "missing.py")
    (tmp_path / "bad-name.py").write_text("")
    with pytest.raises(ClusterError, match="not a valid module name"):
        cluster.ship.collect_module(tmp_path / "bad-name.py")
    pkg = write_user_package(tmp_path, 1)
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "x.pyc").write_bytes(b"")
    name, files = cluster.ship.collect_module(pkg)
    assert name == "bs_userpkg"
    assert sorted(files) == ["bs_userpkg/__init__.py", "bs_userpkg/strat.py"]


def test_numba_cache_dir_choice(tmp_path, monkeypatch):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert choose_numba_cache_dir("/explicit") == "/explicit"
    assert choose_numba_cache_dir(package_dir=tmp_path) is None  # writable: beside sources
    # a package folder this user cannot write: the per-user cache folder
    assert choose_numba_cache_dir(package_dir=tmp_path / "absent") == str(
        tmp_path / "xdg" / "backsweep" / "numba")
    assert default_cache_dir() == tmp_path / "xdg" / "backsweep" / "numba"
    monkeypatch.setenv("NUMBA_CACHE_DIR", "/from/env")
    assert choose_numba_cache_dir(package_dir=tmp_path / "absent") == "/from/env"


def test_workers_join_and_die_mid_stream_without_losing_tasks(ship_procs, user_code):
    """Elastic, from the cluster side: 100 tasks that need the shipped strategy; a worker
    joins while they run and takes some; another is SIGKILLed (nanny and all) while they
    run; every task completes exactly once (Dask retries what the dead worker held).
    All but the first three tasks wait for an event set once the new worker has joined
    and the other is killed: a loaded machine may start a worker process slower than
    sleeping tasks run out, and the joining worker must still find work."""
    _ensure_workers(ship_procs, "a", "b", "c")
    if "d" in ship_procs.workers:
        ship_procs.stop_worker("d")
    with cluster.connect(ship_procs.address, timeout=10) as client:
        cluster.prepare(client, modules=[user_code["file"]])
        wait_for_worker_names(client, {"a", "b", "c"})

        go = Event(f"ship-go-{uuid.uuid4().hex}", client=client)

        def task(i):
            import time as _time

            from distributed import get_worker

            import strategies

            strategies.get("rsi_reversal")  # the shipped module is there
            if i >= 3 and not go.wait(timeout=120):
                raise TimeoutError("the test never let the tasks go")
            _time.sleep(0.25)
            return i, get_worker().name

        n = 100
        futures = client.map(task, range(n), retries=3, pure=False)
        wait_for(lambda: sum(f.done() for f in futures) >= 3, 60, "the first tasks")
        ship_procs.add_worker("d")
        wait_for_worker_names(client, {"d"})
        assert sum(f.done() for f in futures) == 3  # the rest wait: d joins mid-stream
        ship_procs.workers["a"].signal_group(signal.SIGKILL)  # nanny and worker
        go.set()
        started = time.monotonic()
        results = client.gather(futures)
        assert time.monotonic() - started < 120
        assert sorted(i for i, _ in results) == list(range(n))
        by = {name for _, name in results}
        assert "d" in by, f"the worker that joined mid-stream took no task: {by}"
        wait_for(lambda: "a" not in {w["name"] for w in client.scheduler_info(
            n_workers=-1)["workers"].values()}, 60, "the killed worker to be removed")
        assert {"rsi_reversal"} <= set(
            client.run(_names, workers=[wait_for_worker_names(client, {"d"})["d"]]).popitem()[1])
    ship_procs.workers.pop("a").stop()
