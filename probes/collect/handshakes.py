"""The database host's four listeners: Postgres, PgBouncer, Redis plaintext and Redis TLS — a handshake on
each, and what the host says is bound (/proc/net/tcp).

These are raw facts: a listener that declines TLS is `answer = "N"`, one that is not bound is
`listening = False`, each with the verdict a handshake gives it. Whether that is the rollout's state or a
problem depends on the configuration, and is judged in `plans.judge`.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from typing import Any

from inventory.model import Environment
from probes import pem, tls
from probes.collect.fleetconfig import ProbeCredentials
from probes.model import CheckResult, Unknown, Verdict, Why, error_result
from probes.snapshot import Handshake
from probes.ssh.results import SshError, ssh_why

# the listener.bound label of each of the database's ports (plans.judge reads the Redis ones)
POSTGRES, PGBOUNCER, REDIS, REDIS_TLS = "postgres", "pgbouncer", "redis", "redis TLS"


@dataclass(frozen=True)
class Endpoints:
    """Where each listener is dialled: a tunnel's local end or the host itself (or why there is none)."""

    postgres: tuple[str, int] | SshError | None
    pgbouncer: tuple[str, int] | SshError | None
    redis: tuple[str, int] | SshError | None
    redis_tls: tuple[str, int] | SshError | None

    def names(self, env: Environment) -> dict[str, str]:
        """`ip:port` dialled → `<database host>:<port>`, the name people read."""
        d, db = env.database, env.database_host
        pairs = (
            (self.postgres, d.postgres_port),
            (self.pgbouncer, d.pgbouncer_port),
            (self.redis, d.redis_port),
            (self.redis_tls, d.redis_tls_port),
        )
        return {f"{ep[0]}:{ep[1]}": f"{db.name}:{port}" for ep, port in pairs if isinstance(ep, tuple)}


def handshake(r: CheckResult) -> Handshake | Unknown:
    """A handshake result as verified / offered but not verified / not offered, or unknown. A
    handshake with no internal CA to verify against proves nothing: unknown, not verified."""
    if r.verdict is Verdict.ERROR:
        return r.as_unknown()
    ev = r.evidence
    if (ev.get("answer") is not None and ev.get("answer") != "S") or ev.get("listening") is False:
        return Handshake.NOT_OFFERED
    if r.verdict in (Verdict.OK, Verdict.WARN):
        if ev.get("verified") is False:
            return Unknown(
                Why.NOT_CHECKED,
                f"{r.target}: TLS offered, but there is no internal CA to verify it "
                "against (the CA in Secrets Manager could not be read)",
            )
        return Handshake.VERIFIED
    return Handshake.NOT_VERIFIED


def retarget(r: CheckResult, target: str) -> CheckResult:
    """Name the host:port, not the local end of a tunnel, in what people read."""
    summary = r.summary.replace(r.target, target) if r.target else r.summary
    return replace(r, target=target, summary=summary)


def relabel(r: CheckResult, check: str) -> CheckResult:
    return replace(r, check=check) if r.check != check else r


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Handshakes:
    """The four handshakes of a round. Healthy ones are re-measured every `probe_ttl` seconds, not every
    round: each is a new connection through an SSH tunnel (about 40 % of a warm round's CPU). Anything not
    OK is measured every round; `invalidate()` (after every cockpit write and restart) drops them."""

    def __init__(self, env: Environment, *, timeout: float, probe_ttl: float) -> None:
        self.env = env
        self.timeout = timeout
        self.probe_ttl = probe_ttl
        self._healthy: tuple[float, tuple[Any, ...], tuple[CheckResult, ...]] | None = None

    def invalidate(self) -> None:
        self._healthy = None

    async def measure(
        self, eps: Endpoints, creds: ProbeCredentials | None, ca_pem: bytes | None, cert_pem: bytes | None
    ) -> tuple[CheckResult, ...]:
        """Postgres, PgBouncer, Redis plaintext, Redis TLS — or the same, healthy, from under `probe_ttl` ago."""
        d = self.env.database
        name, t = d.dns_name, self.timeout
        fp = pem.fingerprint(cert_pem) if cert_pem else None
        password = creds.redis_password if creds else None
        key = (eps, _sha(ca_pem) if ca_pem else None, fp, name, password)
        cached = self._healthy
        if cached is not None and cached[1] == key and time.monotonic() - cached[0] < self.probe_ttl:
            return cached[2]

        def pg(ep: Any, port: int, label: str, check: str) -> Awaitable[CheckResult]:
            if not isinstance(ep, tuple):
                return self._tunnel_failed(check, port, ep)
            return tls.probe_pg_tls(
                ep[0], ep[1], server_name=name, ca_pem=ca_pem, expected_cert_fingerprint=fp, timeout=t, label=label
            )

        measured = tuple(
            await asyncio.gather(
                pg(eps.postgres, d.postgres_port, "postgres", "tls.postgres"),
                pg(eps.pgbouncer, d.pgbouncer_port, "pgbouncer", "tls.pgbouncer"),
                tls.probe_redis_plain(eps.redis[0], eps.redis[1], password=password, timeout=t)
                if isinstance(eps.redis, tuple)
                else self._tunnel_failed("redis.plain", d.redis_port, eps.redis),
                tls.probe_redis_tls(
                    eps.redis_tls[0],
                    eps.redis_tls[1],
                    server_name=name,
                    ca_pem=ca_pem,
                    expected_cert_fingerprint=fp,
                    password=password,
                    timeout=t,
                )
                if isinstance(eps.redis_tls, tuple)
                else self._tunnel_failed("redis.tls", d.redis_tls_port, eps.redis_tls),
            )
        )
        self._healthy = (time.monotonic(), key, measured) if all(r.verdict is Verdict.OK for r in measured) else None
        return measured

    async def _tunnel_failed(self, check: str, port: int, ep: SshError | None) -> CheckResult:
        detail = ep.message if isinstance(ep, SshError) else "no endpoint"
        return error_result(
            check,
            f"{self.env.database.host}:{port}",
            ssh_why(ep) if isinstance(ep, SshError) else Why.NOT_CHECKED,
            f"could not open a tunnel to port {port}: {detail}",
        )


@dataclass(frozen=True)
class Listeners:
    """The four handshakes, named for the host, with what the host says is bound folded in."""

    postgres: CheckResult
    pgbouncer: CheckResult
    redis: CheckResult
    redis_tls: CheckResult
    bound: tuple[CheckResult, ...]  # listener.bound per port, when the host's /proc/net/tcp was read

    def checks(self) -> list[CheckResult]:
        return [
            *self.bound,
            relabel(self.postgres, "tls.postgres"),
            relabel(self.pgbouncer, "tls.pgbouncer"),
            relabel(self.redis, "listener.redis"),
            relabel(self.redis_tls, "tls.redis"),
        ]


def with_listeners(env: Environment, measured: tuple[CheckResult, ...], bound: set[int] | Unknown) -> Listeners:
    """What the host says is bound beats what a tunnel can tell: a port nothing is bound on is
    `listening = False` (FAIL), whatever the dialled end answered."""
    d, db = env.database, env.database_host
    ports = (d.postgres_port, d.pgbouncer_port, d.redis_port, d.redis_tls_port)
    pg_r, pb_r, plain_r, rtls_r = (retarget(r, f"{db.name}:{port}") for r, port in zip(measured, ports, strict=True))
    if isinstance(bound, Unknown):
        return Listeners(pg_r, pb_r, plain_r, rtls_r, bound=())
    labels = {d.postgres_port: POSTGRES, d.pgbouncer_port: PGBOUNCER, d.redis_port: REDIS, d.redis_tls_port: REDIS_TLS}
    checks = tuple(_bound_check(f"{db.name}:{port}", port, label, port in bound) for port, label in labels.items())
    # a Postgres/PgBouncer handshake that failed keeps its own reason; Redis's are replaced either way
    if d.postgres_port not in bound and pg_r.verdict is not Verdict.FAIL:
        pg_r = _not_listening(pg_r, d.postgres_port)
    if d.pgbouncer_port not in bound and pb_r.verdict is not Verdict.FAIL:
        pb_r = _not_listening(pb_r, d.pgbouncer_port)
    if d.redis_port not in bound:
        plain_r = _not_listening(plain_r, d.redis_port)
    if d.redis_tls_port not in bound:
        rtls_r = _not_listening(rtls_r, d.redis_tls_port)
    return Listeners(pg_r, pb_r, plain_r, rtls_r, bound=checks)


def _not_listening(r: CheckResult, port: int) -> CheckResult:
    evidence = {**r.evidence, "listening": False}
    return CheckResult(r.check, r.target, Verdict.FAIL, f"nothing listening on :{port}", evidence)


def _bound_check(target: str, port: int, label: str, bound: bool) -> CheckResult:
    if bound:
        return CheckResult("listener.bound", target, Verdict.OK, f"{label} listening on :{port}")
    return CheckResult("listener.bound", target, Verdict.FAIL, f"nothing bound on :{port} ({label})")
