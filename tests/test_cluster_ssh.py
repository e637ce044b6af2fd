"""An SSH profile for real: a private sshd on 127.0.0.1 (a high port, a host key and an
authorized client key made here; host keys verified through a known_hosts file), and
distributed's SSHCluster started through it by ``cluster.connect("PROFILE")``.

Needs asyncssh (``backsweep[ssh]``) and OpenSSH's sshd (Debian: openssh-server); skipped
with the reason otherwise.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import sys
from pathlib import Path

import pytest
from test_cluster_support import Proc, free_port, wait_for

import cluster
from cluster import ClusterError

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    asyncssh = pytest.importorskip("asyncssh", reason="asyncssh not installed "
                                   "(pip install 'backsweep[ssh]')")
    if SSHD is None:
        pytest.skip("OpenSSH sshd not installed (Debian: apt-get install openssh-server)")
    is_root = os.geteuid() == 0
    if is_root and not os.path.isdir("/run/sshd"):
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
    root = tmp_path_factory.mktemp("sshd")
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    host_key.write_private_key(root / "host_key")
    os.chmod(root / "host_key", 0o600)
    user_key = asyncssh.generate_private_key("ssh-ed25519")
    user_key.write_private_key(root / "id_ed25519")
    os.chmod(root / "id_ed25519", 0o600)
    (root / "authorized_keys").write_bytes(user_key.export_public_key())
    port = free_port()
    (root / "known_hosts").write_bytes(
        f"[127.0.0.1]:{port} ".encode() + host_key.export_public_key())
    user = getpass.getuser()
    (root / "sshd_config").write_text(f"""
Port {port}
ListenAddress 127.0.0.1
HostKey {root / 'host_key'}
PidFile {root / 'sshd.pid'}
AuthorizedKeysFile {root / 'authorized_keys'}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
AllowUsers {user}
""")
    proc = Proc([SSHD, "-D", "-e", "-f", str(root / "sshd_config")], root / "sshd.log")
    try:
        wait_for(lambda: _listening(port) or not proc.alive(), 20, "sshd to listen")
        if not proc.alive():
            pytest.skip(f"sshd does not start here:\n{proc.output()[-1500:]}")
        yield {"port": port, "user": user, "root": root}
    finally:
        proc.stop()


def _profile(sshd, tmp_path, **extra) -> Path:
    root = sshd["root"]
    lines = [
        "[profiles.boxes]",
        'kind = "ssh"',
        'hosts = ["127.0.0.1", "127.0.0.1"]',
        f'remote_python = "{sys.executable}"',
        "workers_per_host = 2",
        f'connect_options = {{ port = {sshd["port"]}, username = "{sshd["user"]}", '
        f'known_hosts = "{root / "known_hosts"}", client_keys = ["{root / "id_ed25519"}"] }}',
        'scheduler_options = { host = "127.0.0.1", port = 0, '
        'dashboard_address = "127.0.0.1:0" }',
        'worker_options = { host = "127.0.0.1", death_timeout = 60 }',
        "timeout = 30",
        *(f"{k} = {v}" for k, v in extra.items()),
    ]
    config = tmp_path / "clusters.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def test_ssh_profile_starts_a_cluster_and_closes_it(sshd, tmp_path) -> None:
    config = _profile(sshd, tmp_path)
    with cluster.connect("boxes", config=config) as client:
        client.wait_for_workers(2, timeout=60)
        assert sorted(client.nthreads().values()) == [1, 1]
        env = client.run(lambda: __import__("os").environ.get("NUMBA_NUM_THREADS"))
        assert set(env.values()) == {"1"}
        assert client.submit(sum, [1, 2]).result(timeout=30) == 3
        cluster.check_environment(client)
        address = client.scheduler.address
    # the profile started that cluster, so leaving the block shut it down
    with pytest.raises(ClusterError):
        with cluster.connect(address, timeout=2):
            pass


def test_ssh_profile_with_a_wrong_key_is_refused(sshd, tmp_path) -> None:
    import asyncssh

    other = asyncssh.generate_private_key("ssh-ed25519")
    other.write_private_key(tmp_path / "other_key")
    config = _profile(sshd, tmp_path)
    config.write_text(config.read_text().replace(str(sshd["root"] / "id_ed25519"),
                                                 str(tmp_path / "other_key")))
    with pytest.raises(ClusterError, match="cannot start the ssh cluster"):
        with cluster.connect("boxes", config=config):
            pass
