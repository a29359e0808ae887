"""`SshPool`: one SSH connection per host of an environment, shared by commands, SFTP and forwards (see the
`probes.ssh` package docstring for the limits it is built around). Nothing public raises for network or
server trouble: commands return `CommandResult`, file calls return `SshError` values."""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import asyncssh

from inventory.model import Environment
from probes.ssh.diagnose import bastion_unreachable, connect_error, op_error, timeout_error
from probes.ssh.links import Fail, Forward, Link, Target, Tunnel, file_stat, nodelay, pump, text
from probes.ssh.options import build_options
from probes.ssh.results import CommandResult, FileStat, SshError, SshErrorKind
from probes.ssh.sftpfiles import append, read_all, read_until, replace_atomic

BACKOFF_FIRST: Final = 0.2  # seconds after the first failed connect attempt
BACKOFF_CAP: Final = 5.0
CLOSE_TIMEOUT: Final = 5.0
LOCALHOST: Final = "127.0.0.1"
_BASTION: Final = "(bastion)"  # the bastion's key among targets; never a valid host name

T = TypeVar("T")


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
        self._targets: dict[str, Target] = {}
        self._bastion: Target | None = None
        if env.bastion is not None:
            b = env.bastion
            self._bastion = Target(_BASTION, "bastion", b.address, b.port, b.user, jump=False)
        for h in env.hosts:
            self._targets[h.name] = Target(h.name, h.name, h.address, h.port, h.user, h.jump)
        for t in self._all_targets():
            build_options(self._env, t, is_bastion=t is self._bastion)
        self._forwards: dict[tuple[str, str, int], Forward] = {}
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
        except Fail as f:
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
        except Fail as f:
            return result(None, "", "", f.error)
        deadline = asyncio.get_running_loop().time() + limit
        process = await self._start_process(target, link, command, input, deadline, limit)
        if isinstance(process, SshError):
            return result(None, "", "", process)
        link.primed = True
        try:
            remaining = max(0.0, deadline - asyncio.get_running_loop().time())
            done = await process.wait(check=False, timeout=remaining)  # returns once the channel closed
        except asyncssh.TimeoutError as exc:
            self._abandon(process, link)
            return result(
                exc.exit_status,
                text(exc.stdout),
                text(exc.stderr),
                timeout_error(target, limit, f"running {command!r}"),
            )
        except BaseException as exc:
            self._abandon(process, link)
            if not isinstance(exc, Exception):
                raise  # cancelled
            return result(None, "", "", op_error(target, link, exc, f"running {command!r}"))
        link.channels.release()
        return result(done.exit_status, text(done.stdout), text(done.stderr))

    async def _start_process(
        self, target: Target, link: Link, command: str, input: str | None, deadline: float, limit: float
    ) -> asyncssh.SSHClientProcess[str] | SshError:
        """A channel permit, then the command's channel, both by `deadline`; the permit is kept by the
        process (given back when it ends) and released here only when no process started."""
        try:
            async with asyncio.timeout_at(deadline):
                await link.channels.acquire()
        except TimeoutError:
            return timeout_error(target, limit, f"waiting for a channel for {command!r}")
        try:
            async with asyncio.timeout_at(deadline):
                return await link.conn.create_process(
                    command,
                    input=input,
                    stdin=asyncssh.PIPE if input is not None else asyncssh.DEVNULL,
                    encoding="utf-8",
                    errors="replace",
                )
        except TimeoutError:
            link.channels.release()
            return timeout_error(target, limit, f"opening a channel for {command!r}")
        except Exception as exc:  # every failure becomes a result
            link.channels.release()
            return op_error(target, link, exc, f"running {command!r}")

    def _abandon(self, process: asyncssh.SSHClientProcess[str], link: Link) -> None:
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

        def read(sftp: asyncssh.SFTPClient) -> Awaitable[bytes | SshError]:
            return read_all(sftp, host_name, path, max_bytes)

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

        def read(sftp: asyncssh.SFTPClient) -> Awaitable[bytes | SshError]:
            return read_until(sftp, host_name, path, max_bytes, enough, chunk)

        return await self._sftp_call(host_name, f"reading {path}", path, read, timeout)

    async def append_file(
        self,
        host_name: str,
        path: str,
        data: bytes,
        *,
        mode: int = 0o640,
        timeout: float | None = None,  # noqa: ASYNC109 - enforced inside
    ) -> SshError | None:
        """Append `data` to `path` over SFTP (O_APPEND; created with `mode`, parent dirs made) — no
        remote shell, so no login-script cost. One write call, so a line is never interleaved."""

        def do(sftp: asyncssh.SFTPClient) -> Awaitable[None]:
            return append(sftp, path, data, mode)

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
            return file_stat(path, await sftp.stat(path))

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

        def do(sftp: asyncssh.SFTPClient) -> Awaitable[None]:
            return replace_atomic(sftp, path, tmp, data, mode)

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
            except Fail as f:
                return f.error
            holder: list[Forward] = []

            async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                # the top of a server callback task: a cancelled one makes 3.11's streams log a
                # spurious "Exception in callback", so cancellation (from aclose) ends quietly here
                with contextlib.suppress(asyncio.CancelledError):
                    await self._serve_forward(holder[0], reader, writer)

            server = await asyncio.start_server(accepted, LOCALHOST, 0)
            for sock in server.sockets:
                nodelay(sock)  # inherited by accepted sockets; set again on each below
            host, port = server.sockets[0].getsockname()[:2]
            fwd = Forward(host_name, remote_host, remote_port, server, (str(host), int(port)))
            holder.append(fwd)
            self._forwards[key] = fwd
            return fwd.address

    def forward_error(self, host_name: str, remote_host: str, remote_port: int) -> SshError | None:
        """Why the last connection through this forward could not be tunnelled, if it could not."""
        fwd = self._forwards.get((host_name, remote_host, remote_port))
        return fwd.last_error if fwd is not None else None

    async def _serve_forward(self, fwd: Forward, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closed:  # accepted while the pool was closing: nothing may outlive aclose()
            writer.close()
            return
        task = asyncio.current_task()
        if task is not None:
            fwd.tasks.add(task)
        sock = writer.get_extra_info("socket")
        if isinstance(sock, socket.socket):
            nodelay(sock)
        target = self._targets[fwd.host]
        dest = f"{fwd.remote_host}:{fwd.remote_port}"
        try:
            try:
                link = await self._link_for(fwd.host)
                await self._prime(link)
                async with asyncio.timeout(self._env.ssh.connect_timeout):
                    async with link.channels:
                        chan_reader, chan_writer = await link.conn.open_connection(fwd.remote_host, fwd.remote_port)
            except Fail as f:
                fwd.last_error = f.error
            except TimeoutError:
                fwd.last_error = timeout_error(target, self._env.ssh.connect_timeout, f"opening a channel to {dest}")
            except Exception as exc:
                fwd.last_error = op_error(target, target.link, exc, f"forwarding to {dest}")
            else:
                fwd.last_error = None
            if fwd.last_error is not None:
                writer.close()
                return
            await asyncio.gather(
                pump(reader, chan_writer, (writer, chan_writer)),
                pump(chan_reader, writer, (writer, chan_writer)),
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

    async def _close_link(self, t: Target) -> None:
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
    def _all_targets(self) -> list[Target]:
        return [*([self._bastion] if self._bastion else []), *self._targets.values()]

    def _target(self, host_name: str) -> Target:
        t = self._targets.get(host_name)
        if t is None:
            known = ", ".join(self._targets) or "(none)"
            raise Fail(
                SshError(
                    host_name,
                    SshErrorKind.UNKNOWN_HOST,
                    f"no host named {host_name!r} in environment {self._env.name!r}; known: {known}",
                )
            )
        return t

    async def _link_for(self, host_name: str) -> Link:
        return await self._ensure(self._target(host_name))

    async def _ensure(self, t: Target) -> Link:
        """The target's live connection, set up now if needed; raises `Fail`."""
        if self._closed:
            raise Fail(SshError(t.name, SshErrorKind.CLOSED, "the SSH pool is closed"))
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
                raise Fail(t.last_error)  # in back-off: fail fast with the last error
            if t.options is None:
                build_options(self._env, t, is_bastion=t is self._bastion)
            if t.options is None:
                assert t.options_error is not None
                raise Fail(self._failed(t, t.options_error))
            if not (known_hosts := self._env.ssh.known_hosts).is_file():
                missing = SshError(
                    t.name,
                    SshErrorKind.CONFIG,
                    f"known_hosts file {known_hosts} does not exist; the cockpit verifies every host "
                    "key — create it with ssh-keyscan (after checking the fingerprints)",
                )
                raise Fail(self._failed(t, missing))
            tunnel: Tunnel | None = None
            if t.jump:
                assert self._bastion is not None
                try:
                    tunnel = Tunnel(await self._ensure(self._bastion))
                except Fail as f:
                    # the bastion's own back-off paces retries: this host is not penalised
                    t.last_error = bastion_unreachable(t, f.error)
                    raise Fail(t.last_error) from None
            try:
                async with self._connects:
                    t0 = time.perf_counter()
                    async with asyncio.timeout(self._env.ssh.connect_timeout):
                        conn = await asyncssh.connect(
                            t.address, t.port, tunnel=tunnel or (), config=None, options=t.options
                        )
            except Exception as exc:  # every failure becomes an SshError
                error = await connect_error(self._env, self._connects, t, exc, tunnel)
                raise Fail(self._failed(t, error)) from None
            t.connect_ms = (time.perf_counter() - t0) * 1000
            t.connects += 1
            t.failures = 0
            t.last_error = None
            link = Link(conn, asyncio.Semaphore(self._env.ssh.max_channels), is_bastion=t is self._bastion)
            t.link = link
            if t is self._bastion:  # only forwards run over it: prime in the background
                self._spawn(self._prime(link))
            return link

    def _failed(self, t: Target, error: SshError) -> SshError:
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

    async def _prime(self, link: Link) -> None:
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
    async def _sftp_client(self, link: Link) -> asyncssh.SFTPClient:
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

    def _drop_sftp(self, link: Link) -> None:
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
        except Fail as f:
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
            return timeout_error(t, limit, what)
        except asyncssh.SFTPNoSuchFile as exc:
            return SshError(host_name, SshErrorKind.NO_SUCH_FILE, f"{path} on {host_name}: {exc.reason}")
        except asyncssh.SFTPPermissionDenied as exc:
            return SshError(host_name, SshErrorKind.PERMISSION, f"{what} on {host_name}: {exc.reason}")
        except asyncssh.SFTPConnectionLost as exc:
            self._drop_sftp(link)
            return op_error(t, link, exc, what)
        except asyncssh.SFTPError as exc:
            return SshError(host_name, SshErrorKind.SFTP, f"{what} on {host_name}: {exc.reason}")
        except Exception as exc:
            if not link.alive():
                self._drop_sftp(link)
            return op_error(t, link, exc, what)
