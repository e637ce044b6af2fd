"""Helpers for the cluster tests (no tests here): real `dask scheduler` / `dask worker`
processes on 127.0.0.1, self-signed TLS certificates, a fake package version.

Every process is started in its own session and stopped by its process-group id
(SIGTERM, then SIGKILL); workers also exit by themselves 60 s after losing their scheduler.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

DASK = [sys.executable, "-m", "dask"]
WORKER_ENV = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
_ALL: list[Proc] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_port() -> int:
    """A local port nothing listens on (bound once, then released)."""
    return free_port()


def _die_with_parent() -> None:
    """In the child: SIGTERM it when the test process dies (Linux), so a test run killed
    outright leaves no scheduler or worker behind."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Proc:
    """A subprocess in its own process group, with its output in a log file."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.args = args
        self.log = log
        self._fh = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            args, stdout=self._fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        _ALL.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the group, then SIGKILL it if its leader has not exited in time (the
        group is signalled only while its leader is unreaped, so its id is still ours)."""
        if self.alive():
            self.signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.popen.wait(10)
        self._fh.close()
        if self in _ALL:
            _ALL.remove(self)

    def output(self) -> str:
        self._fh.flush()
        return self.log.read_text(errors="replace")


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class DaskProcesses:
    """A `dask scheduler` and `dask worker`s as real processes on 127.0.0.1."""

    def __init__(self, root: Path, tls: dict[str, Path] | None = None) -> None:
        self.root = root
        self.tls = tls
        self.scheduler: Proc | None = None
        self.workers: dict[str, Proc] = {}
        self.scheduler_file = root / "scheduler.json"
        self.address = ""

    def _tls_args(self, tls: dict[str, Path] | None = None) -> list[str]:
        tls = self.tls if tls is None else tls
        if not tls:
            return []
        return ["--tls-ca-file", str(tls["ca"]), "--tls-cert", str(tls["cert"]),
                "--tls-key", str(tls["key"])]

    def start_scheduler(self, timeout: float = 60.0, env: dict[str, str] | None = None) -> str:
        args = [*DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                "--scheduler-file", str(self.scheduler_file), "--idle-timeout", "900",
                *self._tls_args()]
        if self.tls:
            args += ["--protocol", "tls"]
        self.scheduler = Proc(args, self.root / "scheduler.log", env=env)

        def ready():
            if not self.scheduler.alive():
                raise AssertionError(f"scheduler exited:\n{self.scheduler.output()}")
            try:
                return json.loads(self.scheduler_file.read_text())["address"]
            except (OSError, ValueError, KeyError):
                return None

        self.address = wait_for(ready, timeout, "the scheduler file")
        return self.address

    def add_worker(self, name: str, env: dict[str, str] | None = None,
                   extra: list[str] | None = None, *,
                   tls: dict[str, Path] | bool | None = None, address: str | None = None
                   ) -> Proc:
        """A worker named ``name``. ``tls``: None = the cluster's certificates, False =
        none, a dict = these (ca, cert, key); ``address``: the scheduler's address to
        use instead of the scheduler file."""
        local = self.root / f"worker-{name}"
        local.mkdir(exist_ok=True)
        where = [address] if address else ["--scheduler-file", str(self.scheduler_file)]
        certs = [] if tls is False else self._tls_args(tls if isinstance(tls, dict) else None)
        args = [*DASK, "worker", *where,
                "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard", "--name", name,
                "--local-directory", str(local), "--death-timeout", "60",
                *certs, *(extra or [])]
        proc = Proc(args, self.root / f"worker-{name}.log", env={**WORKER_ENV, **(env or {})})
        self.workers[name] = proc
        return proc

    def stop_worker(self, name: str) -> None:
        self.workers.pop(name).stop()

    def stop(self) -> None:
        for name in list(self.workers):
            self.stop_worker(name)
        if self.scheduler is not None:
            self.scheduler.stop()
            self.scheduler = None


def wait_for_worker_names(client, names: set[str], timeout: float = 90.0) -> dict[str, str]:
    """{name: address} once every worker named in ``names`` has joined."""
    def joined():
        info = client.scheduler_info(n_workers=-1)["workers"]
        got = {w["name"]: addr for addr, w in info.items()}
        return got if names <= set(got) else None

    return wait_for(joined, timeout, f"workers {sorted(names)}", interval=0.2)


def fake_distribution(root: Path, name: str, version: str) -> Path:
    """A folder that, first on sys.path, makes importlib.metadata report ``version`` for
    ``name`` (a bare ``NAME-VERSION.dist-info/METADATA``; the real package still imports)."""
    info = root / f"{name}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return root


def make_certs(folder: Path) -> dict[str, Path]:
    """A CA, a node and a client certificate for 127.0.0.1/localhost, and a rogue client
    certificate signed by another CA. Uses `cryptography` if installed, else `openssl`."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import cryptography  # noqa: F401
    except ImportError:
        _certs_openssl(folder)
    else:
        _certs_cryptography(folder)
    return {n: folder / f for n, f in (
        ("ca", "ca.pem"), ("node_cert", "node.pem"), ("node_key", "node-key.pem"),
        ("client_cert", "client.pem"), ("client_key", "client-key.pem"),
        ("rogue_cert", "rogue.pem"), ("rogue_key", "rogue-key.pem"))}


def _certs_cryptography(d: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def builder(subject, issuer, key):
        return (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=2)))

    def save(path, key=None, cert=None):
        if key is not None:
            path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        else:
            path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def ca(cn):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = builder(cn, cn, key).add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True
        ).sign(key, hashes.SHA256())
        return key, cert

    def leaf(cn, ca_key, ca_cn, stem):
        key = ec.generate_private_key(ec.SECP256R1())
        san = x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                           x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        cert = builder(cn, ca_cn, key).add_extension(san, critical=False) \
            .sign(ca_key, hashes.SHA256())
        save(d / f"{stem}-key.pem", key=key)
        save(d / f"{stem}.pem", cert=cert)

    ca_key, ca_cert = ca("backsweep-test-ca")
    save(d / "ca.pem", cert=ca_cert)
    leaf("node", ca_key, "backsweep-test-ca", "node")
    leaf("client", ca_key, "backsweep-test-ca", "client")
    other_key, _ = ca("other-ca")
    leaf("rogue", other_key, "other-ca", "rogue")


def _certs_openssl(d: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("neither cryptography nor openssl is available")

    def run(*args):
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=d)

    ext = d / "san.cnf"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for stem, cn in (("ca", "backsweep-test-ca"), ("other-ca", "other-ca")):
        run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{stem}-key.pem", "-out", f"{stem}.pem", "-days", "2",
            "-subj", f"/CN={cn}")
    for stem, ca in (("node", "ca"), ("client", "ca"), ("rogue", "other-ca")):
        run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{stem}-key.pem", "-out", f"{stem}.csr", "-subj", f"/CN={stem}")
        run("x509", "-req", "-in", f"{stem}.csr", "-CA", f"{ca}.pem", "-CAkey",
            f"{ca}-key.pem", "-CAcreateserial", "-out", f"{stem}.pem", "-days", "2",
            "-extfile", str(ext))


def stop_all() -> None:
    for proc in list(_ALL):
        proc.stop()


atexit.register(stop_all)


USER_PACKAGE_INIT = '''"""A user strategy package (not installed anywhere)."""
from bs_userpkg.strat import PKG_MA, VERSION  # noqa: F401
'''

USER_PACKAGE_STRAT = '''import strategies
from strategies import Strategy

VERSION = {version}
_base = strategies.get("ma_cross")


def _prepare(panel, cols):
    return _base.prepare(panel, cols)


PKG_MA = Strategy(name="pkg_ma_v{version}", params=_base.params, prepare=_prepare,
                  kernel=_base.kernel, lookback_fn=_base.lookback_fn,
                  doc="ma_cross under another name, from a shipped package")
strategies.register(PKG_MA)   # no replace=True: re-shipping must unregister the old one
'''


def write_user_package(root: Path, version: int) -> Path:
    pkg = root / "bs_userpkg"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text(USER_PACKAGE_INIT)
    (pkg / "strat.py").write_text(USER_PACKAGE_STRAT.format(version=version))
    return pkg
