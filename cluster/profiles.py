"""Named cluster profiles from a TOML config file.

The file (default ``~/.config/backsweep/clusters.toml``, or ``$XDG_CONFIG_HOME/backsweep/
clusters.toml``; ``$BACKSWEEP_CLUSTER_CONFIG`` or ``connect(config=...)`` /
``--cluster-config`` point elsewhere) holds one ``[profiles.NAME]`` table a profile::

    [profiles.lab]                       # an existing scheduler, over TLS
    address = "tls://sched.lab:8786"
    ca_file = "~/.backsweep/ca.pem"
    cert = "~/.backsweep/client.pem"
    key = "~/.backsweep/client-key.pem"

    [profiles.boxes]                     # SSHCluster (extra: backsweep[ssh])
    kind = "ssh"
    hosts = ["head", "node1", "node2"]   # first = scheduler, the rest run workers
    workers_per_host = 8

    [profiles.hpc]                       # dask-jobqueue SLURMCluster (backsweep[slurm])
    kind = "slurm"
    queue = "compute"
    cores = 16
    memory = "64GB"
    walltime = "02:00:00"
    jobs = 4

    [profiles.k8s]                       # dask-kubernetes operator (backsweep[kubernetes])
    kind = "kubernetes"
    image = "ghcr.io/me/backsweep:0.1.0"
    n_workers = 8

``kind`` is inferred for ``address`` and ``scheduler_file`` profiles. Relative paths are
relative to the config file. Every kind starts its workers single-threaded with
``NUMBA_NUM_THREADS=1``, and no dashboard listens on all interfaces unless asked to.
See ``cluster/deploy/clusters.example.toml`` and docs/cluster.md.
"""

from __future__ import annotations

import os
import shutil
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster.base import WORKER_ENV, ClusterError, default_workers

__all__ = [
    "CONFIG_ENV",
    "EXTRAS",
    "KINDS",
    "LEAN_LOCAL_CONFIG",
    "STARTED_KINDS",
    "Profile",
    "build_cluster",
    "config_path",
    "get_profile",
    "kubernetes_kwargs",
    "lean_local_config",
    "load_profiles",
    "local_cluster",
    "require_extra",
    "slurm_kwargs",
    "ssh_kwargs",
]

CONFIG_ENV = "BACKSWEEP_CLUSTER_CONFIG"
KINDS = ("address", "scheduler-file", "local", "ssh", "slurm", "kubernetes")
# Kinds whose profile starts a cluster (closed when the connection ends); the other two
# point at a scheduler that runs already.
STARTED_KINDS = ("local", "ssh", "slurm", "kubernetes")
# Where the HTTP server of a worker that a profile starts listens (its dashboard, /health,
# /metrics): this host only, on a free port, unless the profile says otherwise.
WORKER_HTTP_ADDRESS = "127.0.0.1:0"
# The optional dependency behind each kind: (module to import, pip extra).
EXTRAS = {"ssh": ("asyncssh", "ssh"), "slurm": ("dask_jobqueue", "slurm"),
          "kubernetes": ("dask_kubernetes", "kubernetes")}

_COMMON = {"kind", "timeout", "wait_for_workers", "description"}
_TLS = {"ca_file", "cert", "key"}
_KEYS: dict[str, set[str] | None] = {   # None: any further key is passed to the cluster class
    "address": _COMMON | _TLS | {"address"},
    "scheduler-file": _COMMON | _TLS | {"scheduler_file"},
    "local": _COMMON | {"workers", "dashboard"},
    "ssh": _COMMON | {"hosts", "connect_options", "worker_options", "scheduler_options",
                      "remote_python", "workers_per_host", "env"},
    "slurm": None,
    "kubernetes": None,
}
_REQUIRED = {"address": ("address",), "scheduler-file": ("scheduler_file",),
             "ssh": ("hosts",), "slurm": ("cores", "memory"), "kubernetes": ("image",)}
_PATH_KEYS = {"ca_file", "cert", "key", "scheduler_file"}


@dataclass(frozen=True)
class Profile:
    """One ``[profiles.NAME]`` table: its kind and its options (paths already resolved)."""

    name: str
    kind: str
    options: Mapping[str, Any] = field(default_factory=dict)
    source: Path | None = None

    def where(self) -> str:
        return f"cluster profile {self.name!r}" + (f" ({self.source})" if self.source else "")


def config_path(config: str | os.PathLike[str] | None = None) -> Path:
    """The cluster config file: ``config``, else $BACKSWEEP_CLUSTER_CONFIG, else
    $XDG_CONFIG_HOME/backsweep/clusters.toml (``~/.config/backsweep/clusters.toml``)."""
    if config is not None:
        return Path(config).expanduser()
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or "~/.config"
    return Path(base).expanduser() / "backsweep" / "clusters.toml"


def load_profiles(config: str | os.PathLike[str] | None = None) -> dict[str, Profile]:
    """Every profile of the config file, validated; {} when the default file is absent."""
    path = config_path(config)
    explicit = config is not None or bool(os.environ.get(CONFIG_ENV))
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        if explicit:
            raise ClusterError(f"cluster config file {path} does not exist") from None
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ClusterError(f"cannot read cluster config file {path}: {exc}") from None
    unknown = set(raw) - {"profiles"}
    if unknown:
        raise ClusterError(
            f"{path}: unknown top-level key(s) {', '.join(sorted(unknown))}; profiles go "
            "in [profiles.NAME] tables"
        )
    tables = raw.get("profiles", {})
    if not isinstance(tables, dict):
        raise ClusterError(f"{path}: 'profiles' must be a table of [profiles.NAME] tables")
    return {name: _profile(name, table, path) for name, table in tables.items()}


def _profile(name: str, table: Any, source: Path) -> Profile:
    where = f"cluster profile {name!r} ({source})"
    if not isinstance(table, dict):
        raise ClusterError(f"{where}: expected a table, got {table!r}")
    kind = table.get("kind")
    if kind is None:
        kind = ("address" if "address" in table else
                "scheduler-file" if "scheduler_file" in table else None)
        if kind is None:
            raise ClusterError(f"{where}: no 'kind' (one of {', '.join(KINDS)}) and no "
                               "'address'")
    kind = str(kind).replace("_", "-")
    if kind == "k8s":
        kind = "kubernetes"
    if kind not in KINDS:
        raise ClusterError(f"{where}: unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
    allowed = _KEYS[kind]
    if allowed is not None and set(table) - allowed:
        bad = ", ".join(sorted(set(table) - allowed))
        hint = " (TLS files apply to address and scheduler-file profiles; configure TLS " \
               "for started clusters through Dask's distributed.comm.tls config)" \
            if set(table) & _TLS else ""
        raise ClusterError(f"{where}: unknown key(s) for kind {kind!r}: {bad}; allowed: "
                           f"{', '.join(sorted(allowed))}{hint}")
    missing = [k for k in _REQUIRED.get(kind, ()) if k not in table]
    if missing:
        raise ClusterError(f"{where}: kind {kind!r} needs {', '.join(missing)}")
    options = {k: v for k, v in table.items() if k != "kind"}
    for k in _PATH_KEYS & set(options):
        p = Path(str(options[k])).expanduser()
        options[k] = str(p if p.is_absolute() else source.parent / p)
    for k in ("timeout",):
        if k in options and not (isinstance(options[k], int | float) and options[k] > 0):
            raise ClusterError(f"{where}: {k} must be a positive number of seconds")
    if "wait_for_workers" in options and not (
            isinstance(options["wait_for_workers"], int) and options["wait_for_workers"] >= 0):
        raise ClusterError(f"{where}: wait_for_workers must be a whole number >= 0")
    if kind == "ssh":
        hosts = options["hosts"]
        if not (isinstance(hosts, list) and len(hosts) >= 2
                and all(isinstance(h, str) and h for h in hosts)):
            raise ClusterError(f"{where}: hosts must list at least two host names: the "
                               "scheduler's first, then one per worker host (repeat the "
                               "first to run workers there too)")
    return Profile(name, kind, options, source)


def require_extra(kind: str) -> Any:
    """Import the optional dependency behind ``kind`` or explain which extra to install."""
    import importlib

    module, extra = EXTRAS[kind]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ClusterError(
            f"{kind} clusters need the optional dependency {module!r} ({exc}); install it "
            f"with: pip install 'backsweep[{extra}]'"
        ) from None


def get_profile(name: str, config: str | os.PathLike[str] | None = None) -> Profile:
    profiles = load_profiles(config)
    if name in profiles:
        return profiles[name]
    path = config_path(config)
    known = ", ".join(sorted(profiles)) or "none"
    exists = "" if path.exists() else " (the file does not exist)"
    raise ClusterError(
        f"{name!r} is neither a scheduler address (tcp://host:port, tls://host:port, "
        f"host:port), scheduler-file:PATH, 'local', nor a profile in {path}{exists}; "
        f"profiles there: {known}. Set {CONFIG_ENV} or --cluster-config to use another file"
    )


# ---------------------------------------------------------------- the cluster builders
# A profile of a started kind becomes a Cluster object here; cluster.connect makes the
# client (and closes the cluster when the connection ends).
def build_cluster(profile: Profile, *, workers: int | None = None, timeout: float = 20.0,
                  dashboard: bool = True) -> Any:
    """Start the cluster of a ``local``, ``ssh``, ``slurm`` or ``kubernetes`` profile.

    ``profile.options`` minus the connection keys (``timeout``, ``wait_for_workers``,
    ``description``) go to the kind's builder; ``workers`` (the CLI's --workers)
    overrides the profile's size. Raises ClusterError naming the profile.
    """
    kind = profile.kind
    if kind not in STARTED_KINDS:
        raise ClusterError(f"{profile.where()}: kind {kind!r} starts no cluster")
    opts = {k: v for k, v in profile.options.items()
            if k not in ("timeout", "wait_for_workers", "description")}
    if kind == "local":
        return local_cluster(workers if workers is not None else opts.get("workers"),
                             dashboard=opts.get("dashboard", dashboard))
    require_extra(kind)
    build: dict[str, Callable[..., Any]] = {
        "ssh": ssh_cluster, "slurm": slurm_cluster, "kubernetes": kubernetes_cluster}
    try:
        return build[kind](opts, timeout=timeout, workers=workers)
    except ClusterError as exc:
        raise ClusterError(f"{profile.where()}: {exc}") from None
    except Exception as exc:
        raise ClusterError(
            f"{profile.where()}: cannot start the {kind} cluster: "
            f"{type(exc).__name__}: {str(exc)[:500]}"
        ) from None


# Background work of the cluster processes that a sweep's workers pay for on the same
# cores: measured per thread during a 100k sweep on 2 vCPUs, the two compute threads got
# 186 to 188 % of a core with Dask's defaults and 190 to 192 % with these. Each is set
# only where it still has distributed's default (a user's own setting is kept):
# {key: (distributed's default, backsweep's local cluster)}.
LEAN_LOCAL_CONFIG: dict[str, tuple[Any, Any]] = {
    # The statistical profiler samples every 10 ms; a task is one compiled call, so all it
    # can ever show is that call.
    "distributed.worker.profile.enabled": (True, False),
    # Tasks are uniform and few are in flight; stealing would only move queued work.
    "distributed.scheduler.work-stealing": (True, False),
    # Event-loop health checks (warnings after 3 s blocked) and the dashboard's system
    # plots: 50 and 2 wake-ups a second in every process by default.
    "distributed.admin.tick.interval": ("20ms", "200ms"),
    "distributed.admin.system-monitor.interval": ("500ms", "2s"),
}


def lean_local_config() -> dict[str, Any]:
    """The LEAN_LOCAL_CONFIG values for the keys still at distributed's default."""
    import dask.config

    return {key: lean for key, (default, lean) in LEAN_LOCAL_CONFIG.items()
            if dask.config.get(key, None) == default}


def local_cluster(workers: int | None = None, *, dashboard: bool = True) -> Any:
    """A LocalCluster of ``workers`` single-threaded processes on 127.0.0.1 (scheduler,
    workers and every HTTP server), with less background work than Dask's defaults
    (LEAN_LOCAL_CONFIG)."""
    import dask.config
    from distributed import LocalCluster

    n = default_workers() if workers is None else workers
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ClusterError(f"--workers must be at least 1, got {n!r}")
    # The scheduler and the nannies read these when created, and each nanny hands its
    # config to the worker process it starts.
    with dask.config.set(lean_local_config()):
        # Without the dashboard the scheduler still serves its HTTP routes (health,
        # metrics): on a free port too, not on 8787 where another cluster may already be.
        return LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address="127.0.0.1:0", scheduler_kwargs={"dashboard": dashboard},
            env=dict(WORKER_ENV), silence_logs=40,
        )


def _env(opts: Mapping[str, Any]) -> dict[str, str]:
    extra = opts.get("env") or {}
    if not isinstance(extra, dict):
        raise ClusterError(f"env must be a table of NAME = \"value\", got {extra!r}")
    return {**WORKER_ENV, **{str(k): str(v) for k, v in extra.items()}}


def ssh_kwargs(opts: Mapping[str, Any], *, timeout: float = 20.0) -> dict[str, Any]:
    """The ``distributed.SSHCluster`` keyword arguments of an ssh profile.

    Workers run under a Nanny with one thread each and ``NUMBA_NUM_THREADS=1``;
    ``workers_per_host`` sets how many worker processes each worker host runs. The
    scheduler's dashboard binds to 127.0.0.1:8787 on the scheduler host unless
    ``scheduler_options.dashboard_address`` says otherwise (use an SSH tunnel), and each
    worker's HTTP server (its dashboard and metrics) to 127.0.0.1 on its host unless
    ``worker_options.dashboard_address`` does.
    """
    connect_options = dict(opts.get("connect_options") or {})
    connect_options.setdefault("connect_timeout", timeout)
    if isinstance(connect_options.get("client_keys"), list):
        connect_options["client_keys"] = [str(Path(p).expanduser())
                                          for p in connect_options["client_keys"]]
    if isinstance(connect_options.get("known_hosts"), str):
        connect_options["known_hosts"] = str(Path(connect_options["known_hosts"]).expanduser())
    worker_options = dict(opts.get("worker_options") or {})
    worker_options.setdefault("nthreads", 1)
    worker_options.setdefault("dashboard_address", WORKER_HTTP_ADDRESS)
    if "workers_per_host" in opts:
        worker_options["n_workers"] = int(opts["workers_per_host"])
    worker_options["env"] = {**_env(opts), **(worker_options.get("env") or {})}
    scheduler_options = dict(opts.get("scheduler_options") or {})
    scheduler_options.setdefault("dashboard_address", "127.0.0.1:8787")
    kwargs: dict[str, Any] = {
        "hosts": list(opts["hosts"]), "connect_options": connect_options,
        "worker_options": worker_options, "scheduler_options": scheduler_options,
    }
    if opts.get("remote_python"):
        kwargs["remote_python"] = opts["remote_python"]
    return kwargs


def ssh_cluster(opts: Mapping[str, Any], *, timeout: float, workers: int | None) -> Any:
    from distributed import SSHCluster

    return SSHCluster(**ssh_kwargs(opts, timeout=timeout))


def slurm_kwargs(opts: Mapping[str, Any], *, workers: int | None = None
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(SLURMCluster keyword arguments, scale arguments) of a slurm profile.

    ``processes`` defaults to ``cores`` (one single-threaded worker process per core of a
    job); ``jobs`` or ``workers`` (overridden by the CLI's --workers) say how many to ask
    for, or ``adapt = {minimum_jobs, maximum_jobs}`` scales with the load; the job
    script exports ``NUMBA_NUM_THREADS=1``; the dashboard binds to 127.0.0.1:8787 on the
    submitting host (``scheduler_options.dashboard_address`` says otherwise) and each
    worker's HTTP server to 127.0.0.1 on its node (``worker_extra_args =
    ["--dashboard-address", ...]`` says otherwise). Any other key is a SLURMCluster
    argument (see dask-jobqueue).
    """
    kw = {k: v for k, v in opts.items() if k not in ("jobs", "workers", "env", "adapt")}
    kw.setdefault("processes", kw["cores"])
    scheduler_options = dict(kw.pop("scheduler_options", None) or {})
    for key in ("dashboard_address", "host"):  # dask-jobqueue wants them in there
        if key in kw:
            scheduler_options[key] = kw.pop(key)
    scheduler_options.setdefault("dashboard_address", "127.0.0.1:8787")
    kw["scheduler_options"] = scheduler_options
    prologue = [f"export {k}={v}" for k, v in _env(opts).items()]
    kw["job_script_prologue"] = prologue + list(kw.get("job_script_prologue") or [])
    kw["worker_extra_args"] = _local_worker_http(kw.get("worker_extra_args"))
    scale: dict[str, Any] = {}
    if workers:
        scale["n"] = int(workers)  # the command line's --workers wins
    elif "jobs" in opts:
        scale["jobs"] = int(opts["jobs"])
    elif "workers" in opts:
        scale["n"] = int(opts["workers"])
    if "adapt" in opts:
        if not isinstance(opts["adapt"], dict):
            raise ClusterError("adapt must be a table, e.g. {minimum_jobs = 0, "
                               "maximum_jobs = 10}")
        scale = {"adapt": dict(opts["adapt"])}
    return kw, scale


def _local_worker_http(args: Any) -> list[str]:
    """``worker_extra_args`` (the profile's, else dask-jobqueue's config) plus
    ``--dashboard-address 127.0.0.1:0`` unless they set the worker's HTTP address: the
    ``dask worker`` command line binds it to all interfaces by default."""
    if args is None:
        import dask.config

        args = dask.config.get("jobqueue.slurm.worker-extra-args", default=None)
    args = [str(a) for a in (args or [])]
    if not any(a == "--dashboard-address" or a.startswith("--dashboard-address=")
               for a in args):
        args += ["--dashboard-address", WORKER_HTTP_ADDRESS]
    return args


def slurm_cluster(opts: Mapping[str, Any], *, timeout: float, workers: int | None) -> Any:
    if shutil.which("sbatch") is None:
        raise ClusterError(
            "slurm profile: `sbatch` is not on PATH; run backsweep on a SLURM login node "
            "(the scheduler runs where backsweep runs; workers are batch jobs)"
        )
    from dask_jobqueue import SLURMCluster

    kw, scale = slurm_kwargs(opts, workers=workers)
    started = SLURMCluster(**kw)
    try:
        if "adapt" in scale:
            started.adapt(**scale["adapt"])
        elif scale:
            started.scale(**scale)
    except Exception:
        started.close()
        raise
    return started


def kubernetes_kwargs(opts: Mapping[str, Any], *, workers: int | None = None
                      ) -> dict[str, Any]:
    """The ``dask_kubernetes.operator.KubeCluster`` keyword arguments of a profile.

    Workers run ``dask worker --nthreads 1`` with ``NUMBA_NUM_THREADS=1``; ``n_workers``
    (overridden by the CLI's --workers) sets the replica count. Other keys go to
    KubeCluster.
    """
    kw = dict(opts)
    kw.setdefault("name", "backsweep")
    if workers:
        kw["n_workers"] = int(workers)  # the command line's --workers wins
    kw.setdefault("n_workers", 2)
    kw.setdefault("worker_command", "dask worker --nthreads 1")
    kw["env"] = _env(opts)
    kw.setdefault("shutdown_on_close", True)
    return kw


def kubernetes_cluster(opts: Mapping[str, Any], *, timeout: float, workers: int | None
                       ) -> Any:
    from dask_kubernetes.operator import KubeCluster

    kw = kubernetes_kwargs(opts, workers=workers)
    kw.setdefault("resource_timeout", int(max(timeout, 60)))
    return KubeCluster(**kw)
