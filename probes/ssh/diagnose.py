"""What an SSH failure means, in words that say what to do: the `SshError` for a failed connection set-up
(host key, authentication, timeout, unreachable), for an error on an established connection, and for a
timeout — each naming the host and, where there is one, the exact command that fixes it."""

from __future__ import annotations

import asyncio
import contextlib

import asyncssh

from inventory.model import Environment
from probes.ssh.links import Link, Target, Tunnel, describe
from probes.ssh.results import SshError, SshErrorKind


def timeout_error(t: Target, seconds: float, what: str) -> SshError:
    return SshError(t.name, SshErrorKind.TIMEOUT, f"timed out after {seconds:g} s {what} on {t.label}")


def op_error(t: Target, link: Link | None, exc: BaseException, what: str) -> SshError:
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
            f"connection to {t.label} lost {what} ({describe(exc)}); it is re-established on next use",
        )
    return SshError(t.name, SshErrorKind.BUG, f"unexpected error {what} on {t.label}: {describe(exc)}")


async def connect_error(
    env: Environment, connects: asyncio.Semaphore, t: Target, exc: BaseException, tunnel: Tunnel | None
) -> SshError:
    """What a failed connection set-up means, in words that say what to do."""
    ssh = env.ssh
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return await host_key_error(env, connects, t, tunnel)
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
        return SshError(t.name, SshErrorKind.UNREACHABLE, f"unreachable: {t.label}: {describe(exc)}")
    if isinstance(exc, asyncssh.Error):
        return SshError(
            t.name,
            SshErrorKind.UNREACHABLE,
            f"unreachable: SSH set-up with {t.label} failed: {describe(exc)}",
        )
    return SshError(t.name, SshErrorKind.BUG, f"unexpected error connecting to {t.label}: {describe(exc)}")


async def host_key_error(env: Environment, connects: asyncio.Semaphore, t: Target, tunnel: Tunnel | None) -> SshError:
    """Unknown or changed host key: name the file, the fingerprints and the fix."""
    kh = env.ssh.known_hosts
    presented = ""
    with contextlib.suppress(Exception):
        async with connects:
            async with asyncio.timeout(env.ssh.connect_timeout):
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


def bastion_unreachable(t: Target, cause: SshError) -> SshError:
    return SshError(t.name, SshErrorKind.BASTION, f"bastion unreachable: {cause.message}")
