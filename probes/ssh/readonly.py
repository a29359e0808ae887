"""The read-only SSH capability: what the collector may do on hosts, and nothing else.

`ReadOnlyHosts` is the type the collector (`probes.collect`) is written against: read a file, read the
head of a generated one (/proc/net/tcp), stat, open a tunnel for the probes, and run one of the
inventory's named checks (`ReadOnlyCommand`: the command itself comes from the inventory, never from the
caller). It has no way to write a file, append to one or run an arbitrary command, so mypy rejects any
such call in the collector. `ReadOnlyPool` wraps an `SshPool` and exposes exactly that; only `plans/`
(engine, store, journal, certs) holds the pool itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from inventory.model import Environment, ReadOnlyCommand
from probes.ssh.pool import SshPool
from probes.ssh.reach import Reachable
from probes.ssh.results import CommandResult, FileStat, SshError, SshErrorKind


class ReadOnlyHosts(Reachable, Protocol):
    """Reading hosts: files, /proc, tunnels and the inventory's named checks — never a write."""

    async def read_file(
        self,
        host_name: str,
        path: str,
        max_bytes: int,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> bytes | SshError: ...

    async def read_head(
        self,
        host_name: str,
        path: str,
        max_bytes: int,
        enough: Callable[[bytes], bool],
        *,
        chunk: int = 16384,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> bytes | SshError: ...

    async def forward(self, host_name: str, remote_host: str, remote_port: int) -> tuple[str, int] | SshError: ...

    async def run_check(
        self,
        host_name: str,
        name: ReadOnlyCommand,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> CommandResult: ...

    async def aclose(self) -> None: ...


class ReadOnlyPool:
    """An `SshPool` seen through `ReadOnlyHosts`: the read calls pass through, nothing else exists here."""

    __slots__ = ("_pool",)

    def __init__(self, pool: SshPool) -> None:
        self._pool = pool

    @property
    def env(self) -> Environment:
        return self._pool.env

    def connected(self, host_name: str) -> bool:
        return self._pool.connected(host_name)

    async def connect(self, host_name: str) -> SshError | None:
        return await self._pool.connect(host_name)

    def connect_ms(self, host_name: str) -> float | None:
        return self._pool.connect_ms(host_name)

    async def stat(self, host_name: str, path: str, *, timeout: float | None = None) -> FileStat | SshError:  # noqa: ASYNC109
        return await self._pool.stat(host_name, path, timeout=timeout)

    async def read_file(
        self,
        host_name: str,
        path: str,
        max_bytes: int,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> bytes | SshError:
        return await self._pool.read_file(host_name, path, max_bytes, timeout=timeout)

    async def read_head(
        self,
        host_name: str,
        path: str,
        max_bytes: int,
        enough: Callable[[bytes], bool],
        *,
        chunk: int = 16384,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> bytes | SshError:
        return await self._pool.read_head(host_name, path, max_bytes, enough, chunk=chunk, timeout=timeout)

    async def forward(self, host_name: str, remote_host: str, remote_port: int) -> tuple[str, int] | SshError:
        return await self._pool.forward(host_name, remote_host, remote_port)

    async def run_check(
        self,
        host_name: str,
        name: ReadOnlyCommand,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> CommandResult:
        """Run the inventory's `name` check on the host (its `running_check`, or `commands.telpro_ssl_check`)."""
        env = self._pool.env
        try:
            host = env.host(host_name)
        except KeyError as exc:
            return _not_run(host_name, name, SshErrorKind.UNKNOWN_HOST, str(exc))
        command = env.running_check_command(host) if name == "running_check" else env.telpro_check_command(host)
        if not command:
            return _not_run(host_name, name, SshErrorKind.CONFIG, f"the inventory gives {host.service} no {name}")
        return await self._pool.run(host_name, command, timeout=timeout)

    async def aclose(self) -> None:
        await self._pool.aclose()


def _not_run(host_name: str, name: str, kind: SshErrorKind, why: str) -> CommandResult:
    t0 = time.perf_counter()
    return CommandResult(host_name, name, None, "", "", (time.perf_counter() - t0) * 1000, why, kind)
