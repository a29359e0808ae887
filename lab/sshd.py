"""One OpenSSH sshd per lab host, with its own host key, plus the client side: a key pair,
`known_hosts` and an `ssh_config` that reaches app and database hosts through the bastion."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from lab import procs
from lab.topology import LabError, LabHost, LabSpec

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def _keypair(private_path: Path, comment: str) -> str:
    """Create an ed25519 key (OpenSSH format) unless present; return the public line."""
    pub_path = private_path.with_suffix(".pub")
    if not private_path.exists() or not pub_path.exists():
        key = ed25519.Ed25519PrivateKey.generate()
        private_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(
                key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
                )
            )
        pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        pub_path.write_text(pub.decode() + f" {comment}\n")
    return pub_path.read_text().strip()


def ssh_dir(spec: LabSpec) -> Path:
    return spec.path / "ssh"


def client_key(spec: LabSpec) -> Path:
    return ssh_dir(spec) / "id_ed25519"


def write_client_files(spec: LabSpec) -> None:
    d = ssh_dir(spec)
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o755)
    pub = _keypair(client_key(spec), "cockpit-lab-operator")
    (d / "authorized_keys").write_text(pub + "\n")
    os.chmod(d / "authorized_keys", 0o644)
    lines = []
    for h in spec.hosts():
        hostpub = " ".join(_keypair(d / "hostkeys" / h.name, f"{h.name}").split()[:2])
        lines.append(f"[{h.address}]:{spec.ssh_port},[{h.name}]:{spec.ssh_port} {hostpub}\n")
    (d / "known_hosts").write_text("".join(lines))
    cfg = [
        "# Lab SSH config: `ssh -F this-file staging-api-01`.",
        f"Host {spec.bastion.name}",
        f"  HostName {spec.bastion.address}",
        f"  Port {spec.ssh_port}",
        "  User root",
        f"  IdentityFile {client_key(spec)}",
        "  IdentitiesOnly yes",
        f"  UserKnownHostsFile {d / 'known_hosts'}",
        "  StrictHostKeyChecking yes",
        "",
    ]
    for h in spec.hosts()[1:]:
        cfg += [
            f"Host {h.name}",
            f"  HostName {h.address}",
            f"  Port {spec.ssh_port}",
            "  User root",
            f"  ProxyJump {spec.bastion.name}",
            f"  IdentityFile {client_key(spec)}",
            "  IdentitiesOnly yes",
            f"  UserKnownHostsFile {d / 'known_hosts'}",
            "  StrictHostKeyChecking yes",
            "",
        ]
    (d / "ssh_config").write_text("\n".join(cfg))


def home_dir(spec: LabSpec) -> Path:
    """HOME for commands run over the lab's SSH (an empty directory: no login scripts)."""
    return ssh_dir(spec) / "home"


def sshd_config(spec: LabSpec, host: LabHost) -> Path:
    d = ssh_dir(spec)
    home_dir(spec).mkdir(parents=True, exist_ok=True)
    path = d / "sshd" / f"{host.name}.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "\n".join(
            [
                f"ListenAddress {host.address}:{spec.ssh_port}",
                f"HostKey {d / 'hostkeys' / host.name}",
                f"PidFile {d / 'sshd' / (host.name + '.pid')}",
                f"AuthorizedKeysFile {d / 'authorized_keys'}",
                "StrictModes no",  # the lab's key files live in the lab dir, not ~/.ssh
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "UsePAM no",
                "AllowTcpForwarding yes",
                "X11Forwarding no",
                "PrintMotd no",
                "PrintLastLog no",
                "Subsystem sftp internal-sftp",
                # Sessions get a home of the lab's own: Debian's bash sources ~/.bashrc for every command
                # run over SSH, and the machine's root .bashrc (pyenv init here: ~0.2 s of CPU) is not
                # what a platform host runs. The working directory stays root's home.
                f"SetEnv HOME={home_dir(spec)}",
                "LogLevel ERROR",
                "",
            ]
        )
    )
    return path


def pidfile(spec: LabSpec, host: LabHost) -> Path:
    return ssh_dir(spec) / "sshd" / f"{host.name}.pid"


def start(spec: LabSpec, host: LabHost) -> None:
    """Start this host's sshd unless it already runs; errors name the host."""
    if procs.running(pidfile(spec, host)):
        return
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation dir
    if not procs.port_free(host.address, spec.ssh_port):
        raise LabError(
            f"{host.name}: {host.address}:{spec.ssh_port} is already in use; stop what holds it or choose another --net"
        )
    cfg = sshd_config(spec, host)
    log = spec.path / "hosts" / host.name / "var" / "log" / "sshd.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([SSHD, "-f", str(cfg), "-E", str(log)], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise LabError(f"{host.name}: sshd failed to start: {r.stderr.strip() or log.read_text()[-300:]}")


def wait_ready(spec: LabSpec, host: LabHost, timeout: float = 10.0) -> None:
    if not procs.wait_port(host.address, spec.ssh_port, timeout):
        raise LabError(f"{host.name}: sshd is not accepting on {host.address}:{spec.ssh_port}")


def stop(spec: LabSpec, host: LabHost) -> bool:
    return procs.stop_pidfile(pidfile(spec, host))
