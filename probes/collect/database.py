"""The database host's side of a round: the four listeners' handshakes, the live settings and who is
connected on each leg (from Postgres, PgBouncer and Redis sessions kept between rounds), the decoded
TLS files, pg_hba.conf — as raw facts. Which of them the configuration allows at this point of the
rollout is judged in `plans.judge`, not here.

The parts: `probes.collect.handshakes` (listeners), `probes.collect.dbsessions` (kept sessions, the
end-to-end query), `probes.collect.legs` (who is connected), `probes.collect.dbfiles` (files on the host).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from inventory.model import Environment, Host
from probes.collect.dbfiles import decoded_files, hba
from probes.collect.dbsessions import DbSessions, Sampled
from probes.collect.fleetconfig import ProbeCredentials
from probes.collect.handshakes import Endpoints, Handshakes, Listeners, handshake, relabel, retarget, with_listeners
from probes.collect.hostfiles import HostFiles
from probes.collect.legs import Legs, legs, unknown_of
from probes.model import CheckResult, Unknown, Verdict, Why, error_result
from probes.snapshot import Configured, DatabaseState, LegView
from probes.ssh.readonly import ReadOnlyHosts
from probes.ssh.results import SshError

Material = tuple[bytes | None, bytes | None, bytes | None]  # the decoded CA, cert and key (PEM)


@dataclass(frozen=True)
class _Round:
    """What one round measured on the database side, before it becomes a `DatabaseState`."""

    listeners: Listeners
    sampled: Sampled | None  # None: no probe credentials
    hba: bool | Unknown
    legs: Legs
    otel: str | Unknown
    checks: list[CheckResult]


class DatabaseProbe:
    """The DB host's facts, with the Postgres, PgBouncer and Redis sessions kept between rounds."""

    def __init__(
        self, env: Environment, hosts: ReadOnlyHosts, files: HostFiles, *, timeout: float, probe_ttl: float
    ) -> None:
        self.env = env
        self.hosts = hosts
        self.files = files
        self.timeout = timeout
        self.handshakes = Handshakes(env, timeout=timeout, probe_ttl=probe_ttl)
        self.sessions = DbSessions(env, timeout=timeout, probe_ttl=probe_ttl)

    @property
    def probe_ttl(self) -> float:
        """How long a healthy handshake or end-to-end answer is reused (see `Handshakes`)."""
        return self.handshakes.probe_ttl

    @probe_ttl.setter
    def probe_ttl(self, value: float) -> None:
        self.handshakes.probe_ttl = self.sessions.probe_ttl = value

    async def aclose(self) -> None:
        await self.sessions.aclose()

    def invalidate(self) -> None:
        self.handshakes.invalidate()
        self.sessions.invalidate()

    async def _endpoint(self, port: int) -> tuple[str, int] | SshError:
        """Where to dial a DB port: a tunnel over the DB host's connection, or direct."""
        db = self.env.database_host
        if self.env.database.access == "direct":
            return db.address, port
        return await self.hosts.forward(db.name, db.address, port)

    # -------------------------------------------------------------------------------- the round
    async def observe(
        self,
        creds: ProbeCredentials | None,
        material: Material,
        reachable: bool | Unknown,
        cfg: Mapping[str, Configured],
        addr_map: Mapping[str, Host],
    ) -> DatabaseState:
        db = self.env.database_host
        if reachable is not True and self.env.database.access == "tunnel":
            return _unreachable(db.name, reachable)
        d = self.env.database
        eps = Endpoints(
            *await asyncio.gather(
                *(self._endpoint(p) for p in (d.postgres_port, d.pgbouncer_port, d.redis_port, d.redis_tls_port))
            )
        )
        owner = cfg.get("TLS_KEY_OWNER")
        owner_cfg = owner.value if owner is not None and not isinstance(owner, Unknown) else None
        measured = await self._measure(eps, creds, material, owner_cfg, addr_map)
        return _state(db.name, reachable, creds, measured, eps.names(self.env))

    async def _measure(
        self,
        eps: Endpoints,
        creds: ProbeCredentials | None,
        material: Material,
        owner_cfg: str | None,
        addr_map: Mapping[str, Host],
    ) -> _Round:
        db = self.env.database_host
        ca_pem, cert_pem, _ = material
        measured, bound = await asyncio.gather(
            self.handshakes.measure(eps, creds, ca_pem, cert_pem), self.files.bound_ports(db.name, db.address)
        )
        listeners = with_listeners(self.env, measured, bound)
        checks = listeners.checks()
        sampled: Sampled | None = None
        if creds is None:
            checks.append(error_result("db.credentials", db.name, Why.NO_CREDENTIALS, _NO_CREDS.detail))
        else:
            plain_r, pg_r = listeners.redis, listeners.postgres
            plain_up = (
                (self.env.database.redis_port in bound)
                if not isinstance(bound, Unknown)
                else plain_r.verdict is not Verdict.FAIL
            )
            pg_offers = pg_r.evidence.get("answer") != "N" and pg_r.verdict is not Verdict.ERROR
            sampled = await self.sessions.sample(eps, creds, ca_pem, pg_offers, plain_up)
            for facts in (sampled.postgres, sampled.pgbouncer, sampled.redis):
                if facts is not None:
                    checks += facts.results
            if isinstance(sampled.end_to_end, CheckResult):
                checks.append(relabel(sampled.end_to_end, "e2e.query"))
        pg_f = sampled.postgres if sampled else None
        hostssl_only, hba_checks = await hba(self.env, self.files, pg_f, db)
        if hba_checks and not isinstance(hostssl_only, Unknown):  # read from the file: the query's refusal is no gap
            checks = [c for c in checks if not (c.check == "postgres.hba" and c.verdict is Verdict.ERROR)]
        checks += hba_checks
        checks += await decoded_files(self.env, self.files, self.hosts, db, material, owner_cfg)
        who, otel = legs(
            pg_f,
            sampled.pgbouncer if sampled else None,
            sampled.redis if sampled else None,
            addr_map,
            db,
            creds is None,
        )
        return _Round(listeners, sampled, hostssl_only, who, otel, checks)


_NO_CREDS = Unknown(
    Why.NO_CREDENTIALS, "probe credentials unavailable: Postgres, PgBouncer and Redis sessions not sampled"
)


def _unreachable(db: str, reachable: bool | Unknown) -> DatabaseState:
    """Every database fact unknown, for one reason: the host could not be reached over SSH."""
    why = reachable if isinstance(reachable, Unknown) else Unknown(Why.UNREACHABLE, f"{db} unreachable")
    gone = Unknown(why.why, f"{db} could not be reached over SSH: {why.detail}")
    return DatabaseState(
        db,
        reachable=reachable,
        postgres_ssl=gone,
        pg_hba_hostssl_only=gone,
        pgbouncer_client_tls_sslmode=gone,
        pgbouncer_server_tls_sslmode=gone,
        redis_port=gone,
        redis_tls_port=gone,
        postgres_tls=gone,
        pgbouncer_tls=gone,
        redis_tls=gone,
        end_to_end_ok=gone,
        otel_redis_endpoint=gone,
        legs={leg: gone for leg in ("leg1", "leg2", "postgres", "redis")},
        checks=(error_result("db.reachable", db, gone.why, gone.detail),),
    )


def _state(
    db: str, reachable: bool | Unknown, creds: ProbeCredentials | None, r: _Round, names: Mapping[str, str]
) -> DatabaseState:
    """The round as a `DatabaseState`: checks named for the host, facts or why each is unknown."""
    checks = [retarget(c, names[c.target]) if c.target in names else c for c in r.checks]
    leg2 = r.legs["leg2"]
    if isinstance(leg2, LegView) and leg2.connections and all(c.tls for c in leg2.connections):
        checks.append(CheckResult("leg2.tls", db, Verdict.OK, "PgBouncer → Postgres connections use TLS"))
    s = r.sampled

    def fact(facts: Any, attr: str, what: str) -> Any:
        if facts is None:
            return _NO_CREDS if creds is None else Unknown(Why.NOT_CHECKED, f"{what}: no session")
        v = getattr(facts, attr)
        return v if v is not None else unknown_of(facts.results, f"{what} could not be read")

    pg_f, pb_f, rd_f = (s.postgres, s.pgbouncer, s.redis) if s else (None, None, None)
    e2e = s.end_to_end if s else _NO_CREDS
    return DatabaseState(
        host=db,
        reachable=reachable,
        postgres_ssl=fact(pg_f, "ssl", "Postgres's ssl setting"),
        pg_hba_hostssl_only=r.hba,
        pgbouncer_client_tls_sslmode=fact(pb_f, "client_tls_sslmode", "PgBouncer's client_tls_sslmode"),
        pgbouncer_server_tls_sslmode=fact(pb_f, "server_tls_sslmode", "PgBouncer's server_tls_sslmode"),
        redis_port=fact(rd_f, "port", "Redis's port"),
        redis_tls_port=fact(rd_f, "tls_port", "Redis's tls-port"),
        postgres_tls=handshake(r.listeners.postgres),
        pgbouncer_tls=handshake(r.listeners.pgbouncer),
        redis_tls=handshake(r.listeners.redis_tls),
        end_to_end_ok=(
            e2e
            if isinstance(e2e, Unknown)
            else e2e.as_unknown()
            if e2e.verdict is Verdict.ERROR
            else e2e.verdict is Verdict.OK
        ),
        otel_redis_endpoint=r.otel,
        legs=r.legs,
        checks=tuple(checks),
    )
