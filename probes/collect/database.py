"""The database host's side of a round: the four listeners' handshakes, the live settings and who is
connected on each leg (from Postgres, PgBouncer and Redis sessions kept between rounds), the decoded
TLS files, pg_hba.conf.

The cockpit's own connections — this cockpit's and any other's (watchers) — are told apart by their
application / client name (`rollout-cockpit-probe…`) and never counted on a leg: they are not
evidence about the fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from probes import certs, tls
from probes.collect.fleetconfig import ProbeCredentials
from probes.collect.hostfiles import HostFiles, Missing
from probes.collect.judge import judge
from probes.inventory import Environment, Host
from probes.model import CheckResult, Unknown, Verdict, Why, error_result
from probes.pgbouncer import PgBouncerFacts, PgBouncerSession
from probes.postgres import PostgresFacts, PostgresSession, hba_from_file, probe_end_to_end
from probes.redis import RedisFacts, RedisSession
from probes.snapshot import Configured, Connection, DatabaseState, Handshake, Leg, LegView
from probes.ssh import SshError, SshPool, ssh_why

T = TypeVar("T")
OWN_PREFIX = "rollout-cockpit-probe"  # application_name / CLIENT SETNAME of every cockpit's probes
DEFAULT_KEY_OWNER = "70:70"  # the runbook's owner of server.key (the Postgres uid of the official images)


def is_own(name: str) -> bool:
    return name.startswith(OWN_PREFIX)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _ok(check: str, target: str, summary: str, **evidence: Any) -> CheckResult:
    return CheckResult(check, target, Verdict.OK, summary, evidence)


def _res(check: str, target: str, verdict: Verdict, summary: str, **evidence: Any) -> CheckResult:
    return CheckResult(check, target, verdict, summary, evidence)


def handshake(r: CheckResult) -> Handshake | Unknown:
    """A handshake result as verified / offered but not verified / not offered, or unknown. A
    handshake with no internal CA to verify against proves nothing: unknown, not verified."""
    if r.verdict is Verdict.ERROR:
        return r.unknown or Unknown(Why.NOT_CHECKED, r.summary)
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


def _retarget(r: CheckResult, target: str) -> CheckResult:
    """Name the host:port, not the local end of a tunnel, in what people read."""
    summary = r.summary.replace(r.target, target) if r.target else r.summary
    return replace(r, target=target, summary=summary)


def _relabel(r: CheckResult, check: str) -> CheckResult:
    return replace(r, check=check) if r.check != check else r


def _unknown_of(results: tuple[CheckResult, ...], default: str) -> Unknown:
    for r in results:
        if r.verdict is Verdict.ERROR and r.unknown is not None:
            return r.unknown
    for r in results:
        if r.verdict is Verdict.FAIL:
            return Unknown(Why.UNREACHABLE, r.summary)
    return Unknown(Why.NOT_CHECKED, default)


@dataclass(frozen=True)
class Endpoints:
    postgres: tuple[str, int] | SshError | None
    pgbouncer: tuple[str, int] | SshError | None
    redis: tuple[str, int] | SshError | None
    redis_tls: tuple[str, int] | SshError | None


class DatabaseProbe:
    """The DB host's facts, with the Postgres, PgBouncer and Redis sessions kept between rounds."""

    def __init__(self, env: Environment, pool: SshPool, files: HostFiles, *, timeout: float, probe_ttl: float) -> None:
        self.env = env
        self.pool = pool
        self.files = files
        self.timeout = timeout
        self.probe_ttl = probe_ttl
        self._pg: PostgresSession | None = None
        self._bouncer: PgBouncerSession | None = None
        self._redis: RedisSession | None = None
        self._redis_key: tuple[str, int, bool] | None = None
        self._ca_ctx: tuple[bytes, Any] | None = None
        # Healthy handshakes and end-to-end queries are re-measured every `probe_ttl` seconds, not every
        # round: each is a new connection through an SSH tunnel (about 40 % of a warm round's CPU).
        # Anything not OK is measured every round; `invalidate()` (after every cockpit write and
        # restart) drops them all.
        self._handshakes: tuple[float, tuple[Any, ...], tuple[CheckResult, ...]] | None = None
        self._e2e: tuple[float, tuple[Any, ...], CheckResult] | None = None

    async def aclose(self) -> None:
        for s in (self._pg, self._bouncer, self._redis):
            if s is not None:
                with contextlib.suppress(Exception):
                    await s.aclose()
        self._pg = self._bouncer = self._redis = None

    def invalidate(self) -> None:
        self._handshakes = None
        self._e2e = None

    def _fresh(self, cached: tuple[float, tuple[Any, ...], Any] | None, key: tuple[Any, ...]) -> Any:
        if cached is not None and cached[1] == key and time.monotonic() - cached[0] < self.probe_ttl:
            return cached[2]
        return None

    def _client_ctx(self, ca_pem: bytes) -> Any:
        if self._ca_ctx is None or self._ca_ctx[0] != ca_pem:
            self._ca_ctx = (ca_pem, tls.make_client_context(ca_pem, server_name=self.env.database.dns_name))
        return self._ca_ctx[1]

    async def _endpoint(self, port: int) -> tuple[str, int] | SshError:
        """Where to dial a DB port: a tunnel over the DB host's connection, or direct."""
        db = self.env.database_host
        if self.env.database.access == "direct":
            return db.address, port
        return await self.pool.forward(db.name, db.address, port)

    # -------------------------------------------------------------------------------- the round
    async def observe(
        self,
        creds: ProbeCredentials | None,
        material: tuple[bytes | None, bytes | None, bytes | None],
        reachable: bool | Unknown,
        cfg: Mapping[str, Configured],
        addr_map: Mapping[str, Host],
    ) -> DatabaseState:
        env, d = self.env, self.env.database
        db = env.database_host
        ca_pem, cert_pem, key_pem = material

        def val(var: str) -> str | None:
            v = cfg.get(var)
            return v.value if v is not None and not isinstance(v, Unknown) else None

        if reachable is not True and d.access == "tunnel":
            why = reachable if isinstance(reachable, Unknown) else Unknown(Why.UNREACHABLE, f"{db.name} unreachable")
            gone = Unknown(why.why, f"{db.name} could not be reached over SSH: {why.detail}")
            return DatabaseState(
                db.name,
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
                checks=(error_result("db.reachable", db.name, gone.why, gone.detail),),
            )
        pg_ep, pb_ep, rd_ep, rt_ep = await asyncio.gather(
            *(self._endpoint(p) for p in (d.postgres_port, d.pgbouncer_port, d.redis_port, d.redis_tls_port))
        )
        eps = Endpoints(pg_ep, pb_ep, rd_ep, rt_ep)
        checks: list[CheckResult] = []
        (pg_r, pb_r, plain_r, rtls_r), bound = await asyncio.gather(
            self._handshakes_of(eps, creds, ca_pem, cert_pem), self.files.bound_ports(db.name, db.address)
        )
        pg_r, pb_r, plain_r, rtls_r, listener_checks = self._with_listeners(pg_r, pb_r, plain_r, rtls_r, bound, val)
        checks += listener_checks
        checks += [
            _relabel(pg_r, "tls.postgres"),
            _relabel(pb_r, "tls.pgbouncer"),
            _relabel(plain_r, "listener.redis"),
            _relabel(rtls_r, "tls.redis"),
        ]
        plain_up = (d.redis_port in bound) if not isinstance(bound, Unknown) else plain_r.verdict is not Verdict.FAIL
        pg_offers = pg_r.evidence.get("answer") != "N" and pg_r.verdict is not Verdict.ERROR

        pg_f: PostgresFacts | None = None
        pb_f: PgBouncerFacts | None = None
        rd_f: RedisFacts | None = None
        e2e: CheckResult | Unknown
        no_creds = Unknown(
            Why.NO_CREDENTIALS, "probe credentials unavailable: Postgres, PgBouncer and Redis sessions not sampled"
        )
        if creds is None:
            checks.append(error_result("db.credentials", db.name, Why.NO_CREDENTIALS, no_creds.detail))
            e2e = no_creds
        else:
            pg_f, pb_f, rd_f, e2e = await self._sample(eps, creds, ca_pem, pg_offers, plain_up)
            for facts in (pg_f, pb_f, rd_f):
                if facts is not None:
                    checks += [judge(c, val, pg_f, pb_f, rd_f) for c in facts.results]
            if isinstance(e2e, CheckResult):
                checks.append(_relabel(e2e, "e2e.query"))
        hba, hba_checks = await self._hba(pg_f, db)
        if hba_checks and not isinstance(hba, Unknown):  # read from the file: the query's refusal is no gap
            checks = [c for c in checks if not (c.check == "postgres.hba" and c.verdict is Verdict.ERROR)]
        checks += hba_checks
        checks += await self._decoded_files(db, ca_pem, cert_pem, key_pem, val("TLS_KEY_OWNER"))
        legs, otel = self._legs(pg_f, pb_f, rd_f, addr_map, db, creds is None)
        names = {
            f"{ep[0]}:{ep[1]}": f"{db.name}:{port}"
            for ep, port in (
                (pg_ep, d.postgres_port),
                (pb_ep, d.pgbouncer_port),
                (rd_ep, d.redis_port),
                (rt_ep, d.redis_tls_port),
            )
            if isinstance(ep, tuple)
        }
        checks = [_retarget(c, names[c.target]) if c.target in names else c for c in checks]
        leg2 = legs["leg2"]
        if isinstance(leg2, LegView) and leg2.connections and all(c.tls for c in leg2.connections):
            checks.append(_ok("leg2.tls", db.name, "PgBouncer → Postgres connections use TLS"))

        def fact(facts: Any, attr: str, what: str) -> Any:
            if facts is None:
                return no_creds if creds is None else Unknown(Why.NOT_CHECKED, f"{what}: no session")
            v = getattr(facts, attr)
            return v if v is not None else _unknown_of(facts.results, f"{what} could not be read")

        return DatabaseState(
            host=db.name,
            reachable=reachable,
            postgres_ssl=fact(pg_f, "ssl", "Postgres's ssl setting"),
            pg_hba_hostssl_only=hba,
            pgbouncer_client_tls_sslmode=fact(pb_f, "client_tls_sslmode", "PgBouncer's client_tls_sslmode"),
            pgbouncer_server_tls_sslmode=fact(pb_f, "server_tls_sslmode", "PgBouncer's server_tls_sslmode"),
            redis_port=fact(rd_f, "port", "Redis's port"),
            redis_tls_port=fact(rd_f, "tls_port", "Redis's tls-port"),
            postgres_tls=handshake(pg_r),
            pgbouncer_tls=handshake(pb_r),
            redis_tls=handshake(rtls_r),
            end_to_end_ok=(
                e2e
                if isinstance(e2e, Unknown)
                else (e2e.unknown or Unknown(Why.NOT_CHECKED))
                if e2e.verdict is Verdict.ERROR
                else e2e.verdict is Verdict.OK
            ),
            otel_redis_endpoint=otel,
            legs=legs,
            checks=tuple(checks),
        )

    # -------------------------------------------------------------------------------- handshakes
    async def _handshakes_of(
        self, eps: Endpoints, creds: ProbeCredentials | None, ca_pem: bytes | None, cert_pem: bytes | None
    ) -> tuple[CheckResult, ...]:
        """The four listeners' handshakes — or the same, healthy, from under `probe_ttl` ago."""
        d = self.env.database
        name, t = d.dns_name, self.timeout
        fp = certs.fingerprint(cert_pem) if cert_pem else None
        password = creds.redis_password if creds else None
        key = (eps, _sha(ca_pem) if ca_pem else None, fp, name, password)
        reused: tuple[CheckResult, ...] | None = self._fresh(self._handshakes, key)
        if reused is not None:
            return reused

        async def tunnel_failed(check: str, port: int, ep: SshError | None) -> CheckResult:
            detail = ep.message if isinstance(ep, SshError) else "no endpoint"
            return error_result(
                check,
                f"{self.env.database.host}:{port}",
                ssh_why(ep) if isinstance(ep, SshError) else Why.NOT_CHECKED,
                f"could not open a tunnel to port {port}: {detail}",
            )

        def pg(ep: Any, port: int, label: str, check: str) -> Awaitable[CheckResult]:
            if not isinstance(ep, tuple):
                return tunnel_failed(check, port, ep)
            return tls.probe_pg_tls(
                ep[0], ep[1], server_name=name, ca_pem=ca_pem, expected_cert_fingerprint=fp, timeout=t, label=label
            )

        measured = tuple(
            await asyncio.gather(
                pg(eps.postgres, d.postgres_port, "postgres", "tls.postgres"),
                pg(eps.pgbouncer, d.pgbouncer_port, "pgbouncer", "tls.pgbouncer"),
                tls.probe_redis_plain(eps.redis[0], eps.redis[1], password=password, timeout=t)
                if isinstance(eps.redis, tuple)
                else tunnel_failed("redis.plain", d.redis_port, eps.redis),
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
                else tunnel_failed("redis.tls", d.redis_tls_port, eps.redis_tls),
            )
        )
        self._handshakes = (time.monotonic(), key, measured) if all(r.verdict is Verdict.OK for r in measured) else None
        return measured

    def _with_listeners(
        self,
        pg_r: CheckResult,
        pb_r: CheckResult,
        plain_r: CheckResult,
        rtls_r: CheckResult,
        bound: set[int] | Unknown,
        val: Callable[[str], str | None],
    ) -> tuple[CheckResult, CheckResult, CheckResult, CheckResult, list[CheckResult]]:
        """What the host says is bound beats what a tunnel can tell; a listener that is off because the
        configuration says so is the rollout's state, not a failure."""
        d, db = self.env.database, self.env.database_host
        checks: list[CheckResult] = []
        pg_r = _retarget(pg_r, f"{db.name}:{d.postgres_port}")
        pb_r = _retarget(pb_r, f"{db.name}:{d.pgbouncer_port}")
        plain_r = _retarget(plain_r, f"{db.name}:{d.redis_port}")
        rtls_r = _retarget(rtls_r, f"{db.name}:{d.redis_tls_port}")
        if not isinstance(bound, Unknown):
            expect = {
                d.postgres_port: ("postgres", True),
                d.pgbouncer_port: ("pgbouncer", True),
                d.redis_port: ("redis", val("REDIS_FORCE_TLS") != "true"),
                d.redis_tls_port: ("redis TLS", val("REDIS_TLS_ENABLED") == "true"),
            }
            for port, (label, expected) in expect.items():
                target = f"{db.name}:{port}"
                if port in bound:
                    checks.append(
                        _ok(
                            "listener.bound",
                            target,
                            f"{label} listening on :{port}"
                            + ("" if expected else " (configuration says it should not be)"),
                        )
                    )
                elif expected:
                    checks.append(_res("listener.bound", target, Verdict.FAIL, f"nothing bound on :{port} ({label})"))
                else:
                    checks.append(_ok("listener.bound", target, f"{label} :{port} not bound, as configured"))
            for port, r in ((d.postgres_port, pg_r), (d.pgbouncer_port, pb_r)):
                if port not in bound and r.verdict is not Verdict.FAIL:
                    replacement = _res(
                        r.check,
                        r.target,
                        Verdict.FAIL,
                        f"nothing listening on :{port}",
                        **{**r.evidence, "listening": False},
                    )
                    if port == d.postgres_port:
                        pg_r = replacement
                    else:
                        pb_r = replacement
            if d.redis_port not in bound:
                plain_r = _res(
                    plain_r.check,
                    plain_r.target,
                    Verdict.FAIL,
                    f"nothing listening on :{d.redis_port}",
                    **{**plain_r.evidence, "listening": False},
                )
            if d.redis_tls_port not in bound:
                rtls_r = _res(
                    rtls_r.check,
                    rtls_r.target,
                    Verdict.FAIL,
                    f"nothing listening on :{d.redis_tls_port}",
                    **{**rtls_r.evidence, "listening": False},
                )
        if pg_r.evidence.get("answer") == "N" and val("POSTGRES_TLS_ENABLED") != "on":
            pg_r = replace(
                pg_r, verdict=Verdict.OK, summary="plaintext only: TLS not offered (POSTGRES_TLS_ENABLED is not on)"
            )
        if pb_r.evidence.get("answer") == "N" and val("PGBOUNCER_CLIENT_TLS_SSLMODE") in ("disable", None):
            pb_r = replace(
                pb_r, verdict=Verdict.OK, summary="plaintext only: TLS not offered (client_tls_sslmode=disable)"
            )
        if rtls_r.evidence.get("listening") is False and val("REDIS_TLS_ENABLED") != "true":
            rtls_r = replace(rtls_r, verdict=Verdict.OK, summary="no TLS listener (REDIS_TLS_ENABLED is not true)")
        if plain_r.evidence.get("listening") is False and val("REDIS_FORCE_TLS") == "true":
            plain_r = replace(plain_r, verdict=Verdict.OK, summary="plaintext listener dropped (REDIS_FORCE_TLS=true)")
        return pg_r, pb_r, plain_r, rtls_r, checks

    # -------------------------------------------------------------------------------- sessions
    async def _sample(
        self, eps: Endpoints, creds: ProbeCredentials, ca_pem: bytes | None, pg_offers: bool, plain_up: bool
    ) -> tuple[PostgresFacts | None, PgBouncerFacts | None, RedisFacts | None, CheckResult | Unknown]:
        d, t = self.env.database, self.timeout
        ctx = self._client_ctx(ca_pem) if ca_pem else None
        pg_ep, pb_ep = eps.postgres, eps.pgbouncer
        if isinstance(pg_ep, tuple) and isinstance(creds.pg_user, str):
            want_ctx = ctx if pg_offers else None
            if (
                self._pg is None
                or (self._pg.host, self._pg.port) != pg_ep
                or (self._pg.ssl_ctx is not None) != (want_ctx is not None)
            ):
                if self._pg is not None:
                    await self._pg.aclose()
                self._pg = PostgresSession(
                    pg_ep[0],
                    pg_ep[1],
                    user=creds.pg_user,
                    password=creds.pg_password,
                    dbname=d.dbname,
                    ssl_ctx_or_none=want_ctx,
                    timeout=t,
                )
        if isinstance(pb_ep, tuple) and isinstance(creds.admin_user, str):
            if self._bouncer is None or (self._bouncer.host, self._bouncer.port) != pb_ep:
                if self._bouncer is not None:
                    await self._bouncer.aclose()
                self._bouncer = PgBouncerSession(
                    pb_ep[0], pb_ep[1], admin_user=creds.admin_user, admin_password=creds.admin_password, timeout=t
                )
        redis_ep = eps.redis if (isinstance(eps.redis, tuple) and plain_up) else eps.redis_tls
        use_tls = redis_ep is eps.redis_tls
        if isinstance(redis_ep, tuple):
            key = (redis_ep[0], redis_ep[1], use_tls)
            if self._redis is None or self._redis_key != key:
                if self._redis is not None:
                    await self._redis.aclose()
                self._redis = RedisSession(
                    redis_ep[0],
                    redis_ep[1],
                    password=creds.redis_password,
                    timeout=t,
                    ssl_context=ctx if use_tls else None,
                    server_name=d.dns_name,
                )
                self._redis_key = key
        e2e: Awaitable[CheckResult | Unknown]
        e2e_key: tuple[Any, ...] = ()
        reused: CheckResult | None = None
        if isinstance(pb_ep, tuple) and isinstance(creds.pg_user, str):
            e2e_key = (pb_ep, creds.pg_user, creds.pg_password, d.dbname)
            reused = self._fresh(self._e2e, e2e_key)
            e2e = (
                _value(reused)
                if reused is not None
                else probe_end_to_end(
                    pb_ep[0],
                    pb_ep[1],
                    user=creds.pg_user,
                    password=creds.pg_password,
                    dbname=d.dbname,
                    ssl="prefer",
                    timeout=max(t, 3.0),
                )
            )
        else:
            e2e = _value(
                creds.pg_user
                if isinstance(creds.pg_user, Unknown)
                else Unknown(
                    ssh_why(pb_ep) if isinstance(pb_ep, SshError) else Why.NOT_CHECKED, "no tunnel to PgBouncer"
                )
            )
        pg_f, pb_f, rd_f, e2e_r = await asyncio.gather(
            self._pg.sample() if (self._pg and isinstance(pg_ep, tuple)) else _value(None),
            self._bouncer.sample() if (self._bouncer and isinstance(pb_ep, tuple)) else _value(None),
            self._redis.sample() if (self._redis and isinstance(redis_ep, tuple)) else _value(None),
            e2e,
        )
        if isinstance(e2e_r, CheckResult) and reused is None:
            self._e2e = (time.monotonic(), e2e_key, e2e_r) if e2e_r.verdict is Verdict.OK else None
        return pg_f, pb_f, rd_f, e2e_r

    # -------------------------------------------------------------------------------- pg_hba
    async def _hba(self, pg_f: PostgresFacts | None, db: Host) -> tuple[bool | Unknown, list[CheckResult]]:
        """Is pg_hba.conf hostssl-only? From pg_hba_file_rules when the probe user may read it, else
        from the file on the database host (no superuser needed)."""
        if pg_f is not None and pg_f.hostssl_only is not None:
            return pg_f.hostssl_only, []
        path = self.env.database.pg_hba_path
        target = f"{db.name}:{path}"
        data = await self.files.read(db.name, self.env.host_path(db, path))
        if isinstance(data, Unknown):
            return data, [error_result("postgres.hba_file", target, data.why, f"pg_hba.conf unreadable: {data.detail}")]
        if isinstance(data, Missing):
            u = Unknown(Why.NOT_CHECKED, f"{target} does not exist (set database.pg_hba_path in the inventory)")
            return u, [error_result("postgres.hba_file", target, u.why, u.detail)]
        only, why = hba_from_file(data.decode("utf-8", "replace"))
        if only is None:
            return Unknown(Why.NOT_CHECKED, why), [error_result("postgres.hba_file", target, Why.NOT_CHECKED, why)]
        return only, [
            CheckResult(
                "postgres.hba_file",
                target,
                Verdict.OK if only else Verdict.WARN,
                f"pg_hba.conf (read from the file): {why}",
                {"hostssl_only": only},
            )
        ]

    # -------------------------------------------------------------------------------- who is connected
    def _legs(
        self,
        pg_f: PostgresFacts | None,
        pb_f: PgBouncerFacts | None,
        rd_f: RedisFacts | None,
        addr_map: Mapping[str, Host],
        db: Host,
        no_creds: bool,
    ) -> tuple[dict[Leg, LegView | Unknown], str | Unknown]:
        def missing(facts: Any, what: str) -> Unknown:
            if facts is None:
                return Unknown(Why.NO_CREDENTIALS if no_creds else Why.NOT_CHECKED, f"{what}: no session")
            return _unknown_of(facts.results, f"{what} could not be read")

        legs: dict[Leg, LegView | Unknown] = {}
        if pb_f is not None and pb_f.clients is not None:
            own = [c for c in pb_f.clients if is_own(c.application_name)]
            own_ptrs = {c.ptr for c in own if c.ptr}
            legs["leg1"] = LegView(
                tuple(
                    Connection(
                        "leg1",
                        c.application_name or "?",
                        _who(addr_map, c.addr),
                        f"{c.addr}:{c.port}",
                        c.tls,
                        c.tls_info,
                    )
                    for c in pb_f.clients
                    if not is_own(c.application_name)
                ),
                len(own),
            )
            if pb_f.servers is not None:
                mine = [s for s in pb_f.servers if s.link and s.link in own_ptrs]
                legs["leg2"] = LegView(
                    tuple(
                        Connection("leg2", s.application_name or "?", None, f"{s.addr}:{s.port}", s.tls, s.tls_info)
                        for s in pb_f.servers
                        if s not in mine
                    ),
                    len(mine),
                )
            else:
                legs["leg2"] = missing(pb_f, "PgBouncer's SHOW SERVERS")
        else:
            legs["leg1"] = legs["leg2"] = missing(pb_f, "PgBouncer's SHOW CLIENTS")
        if pg_f is not None and pg_f.backends is not None:
            bouncer_pids = {sv.remote_pid for sv in (pb_f.servers or ()) if sv.remote_pid} if pb_f else set()
            direct = [
                b
                for b in pg_f.backends
                if b.pid not in bouncer_pids and not (pb_f is None and b.client_addr in (db.address, "127.0.0.1"))
            ]
            hidden = [b for b in direct if b.ssl is None and not is_own(b.application_name)]
            if hidden:
                legs["postgres"] = Unknown(
                    Why.REFUSED,
                    f"the probe user cannot see whether {len(hidden)} session(s) "
                    "use TLS (it lacks pg_read_all_stats: grant it pg_monitor)",
                )
            else:
                legs["postgres"] = LegView(
                    tuple(
                        Connection(
                            "postgres",
                            b.application_name or "?",
                            _who(addr_map, b.client_addr or ""),
                            b.client_addr or "local",
                            bool(b.ssl),
                            b.version or "",
                        )
                        for b in direct
                        if not is_own(b.application_name)
                    ),
                    sum(1 for b in direct if is_own(b.application_name)),
                )
        else:
            legs["postgres"] = missing(pg_f, "Postgres's pg_stat_ssl")
        otel: str | Unknown
        if rd_f is not None and rd_f.clients is not None:
            conns = []
            own_n = 0
            otel = ""
            for rc in rd_f.clients:
                if is_own(rc.name):
                    own_n += 1
                    continue
                host_ip = rc.addr.rsplit(":", 1)[0]
                service = rc.name or "?"
                conns.append(
                    Connection("redis", service, _who(addr_map, host_ip), rc.addr, rc.tls, f"laddr {rc.laddr}")
                )
                if service.startswith("otel"):
                    otel = rc.laddr
            legs["redis"] = LegView(tuple(conns), own_n)
        else:
            legs["redis"] = otel = missing(rd_f, "Redis's CLIENT LIST")
        return legs, otel

    # -------------------------------------------------------------------------------- decoded files
    async def _decoded_files(
        self, db: Host, ca_pem: bytes | None, cert_pem: bytes | None, key_pem: bytes | None, owner_cfg: str | None
    ) -> list[CheckResult]:
        """On the DB host, the decoded files equal the secrets; the key is 0600 and owned by the
        platform's key owner (the inventory's, else TLS_KEY_OWNER as configured, else the runbook's)."""
        out: list[CheckResult] = []
        base = self.env.host_path(db, "/etc/ssl/internal")
        for fname, expected in (("ca.crt", ca_pem), ("server.crt", cert_pem)):
            target = f"{db.name}:/etc/ssl/internal/{fname}"
            data = await self.files.read(db.name, f"{base}/{fname}")
            if isinstance(data, Unknown):
                out.append(error_result("files.decoded", target, data.why, f"could not read it: {data.detail}"))
            elif isinstance(data, Missing):
                out.append(
                    _res(
                        "files.decoded",
                        target,
                        Verdict.WARN,
                        "not decoded yet (no file) — restart the database service after pushing the material",
                    )
                )
            elif expected is None:
                out.append(
                    error_result("files.decoded", target, Why.NOT_CHECKED, "no value in Secrets Manager to compare")
                )
            elif _sha(data.strip()) == _sha(expected.strip()):
                out.append(_ok("files.decoded", target, "matches Secrets Manager"))
            else:
                out.append(
                    _res(
                        "files.decoded",
                        target,
                        Verdict.FAIL,
                        "differs from Secrets Manager — the host has not decoded the new material "
                        "(restart the database service)",
                    )
                )
        owner = self.env.database.key_owner or owner_cfg or DEFAULT_KEY_OWNER
        key_path = f"{base}/server.key"
        target = f"{db.name}:/etc/ssl/internal/server.key"
        st = await self.pool.stat(db.name, key_path)
        if isinstance(st, SshError):
            from probes.ssh import SshErrorKind

            if st.kind is SshErrorKind.NO_SUCH_FILE:
                out.append(_res("files.key", target, Verdict.WARN, "not decoded yet (no key file)"))
            else:
                out.append(error_result("files.key", target, ssh_why(st), f"could not stat it: {st.message}"))
            return out
        problems = []
        if st.permissions & 0o077:
            problems.append(f"mode {st.permissions & 0o777:o} (want 600)")
        if f"{st.uid}:{st.gid}" != owner:
            problems.append(
                f"owner {st.uid}:{st.gid} (want {owner}"
                + (", from TLS_KEY_OWNER" if not self.env.database.key_owner and owner_cfg else "")
                + ")"
            )
        if problems:
            out.append(_res("files.key", target, Verdict.FAIL, "; ".join(problems)))
            return out
        key_data = await self.pool.read_file(db.name, key_path, 1 << 16)
        if isinstance(key_data, bytes) and key_pem is not None:
            same = _sha(key_data.strip()) == _sha(key_pem.strip())
            del key_data
            out.append(
                _ok("files.key", target, f"mode 600, owner {owner}, matches Secrets Manager")
                if same
                else _res("files.key", target, Verdict.FAIL, "differs from Secrets Manager")
            )
        else:
            out.append(_ok("files.key", target, f"mode 600, owner {owner}"))
        return out


def _who(addr_map: Mapping[str, Host], addr: str) -> str | None:
    h = addr_map.get(addr)
    return h.name if h is not None else None


async def _value(v: T) -> T:
    return v
