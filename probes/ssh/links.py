"""Per-host connection state (a live connection and what hangs off it, across reconnects) and the socket
plumbing the pool uses: forwarded connections' pumps, TCP_NODELAY, error descriptions."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

import asyncssh

from probes.ssh.results import FileStat, SshError

_PUMP_CHUNK: Final = 65536


class Fail(Exception):
    """Internal: carries an `SshError` up to the public method that returns it."""

    def __init__(self, error: SshError) -> None:
        super().__init__(error.message)
        self.error = error


# --------------------------------------------------------------------------------------------
# per-host state


@dataclass(eq=False)
class Link:
    """One live connection and what hangs off it."""

    conn: asyncssh.SSHClientConnection
    channels: asyncio.Semaphore
    sftp: asyncssh.SFTPClient | None = None
    sftp_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    primed: bool = False  # a session has run, so sshd has set TCP_NODELAY on its side
    is_bastion: bool = False

    def alive(self) -> bool:
        return not self.conn.is_closed()


@dataclass(eq=False)
class Target:
    """A host (or the bastion) and its connection state across reconnects."""

    key: str
    name: str  # for messages: the host name, or "bastion"
    address: str
    port: int
    user: str
    jump: bool
    options: asyncssh.SSHClientConnectionOptions | None = None
    options_error: SshError | None = None
    link: Link | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    failures: int = 0
    retry_at: float = 0.0
    last_error: SshError | None = None
    connects: int = 0  # successful connection set-ups (1 + reconnects)
    connect_ms: float | None = None  # how long the last successful set-up took

    @property
    def endpoint(self) -> str:
        """How known_hosts writes this endpoint: `[addr]:port`, or `addr` on port 22."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"

    @property
    def label(self) -> str:
        return f"{self.name} {self.endpoint}"


@dataclass(eq=False)
class Forward:
    host: str
    remote_host: str
    remote_port: int
    server: asyncio.Server
    address: tuple[str, int]
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    last_error: SshError | None = None


class Tunnel:
    """The bastion's connection as asyncssh's `tunnel=`: a jump host's connection is a
    direct-tcpip channel on it, which holds a bastion channel permit only while it opens."""

    def __init__(self, link: Link) -> None:
        self._link = link

    async def create_connection(
        self,
        session_factory: Callable[[], asyncssh.SSHTCPSession[bytes]],
        remote_host: str,
        remote_port: int,
    ) -> tuple[asyncssh.SSHTCPChannel[bytes], asyncssh.SSHTCPSession[bytes]]:
        async with self._link.channels:
            return await self._link.conn.create_connection(session_factory, remote_host, remote_port)

    def close(self) -> None:
        """The bastion's connection is shared: one host never closes it."""

    async def wait_closed(self) -> None:
        return None


class Reader(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


class Writer(Protocol):
    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def can_write_eof(self) -> bool: ...

    def write_eof(self) -> None: ...

    def close(self) -> None: ...


def text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def describe(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.Error):
        return exc.reason or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def nodelay(sock: socket.socket) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def file_stat(path: str, attrs: asyncssh.SFTPAttrs) -> FileStat:
    return FileStat(
        path=path,
        size=attrs.size or 0,
        mode=attrs.permissions or 0,
        uid=attrs.uid if attrs.uid is not None else -1,
        gid=attrs.gid if attrs.gid is not None else -1,
        mtime=float(attrs.mtime or 0),
    )


async def pump(reader: Reader, writer: Writer, both: tuple[Writer, Writer]) -> None:
    """Copy until EOF, then pass the EOF on; on any error close both sides."""
    try:
        while data := await reader.read(_PUMP_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except asyncio.CancelledError:
        for w in both:
            w.close()
        raise
    except Exception:  # a reset on either side ends the forwarded connection
        for w in both:
            w.close()
