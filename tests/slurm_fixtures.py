"""A private single-node SLURM on this host, for the tests of the ``slurm`` profile.

Not a test module: ``tests/conftest.py`` makes the session fixture ``slurm`` from it.

:class:`Slurm` writes a munge key, ``slurm.conf`` and ``cgroup.conf`` into a fresh folder
and starts ``munged``, ``slurmctld`` and ``slurmd`` there as root, in the foreground
(``-F`` / ``-D``), each in its own process group, on free ports, with their own munge
socket: nothing of the machine's own SLURM or munge (if any) is read or touched. The
client commands (``sbatch``, ``squeue``, ``scancel``; dask-jobqueue calls them) find the
cluster through ``$SLURM_CONF``. :meth:`Slurm.stop` cancels every job, waits for it to end,
stops the daemons by their process ids and removes the folder.

Needs root (slurmd runs jobs as their user) and Debian's ``slurm-wlm`` and ``munge``
packages (``scripts/test`` installs them); :func:`unavailable` says what is missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

from test_cluster_support import Proc, free_port, wait_for

DAEMONS = ("munged", "slurmctld", "slurmd")
COMMANDS = ("sbatch", "squeue", "scancel", "sinfo")
PACKAGES = "slurm-wlm munge"  # Debian packages that provide them


def _which(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/sbin") / name) if p.exists()), None)


def unavailable() -> str | None:
    """Why a private SLURM cannot start here (None: it can)."""
    missing = [name for name in (*DAEMONS, *COMMANDS) if _which(name) is None]
    if missing:
        return (f"SLURM tests need {', '.join(missing)} (Debian: apt-get install -y "
                f"{PACKAGES}; scripts/test installs them when run as root)")
    if os.geteuid() != 0:
        return ("SLURM tests need root: slurmd runs the worker jobs as their user and "
                "munged/slurmctld/slurmd start here as root (run scripts/test as root, as "
                "CI does)")
    return None


def _node_line() -> str:
    """This host as ``slurmd -C`` describes it (NodeName=HOST CPUs=... RealMemory=...)."""
    out = subprocess.run([_which("slurmd") or "slurmd", "-C"], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("NodeName="))
    return line.strip()


class Slurm:
    """munged + slurmctld + slurmd for one node (this host), in ``root``."""

    def __init__(self) -> None:
        # A short path of our own: a unix socket path must stay under 108 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="backsweep-slurm-", dir="/tmp"))
        self.conf = self.root / "slurm.conf"
        self.socket = self.root / "munge.sock"
        self.procs: dict[str, Proc] = {}
        self.node = ""
        self.env = {"SLURM_CONF": str(self.conf)}

    # ---------------------------------------------------------------- start
    def write_config(self) -> None:
        node_line = _node_line()
        self.node = node_line.split()[0].split("=", 1)[1]
        for sub in ("state", "spool", "log", "jobs"):
            (self.root / sub).mkdir()
        key = self.root / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        ctld_port, slurmd_port = free_port(), free_port()
        r = self.root
        self.conf.write_text(f"""# tests/slurm_fixtures.py: a one-node cluster on this host
ClusterName=backsweep-test
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.socket}
StateSaveLocation={r / 'state'}
SlurmdSpoolDir={r / 'spool'}
SlurmctldPidFile={r / 'slurmctld.pid'}
SlurmdPidFile={r / 'slurmd.pid'}
SlurmctldLogFile={r / 'log' / 'slurmctld.log'}
SlurmdLogFile={r / 'log' / 'slurmd.log'}
# no cgroup, accounting or MPI plugins: jobs are plain processes on this host
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
# one core a job: two one-core worker jobs share the node
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
{node_line} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
""")
        # slurmd 22.05 always loads a cgroup plugin (none is used by the plugins above);
        # IgnoreSystemd: on a cgroup v2 host it must not ask systemd for a scope.
        (self.root / "cgroup.conf").write_text("CgroupPlugin=autodetect\nIgnoreSystemd=yes\n")

    def start(self, timeout: float = 90.0) -> None:
        self.write_config()
        r = self.root
        self._spawn("munged", [
            _which("munged") or "munged", "--foreground", "--force",
            f"--key-file={r / 'munge.key'}", f"--socket={self.socket}",
            f"--pid-file={r / 'munged.pid'}", f"--log-file={r / 'log' / 'munged.log'}",
            f"--seed-file={r / 'munged.seed'}"])
        wait_for(lambda: self.socket.exists() or self._died("munged"), 30,
                 "munged to create its socket")
        self._check_alive("munged")
        self._spawn("slurmctld", [_which("slurmctld") or "slurmctld", "-D", "-i",
                                  "-f", str(self.conf)])
        wait_for(lambda: self._sinfo_ok() or self._died("slurmctld"), timeout,
                 "slurmctld to answer")
        self._check_alive("slurmctld")
        self._spawn("slurmd", [_which("slurmd") or "slurmd", "-D", "-f", str(self.conf),
                               "-N", self.node])
        wait_for(lambda: self.node_state() in ("idle", "mixed", "allocated")
                 or self._died("slurmd"), timeout, "the node to be idle in SLURM")
        self._check_alive("slurmd")

    def _spawn(self, name: str, args: list[str]) -> None:
        self.procs[name] = Proc(args, self.root / "log" / f"{name}.out",
                                env=self.env, cwd=self.root)

    def _died(self, name: str) -> bool:
        return not self.procs[name].alive()

    def _check_alive(self, name: str) -> None:
        if self._died(name):
            raise RuntimeError(f"{name} exited while starting:\n{self.logs()}")

    def _sinfo_ok(self) -> bool:
        return self.run("sinfo", "-h", check=False).returncode == 0

    # ---------------------------------------------------------------- use
    def run(self, *args: str, check: bool = True, timeout: float = 30.0
            ) -> subprocess.CompletedProcess[str]:
        """A SLURM client command (sinfo, squeue, scancel, ...) against this cluster."""
        return subprocess.run([_which(args[0]) or args[0], *args[1:]], capture_output=True,
                              text=True, timeout=timeout, check=check,
                              env={**os.environ, **self.env})

    def node_state(self) -> str:
        out = self.run("sinfo", "-h", "-N", "-o", "%T", check=False)
        return out.stdout.strip().rstrip("*~#") if out.returncode == 0 else ""

    def jobs(self) -> dict[str, str]:
        """{job id: state} of every job SLURM still knows."""
        out = self.run("squeue", "-h", "-o", "%i %T").stdout
        return dict(line.split(None, 1) for line in out.splitlines() if line.strip())

    def running_jobs(self) -> list[str]:
        return sorted(j for j, state in self.jobs().items() if state == "RUNNING")

    def cancel(self, job_id: str) -> None:
        self.run("scancel", job_id)

    def cancel_all(self, timeout: float = 60.0) -> None:
        """Cancel every job and wait until SLURM has none left."""
        with contextlib.suppress(Exception):
            jobs = self.jobs()
            if jobs:
                self.run("scancel", *jobs, check=False)
            wait_for(lambda: not self.jobs(), timeout, "the SLURM jobs to end")

    def logs(self, tail: int = 2500) -> str:
        out = []
        for log in sorted((self.root / "log").glob("*")):
            with contextlib.suppress(OSError):
                out.append(f"--- {log.name}\n{log.read_text(errors='replace')[-tail:]}")
        return "\n".join(out)

    # ---------------------------------------------------------------- stop
    def stop(self) -> None:
        if "slurmd" in self.procs and not self._died("slurmd"):
            self.cancel_all()
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.pop(name, None)
            if proc is not None:
                proc.stop()
        # Job processes (slurmstepd and what it ran) live in their own sessions: any left
        # after a cancel that timed out are found by the job folder in their command line.
        self._kill_leftover_steps()
        shutil.rmtree(self.root, ignore_errors=True)

    def _kill_leftover_steps(self) -> None:
        try:
            import psutil
        except ImportError:
            return
        mark = str(self.root)
        for proc in psutil.process_iter(["pid", "cmdline", "environ"]):
            with contextlib.suppress(psutil.Error):
                cmd = " ".join(proc.info["cmdline"] or [])
                env = proc.info["environ"] or {}
                if proc.pid != os.getpid() and (mark in cmd or env.get("SLURM_CONF") == str(
                        self.conf)) and env.get("SLURM_JOB_ID"):
                    proc.send_signal(signal.SIGKILL)


def node_ip() -> str:
    """An address of this host other than loopback (where a scheduler that listens on all
    interfaces is reached by Dask's default link)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        with contextlib.suppress(OSError):
            s.connect(("192.0.2.1", 9))  # no packet is sent
            ip = s.getsockname()[0]
            if not ip.startswith("127."):
                return ip
    return socket.gethostbyname(socket.gethostname())


def listening(port: int, host: str, timeout: float = 1.0) -> bool:
    with socket.socket() as s:
        s.settimeout(timeout)
        return s.connect_ex((host, port)) == 0
