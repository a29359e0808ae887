"""Small files read from hosts over SFTP (CA files, vars.yaml, .env files, pg_hba.conf), re-read
when they change, and the database host's listening ports from /proc/net/tcp."""

from __future__ import annotations

import time

from probes.collect.cache import TtlCache
from probes.collect.procnet import listening_ports, past_listeners
from probes.model import Unknown
from probes.ssh.readonly import ReadOnlyHosts
from probes.ssh.results import FileStat, SshError, SshErrorKind, ssh_why

FILE_REREAD = 10.0  # seconds a small host file may be served from its cache
MAX_SMALL_FILE = 1 << 16


class Missing:
    """A file that is not there (a measured fact, unlike a read that failed)."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"Missing({self.path!r})"


FileRead = bytes | Missing | Unknown


def read_outcome(host: str, path: str, result: bytes | SshError | FileStat) -> FileRead:
    """An SFTP answer as: the bytes, the file is missing, or could not be read (why)."""
    if isinstance(result, bytes):
        return result
    if isinstance(result, SshError):
        if result.kind is SshErrorKind.NO_SUCH_FILE:
            return Missing(path)
        return Unknown(ssh_why(result), f"{host}:{path}: {result.message}")
    return Unknown(ssh_why(SshError(host, SshErrorKind.BUG, "not a file read")), f"{host}:{path}")


class HostFiles:
    """Cached small-file reads: one stat per read, the file re-read when its size or mtime changed,
    and at least every FILE_REREAD seconds — SFTP's mtime has whole seconds, so a same-size rewrite
    within the second of the last read (`require` ↔ `disable`) would look unchanged."""

    def __init__(self, hosts: ReadOnlyHosts, *, bound_ttl: float = 3.0) -> None:
        self.hosts = hosts
        self._files: dict[tuple[str, str], tuple[tuple[int, float], bytes, float]] = {}
        self._bound: TtlCache[str, set[int] | Unknown] = TtlCache(bound_ttl)

    async def read(self, host: str, path: str) -> FileRead:
        st = await self.hosts.stat(host, path)
        if not isinstance(st, FileStat):
            self._files.pop((host, path), None)
            return read_outcome(host, path, st)
        key = (host, path)
        cached = self._files.get(key)
        now = time.monotonic()
        if cached is not None and cached[0] == (st.size, st.mtime) and now - cached[2] < FILE_REREAD:
            return cached[1]
        data = await self.hosts.read_file(host, path, MAX_SMALL_FILE)
        if isinstance(data, bytes):
            self._files[key] = ((st.size, st.mtime), data, now)
        return read_outcome(host, path, data)

    async def bound_ports(self, host: str, address: str) -> set[int] | Unknown:
        """TCP ports listening on the host (on `address` or any address), from the host itself:
        /proc/net/tcp{,6} over SFTP (no shell, so no login-script cost). Reused for a few seconds:
        listeners change only when a service restarts, and the engine invalidates after it does."""
        cached = self._bound.get(host)
        if cached is not None:
            return cached
        ports: set[int] = set()
        failure: Unknown | None = None
        seen = False
        for name in ("/proc/net/tcp", "/proc/net/tcp6"):
            data = await self.hosts.read_head(host, name, 4 << 20, past_listeners)
            if isinstance(data, bytes):
                seen = True
                ports |= listening_ports(data.decode("ascii", "replace"), address)
            else:
                failure = Unknown(ssh_why(data), f"{host}:{name}: {data.message}")
        result: set[int] | Unknown = (
            ports
            if seen
            else (
                failure or Unknown(ssh_why(SshError(host, SshErrorKind.SFTP, "")), f"{host}: /proc/net/tcp unreadable")
            )
        )
        if seen:
            self._bound.put(host, result)
        return result

    def invalidate(self) -> None:
        self._files.clear()
        self._bound.clear()
