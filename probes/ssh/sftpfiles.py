"""The file operations the pool runs on a held SFTP session (no remote shell, so no login-script cost):
bounded reads, a read that stops once the caller has enough, an append and an atomic replace."""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import stat as stat_mod
from collections.abc import Callable
from typing import cast

import asyncssh

from probes.ssh.results import SshError, SshErrorKind


async def read_all(sftp: asyncssh.SFTPClient, host_name: str, path: str, max_bytes: int) -> bytes | SshError:
    """The whole file, or `too-large` beyond `max_bytes`."""
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


async def read_until(
    sftp: asyncssh.SFTPClient, host_name: str, path: str, max_bytes: int, enough: Callable[[bytes], bool], chunk: int
) -> bytes | SshError:
    """The start of the file, one chunk after another until `enough(data)`, the end, or `max_bytes`."""
    data = bytearray()
    async with sftp.open(path, "rb") as f:
        while len(data) <= max_bytes:
            block = cast(bytes, await f.read(chunk, len(data)))
            if not block:
                return bytes(data)
            data += block
            if enough(bytes(data)):
                return bytes(data)
    return SshError(
        host_name, SshErrorKind.TOO_LARGE, f"{path} on {host_name} is more than the {max_bytes} bytes allowed"
    )


async def append(sftp: asyncssh.SFTPClient, path: str, data: bytes, mode: int) -> None:
    """One O_APPEND write (created with `mode`, parent dirs made), so a line is never interleaved."""
    parent = posixpath.dirname(path)
    if parent and not await sftp.exists(parent):
        await sftp.makedirs(parent, exist_ok=True)
    async with sftp.open(path, "ab", attrs=asyncssh.SFTPAttrs(permissions=mode)) as f:
        await f.write(data)


async def replace_atomic(sftp: asyncssh.SFTPClient, path: str, tmp: str, data: bytes, mode: int) -> None:
    """Write `tmp`, fsync, give it the original's owner and mode, rename it over `path`; remove it on failure."""
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
