"""SSH to every host of an environment: one shared asyncssh connection per host, errors as data.

`SshPool` holds exactly one connection per host for the whole session, opened lazily and reused
for commands, SFTP and local port forwards; hosts with `jump = true` are reached through the
bastion's own single connection. Host keys are always verified against `ssh.known_hosts`.

Why it is shaped like this (measured against OpenSSH 9.2 with asyncssh 2.24):

- sshd allows 10 session channels per connection (`MaxSessions`) and drops handshakes beyond
  10 in flight (`MaxStartups`): every session channel holds a permit of a per-connection
  `Semaphore(max_channels)` for its lifetime, and connection set-up is paced by a pool-wide
  `Semaphore(max_connects_in_flight)`. `direct-tcpip` channels (forwards, and the bastion's
  tunnels to jump hosts) are not counted by `MaxSessions` and may live for the whole session,
  so they hold a permit only while they open.
- One SFTP session per connection is kept open (opening one costs a round trip and more under
  load; a `stat` on a held one costs ~2 ms). It holds one channel permit while it lives.
- sshd sets TCP_NODELAY on its side of a connection only once a session runs on it
  (`ssh_packet_set_interactive` from `do_exec`). A connection used only for forwards, like the
  bastion's, keeps Nagle on at sshd, and a TLS handshake through a forward then waits for
  delayed ACKs (50-80 ms instead of ~10 ms here). So the pool "primes" such connections by
  opening a session (an SFTP subsystem, no shell start-up) before forwarding over them. Our own
  sockets already have TCP_NODELAY: asyncssh sets it on the SSH socket, and it is set on the
  forward's listening and accepted sockets here.
- Forwards are our own listeners on 127.0.0.1:0 that open a channel on the host's *current*
  connection per accepted socket, so a forward's local port stays valid across reconnects.

Nothing public raises for network or server trouble: commands return `CommandResult` with
`error`, file calls return `SshError` values. A dropped connection is noticed on next use and
re-established; failed attempts back off exponentially (0.2 s doubling to 5 s), and calls made
during a back-off fail fast with the last error.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import posixpath
import secrets
import socket
import stat as stat_mod
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar, cast

import asyncssh
from asyncssh.encryption import get_default_encryption_algs

from probes.inventory import Environment, Host
from probes.model import CheckResult, Verdict, Why

__all__ = [
    "CommandResult",
    "FileStat",
    "SshError",
    "SshErrorKind",
    "SshPool",
    "check_reachable",
]

BACKOFF_FIRST: Final = 0.2  # seconds after the first failed connect attempt
BACKOFF_CAP: Final = 5.0
KEEPALIVE_INTERVAL: Final = 15.0  # detects a silently dead peer in ~45 s
KEEPALIVE_COUNT_MAX: Final = 3
CLOSE_TIMEOUT: Final = 5.0
# AES-GCM first: asyncssh does it in one `cryptography` call per packet, where its ChaCha20-Poly1305
# (OpenSSH's first choice) builds two cipher contexts per packet — most of the CPU of a cold round
# through the bastion (every byte to a host is encrypted twice). The rest of asyncssh's list stays,
# for servers without AES-GCM.
_GCM: Final = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
ENCRYPTION_ALGS: Final = [*_GCM, *(a.decode() for a in get_default_encryption_algs() if a.decode() not in _GCM)]
LOCALHOST: Final = "127.0.0.1"
_BASTION: Final = "(bastion)"  # the bastion's key among targets; never a valid host name
_PUMP_CHUNK: Final = 65536

T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# results


class SshErrorKind(enum.StrEnum):
    """What went wrong, for code that decides; the message is for people."""

    UNKNOWN_HOST = "unknown-host"  # the name is not a host of this environment
    CONFIG = "config"  # a local file (known_hosts, identity file, ssh config) is unusable
    HOST_KEY = "host-key"  # unknown or changed host key: never accepted
    AUTH = "auth"  # the server refused every key
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"  # refused, no route, name not found, or the bastion could not reach it
    BASTION = "bastion"  # a jump host whose bastion cannot be reached: one state for all of them
    LOST = "lost"  # the connection dropped; it is re-established on next use
    CHANNEL = "channel"  # the server refused to open a channel
    NO_SUCH_FILE = "no-such-file"
    PERMISSION = "permission"
    TOO_LARGE = "too-large"
    SFTP = "sftp"  # any other SFTP failure
    CLOSED = "closed"  # the pool was closed
    BUG = "bug"  # an exception nobody anticipated: a bug here, not a fact about the host


@dataclass(frozen=True, slots=True)
class SshError:
    """A failure as a value: which host, what kind, and a message that says what to do."""

    host: str
    kind: SshErrorKind
    message: str

    def __str__(self) -> str:
        return self.message


_WHY_OF_KIND: dict[SshErrorKind, Why] = {
    SshErrorKind.TIMEOUT: Why.TIMEOUT,
    SshErrorKind.AUTH: Why.REFUSED,
    SshErrorKind.HOST_KEY: Why.REFUSED,
    SshErrorKind.PERMISSION: Why.REFUSED,
    SshErrorKind.CONFIG: Why.NOT_CHECKED,
    SshErrorKind.BUG: Why.BUG,
    SshErrorKind.CLOSED: Why.NOT_CHECKED,
    SshErrorKind.UNKNOWN_HOST: Why.NOT_CHECKED,
    SshErrorKind.TOO_LARGE: Why.NOT_CHECKED,
}


def ssh_why(error: SshError) -> Why:
    """Why a read over SSH could not measure (a missing file is a fact, not a could-not-measure:
    callers test `kind is NO_SUCH_FILE` first)."""
    return _WHY_OF_KIND.get(error.kind, Why.UNREACHABLE)


@dataclass(frozen=True, slots=True)
class CommandResult:
    """One remote command. A non-zero exit is a result, not an error; `error` is set only when
    the command could not run to completion (connection trouble, timeout)."""

    host: str
    command: str
    exit_status: int | None
    stdout: str
    stderr: str
    duration_ms: float
    error: str | None = None
    error_kind: SshErrorKind | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.exit_status == 0


@dataclass(frozen=True, slots=True)
class FileStat:
    """A remote file's attributes (symlinks followed)."""

    path: str
    size: int
    mode: int  # st_mode: type and permission bits
    uid: int
    gid: int
    mtime: float

    @property
    def permissions(self) -> int:
        return stat_mod.S_IMODE(self.mode)

    @property
    def is_dir(self) -> bool:
        return stat_mod.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return stat_mod.S_ISREG(self.mode)


class _Fail(Exception):
    """Internal: carries an `SshError` up to the public method that returns it."""

    def __init__(self, error: SshError) -> None:
        super().__init__(error.message)
        self.error = error


# --------------------------------------------------------------------------------------------
# per-host state


@dataclass(eq=False)
class _Link:
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
class _Target:
    """A host (or the bastion) and its connection state across reconnects."""

    key: str
    name: str  # for messages: the host name, or "bastion"
    address: str
    port: int
    user: str
    jump: bool
    options: asyncssh.SSHClientConnectionOptions | None = None
    options_error: SshError | None = None
    link: _Link | None = None
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
class _Forward:
    host: str
    remote_host: str
    remote_port: int
    server: asyncio.Server
    address: tuple[str, int]
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    last_error: SshError | None = None


class _Tunnel:
    """The bastion's connection as asyncssh's `tunnel=`: a jump host's connection is a
    direct-tcpip channel on it, which holds a bastion channel permit only while it opens."""

    def __init__(self, link: _Link) -> None:
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


class _Reader(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


class _Writer(Protocol):
    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def can_write_eof(self) -> bool: ...

    def write_eof(self) -> None: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------------------------
# the pool


class SshPool:
    """One SSH connection per host of `env`, shared by commands, SFTP and forwards.

    Use as `async with SshPool(env) as pool:` or call `aclose()`. Construction does no I/O and
    never raises: an unusable local file becomes a `config` error on every call to that host.
    """

    def __init__(self, env: Environment) -> None:
        self._env = env
        ssh = env.ssh
        self._connects = asyncio.Semaphore(ssh.max_connects_in_flight)
        self._targets: dict[str, _Target] = {}
        self._bastion: _Target | None = None
        if env.bastion is not None:
            b = env.bastion
            self._bastion = _Target(_BASTION, "bastion", b.address, b.port, b.user, jump=False)
        for h in env.hosts:
            self._targets[h.name] = _Target(h.name, h.name, h.address, h.port, h.user, h.jump)
        for t in self._all_targets():
            self._build_options(t)
        self._forwards: dict[tuple[str, str, int], _Forward] = {}
        self._forward_locks: dict[tuple[str, str, int], asyncio.Lock] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False

    async def __aenter__(self) -> SshPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def env(self) -> Environment:
        return self._env

    # -- state -----------------------------------------------------------------------------
    def connected(self, host_name: str) -> bool:
        """True while `host_name` has a live connection (no I/O)."""
        t = self._targets.get(host_name)
        return t is not None and t.link is not None and t.link.alive()

    def connection_count(self) -> int:
        """Live SSH connections held by the pool, the bastion's included."""
        return sum(1 for t in self._all_targets() if t.link is not None and t.link.alive())

    def last_error(self, host_name: str) -> SshError | None:
        """The last connection failure for `host_name` (None after a successful connect)."""
        t = self._targets.get(host_name)
        return t.last_error if t is not None else None

    def connect_count(self, host_name: str) -> int:
        """How many times a connection to `host_name` was set up (1 + reconnects)."""
        t = self._targets.get(host_name)
        return t.connects if t is not None else 0

    def connect_ms(self, host_name: str) -> float | None:
        """How long the last successful connection set-up to `host_name` took."""
        t = self._targets.get(host_name)
        return t.connect_ms if t is not None else None

    async def connect(self, host_name: str) -> SshError | None:
        """Make sure `host_name` has a live connection; the error if it cannot have one."""
        try:
            await self._link_for(host_name)
        except _Fail as f:
            return f.error
        return None

    # -- commands ----------------------------------------------------------------------------
    async def run(
        self,
        host_name: str,
        command: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - turned into a deadline (asyncio.timeout_at) below
        input: str | None = None,
    ) -> CommandResult:
        """Run `command` on the host through its shared connection; never raises.

        `timeout` (default `ssh.command_timeout`) covers waiting for a channel, opening it and
        the command itself; on expiry the channel is closed and the output so far is kept.
        """
        t0 = time.perf_counter()
        limit = self._env.ssh.command_timeout if timeout is None else timeout

        def result(status: int | None, out: str, err: str, error: SshError | None = None) -> CommandResult:
            return CommandResult(
                host_name,
                command,
                status,
                out,
                err,
                (time.perf_counter() - t0) * 1000,
                error.message if error else None,
                error.kind if error else None,
            )

        try:
            target = self._target(host_name)
            link = await self._link_for(host_name)
        except _Fail as f:
            return result(None, "", "", f.error)
        deadline = asyncio.get_running_loop().time() + limit
        try:
            async with asyncio.timeout_at(deadline):
                await link.channels.acquire()
        except TimeoutError:
            return result(None, "", "", self._timeout(target, limit, f"waiting for a channel for {command!r}"))
        try:
            async with asyncio.timeout_at(deadline):
                process = await link.conn.create_process(
                    command,
                    input=input,
                    stdin=asyncssh.PIPE if input is not None else asyncssh.DEVNULL,
                    encoding="utf-8",
                    errors="replace",
                )
        except TimeoutError:
            link.channels.release()
            return result(None, "", "", self._timeout(target, limit, f"opening a channel for {command!r}"))
        except Exception as exc:  # every failure becomes a result
            link.channels.release()
            return result(None, "", "", self._op_error(target, link, exc, f"running {command!r}"))
        link.primed = True
        try:
            remaining = max(0.0, deadline - asyncio.get_running_loop().time())
            done = await process.wait(check=False, timeout=remaining)  # returns once the channel closed
        except asyncssh.TimeoutError as exc:
            self._abandon(process, link)
            return result(
                exc.exit_status,
                _text(exc.stdout),
                _text(exc.stderr),
                self._timeout(target, limit, f"running {command!r}"),
            )
        except BaseException as exc:
            self._abandon(process, link)
            if not isinstance(exc, Exception):
                raise  # cancelled
            return result(None, "", "", self._op_error(target, link, exc, f"running {command!r}"))
        link.channels.release()
        return result(done.exit_status, _text(done.stdout), _text(done.stderr))

    def _abandon(self, process: asyncssh.SSHClientProcess[str], link: _Link) -> None:
        """Stop waiting for a command: signal it, close the channel, and give its channel permit
        back only once sshd has closed the session (it counts towards MaxSessions until then)."""
        with contextlib.suppress(Exception):
            process.terminate()
        process.close()

        async def release_when_closed() -> None:
            try:
                async with asyncio.timeout(self._env.ssh.command_timeout):
                    await process.wait_closed()
            except TimeoutError:
                pass
            finally:
                link.channels.release()

        self._spawn(release_when_closed())

    # -- files -------------------------------------------------------------------------------
    async def read_file(
        self,
        host_name: str,
        path: str,
        max_bytes: int,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - enforced with asyncio.timeout inside
    ) -> bytes | SshError:
        """The file's bytes over SFTP, or an error (`too-large` beyond `max_bytes`)."""

        async def read(sftp: asyncssh.SFTPClient) -> bytes | SshError:
            async with sftp.open(path, "rb") as f:
                attrs = await f.stat()
                if attrs.size is not None and attrs.size > max_bytes:
                    return SshError(
                        host_name,
                        SshErrorKind.TOO_LARGE,
                        f"{path} on {host_name} is {attrs.size} bytes, more than the {max_bytes} allowed",
                    )
                data = cast(bytes, await f.read(max_bytes + 1))
            if len(data) > max_bytes:  # grew meanwhile, or a size the server does not report
                return SshError(
                    host_name,
                    SshErrorKind.TOO_LARGE,
                    f"{path} on {host_name} is more than the {max_bytes} bytes allowed",
                )
            return bytes(data)

        return await self._sftp_call(host_name, f"reading {path}", path, read, timeout)

    async def read_head(
        self,
        host_name: str,
        path: str,
        max_bytes: int,
        enough: Callable[[bytes], bool],
        *,
        chunk: int = 16384,
        timeout: float | None = None,  # noqa: ASYNC109 - enforced with asyncio.timeout inside
    ) -> bytes | SshError:
        """The start of a file over SFTP, read one chunk after another until `enough(data)` holds,
        the file ends, or `max_bytes` (then `too-large`).

        For generated files (`/proc`): they report no size, and `read_file`'s parallel reads at
        growing offsets make the kernel generate the file again for every chunk; here each chunk
        continues the previous one, and reading stops as soon as the caller has what it needs.
        """

        async def read(sftp: asyncssh.SFTPClient) -> bytes | SshError:
            data = bytearray()
            async with sftp.open(path, "rb") as f:
                while len(data) <= max_bytes:
                    block = cast(bytes, await f.read(chunk, len(data)))
                    if not block:
                        return bytes(data)
                    data += block
                    if enough(bytes(data)):
                        return bytes(data)
            return SshError(host_name, SshErrorKind.TOO_LARGE,
                            f"{path} on {host_name} is more than the {max_bytes} bytes allowed")

        return await self._sftp_call(host_name, f"reading {path}", path, read, timeout)

    async def append_file(
        self, host_name: str, path: str, data: bytes, *, mode: int = 0o640, timeout: float | None = None  # noqa: ASYNC109 - enforced inside
    ) -> SshError | None:
        """Append `data` to `path` over SFTP (O_APPEND; created with `mode`, parent dirs made) — no
        remote shell, so no login-script cost. One write call, so a line is never interleaved."""

        async def do(sftp: asyncssh.SFTPClient) -> None:
            parent = posixpath.dirname(path)
            if parent and not await sftp.exists(parent):
                await sftp.makedirs(parent, exist_ok=True)
            async with sftp.open(path, "ab", attrs=asyncssh.SFTPAttrs(permissions=mode)) as f:
                await f.write(data)

        result = await self._sftp_call(host_name, f"appending to {path}", path, do, timeout)
        return result if isinstance(result, SshError) else None

    async def stat(
        self,
        host_name: str,
        path: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - enforced with asyncio.timeout inside
    ) -> FileStat | SshError:
        """The attributes of `path` (symlinks followed), or an error (`no-such-file`, ...)."""

        async def do(sftp: asyncssh.SFTPClient) -> FileStat:
            return _file_stat(path, await sftp.stat(path))

        return await self._sftp_call(host_name, f"stat {path}", path, do, timeout)

    async def write_file_atomic(
        self,
        host_name: str,
        path: str,
        data: bytes,
        *,
        mode: int = 0o644,
        timeout: float | None = None,  # noqa: ASYNC109 - enforced with asyncio.timeout inside
    ) -> SshError | None:
        """Replace `path` atomically, keeping the original's owner and mode.

        A temporary file in the same directory is written, fsynced, given the original's owner
        and permission bits (or `mode` and the login's owner when there is no original), then
        renamed over `path` with `posix-rename@openssh.com`. On failure the temporary file is
        removed and `path` is untouched.
        """
        directory, base = posixpath.split(path)
        tmp = posixpath.join(directory, f".{base}.cockpit-{secrets.token_hex(4)}.tmp")

        async def do(sftp: asyncssh.SFTPClient) -> None:
            try:
                original: asyncssh.SFTPAttrs | None = await sftp.stat(path)
            except asyncssh.SFTPNoSuchFile:
                original = None
            try:
                async with sftp.open(tmp, "wb", asyncssh.SFTPAttrs(permissions=0o600)) as f:
                    await f.write(data)
                    with contextlib.suppress(asyncssh.SFTPOpUnsupported):
                        await f.fsync()
                    if original is not None and original.uid is not None and original.gid is not None:
                        await f.chown(original.uid, original.gid)  # before chmod: chown clears setuid
                    perms = mode
                    if original is not None and original.permissions is not None:
                        perms = stat_mod.S_IMODE(original.permissions)
                    await f.chmod(perms)
                await sftp.posix_rename(tmp, path)
            except BaseException:
                with contextlib.suppress(Exception):
                    await asyncio.shield(sftp.remove(tmp))
                raise

        error = await self._sftp_call(host_name, f"writing {path}", path, do, timeout)
        return error if isinstance(error, SshError) else None

    # -- forwards ----------------------------------------------------------------------------
    async def forward(self, host_name: str, remote_host: str, remote_port: int) -> tuple[str, int] | SshError:
        """A local port forward `127.0.0.1:<port>` → `remote_host:remote_port` as seen from the host.

        Cached per (host, remote) for the session, and it survives reconnects: each accepted
        socket opens a channel on the host's current connection. The connection is set up (and
        primed, see the module docstring) before the address is returned, so connection problems
        come back here as an `SshError`.
        """
        key = (host_name, remote_host, remote_port)
        if (fwd := self._forwards.get(key)) is not None:
            return fwd.address
        async with self._forward_locks.setdefault(key, asyncio.Lock()):
            if (fwd := self._forwards.get(key)) is not None:
                return fwd.address
            try:
                link = await self._link_for(host_name)
                await self._prime(link)
            except _Fail as f:
                return f.error
            holder: list[_Forward] = []

            async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                # the top of a server callback task: a cancelled one makes 3.11's streams log a
                # spurious "Exception in callback", so cancellation (from aclose) ends quietly here
                with contextlib.suppress(asyncio.CancelledError):
                    await self._serve_forward(holder[0], reader, writer)

            server = await asyncio.start_server(accepted, LOCALHOST, 0)
            for sock in server.sockets:
                _nodelay(sock)  # inherited by accepted sockets; set again on each below
            host, port = server.sockets[0].getsockname()[:2]
            fwd = _Forward(host_name, remote_host, remote_port, server, (str(host), int(port)))
            holder.append(fwd)
            self._forwards[key] = fwd
            return fwd.address

    def forward_error(self, host_name: str, remote_host: str, remote_port: int) -> SshError | None:
        """Why the last connection through this forward could not be tunnelled, if it could not."""
        fwd = self._forwards.get((host_name, remote_host, remote_port))
        return fwd.last_error if fwd is not None else None

    async def _serve_forward(self, fwd: _Forward, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closed:  # accepted while the pool was closing: nothing may outlive aclose()
            writer.close()
            return
        task = asyncio.current_task()
        if task is not None:
            fwd.tasks.add(task)
        sock = writer.get_extra_info("socket")
        if isinstance(sock, socket.socket):
            _nodelay(sock)
        target = self._targets[fwd.host]
        dest = f"{fwd.remote_host}:{fwd.remote_port}"
        try:
            try:
                link = await self._link_for(fwd.host)
                await self._prime(link)
                async with asyncio.timeout(self._env.ssh.connect_timeout):
                    async with link.channels:
                        chan_reader, chan_writer = await link.conn.open_connection(fwd.remote_host, fwd.remote_port)
            except _Fail as f:
                fwd.last_error = f.error
                writer.close()
                return
            except TimeoutError:
                fwd.last_error = self._timeout(target, self._env.ssh.connect_timeout, f"opening a channel to {dest}")
                writer.close()
                return
            except Exception as exc:
                fwd.last_error = self._op_error(target, target.link, exc, f"forwarding to {dest}")
                writer.close()
                return
            fwd.last_error = None
            await asyncio.gather(
                _pump(reader, chan_writer, (writer, chan_writer)),
                _pump(chan_reader, writer, (writer, chan_writer)),
            )
            writer.close()
            chan_writer.close()
        finally:
            if task is not None:
                fwd.tasks.discard(task)

    # -- closing -----------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Close forwards, SFTP sessions and connections (hosts first, then the bastion)."""
        self._closed = True
        for fwd in self._forwards.values():
            fwd.server.close()
            for task in list(fwd.tasks):
                task.cancel()
        for task in list(self._background):
            task.cancel()
        waits: list[Awaitable[Any]] = [*self._background]
        for fwd in self._forwards.values():
            waits.extend(fwd.tasks)
        if waits:
            await asyncio.gather(*waits, return_exceptions=True)
        for fwd in self._forwards.values():
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await fwd.server.wait_closed()
        self._forwards.clear()
        hosts = [t for t in self._targets.values() if t.link is not None]
        await asyncio.gather(*(self._close_link(t) for t in hosts), return_exceptions=True)
        if self._bastion is not None and self._bastion.link is not None:
            await self._close_link(self._bastion)

    async def _close_link(self, t: _Target) -> None:
        link, t.link = t.link, None
        if link is None:
            return
        if link.sftp is not None:
            link.sftp.exit()
        link.conn.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await link.conn.wait_closed()

    # -- connections -------------------------------------------------------------------------
    def _all_targets(self) -> list[_Target]:
        return [*([self._bastion] if self._bastion else []), *self._targets.values()]

    def _target(self, host_name: str) -> _Target:
        t = self._targets.get(host_name)
        if t is None:
            known = ", ".join(self._targets) or "(none)"
            raise _Fail(
                SshError(
                    host_name,
                    SshErrorKind.UNKNOWN_HOST,
                    f"no host named {host_name!r} in environment {self._env.name!r}; known: {known}",
                )
            )
        return t

    def _build_options(self, t: _Target) -> None:
        """The one options object for this target (asyncssh re-prepares it per connect)."""
        ssh = self._env.ssh
        kwargs: dict[str, Any] = {
            "host": t.address,
            "port": t.port,
            "known_hosts": str(ssh.known_hosts),
            # like ssh with its default ~/.ssh/config: a config file that does not exist is no config
            "config": [str(ssh.config)] if ssh.config is not None and ssh.config.is_file() else None,
            "keepalive_interval": KEEPALIVE_INTERVAL,
            "keepalive_count_max": KEEPALIVE_COUNT_MAX,
            "encryption_algs": ENCRYPTION_ALGS,
        }
        if ssh.identity_files:  # plus the agent's keys (SSH_AUTH_SOCK), which asyncssh tries first
            kwargs["client_keys"] = [str(p) for p in ssh.identity_files]
        if t.user:
            kwargs["username"] = t.user
        try:
            t.options = asyncssh.SSHClientConnectionOptions(**kwargs)
            t.options_error = None
            t.options_error = self._proxy_conflict(t, t.options)
            if t.options_error is not None:
                t.options = None
        except Exception as exc:  # an unreadable key or config file
            t.options = None
            t.options_error = SshError(
                t.name,
                SshErrorKind.CONFIG,
                f"cannot prepare SSH for {t.label}: {_describe(exc)} — check identity_files "
                f"({', '.join(str(p) for p in ssh.identity_files) or 'default keys'}) and the ssh config "
                f"({ssh.config or 'ignored'})",
            )

    def _proxy_conflict(self, t: _Target, options: asyncssh.SSHClientConnectionOptions) -> SshError | None:
        """The ssh config's ProxyJump / ProxyCommand for this host must agree with the inventory: the cockpit
        reaches hosts the way the inventory says (`jump` through its [bastion]), and never lets a config line
        silently send it around — or through — another host. A disagreement is refused, with what to change."""
        cfg = self._env.ssh.config
        jump = getattr(options, "tunnel", None)
        command = getattr(options, "proxy_command", None)
        via = jump if isinstance(jump, str) and jump else (" ".join(command) if command else "")
        if not via or t is self._bastion:
            return None
        bastion = self._env.bastion
        if not t.jump:
            return SshError(t.name, SshErrorKind.CONFIG,
                            f"the ssh config ({cfg}) sends {t.label} through {via!r}, but the inventory says jump = "
                            "false: the cockpit would go around it — set jump = true (and [bastion]) in the inventory, "
                            "or remove ProxyJump/ProxyCommand for this host from the ssh config")
        target = via.rsplit("@", 1)[-1]
        host, _, port = target.partition(":")
        if bastion is None or host != bastion.address or (port and int(port) != bastion.port):
            return SshError(t.name, SshErrorKind.CONFIG,
                            f"the ssh config ({cfg}) sends {t.label} through {via!r}, but the inventory's bastion is "
                            f"{bastion.address if bastion else 'none'}:{bastion.port if bastion else ''} — make them "
                            "agree (the cockpit always jumps through the inventory's bastion)")
        return None

    async def _link_for(self, host_name: str) -> _Link:
        return await self._ensure(self._target(host_name))

    async def _ensure(self, t: _Target) -> _Link:
        """The target's live connection, set up now if needed; raises `_Fail`."""
        if self._closed:
            raise _Fail(SshError(t.name, SshErrorKind.CLOSED, "the SSH pool is closed"))
        link = t.link
        if link is not None and link.alive():
            return link
        async with t.lock:
            link = t.link
            if link is not None and link.alive():
                return link
            if link is not None:  # dropped: noticed now, re-established below
                t.link = None
            loop = asyncio.get_running_loop()
            if t.last_error is not None and loop.time() < t.retry_at:
                raise _Fail(t.last_error)  # in back-off: fail fast with the last error
            if t.options is None:
                self._build_options(t)
            if t.options is None:
                assert t.options_error is not None
                raise _Fail(self._failed(t, t.options_error))
            if not (known_hosts := self._env.ssh.known_hosts).is_file():
                missing = SshError(
                    t.name,
                    SshErrorKind.CONFIG,
                    f"known_hosts file {known_hosts} does not exist; the cockpit verifies every host "
                    "key — create it with ssh-keyscan (after checking the fingerprints)",
                )
                raise _Fail(self._failed(t, missing))
            tunnel: _Tunnel | None = None
            if t.jump:
                assert self._bastion is not None
                try:
                    tunnel = _Tunnel(await self._ensure(self._bastion))
                except _Fail as f:
                    # the bastion's own back-off paces retries: this host is not penalised
                    t.last_error = _bastion_unreachable(t, f.error)
                    raise _Fail(t.last_error) from None
            try:
                async with self._connects:
                    t0 = time.perf_counter()
                    async with asyncio.timeout(self._env.ssh.connect_timeout):
                        conn = await asyncssh.connect(
                            t.address, t.port, tunnel=tunnel or (), config=None, options=t.options
                        )
            except Exception as exc:  # every failure becomes an SshError
                error = await self._connect_error(t, exc, tunnel)
                raise _Fail(self._failed(t, error)) from None
            t.connect_ms = (time.perf_counter() - t0) * 1000
            t.connects += 1
            t.failures = 0
            t.last_error = None
            link = _Link(conn, asyncio.Semaphore(self._env.ssh.max_channels), is_bastion=t is self._bastion)
            t.link = link
            if t is self._bastion:  # only forwards run over it: prime in the background
                self._spawn(self._prime(link))
            return link

    def _failed(self, t: _Target, error: SshError) -> SshError:
        """Record a failed attempt and start (or lengthen) the back-off."""
        t.failures += 1
        delay = min(BACKOFF_FIRST * 2 ** (t.failures - 1), BACKOFF_CAP)
        t.retry_at = asyncio.get_running_loop().time() + delay
        t.last_error = error
        return error

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def wrapped() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(wrapped())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _prime(self, link: _Link) -> None:
        """Run one session on the connection so sshd sets TCP_NODELAY on its side (best effort).

        Hosts keep the SFTP session opened for it; the bastion (never used for files) and
        connections limited to one channel close it again.
        """
        if link.primed:
            return
        try:
            async with asyncio.timeout(self._env.ssh.connect_timeout):
                if self._env.ssh.max_channels >= 2 and not link.is_bastion:
                    await self._sftp_client(link)
                    return
                async with link.sftp_lock:
                    if link.primed:
                        return
                    async with link.channels, link.conn.start_sftp_client():
                        pass
        except asyncio.CancelledError:
            raise
        except Exception:  # only latency is at stake
            return
        link.primed = True

    # -- SFTP --------------------------------------------------------------------------------
    async def _sftp_client(self, link: _Link) -> asyncssh.SFTPClient:
        """The connection's held SFTP session, opened on first use; it keeps one channel permit."""
        if link.sftp is not None:
            return link.sftp
        async with link.sftp_lock:
            if link.sftp is not None:
                return link.sftp
            await link.channels.acquire()
            try:
                async with asyncio.timeout(self._env.ssh.connect_timeout):
                    link.sftp = await link.conn.start_sftp_client()
            except BaseException:
                link.channels.release()
                raise
            link.primed = True
            return link.sftp

    def _drop_sftp(self, link: _Link) -> None:
        if link.sftp is not None:
            sftp, link.sftp = link.sftp, None
            sftp.exit()
            link.channels.release()

    async def _sftp_call(
        self,
        host_name: str,
        what: str,
        path: str,
        fn: Callable[[asyncssh.SFTPClient], Awaitable[T]],
        timeout: float | None,  # noqa: ASYNC109 - enforced with asyncio.timeout inside
    ) -> T | SshError:
        limit = self._env.ssh.command_timeout if timeout is None else timeout
        try:
            t = self._target(host_name)
            link = await self._link_for(host_name)
        except _Fail as f:
            return f.error
        try:
            async with asyncio.timeout(limit):
                if self._env.ssh.max_channels >= 2:
                    return await fn(await self._sftp_client(link))
                async with link.channels:  # one permit only: no session may be held
                    async with link.conn.start_sftp_client() as sftp:
                        link.primed = True
                        return await fn(sftp)
        except TimeoutError:
            return self._timeout(t, limit, what)
        except asyncssh.SFTPNoSuchFile as exc:
            return SshError(host_name, SshErrorKind.NO_SUCH_FILE, f"{path} on {host_name}: {exc.reason}")
        except asyncssh.SFTPPermissionDenied as exc:
            return SshError(host_name, SshErrorKind.PERMISSION, f"{what} on {host_name}: {exc.reason}")
        except asyncssh.SFTPConnectionLost as exc:
            self._drop_sftp(link)
            return self._op_error(t, link, exc, what)
        except asyncssh.SFTPError as exc:
            return SshError(host_name, SshErrorKind.SFTP, f"{what} on {host_name}: {exc.reason}")
        except Exception as exc:
            if not link.alive():
                self._drop_sftp(link)
            return self._op_error(t, link, exc, what)

    # -- errors ------------------------------------------------------------------------------
    def _timeout(self, t: _Target, seconds: float, what: str) -> SshError:
        return SshError(t.name, SshErrorKind.TIMEOUT, f"timed out after {seconds:g} s {what} on {t.label}")

    def _op_error(self, t: _Target, link: _Link | None, exc: BaseException, what: str) -> SshError:
        """An error on an established connection."""
        if isinstance(exc, asyncssh.ChannelOpenError) and (link is None or link.alive()):
            return SshError(t.name, SshErrorKind.CHANNEL, f"{t.label} refused a channel {what}: {exc.reason}")
        if isinstance(
            exc,
            asyncssh.ChannelOpenError
            | asyncssh.ConnectionLost
            | asyncssh.DisconnectError
            | ConnectionError
            | BrokenPipeError,
        ) or (link is not None and not link.alive()):
            return SshError(
                t.name,
                SshErrorKind.LOST,
                f"connection to {t.label} lost {what} ({_describe(exc)}); it is re-established on next use",
            )
        return SshError(t.name, SshErrorKind.BUG, f"unexpected error {what} on {t.label}: {_describe(exc)}")

    async def _connect_error(self, t: _Target, exc: BaseException, tunnel: _Tunnel | None) -> SshError:
        """What a failed connection set-up means, in words that say what to do."""
        ssh = self._env.ssh
        if isinstance(exc, asyncssh.HostKeyNotVerifiable):
            return await self._host_key_error(t, tunnel)
        if isinstance(exc, asyncssh.PermissionDenied):
            user = t.user or (t.options.username if t.options is not None else "") or "(default)"
            keys = ", ".join(str(p) for p in ssh.identity_files) or "the default keys"
            return SshError(
                t.name,
                SshErrorKind.AUTH,
                f"authentication refused by {t.label} for user {user} (tried {keys} and the agent's keys); "
                "check the user and that the public key is in its authorized_keys",
            )
        if isinstance(exc, TimeoutError):
            return SshError(
                t.name,
                SshErrorKind.TIMEOUT,
                f"timed out after {ssh.connect_timeout:g} s connecting to {t.label}"
                + (" through the bastion" if t.jump else ""),
            )
        if isinstance(exc, asyncssh.ChannelOpenError):  # the bastion could not reach the host
            return SshError(
                t.name,
                SshErrorKind.UNREACHABLE,
                f"unreachable: the bastion could not connect to {t.label}: {exc.reason}",
            )
        if isinstance(exc, ConnectionRefusedError):
            return SshError(t.name, SshErrorKind.UNREACHABLE, f"unreachable: {t.label} refused the connection")
        if isinstance(exc, OSError):
            return SshError(t.name, SshErrorKind.UNREACHABLE, f"unreachable: {t.label}: {_describe(exc)}")
        if isinstance(exc, asyncssh.Error):
            return SshError(
                t.name,
                SshErrorKind.UNREACHABLE,
                f"unreachable: SSH set-up with {t.label} failed: {_describe(exc)}",
            )
        return SshError(t.name, SshErrorKind.BUG, f"unexpected error connecting to {t.label}: {_describe(exc)}")

    async def _host_key_error(self, t: _Target, tunnel: _Tunnel | None) -> SshError:
        """Unknown or changed host key: name the file, the fingerprints and the fix."""
        kh = self._env.ssh.known_hosts
        presented = ""
        with contextlib.suppress(Exception):
            async with self._connects:
                async with asyncio.timeout(self._env.ssh.connect_timeout):
                    key = await asyncssh.get_server_host_key(
                        t.address, t.port, tunnel=tunnel or (), config=None, options=t.options
                    )
            if key is not None:
                presented = f"{key.get_algorithm()} {key.get_fingerprint()}"
        known: list[str] = []
        with contextlib.suppress(Exception):
            matched = asyncssh.read_known_hosts(str(kh)).match(t.address, t.address, t.port)
            known = [f"{k.get_algorithm()} {k.get_fingerprint()}" for k in matched[0]]
        where = " (run it on the bastion)" if t.jump else ""
        scan = f"ssh-keyscan -p {t.port} {t.address} >> {kh}" if t.port != 22 else f"ssh-keyscan {t.address} >> {kh}"
        shown = f"the server presented {presented}" if presented else "the server's key could not be fetched"
        if known:
            message = (
                f"host key for {t.label} changed: {kh} has {', '.join(known)}, {shown} — if the host "
                f"was rebuilt, verify the new fingerprint with its owner, then `ssh-keygen -R '{t.endpoint}' "
                f"-f {kh}` and `{scan}`{where}; the cockpit never accepts unknown keys"
            )
        else:
            message = (
                f"host key for {t.label} is not in {kh} (or changed) — {shown}; verify the fingerprint "
                f"with the host's owner and add it with `{scan}`{where}; the cockpit never accepts "
                "unknown keys"
            )
        return SshError(t.name, SshErrorKind.HOST_KEY, message)


def _bastion_unreachable(t: _Target, cause: SshError) -> SshError:
    return SshError(t.name, SshErrorKind.BASTION, f"bastion unreachable: {cause.message}")


# --------------------------------------------------------------------------------------------
# helpers


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.Error):
        return exc.reason or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _nodelay(sock: socket.socket) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _file_stat(path: str, attrs: asyncssh.SFTPAttrs) -> FileStat:
    return FileStat(
        path=path,
        size=attrs.size or 0,
        mode=attrs.permissions or 0,
        uid=attrs.uid if attrs.uid is not None else -1,
        gid=attrs.gid if attrs.gid is not None else -1,
        mtime=float(attrs.mtime or 0),
    )


async def _pump(reader: _Reader, writer: _Writer, both: tuple[_Writer, _Writer]) -> None:
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


# --------------------------------------------------------------------------------------------
# the check


async def check_reachable(pool: SshPool, host_name: str, *, round_trip: bool = True) -> CheckResult:
    """ssh.reachable: the host answers over its shared connection (an SFTP stat of "/").

    With `round_trip=False` a connection that is already up counts as reachable without a
    request (the caller's own reads on it prove it; asyncssh keepalives notice a dead peer).

    FAIL when the host itself cannot be reached or refuses us (unreachable, timeout, host key,
    authentication); ERROR when it could not be measured (bastion down, local configuration).
    """
    t0 = time.perf_counter()
    check = "ssh.reachable"
    try:
        host: Host | None = pool.env.host(host_name)
    except KeyError:
        host = None
    evidence: dict[str, Any] = {}
    if host is not None:
        bastion = pool.env.bastion
        evidence = {
            "address": host.address,
            "port": host.port,
            "via": f"bastion {bastion.address}:{bastion.port}" if host.jump and bastion else "direct",
        }
    try:
        reused = pool.connected(host_name)
        error = await pool.connect(host_name)
        if error is None:
            evidence["reused"] = reused
            if not reused and (ms := pool.connect_ms(host_name)) is not None:
                evidence["connect_ms"] = round(ms, 1)
            if reused and not round_trip:
                return CheckResult(check, host_name, Verdict.OK,
                                   "reachable" + (" through the bastion" if host is not None and host.jump else ""),
                                   evidence, _ms(t0))
            r0 = time.perf_counter()
            st = await pool.stat(host_name, "/")
            if isinstance(st, SshError):
                error = st
            else:
                evidence["rtt_ms"] = round((time.perf_counter() - r0) * 1000, 2)
                return CheckResult(
                    check,
                    host_name,
                    Verdict.OK,
                    "reachable" + (" through the bastion" if host is not None and host.jump else ""),
                    evidence,
                    _ms(t0),
                )
        evidence["error_kind"] = error.kind.value
        if error.kind in (SshErrorKind.NO_SUCH_FILE, SshErrorKind.PERMISSION, SshErrorKind.SFTP):
            return CheckResult(
                check,
                host_name,
                Verdict.WARN,
                f"connected, but SFTP failed: {error.message}",
                evidence,
                _ms(t0),
            )
        measured_bad = error.kind in (
            SshErrorKind.UNREACHABLE,
            SshErrorKind.TIMEOUT,
            SshErrorKind.HOST_KEY,
            SshErrorKind.AUTH,
            SshErrorKind.LOST,
            SshErrorKind.CHANNEL,
        )
        return CheckResult(
            check,
            host_name,
            Verdict.FAIL if measured_bad else Verdict.ERROR,
            error.message,
            evidence,
            _ms(t0),
        )
    except Exception as exc:  # a probe never raises
        return CheckResult(
            check,
            host_name,
            Verdict.ERROR,
            f"probe bug (not a server fact): {type(exc).__name__}: {exc}",
            {"exception": type(exc).__name__, "detail": str(exc)[:500]},
            _ms(t0),
        )


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000
