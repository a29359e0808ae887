"""Claim a loopback /24 and a private directory for one lab, so that two labs on one machine
(two test runs, a developer and CI, a benchmark beside the demo) never touch each other.

A claim is an exclusive `flock` on a file named after the net, held by an open descriptor for as
long as the claim lives: the kernel drops it when the process exits, however it exits, so a
killed run never leaves a net claimed. A net is only taken when its lock is free *and* nothing
listens on the lab's first addresses (a lab started by hand on that net, without a claim).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import shutil
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

LOCK_DIR = Path(os.environ.get("COCKPIT_NET_LOCK_DIR", "/var/tmp/rollout-cockpit-nets"))
# 127.64.0.0 - 127.127.255.0: far from the demo's 127.0.10 and from anything a person types by hand
FIRST_OCTET = range(64, 128)
PROBE_PORTS = ((1, 2222), (2, 2222), (3, 5000))  # bastion sshd, database sshd, moto


@dataclass
class NetClaim:
    net: str  # first three octets, e.g. "127.71.3"
    fd: int

    def release(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


def _in_use(net: str) -> bool:
    for host, port in PROBE_PORTS:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((f"{net}.{host}", port))
        except OSError:
            return True
        finally:
            s.close()
    return False


def claim_net(*, attempts: int = 4000) -> NetClaim:
    """An unclaimed, unused 127.A.B net, claimed until `release()` or the process exits."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True, mode=0o1777)
    with contextlib.suppress(OSError):
        os.chmod(LOCK_DIR, 0o1777)
    rng = random.Random(os.getpid() ^ int.from_bytes(os.urandom(4), "little"))
    for _ in range(attempts):
        net = f"127.{rng.choice(FIRST_OCTET)}.{rng.randrange(256)}"
        fd = os.open(LOCK_DIR / f"{net}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        if _in_use(net):
            os.close(fd)
            continue
        return NetClaim(net, fd)
    raise RuntimeError(f"no free loopback net after {attempts} tries (locks in {LOCK_DIR})")


def private_dir(prefix: str) -> Path:
    """A new directory under /var/tmp that the lab's uid-70 servers can traverse (not /tmp's
    pytest folders, which are 0700)."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    d.chmod(0o755)
    return d


@contextlib.contextmanager
def claimed(prefix: str = "cockpit-lab-") -> Iterator[tuple[str, Path]]:
    """(net, directory) for one lab; both are released (the directory removed) afterwards."""
    claim = claim_net()
    d = private_dir(prefix)
    try:
        yield claim.net, d
    finally:
        shutil.rmtree(d, ignore_errors=True)
        claim.release()
