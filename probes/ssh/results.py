"""What SSH calls return: a command's result, a file's attributes, and a failure as a value (`SshError`,
with an `SshErrorKind` for code that decides and a message for people)."""

from __future__ import annotations

import enum
import stat as stat_mod
from dataclasses import dataclass

from probes.model import Why


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
