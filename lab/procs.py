"""Start and stop the lab's daemons, tracked by pid files, and wait for them properly.

Daemons start in their own session with no tie to the caller's terminal or SSH channel,
so `update.sh` run over SSH returns while the servers it started keep running.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (a reaped-late orphan is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    for line in status.splitlines():
        if line.startswith("State:"):
            return "Z" not in line.split()[1] and "X" not in line.split()[1]
    return True


def read_pid(pidfile: Path) -> int | None:
    try:
        text = pidfile.read_text().split()
        return int(text[0]) if text else None
    except (FileNotFoundError, ValueError):
        return None


def running(pidfile: Path) -> int | None:
    pid = read_pid(pidfile)
    return pid if pid is not None and pid_alive(pid) else None


def start_daemon(
    argv: Sequence[str],
    *,
    pidfile: Path,
    logfile: Path,
    env: Mapping[str, str] | None = None,
    uid: int | None = None,
    gid: int | None = None,
    cwd: Path | None = None,
) -> int:
    """Start argv detached (new session, stdio to logfile) and record its pid."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "ab") as log:
        as_user = uid is not None and os.geteuid() == 0
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=str(cwd) if cwd else None,
            start_new_session=True,
            close_fds=True,
            user=uid if as_user else None,
            group=(gid if gid is not None else uid) if as_user else None,
            extra_groups=[] if as_user else None,
        )
    pidfile.write_text(f"{proc.pid}\n")
    # Do not wait: the daemon outlives us. Forget the Popen so no ResourceWarning fires.
    proc.returncode = 0
    pid: int = proc.pid
    return pid


def stop_pid(pid: int, *, sig: int = signal.SIGTERM, timeout: float = 10.0) -> bool:
    """Signal pid and wait until it is gone; SIGKILL after timeout. True if it stopped."""
    if not pid_alive(pid):
        return True
    try:
        os.kill(pid, sig)
        os.kill(pid, signal.SIGCONT)  # a stopped process (a stalled-host fault) acts on it only when continued
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            _reap(pid)
            return True
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    for _ in range(100):
        if not pid_alive(pid):
            _reap(pid)
            return True
        time.sleep(0.02)
    return False


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop_pidfile(pidfile: Path, *, sig: int = signal.SIGTERM, timeout: float = 10.0) -> bool:
    pid = read_pid(pidfile)
    ok = True if pid is None else stop_pid(pid, sig=sig, timeout=timeout)
    if ok:
        pidfile.unlink(missing_ok=True)
    return ok


def port_open(address: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_free(address: str, port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is not "in use"
    try:
        s.bind((address, port))
        s.listen(1)
        return True
    except OSError:
        return False
    finally:
        s.close()


def wait_port(address: str, port: int, timeout: float, *, pid: int | None = None) -> bool:
    """Wait until something accepts on address:port (or pid died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(address, port):
            return True
        if pid is not None and not pid_alive(pid):
            return False
        time.sleep(0.03)
    return False


def lab_pids(lab_dir: Path) -> list[int]:
    """Every live process whose command line or cwd names the lab dir (a safety net for `down`)."""
    needle = str(lab_dir).encode()
    out: list[int] = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmd and pid_alive(int(entry.name)):
            out.append(int(entry.name))
    return out


def children(pid: int) -> list[int]:
    """The live direct children of pid (from /proc/*/stat)."""
    out: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) ": state ppid ...
        if len(fields) > 1 and fields[1] == str(pid) and fields[0] not in ("Z", "X"):
            out.append(int(entry.name))
    return out


def descendants(pid: int) -> list[int]:
    """Every live process below pid, parents before children."""
    out: list[int] = []
    todo = [pid]
    while todo:
        kids = children(todo.pop(0))
        out += kids
        todo += kids
    return out
