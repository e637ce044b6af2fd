"""cluster.connect against real processes on 127.0.0.1: a `dask scheduler` with two
`dask worker`s reached by address, bare host:port, scheduler file and TOML profile; a local
cluster; unreachable schedulers fail fast with a ClusterError; profiles are validated."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from test_cluster_support import (
    DaskProcesses,
    closed_port,
    wait_for_worker_names,
)

import cluster
from cluster import ClusterError
from cluster.profiles import (
    kubernetes_kwargs,
    load_profiles,
    require_extra,
    slurm_kwargs,
    ssh_kwargs,
)


@pytest.fixture(scope="module")
def dask_procs(tmp_path_factory):
    procs = DaskProcesses(tmp_path_factory.mktemp("connect"))
    try:
        procs.start_scheduler()
        procs.add_worker("a")
        procs.add_worker("b")
        yield procs
    finally:
        procs.stop()


def _check_client(client, n_workers=2):
    wait_for_worker_names(client, {"a", "b"} if n_workers == 2 else set())
    assert client.submit(sum, [1, 2]).result(timeout=30) == 3


def test_connect_by_address_keeps_the_scheduler(dask_procs) -> None:
    with cluster.connect(dask_procs.address, timeout=10) as client:
        _check_client(client)
        assert client.scheduler.address == dask_procs.address
    # closing the client left the scheduler running: connect again, bare host:port
    bare = dask_procs.address.removeprefix("tcp://")
    with cluster.connect(bare, timeout=10) as client:
        _check_client(client)
    assert dask_procs.scheduler.alive()


def test_connect_by_scheduler_file(dask_procs) -> None:
    with cluster.connect(f"scheduler-file:{dask_procs.scheduler_file}", timeout=10) as client:
        _check_client(client)


def test_environment_check_passes_on_real_workers(dask_procs) -> None:
    with cluster.connect(dask_procs.address, timeout=10) as client:
        wait_for_worker_names(client, {"a", "b"})
        versions = cluster.check_environment(client)
    assert set(cluster.VERSIONED_PACKAGES) <= set(versions)
    assert versions["backsweep"] and versions["numba"] and versions["polars"]


def test_connect_by_profile(dask_procs, tmp_path, monkeypatch) -> None:
    config = tmp_path / "clusters.toml"
    config.write_text(f"""
[profiles.lab]
address = "{dask_procs.address}"
timeout = 10
wait_for_workers = 2

[profiles.viafile]
kind = "scheduler-file"
scheduler_file = "{dask_procs.scheduler_file.name}"
""")
    # the scheduler file path is relative to the config file: copy it beside the config
    (tmp_path / dask_procs.scheduler_file.name).write_text(dask_procs.scheduler_file.read_text())
    with cluster.connect("lab", config=config) as client:
        _check_client(client)
    monkeypatch.setenv(cluster.CONFIG_ENV, str(config))
    with cluster.connect("profile:viafile") as client:
        _check_client(client)
    assert dask_procs.scheduler.alive()


def test_local_cluster_is_single_threaded_and_private() -> None:
    with cluster.connect("local", workers=1) as client:
        assert list(client.nthreads().values()) == [1]
        env = client.run(lambda: __import__("os").environ.get("NUMBA_NUM_THREADS"))
        assert list(env.values()) == ["1"]
        link = client.dashboard_link or ""
        assert "0.0.0.0" not in link and ("127.0.0.1" in link or not link)
        sched = client.scheduler.address
    # the local cluster was ours: it is gone
    with pytest.raises(ClusterError), cluster.connect(sched, timeout=1):
        pass


def test_local_cluster_runs_lean_but_keeps_the_users_settings() -> None:
    """The local cluster's scheduler and worker processes run with LEAN_LOCAL_CONFIG
    (read in the processes themselves), except where the user set a key; the client's own
    config is left as it was."""
    import dask.config

    from cluster.connect import LEAN_LOCAL_CONFIG

    def worker_config() -> dict:
        import dask.config

        return {k: dask.config.get(k) for k in LEAN_LOCAL_CONFIG}

    def scheduler_state(dask_scheduler) -> tuple[bool, float]:
        return "stealing" in dask_scheduler.extensions, dask_scheduler._tick_interval

    lean = {k: v for k, (_, v) in LEAN_LOCAL_CONFIG.items()}
    with cluster.connect("local", workers=1, dashboard=False) as client:
        assert list(client.run(worker_config).values()) == [lean]
        assert client.run_on_scheduler(scheduler_state) == (False, 0.2)
    assert {k: dask.config.get(k) for k in LEAN_LOCAL_CONFIG} == {
        k: default for k, (default, _) in LEAN_LOCAL_CONFIG.items()}
    with dask.config.set({"distributed.admin.tick.interval": "50ms"}), \
            cluster.connect("local", workers=1, dashboard=False) as client:
        [seen] = client.run(worker_config).values()
        assert seen == lean | {"distributed.admin.tick.interval": "50ms"}
        assert client.run_on_scheduler(scheduler_state) == (False, 0.05)


def test_unreachable_scheduler_fails_within_the_timeout() -> None:
    address = f"tcp://127.0.0.1:{closed_port()}"
    started = time.monotonic()
    with pytest.raises(ClusterError) as info, cluster.connect(address, timeout=2):
        pass
    elapsed = time.monotonic() - started
    assert elapsed < 120  # a hang guard, not a speed test
    assert address in str(info.value) and "2 s" in str(info.value)


def test_bad_targets_are_clear(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv(cluster.CONFIG_ENV, raising=False)
    with pytest.raises(ClusterError, match="does not exist"):
        with cluster.connect(f"scheduler-file:{tmp_path / 'none.json'}"):
            pass
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ClusterError, match="not a Dask scheduler file"):
        with cluster.connect(f"scheduler-file:{tmp_path / 'bad.json'}"):
            pass
    with pytest.raises(ClusterError, match="nor a profile") as info:
        with cluster.connect("nosuchprofile"):
            pass
    assert str(tmp_path / "backsweep" / "clusters.toml") in str(info.value)
    with pytest.raises(ClusterError, match="unsupported scheduler address"):
        with cluster.connect("http://127.0.0.1:8786"):
            pass
    with pytest.raises(ClusterError, match="tls_cert"):
        with cluster.connect("127.0.0.1:1", tls_ca_file=tmp_path / "ca.pem"):
            pass
    with pytest.raises(ClusterError, match="does not exist"):
        with cluster.connect("127.0.0.1:1", tls_ca_file=tmp_path / "ca.pem",
                             tls_cert=tmp_path / "c.pem"):
            pass
    for name in ("ca.pem", "c.pem"):
        (tmp_path / name).write_text("")
    with pytest.raises(ClusterError, match=r"not a TLS address; use tls://127\.0\.0\.1:1"):
        with cluster.connect("tcp://127.0.0.1:1", tls_ca_file=tmp_path / "ca.pem",
                             tls_cert=tmp_path / "c.pem"):
            pass
    with pytest.raises(ClusterError, match="cluster config file"):
        with cluster.connect("x", config=tmp_path / "missing.toml"):
            pass


def test_profile_validation(tmp_path) -> None:
    def load(text):
        path = tmp_path / "c.toml"
        path.write_text(text)
        return load_profiles(path)

    got = load('[profiles.a]\naddress = "h:1"\nca_file = "certs/ca.pem"\ncert = "/abs/c.pem"\n')
    a = got["a"]
    assert a.kind == "address"
    assert a.options["ca_file"] == str(tmp_path / "certs" / "ca.pem")
    assert a.options["cert"] == "/abs/c.pem"
    with pytest.raises(ClusterError, match="unknown kind 'yarn'"):
        load('[profiles.a]\nkind = "yarn"\n')
    with pytest.raises(ClusterError, match="needs hosts"):
        load('[profiles.a]\nkind = "ssh"\n')
    with pytest.raises(ClusterError, match="at least two host"):
        load('[profiles.a]\nkind = "ssh"\nhosts = ["only"]\n')
    with pytest.raises(ClusterError, match="unknown key"):
        load('[profiles.a]\naddress = "h:1"\nbogus = 1\n')
    with pytest.raises(ClusterError, match="TLS files apply"):
        load('[profiles.a]\nkind = "ssh"\nhosts = ["a", "b"]\nca_file = "x"\n')
    with pytest.raises(ClusterError, match="needs cores, memory"):
        load('[profiles.a]\nkind = "slurm"\n')
    with pytest.raises(ClusterError, match=r"\[profiles.NAME\]"):
        load('[lab]\naddress = "h:1"\n')
    with pytest.raises(ClusterError, match="cannot read"):
        load('[profiles.a\n')


def test_example_config_parses() -> None:
    example = Path(cluster.__file__).parent / "deploy" / "clusters.example.toml"
    profiles = load_profiles(example)
    assert {p.kind for p in profiles.values()} >= {"address", "ssh", "slurm", "kubernetes",
                                                    "scheduler-file", "local"}


def test_started_clusters_are_single_threaded_with_private_dashboards() -> None:
    ssh = ssh_kwargs({"hosts": ["h", "w"], "workers_per_host": 4,
                      "env": {"EXTRA": 1}, "connect_options": {"username": "me"}})
    assert ssh["worker_options"]["nthreads"] == 1
    assert ssh["worker_options"]["n_workers"] == 4
    assert ssh["worker_options"]["env"]["NUMBA_NUM_THREADS"] == "1"
    assert ssh["worker_options"]["env"]["EXTRA"] == "1"
    assert ssh["scheduler_options"]["dashboard_address"].startswith("127.0.0.1:")
    assert ssh["connect_options"] == {"username": "me", "connect_timeout": 20.0}
    kw, scale = slurm_kwargs({"cores": 8, "memory": "16GB", "queue": "q", "jobs": 3})
    assert kw["processes"] == 8 and scale == {"jobs": 3}
    assert "export NUMBA_NUM_THREADS=1" in kw["job_script_prologue"]
    assert kw["scheduler_options"]["dashboard_address"].startswith("127.0.0.1:")
    assert slurm_kwargs({"cores": 2, "memory": "1GB"}, workers=5)[1] == {"n": 5}
    # the workers' HTTP servers (dashboard, /metrics) listen on 127.0.0.1 by default ...
    assert ssh["worker_options"]["dashboard_address"] == "127.0.0.1:0"
    assert kw["worker_extra_args"][-2:] == ["--dashboard-address", "127.0.0.1:0"]
    # ... unless the profile says otherwise
    kw, _ = slurm_kwargs({"cores": 1, "memory": "1GB",
                          "worker_extra_args": ["--dashboard-address", ":8788", "--lifetime",
                                                "1h"]})
    assert kw["worker_extra_args"] == ["--dashboard-address", ":8788", "--lifetime", "1h"]
    assert ssh_kwargs({"hosts": ["h", "w"], "worker_options": {
        "dashboard_address": ":0"}})["worker_options"]["dashboard_address"] == ":0"
    k8s = kubernetes_kwargs({"image": "img:1", "env": {"A": "b"}})
    assert k8s["worker_command"] == "dask worker --nthreads 1"
    assert k8s["env"]["NUMBA_NUM_THREADS"] == "1" and k8s["env"]["A"] == "b"


def test_missing_extra_names_the_pip_extra(monkeypatch, tmp_path) -> None:
    for kind, module in (("ssh", "asyncssh"), ("slurm", "dask_jobqueue"),
                         ("kubernetes", "dask_kubernetes")):
        monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
        with pytest.raises(ClusterError, match=rf"pip install 'backsweep\[{kind}\]'"):
            require_extra(kind)
    config = tmp_path / "c.toml"
    config.write_text('[profiles.hpc]\nkind = "slurm"\ncores = 2\nmemory = "1GB"\n')
    with pytest.raises(ClusterError, match=r"backsweep\[slurm\]"):
        with cluster.connect("hpc", config=config):
            pass


def test_slurm_profile_without_sbatch_is_refused(tmp_path, monkeypatch) -> None:
    pytest.importorskip("dask_jobqueue", reason="backsweep[slurm] not installed")
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    config = tmp_path / "c.toml"
    config.write_text('[profiles.hpc]\nkind = "slurm"\ncores = 2\nmemory = "1GB"\n')
    with pytest.raises(ClusterError, match="sbatch"), cluster.connect("hpc", config=config):
        pass


def test_slurm_job_script(tmp_path) -> None:
    """The job script dask-jobqueue would submit for a profile (no SLURM needed)."""
    jq = pytest.importorskip("dask_jobqueue", reason="backsweep[slurm] not installed")
    kw, _ = slurm_kwargs({"cores": 4, "memory": "8GB", "queue": "compute",
                          "walltime": "01:00:00", "account": "proj"})
    # a throwaway local scheduler on 127.0.0.1 (dashboard too); no job is submitted
    kw["scheduler_options"].update(host="127.0.0.1", dashboard_address="127.0.0.1:0")
    with jq.SLURMCluster(**kw) as slurm:
        script = slurm.job_script()
    assert "#SBATCH -p compute" in script and "#SBATCH -A proj" in script
    assert "#SBATCH -t 01:00:00" in script
    assert "export NUMBA_NUM_THREADS=1" in script
    assert "--nworkers 4" in script and "--nthreads 1" in script


def test_kubernetes_without_credentials_fails_fast(tmp_path, monkeypatch) -> None:
    pytest.importorskip("dask_kubernetes", reason="backsweep[kubernetes] not installed")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path))
    config = tmp_path / "c.toml"
    config.write_text('[profiles.k8s]\nkind = "kubernetes"\nimage = "img:1"\n')
    started = time.monotonic()
    with pytest.raises(ClusterError, match="cannot start the kubernetes cluster"):
        with cluster.connect("k8s", config=config):
            pass
    assert time.monotonic() - started < 120  # a hang guard, not a speed test


def _node_ip() -> str:
    from slurm_fixtures import node_ip

    return node_ip()


@pytest.mark.parametrize("dashboard", ["127.0.0.1:0", ":0"])
def test_dashboard_link_is_where_the_dashboard_listens(tmp_path, dashboard) -> None:
    """A scheduler reached at this host's network address whose dashboard listens on
    127.0.0.1 only: Dask's link names the network address, where nothing answers;
    connect's client names 127.0.0.1. A dashboard on all interfaces keeps Dask's link."""
    from slurm_fixtures import listening
    from test_cluster_support import DASK, Proc, wait_for

    ip = _node_ip()
    sched_file = tmp_path / "scheduler.json"
    proc = Proc([*DASK, "scheduler", "--host", ip, "--port", "0", "--dashboard-address",
                 dashboard, "--scheduler-file", str(sched_file)], tmp_path / "sched.log")
    try:
        wait_for(lambda: sched_file.exists() or not proc.alive(), 60, "the scheduler")
        with cluster.connect(f"scheduler-file:{sched_file}", timeout=20) as client:
            assert client.scheduler.address.startswith(f"tcp://{ip}:")
            link = client.dashboard_link
            port = client.scheduler_info()["services"]["dashboard"]
            expected_host = "127.0.0.1" if dashboard.startswith("127.") else ip
            assert link == f"http://{expected_host}:{port}/status"
            assert listening(port, expected_host)
            if dashboard.startswith("127."):
                # from the scheduler's own sockets: another process of the suite may hold
                # the same port number on another address
                import psutil

                own = [c.laddr.ip for c in psutil.Process(proc.popen.pid).net_connections("tcp")
                       if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
                assert own == ["127.0.0.1"], own
    finally:
        proc.stop()


def test_local_cluster_http_servers_listen_on_127_0_0_1() -> None:
    """Every listening socket of a local cluster (scheduler, nannies, workers: comm ports
    and HTTP servers) is on 127.0.0.1."""
    import os

    import psutil

    with cluster.connect("local", workers=2) as client:
        pids = {os.getpid(), *client.run(os.getpid).values()}
        pids |= {psutil.Process(pid).ppid() for pid in list(pids - {os.getpid()})}
        for pid in pids:
            for conn in psutil.Process(pid).net_connections("tcp"):
                if conn.status == psutil.CONN_LISTEN:
                    assert conn.laddr.ip == "127.0.0.1", (pid, conn)


CLUSTER_DIR = Path(cluster.__file__).parent


def _cluster_imports() -> dict[str, set[str]]:
    """{module: modules of backsweep's packages it imports (anywhere in its code)}."""
    import ast

    graph: dict[str, set[str]] = {}
    for path in sorted(CLUSTER_DIR.glob("*.py")):
        name = "cluster" if path.stem == "__init__" else f"cluster.{path.stem}"
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[name] = {m for m in found
                       if m.split(".")[0] in ("cluster", "sweep", "strategies", "engine")}
    return graph


def test_cluster_imports_point_one_way() -> None:
    """cluster imports nothing of sweep, strategies or engine (in any function either);
    within the package, imports form no cycle and profiles never import connect (one
    dispatcher: connect turns targets into clients, profiles only read and build)."""
    graph = _cluster_imports()
    outside = {m: sorted(i for i in deps if not i.startswith("cluster"))
               for m, deps in graph.items()}
    assert not any(outside.values()), outside
    assert "cluster.connect" not in graph["cluster.profiles"]
    assert graph["cluster.base"] == set()
    # no cycle: repeatedly drop modules that import nothing left
    left = {m: {d for d in deps if d in graph and d != "cluster"} for m, deps in graph.items()
            if m != "cluster"}
    while left:
        leaves = [m for m, deps in left.items() if not deps & set(left)]
        assert leaves, f"import cycle among {sorted(left)}"
        for m in leaves:
            del left[m]
    # and at run time: importing cluster loads none of the other packages
    out = __import__("subprocess").run(
        [sys.executable, "-c", "import sys, cluster; print(sorted({m.split('.')[0] for m in "
         "sys.modules} & {'engine', 'strategies', 'sweep'}))"],
        capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_every_target_kind_goes_through_one_dispatcher(dask_procs, tmp_path) -> None:
    """Address, bare host:port, scheduler file, address profile, scheduler-file profile,
    a Client and a Cluster all give the same scheduler through cluster.connect; only
    what connect started is closed."""
    from distributed import Client, LocalCluster

    config = tmp_path / "clusters.toml"
    config.write_text(f'[profiles.lab]\naddress = "{dask_procs.address}"\n'
                      f'[profiles.file]\nscheduler_file = "{dask_procs.scheduler_file}"\n')
    targets = [dask_procs.address, dask_procs.address.removeprefix("tcp://"),
               f"scheduler-file:{dask_procs.scheduler_file}", "lab", "profile:file"]
    for target in targets:
        with cluster.connect(target, config=config, timeout=10) as client:
            assert client.scheduler.address == dask_procs.address, target
    with Client(dask_procs.address, timeout=10) as mine:
        with cluster.connect(mine) as client:
            assert client is mine
        assert mine.status == "running"  # not closed: connect did not start it
    with LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as local:
        with cluster.connect(local) as client:
            assert client.submit(sum, [1, 2]).result(timeout=30) == 3
        assert local.status.name == "running"
    with pytest.raises(ClusterError, match="not a scheduler address"):
        config.write_text('[profiles.bad]\naddress = "lab"\n')
        with cluster.connect("bad", config=config):
            pass


def test_a_closing_worker_logs_a_failed_heartbeat_without_the_traceback() -> None:
    """WorkerSetup's teardown (run as a worker starts closing, before its connections
    close): a heartbeat that then fails is expected, and is logged in one line, not with
    the traceback a local worker would print on the user's terminal; while the worker
    runs, the traceback stays."""
    import io
    import logging

    from distributed import Client, LocalCluster

    from cluster.setup import WorkerSetup, _ClosingHeartbeat

    log = logging.getLogger("distributed.worker")
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    log.addHandler(handler)

    def logged(message: str) -> str:
        out.seek(0)
        out.truncate()
        try:
            raise OSError("Stream is closed")
        except OSError:
            log.error(message, exc_info=True)
        return out.getvalue()

    def failed_heartbeat() -> str:
        return logged("Failed to communicate with scheduler during heartbeat.")

    try:
        with LocalCluster(n_workers=1, processes=False,
                          dashboard_address="127.0.0.1:0") as local, Client(local) as client:
            client.register_plugin(WorkerSetup())
            client.register_plugin(WorkerSetup())  # the next sweep's: replaces the first
            assert "Traceback" in failed_heartbeat()  # a running worker keeps it
        text = failed_heartbeat()
        assert "Failed to communicate with scheduler during heartbeat." in text
        assert "Traceback" not in text
        assert "Traceback" in logged("Unexpected exception during heartbeat.")  # others keep it
        assert sum(isinstance(f, _ClosingHeartbeat) for f in log.filters) == 1
    finally:
        log.removeHandler(handler)
        for f in [f for f in log.filters if isinstance(f, _ClosingHeartbeat)]:
            log.removeFilter(f)
