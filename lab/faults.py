"""Faults for tests, each a context manager that puts things back: a stalled or stopped sshd, the
bastion down, a replaced host key, an unwritable fleet journal directory, an unsupported line in a
host's env-file store file.

Each acts on the lab's real processes and files, never on anything outside the lab's directory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from lab import procs, sshd
from lab.topology import ROLLOUT_ENV, LabError, LabHost, LabSpec

JOURNAL_DIR = "/var/log/rollout-cockpit"  # the fleet journal's directory on the database host


def _host(spec: LabSpec, host: LabHost | str) -> LabHost:
    return spec.host(host) if isinstance(host, str) else host


def _listener(spec: LabSpec, host: LabHost) -> int:
    pid = procs.running(sshd.pidfile(spec, host))
    if pid is None:
        raise LabError(f"{host.name}: its sshd is not running")
    return pid


def _signal(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


@contextlib.contextmanager
def stalled_sshd(spec: LabSpec, host: LabHost | str) -> Iterator[list[int]]:
    """SIGSTOP the host's sshd listener and its session processes (a frozen host: connections are
    accepted by the kernel but never answered; open sessions hang); SIGCONT them afterwards.
    Yields the stopped pids."""
    h = _host(spec, host)
    listener = _listener(spec, h)
    stopped: list[int] = []
    try:
        if _signal(listener, signal.SIGSTOP):  # first: it forks no new session while we walk its tree
            stopped.append(listener)
        for _ in range(10):
            new = [p for p in procs.descendants(listener) if p not in stopped]
            if not new:
                break
            stopped += [p for p in new if _signal(p, signal.SIGSTOP)]
        yield stopped
    finally:
        for pid in reversed(stopped):
            _signal(pid, signal.SIGCONT)


@contextlib.contextmanager
def stopped_sshd(spec: LabSpec, host: LabHost | str, *, sessions: bool = True) -> Iterator[None]:
    """Stop the host's sshd (and, with `sessions`, every open session on it: SSH to the host is down);
    start it again afterwards."""
    h = _host(spec, host)
    listener = _listener(spec, h)
    open_sessions = procs.descendants(listener) if sessions else []
    try:
        if not sshd.stop(spec, h):
            raise LabError(f"{h.name}: sshd did not stop")
        for pid in open_sessions:
            procs.stop_pid(pid, timeout=5)
        yield
    finally:
        sshd.start(spec, h)
        sshd.wait_ready(spec, h)


def bastion_down(spec: LabSpec) -> contextlib.AbstractContextManager[None]:
    """The bastion's sshd stopped (every host behind it unreachable); started again afterwards."""
    return stopped_sshd(spec, spec.bastion)


def _restart_listener(spec: LabSpec, h: LabHost) -> None:
    """A new listener (it reads its host key at start); open sessions keep running."""
    if not sshd.stop(spec, h):
        raise LabError(f"{h.name}: sshd did not stop")
    sshd.start(spec, h)
    sshd.wait_ready(spec, h)


@contextlib.contextmanager
def replaced_host_key(spec: LabSpec, host: LabHost | str) -> Iterator[str]:
    """The host's sshd serves a new host key, so the operator's known_hosts no longer matches (as after
    a rebuilt instance); the old key is put back afterwards. Yields the new public key line."""
    h = _host(spec, host)
    key = sshd.ssh_dir(spec) / "hostkeys" / h.name
    pub = key.with_suffix(".pub")
    old_key, old_pub = key.read_bytes(), pub.read_bytes()
    new = ed25519.Ed25519PrivateKey.generate()
    new_pub = new.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    try:
        _write(
            key,
            new.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
            ),
            0o600,
        )
        _write(pub, f"{new_pub} {h.name}\n".encode(), 0o644)
        _restart_listener(spec, h)
        yield new_pub
    finally:
        _write(key, old_key, 0o600)
        _write(pub, old_pub, 0o644)
        _restart_listener(spec, h)


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _mount(*args: str) -> None:
    r = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise LabError(
            f"mount {' '.join(args)} failed ({r.stderr.strip()}); this fault needs root with "
            "CAP_SYS_ADMIN (sessions run as root, whom file modes do not stop)"
        )


@contextlib.contextmanager
def unwritable_journal_dir(spec: LabSpec) -> Iterator[Path]:
    """The fleet journal directory on the database host (/var/log/rollout-cockpit under its root) made
    read-only — a read-only bind mount, since the lab's sessions run as root; writes there fail with
    EROFS, reads work. Unmounted afterwards. Yields the directory."""
    d = Path(spec.database.root) / JOURNAL_DIR.lstrip("/")
    d.mkdir(parents=True, exist_ok=True)
    _mount("--bind", str(d), str(d))
    try:
        _mount("-o", "remount,ro,bind", str(d))
        yield d
    finally:
        subprocess.run(["umount", str(d)], capture_output=True, check=False)


def release_mounts(lab_dir: Path) -> None:
    """Unmount anything mounted under the lab dir (a fault a killed test never restored)."""
    base = str(lab_dir.resolve()).rstrip("/") + "/"
    try:
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    except OSError:
        return
    for m in sorted((m.replace("\\040", " ") for m in mounts if (m + "/").startswith(base)), reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True, check=False)


@contextlib.contextmanager
def unsupported_envfile_line(
    spec: LabSpec, host: LabHost | str, line: str = "X=$(date)", *, path: str = ROLLOUT_ENV
) -> Iterator[Path]:
    """Append a line the cockpit's env-file parser does not support (bash runs it) to the host's
    env-file store file; afterwards that line is removed and everything else left as it is then
    (a cockpit write in between survives). Yields the file."""
    h = _host(spec, host)
    f = Path(h.root) / path.lstrip("/")
    if not f.exists():
        raise LabError(
            f"{h.name}: no env-file store file {path} (the envfile variant writes "
            f"{ROLLOUT_ENV}; pass path= for another file)"
        )
    text = f.read_text()
    f.write_text(text + ("" if text.endswith("\n") or not text else "\n") + line + "\n")
    try:
        yield f
    finally:
        lines = f.read_text().splitlines(keepends=True)
        for i, existing in enumerate(lines):
            if existing.rstrip("\n") == line:
                del lines[i]
                break
        f.write_text("".join(lines))
