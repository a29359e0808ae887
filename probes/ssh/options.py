"""The one asyncssh options object per host (asyncssh re-prepares it per connect): host keys always
verified against `ssh.known_hosts`, keepalives, the ciphers, and the ssh config held to the inventory."""

from __future__ import annotations

from typing import Any, Final

import asyncssh
from asyncssh.encryption import get_default_encryption_algs

from inventory.model import Environment
from probes.ssh.links import Target, describe
from probes.ssh.results import SshError, SshErrorKind

KEEPALIVE_INTERVAL: Final = 15.0  # detects a silently dead peer in ~45 s
KEEPALIVE_COUNT_MAX: Final = 3
# AES-GCM first: asyncssh does it in one `cryptography` call per packet, where its ChaCha20-Poly1305
# (OpenSSH's first choice) builds two cipher contexts per packet — most of the CPU of a cold round
# through the bastion (every byte to a host is encrypted twice). The rest of asyncssh's list stays,
# for servers without AES-GCM.
_GCM: Final = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
ENCRYPTION_ALGS: Final = [*_GCM, *(a.decode() for a in get_default_encryption_algs() if a.decode() not in _GCM)]


def build_options(env: Environment, t: Target, *, is_bastion: bool) -> None:
    """Set `t.options` (or `t.options_error` when the local files or the ssh config make it unusable)."""
    ssh = env.ssh
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
        t.options_error = None if is_bastion else proxy_conflict(env, t, t.options)
        if t.options_error is not None:
            t.options = None
    except Exception as exc:  # an unreadable key or config file
        t.options = None
        t.options_error = SshError(
            t.name,
            SshErrorKind.CONFIG,
            f"cannot prepare SSH for {t.label}: {describe(exc)} — check identity_files "
            f"({', '.join(str(p) for p in ssh.identity_files) or 'default keys'}) and the ssh config "
            f"({ssh.config or 'ignored'})",
        )


def proxy_conflict(env: Environment, t: Target, options: asyncssh.SSHClientConnectionOptions) -> SshError | None:
    """The ssh config's ProxyJump / ProxyCommand for this host must agree with the inventory: the cockpit
    reaches hosts the way the inventory says (`jump` through its [bastion]), and never lets a config line
    silently send it around — or through — another host. A disagreement is refused, with what to change."""
    cfg = env.ssh.config
    jump = getattr(options, "tunnel", None)
    command = getattr(options, "proxy_command", None)
    via = jump if isinstance(jump, str) and jump else (" ".join(command) if command else "")
    if not via:
        return None
    bastion = env.bastion
    if not t.jump:
        return SshError(
            t.name,
            SshErrorKind.CONFIG,
            f"the ssh config ({cfg}) sends {t.label} through {via!r}, but the inventory says jump = "
            "false: the cockpit would go around it — set jump = true (and [bastion]) in the inventory, "
            "or remove ProxyJump/ProxyCommand for this host from the ssh config",
        )
    target = via.rsplit("@", 1)[-1]
    host, _, port = target.partition(":")
    if bastion is None or host != bastion.address or (port and int(port) != bastion.port):
        return SshError(
            t.name,
            SshErrorKind.CONFIG,
            f"the ssh config ({cfg}) sends {t.label} through {via!r}, but the inventory's bastion is "
            f"{bastion.address if bastion else 'none'}:{bastion.port if bastion else ''} — make them "
            "agree (the cockpit always jumps through the inventory's bastion)",
        )
    return None
