"""The ssh.reachable check: a host answers over its shared connection. Typed against `Reachable`, the few
read-only calls it makes, so the collector's read-only view and the engine's pool can both run it."""

from __future__ import annotations

import time
from typing import Any, Protocol

from inventory.model import Environment, Host
from probes.model import CheckResult, Verdict
from probes.ssh.results import FileStat, SshError, SshErrorKind

CHECK = "ssh.reachable"
_MEASURED_BAD = (  # the host itself cannot be reached or refuses us: FAIL; anything else could not measure
    SshErrorKind.UNREACHABLE,
    SshErrorKind.TIMEOUT,
    SshErrorKind.HOST_KEY,
    SshErrorKind.AUTH,
    SshErrorKind.LOST,
    SshErrorKind.CHANNEL,
)


class Reachable(Protocol):
    """What `check_reachable` needs of a pool: its environment, its connections, and one SFTP stat."""

    @property
    def env(self) -> Environment: ...

    def connected(self, host_name: str) -> bool: ...

    async def connect(self, host_name: str) -> SshError | None: ...

    def connect_ms(self, host_name: str) -> float | None: ...

    async def stat(self, host_name: str, path: str, *, timeout: float | None = None) -> FileStat | SshError: ...  # noqa: ASYNC109


async def check_reachable(pool: Reachable, host_name: str, *, round_trip: bool = True) -> CheckResult:
    """ssh.reachable: the host answers over its shared connection (an SFTP stat of "/").

    With `round_trip=False` a connection that is already up counts as reachable without a
    request (the caller's own reads on it prove it; asyncssh keepalives notice a dead peer).

    FAIL when the host itself cannot be reached or refuses us (unreachable, timeout, host key,
    authentication); ERROR when it could not be measured (bastion down, local configuration).
    """
    t0 = time.perf_counter()
    try:
        host: Host | None = pool.env.host(host_name)
    except KeyError:
        host = None
    evidence = _route(pool.env, host)
    try:
        return await _reach(pool, host_name, host, round_trip, evidence, t0)
    except Exception as exc:  # a probe never raises
        return CheckResult(
            CHECK,
            host_name,
            Verdict.ERROR,
            f"probe bug (not a server fact): {type(exc).__name__}: {exc}",
            {"exception": type(exc).__name__, "detail": str(exc)[:500]},
            _ms(t0),
        )


def _route(env: Environment, host: Host | None) -> dict[str, Any]:
    if host is None:
        return {}
    bastion = env.bastion
    return {
        "address": host.address,
        "port": host.port,
        "via": f"bastion {bastion.address}:{bastion.port}" if host.jump and bastion else "direct",
    }


async def _reach(
    pool: Reachable, host_name: str, host: Host | None, round_trip: bool, evidence: dict[str, Any], t0: float
) -> CheckResult:
    reached = "reachable" + (" through the bastion" if host is not None and host.jump else "")
    reused = pool.connected(host_name)
    error = await pool.connect(host_name)
    if error is None:
        evidence["reused"] = reused
        if not reused and (ms := pool.connect_ms(host_name)) is not None:
            evidence["connect_ms"] = round(ms, 1)
        if reused and not round_trip:
            return CheckResult(CHECK, host_name, Verdict.OK, reached, evidence, _ms(t0))
        r0 = time.perf_counter()
        st = await pool.stat(host_name, "/")
        if isinstance(st, SshError):
            error = st
        else:
            evidence["rtt_ms"] = round((time.perf_counter() - r0) * 1000, 2)
            return CheckResult(CHECK, host_name, Verdict.OK, reached, evidence, _ms(t0))
    evidence["error_kind"] = error.kind.value
    if error.kind in (SshErrorKind.NO_SUCH_FILE, SshErrorKind.PERMISSION, SshErrorKind.SFTP):
        return CheckResult(
            CHECK, host_name, Verdict.WARN, f"connected, but SFTP failed: {error.message}", evidence, _ms(t0)
        )
    verdict = Verdict.FAIL if error.kind in _MEASURED_BAD else Verdict.ERROR
    return CheckResult(CHECK, host_name, verdict, error.message, evidence, _ms(t0))


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000
