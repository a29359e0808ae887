"""The collector: one `FleetSnapshot` of an environment, from the config store, the servers
and the connections. Sessions (SSH, DB admin connections) are kept between rounds, so a warm
snapshot costs queries, not connects. Nothing here raises: every failure is a check result.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from probes import certs, tls
from probes.aws import Aws, AwsError
from probes.config import parse_env_text, parse_manifest, read_service_config
from probes.http import KeptHttp
from probes.inventory import Environment, Host
from probes.model import CheckResult, Verdict
from probes.pgbouncer import PgBouncerFacts, PgBouncerSession
from probes.postgres import PostgresFacts, PostgresSession, probe_end_to_end
from probes.redis import RedisFacts, RedisSession
from probes.snapshot import ConfiguredValue, Connection, DatabaseState, FleetSnapshot, InstanceState
from probes.ssh import FileStat, SshPool, check_reachable

T = TypeVar("T")
TLS_KEYS = (certs.CA_VAR, certs.CERT_VAR, certs.KEY_VAR)
VERIFYING_MODES = ("verify-ca", "verify-full")


def _ok(check: str, target: str, summary: str, **evidence: Any) -> CheckResult:
    return CheckResult(check, target, Verdict.OK, summary, evidence)


def _res(check: str, target: str, verdict: Verdict, summary: str, **evidence: Any) -> CheckResult:
    return CheckResult(check, target, verdict, summary, evidence)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


DEFAULT_CA = "/etc/ssl/internal/ca.crt"


@dataclass(frozen=True)
class HostIO:
    """What an instance's own reads returned this round (None: not read, host unreachable)."""

    ca: Any  # bytes, or the SshError
    telpro: tuple[bool | None, CheckResult] | None
    health: tuple[bool | None, CheckResult] | None


@dataclass(frozen=True)
class Credentials:
    pg_user: str
    pg_password: str | None
    admin_user: str
    admin_password: str | None
    redis_password: str | None


FILE_REREAD = 10.0  # seconds a small host file (CA, vars.yaml, .env) may be served from its cache


class Collector:
    """Collects snapshots of one environment; keep one per cockpit session and `aclose()` it."""

    def __init__(self, env: Environment, *, pool: SshPool | None = None, aws: Aws | None = None,
                 timeout: float = 3.0, config_ttl: float = 3.0) -> None:
        self.env = env
        self.pool = pool or SshPool(env)
        self._aws = aws
        self.timeout = timeout
        self._manifests: dict[str, tuple[bytes, dict[str, dict[str, Any]]]] = {}
        self._pg: PostgresSession | None = None
        self._bouncer: PgBouncerSession | None = None
        self._redis: RedisSession | None = None
        self._redis_key: tuple[str, int, bool] | None = None
        self._ca_ctx: tuple[bytes, Any] | None = None
        self._round_lock = asyncio.Lock()
        self._files: dict[tuple[str, str], tuple[tuple[int, float], bytes, float]] = {}
        self._bound: tuple[float, Any] | None = None
        self.config_ttl = config_ttl  # seconds a round may reuse the config store's answers
        self._config_cache: dict[str, tuple[float, Any]] = {}
        self._secrets_round: dict[str, Any] = {}  # service -> the round's secrets_under() task
        self._secrets_at = float("-inf")
        self._telpro: dict[str, tuple[float, bool | None, CheckResult]] = {}
        self.telpro_ttl = 15.0  # the image changes only with a deploy; no need to ask every second
        # Healthy handshakes and end-to-end queries are re-measured every `probe_ttl` seconds, not
        # every round: each is a new connection through an SSH tunnel (a channel, a TLS handshake, for
        # the query a login), about 40 % of a warm round's CPU. Anything not OK is measured every
        # round, and `invalidate()` (after every cockpit write and every restart) drops them all.
        self.probe_ttl = 3.0
        self._handshakes: tuple[float, tuple[Any, ...], tuple[CheckResult, ...]] | None = None
        self._http = KeptHttp()  # health checks over kept connections
        self._e2e: tuple[float, tuple[Any, ...], CheckResult] | None = None

    @property
    def aws(self) -> Aws:
        if self._aws is None:
            self._aws = Aws(self.env)
        return self._aws

    async def aclose(self) -> None:
        self._http.close()
        for s in (self._pg, self._bouncer, self._redis):
            if s is not None:
                with contextlib.suppress(Exception):
                    await s.aclose()
        with contextlib.suppress(Exception):
            await self.pool.aclose()

    # -------------------------------------------------------------------------- helpers
    async def _guard(self, aw: Awaitable[T], check: str, target: str, errors: list[CheckResult]) -> T | None:
        """Await; a crash becomes an ERROR result ('bug in the cockpit') instead of an exception."""
        try:
            return await aw
        except Exception as exc:
            errors.append(_res(check, target, Verdict.ERROR, f"internal error (a bug in the cockpit): "
                                                             f"{type(exc).__name__}: {exc}"))
            return None

    async def _db_endpoint(self, port: int) -> tuple[str, int] | None:
        """Where to dial a DB port: a tunnel over the DB host's connection, or direct."""
        db = self.env.database_host
        if self.env.database.access == "direct":
            return db.address, port
        fwd = await self.pool.forward(db.name, db.address, port)
        if isinstance(fwd, tuple):
            return fwd
        return None

    async def _manifest(self, service: str, host: Host) -> dict[str, dict[str, Any]]:
        """The service's vars.yaml (declared variables and defaults), re-read when it changes."""
        path = self.env.host_path(host, self.env.service(service).vars.format(service=service))
        data = await self._read_cached(host.name, path)
        if not isinstance(data, bytes):
            return {}
        cached = self._manifests.get(service)
        if cached is not None and cached[0] == data:
            return cached[1]
        try:
            manifest = parse_manifest(data.decode("utf-8", "replace"), f"{host.name}:{path}")
        except ValueError:
            manifest = {}
        self._manifests[service] = (data, manifest)
        return manifest

    async def _env_file(self, host: Host, path: str) -> dict[str, str]:
        """A KEY=VALUE file on the host (the bootstrap .env, an env-file config store), re-read when it
        changes; {} when absent or unreadable."""
        data = await self._read_cached(host.name, self.env.host_path(host, path))
        return parse_env_text(data.decode("utf-8", "replace")) if isinstance(data, bytes) else {}

    async def _bootstrap_env(self, host: Host) -> dict[str, str]:
        return await self._env_file(host, "/opt/deployment/.env")

    # -------------------------------------------------------------------------- AWS side
    def _service_params(self, service: str) -> Any:
        """This round's SSM parameters of one service, fetched once (started at the round's start)."""
        key = "params:" + service
        if key not in self._secrets_round:
            self._secrets_round[key] = asyncio.ensure_future(
                self.aws.parameters_by_path(f"/{self.env.namespace}/{service}/"))
        return self._secrets_round[key]

    def _service_secrets(self, service: str) -> Any:
        """This round's merged secrets of one service, fetched once (config and cert checks share it)."""
        if service not in self._secrets_round:
            self._secrets_round[service] = asyncio.ensure_future(
                self.aws.secrets_under(f"{self.env.namespace}/{service}/"))
        return self._secrets_round[service]

    async def _credentials(self) -> tuple[Credentials | None, CheckResult]:
        c = self.env.credentials
        try:
            data = await self.aws.secret_json(c.secret)
        except AwsError as exc:
            return None, _res("aws.credentials", c.secret, Verdict.ERROR, str(exc))
        creds = Credentials(
            pg_user=data.get(c.postgres_user_key, "postgres"),
            pg_password=data.get(c.postgres_password_key),
            admin_user=data.get(c.pgbouncer_admin_user_key, "pgbouncer"),
            admin_password=data.get(c.pgbouncer_admin_password_key),
            redis_password=data.get(c.redis_password_key),
        )
        missing = [k for k, v in ((c.postgres_password_key, creds.pg_password),
                                  (c.pgbouncer_admin_password_key, creds.admin_password),
                                  (c.redis_password_key, creds.redis_password)) if v is None]
        if missing:
            return creds, _res("aws.credentials", c.secret, Verdict.WARN,
                               f"secret {c.secret} lacks {', '.join(missing)}; those probes run without a password")
        return creds, _ok("aws.credentials", c.secret, "probe credentials read (values never shown)")

    async def _tls_material(self, consumers: list[str]) -> tuple[dict[str, tuple[str | None, ...]], list[CheckResult]]:
        out: dict[str, tuple[str | None, ...]] = {}
        results: list[CheckResult] = []

        async def one(service: str) -> None:
            try:
                if self.env.tls_secrets.layout == "json":
                    data = await self._service_secrets(service)
                    out[service] = tuple(data.get(k) for k in TLS_KEYS)
                else:
                    vals: list[str | None] = []
                    for k in TLS_KEYS:
                        try:
                            d = await self.aws.secret_json(self.env.tls_secret_name(service, k))
                            vals.append(d.get(k) or next(iter(d.values()), None))
                        except AwsError:
                            vals.append(None)
                    out[service] = tuple(vals)
            except AwsError as exc:
                results.append(_res("certs.present", service, Verdict.ERROR, str(exc)))

        await asyncio.gather(*(one(s) for s in consumers))
        return out, results

    def _cert_checks(self, material: Mapping[str, tuple[str | None, ...]]) -> list[CheckResult]:
        results: list[CheckResult] = []
        now = datetime.now(UTC)
        for service, (ca, cert, key) in sorted(material.items()):
            results += certs.check_material(ca, cert, key, dns_name=self.env.database.dns_name, target=service,
                                            now=now)
        if len(material) > 1:
            results.append(certs.check_agreement(
                {s: (v[0], v[1], v[2]) for s, v in material.items()}, target="all services"))
        return results

    # -------------------------------------------------------------------------- DB side
    def _client_ctx(self, ca_pem: bytes) -> Any:
        if self._ca_ctx is None or self._ca_ctx[0] != ca_pem:
            self._ca_ctx = (ca_pem, tls.make_client_context(ca_pem, server_name=self.env.database.dns_name))
        return self._ca_ctx[1]

    async def _database(self, creds: Credentials | None, ca_pem: bytes | None, cert_pem: bytes | None,
                        key_pem: bytes | None, reachable: bool | None,
                        addr_map: Mapping[str, Host], cfg: Mapping[str, ConfiguredValue]) -> DatabaseState:
        env, d = self.env, self.env.database
        db = env.database_host
        checks: list[CheckResult] = []

        def val(var: str) -> str | None:
            v = cfg.get(var)
            return v.value if v is not None else None

        if reachable is False and d.access == "tunnel":
            return DatabaseState(db.name, False, None, None, None, None, None, None, None, None, None, None,
                                 None, checks=(
                _res("db.reachable", db.name, Verdict.ERROR, f"{db.name} unreachable over SSH: database "
                                                             "checks could not run"),))
        eps = await asyncio.gather(*(self._db_endpoint(p) for p in (
            d.postgres_port, d.pgbouncer_port, d.redis_port, d.redis_tls_port)))
        pg_ep, pb_ep, rd_ep, rt_ep = eps
        fp = certs.fingerprint(cert_pem) if cert_pem else None
        name = d.dns_name
        t = self.timeout

        async def none_result(check: str, port: int) -> CheckResult:
            return _res(check, f"{db.name}:{port}", Verdict.ERROR, f"could not open a tunnel to port {port}")

        hs_key = (pg_ep, pb_ep, rd_ep, rt_ep, _sha(ca_pem) if ca_pem else None, fp, name,
                  creds.redis_password if creds else None)

        async def handshakes() -> tuple[CheckResult, ...]:
            """The four listeners' handshakes — or the same, healthy, from under `probe_ttl` ago."""
            reused: tuple[CheckResult, ...] | None = self._fresh(self._handshakes, hs_key)
            if reused is not None:
                return reused
            password = creds.redis_password if creds else None
            measured = tuple(await asyncio.gather(
                probe_pg_tls_safe(pg_ep, name, ca_pem, fp, t, "postgres") if pg_ep
                else none_result("tls.postgres", d.postgres_port),
                probe_pg_tls_safe(pb_ep, name, ca_pem, fp, t, "pgbouncer") if pb_ep
                else none_result("tls.pgbouncer", d.pgbouncer_port),
                tls.probe_redis_plain(rd_ep[0], rd_ep[1], password=password, timeout=t) if rd_ep
                else none_result("redis.plain", d.redis_port),
                tls.probe_redis_tls(rt_ep[0], rt_ep[1], server_name=name, ca_pem=ca_pem, expected_cert_fingerprint=fp,
                                    password=password, timeout=t) if rt_ep
                else none_result("redis.tls", d.redis_tls_port)))
            self._handshakes = ((time.monotonic(), hs_key, measured)
                                if all(r.verdict is Verdict.OK for r in measured) else None)
            return measured

        (pg_tls_r, pb_tls_r, rd_plain_r, rd_tls_r), bound = await asyncio.gather(handshakes(), self._bound_ports(db))
        pg_tls_r = _retarget(pg_tls_r, f"{db.name}:{d.postgres_port}")
        pb_tls_r = _retarget(pb_tls_r, f"{db.name}:{d.pgbouncer_port}")
        rd_plain_r = _retarget(rd_plain_r, f"{db.name}:{d.redis_port}")
        rd_tls_r = _retarget(rd_tls_r, f"{db.name}:{d.redis_tls_port}")
        plain_up = (d.redis_port in bound) if bound is not None else rd_plain_r.verdict is not Verdict.FAIL
        pg_offers_tls = pg_tls_r.evidence.get("answer") != "N" and pg_tls_r.verdict is not Verdict.ERROR
        if bound is not None:
            # what the host itself says is bound beats what a tunnel can tell
            expect = {d.postgres_port: ("postgres", True), d.pgbouncer_port: ("pgbouncer", True),
                      d.redis_port: ("redis", val("REDIS_FORCE_TLS") != "true"),
                      d.redis_tls_port: ("redis TLS", val("REDIS_TLS_ENABLED") == "true")}
            for port, (label, expected) in expect.items():
                target = f"{db.name}:{port}"
                if port in bound:
                    checks.append(_ok("listener.bound", target, f"{label} listening on :{port}"
                                      + ("" if expected else " (configuration says it should not be)")))
                elif expected:
                    checks.append(_res("listener.bound", target, Verdict.FAIL, f"nothing bound on :{port} ({label})"))
                else:
                    checks.append(_ok("listener.bound", target, f"{label} :{port} not bound, as configured"))
            if d.redis_port not in bound:
                rd_plain_r = replace(rd_plain_r, verdict=Verdict.FAIL, summary=f"nothing listening on :{d.redis_port}",
                                     evidence={**rd_plain_r.evidence, "listening": False})
            if d.redis_tls_port not in bound:
                rd_tls_r = replace(rd_tls_r, verdict=Verdict.FAIL, summary=f"nothing listening on :{d.redis_tls_port}",
                                   evidence={**rd_tls_r.evidence, "listening": False})
        # a listener that is off because the configuration says so is the state, not a failure
        if pg_tls_r.evidence.get("answer") == "N" and val("POSTGRES_TLS_ENABLED") != "on":
            pg_tls_r = replace(pg_tls_r, verdict=Verdict.OK,
                               summary="plaintext only: TLS not offered (POSTGRES_TLS_ENABLED is not on)")
        if pb_tls_r.evidence.get("answer") == "N" and val("PGBOUNCER_CLIENT_TLS_SSLMODE") in ("disable", None):
            pb_tls_r = replace(pb_tls_r, verdict=Verdict.OK,
                               summary="plaintext only: TLS not offered (client_tls_sslmode=disable)")
        if rd_tls_r.evidence.get("listening") is False and val("REDIS_TLS_ENABLED") != "true":
            rd_tls_r = replace(rd_tls_r, verdict=Verdict.OK,
                               summary="no TLS listener (REDIS_TLS_ENABLED is not true)")
        if rd_plain_r.evidence.get("listening") is False and val("REDIS_FORCE_TLS") == "true":
            rd_plain_r = replace(rd_plain_r, verdict=Verdict.OK,
                                 summary="plaintext listener dropped (REDIS_FORCE_TLS=true)")
        checks += [_relabel(pg_tls_r, "tls.postgres"), _relabel(pb_tls_r, "tls.pgbouncer"),
                   _relabel(rd_plain_r, "listener.redis"), _relabel(rd_tls_r, "tls.redis")]

        pg_facts: PostgresFacts | None = None
        pb_facts: PgBouncerFacts | None = None
        rd_facts: RedisFacts | None = None
        e2e: CheckResult | None = None
        if creds is not None:
            ctx = self._client_ctx(ca_pem) if ca_pem else None
            if pg_ep:
                if self._pg is None or (self._pg.host, self._pg.port) != pg_ep:
                    self._pg = PostgresSession(pg_ep[0], pg_ep[1], user=creds.pg_user, password=creds.pg_password,
                                               dbname=d.dbname, ssl_ctx_or_none=ctx if pg_offers_tls else None,
                                               timeout=t)
                elif (self._pg.ssl_ctx is not None) != (pg_offers_tls and ctx is not None):
                    await self._pg.aclose()
                    self._pg = PostgresSession(pg_ep[0], pg_ep[1], user=creds.pg_user, password=creds.pg_password,
                                               dbname=d.dbname, ssl_ctx_or_none=ctx if pg_offers_tls else None,
                                               timeout=t)
            if pb_ep:
                if self._bouncer is None or (self._bouncer.host, self._bouncer.port) != pb_ep:
                    self._bouncer = PgBouncerSession(pb_ep[0], pb_ep[1], admin_user=creds.admin_user,
                                                     admin_password=creds.admin_password, timeout=t)
            redis_ep = rd_ep if (rd_ep and plain_up) else rt_ep
            use_tls = redis_ep is rt_ep
            if redis_ep:
                key = (redis_ep[0], redis_ep[1], use_tls)
                if self._redis is None or self._redis_key != key:
                    if self._redis is not None:
                        await self._redis.aclose()
                    self._redis = RedisSession(redis_ep[0], redis_ep[1], password=creds.redis_password,
                                               timeout=t, ssl_context=ctx if use_tls else None, server_name=name)
                    self._redis_key = key
            e2e_key = (pb_ep, creds.pg_user, creds.pg_password, d.dbname)
            e2e_reused: CheckResult | None = self._fresh(self._e2e, e2e_key)
            pg_facts, pb_facts, rd_facts, e2e = await asyncio.gather(
                self._pg.sample() if (self._pg and pg_ep) else _none(),
                self._bouncer.sample() if (self._bouncer and pb_ep) else _none(),
                self._redis.sample() if (self._redis and redis_ep) else _none(),
                _value(e2e_reused) if e2e_reused is not None else
                probe_end_to_end(pb_ep[0], pb_ep[1], user=creds.pg_user, password=creds.pg_password,
                                 dbname=d.dbname, ssl="prefer", timeout=max(t, 3.0)) if pb_ep else _none(),
            )
            if e2e_reused is None:
                self._e2e = (time.monotonic(), e2e_key, e2e) if e2e is not None and e2e.verdict is Verdict.OK \
                    else None
            for facts in (pg_facts, pb_facts, rd_facts):
                if facts is not None:
                    checks += [judge(c, val, pg_facts, pb_facts, rd_facts) for c in facts.results]
            if e2e is not None:
                checks.append(_relabel(e2e, "e2e.query"))
        else:
            checks.append(_res("db.credentials", db.name, Verdict.ERROR,
                               "probe credentials unavailable: Postgres, PgBouncer and Redis sessions not sampled"))

        checks += await self._decoded_files(db, ca_pem, cert_pem, key_pem)

        conns: list[Connection] = []
        if pb_facts is not None and pb_facts.clients is not None:
            for c in pb_facts.clients:
                inst = addr_map.get(c.addr)
                conns.append(Connection("leg1", c.application_name or "?", inst.name if inst else None,
                                        f"{c.addr}:{c.port}", c.tls, c.tls_info))
        if pb_facts is not None and pb_facts.servers is not None:
            for s in pb_facts.servers:
                conns.append(Connection("leg2", s.application_name or "?", None, f"{s.addr}:{s.port}", s.tls,
                                        s.tls_info))
        if pg_facts is not None and pg_facts.backends is not None:
            bouncer_pids = {sv.remote_pid for sv in (pb_facts.servers or ()) if sv.remote_pid} if pb_facts else set()
            for b in pg_facts.backends:
                if b.pid in bouncer_pids or (pb_facts is None and b.client_addr in (db.address, "127.0.0.1")):
                    continue  # PgBouncer's own server connections: Leg 2, counted from SHOW SERVERS
                inst = addr_map.get(b.client_addr or "")
                conns.append(Connection("postgres", b.application_name or "?", inst.name if inst else None,
                                        b.client_addr or "local", b.ssl, b.version or ""))
        otel: str | None = None
        if rd_facts is not None and rd_facts.clients is not None:
            for rc in rd_facts.clients:
                host_ip = rc.addr.rsplit(":", 1)[0]
                inst = addr_map.get(host_ip)
                service = rc.name or "?"
                conns.append(Connection("redis", service, inst.name if inst else None, rc.addr, rc.tls,
                                        f"laddr {rc.laddr}"))
                if service.startswith("otel"):
                    otel = rc.laddr
        leg2_tls_seen = any(c.leg == "leg2" and c.tls for c in conns)
        names = {f"{ep[0]}:{ep[1]}": f"{db.name}:{port}" for ep, port in (
            (pg_ep, d.postgres_port), (pb_ep, d.pgbouncer_port), (rd_ep, d.redis_port), (rt_ep, d.redis_tls_port))
            if ep}
        checks = [_retarget(c, names[c.target]) if c.target in names else c for c in checks]
        return DatabaseState(
            host=db.name,
            reachable=reachable,
            postgres_ssl=pg_facts.ssl if pg_facts else None,
            pg_hba_hostssl_only=pg_facts.hostssl_only if pg_facts else None,
            pgbouncer_client_tls_sslmode=pb_facts.client_tls_sslmode if pb_facts else None,
            pgbouncer_server_tls_sslmode=pb_facts.server_tls_sslmode if pb_facts else None,
            redis_port=rd_facts.port if rd_facts else None,
            redis_tls_port=rd_facts.tls_port if rd_facts else None,
            postgres_tls_verified=_verified(pg_tls_r, "tls"),
            pgbouncer_tls_verified=_verified(pb_tls_r, "tls"),
            redis_tls_verified=_verified(rd_tls_r, "tls"),
            end_to_end_ok=None if e2e is None or e2e.verdict is Verdict.ERROR else e2e.verdict is Verdict.OK,
            otel_redis_endpoint=otel,
            connections=tuple(conns),
            checks=tuple(checks) + ((_ok("leg2.tls", db.name, "PgBouncer → Postgres connections use TLS"),)
                                    if leg2_tls_seen and not any(c.leg == "leg2" and not c.tls for c in conns)
                                    else ()),
        )

    def _bound_ports(self, db: Host) -> Any:
        """The bound-ports read, shared by a round and reused for `config_ttl` seconds (listeners
        change only when a service restarts, and the engine invalidates after it writes)."""
        now = time.monotonic()
        if self._bound is None or now - self._bound[0] > self.config_ttl:
            self._bound = (now, asyncio.ensure_future(self._read_bound_ports(db)))
        return self._bound[1]

    async def _read_bound_ports(self, db: Host) -> set[int] | None:
        """TCP ports listening on the DB host, from the host itself: `/proc/net/tcp{,6}` over SFTP
        (no shell, so no login-script cost); None if unknown."""
        ports: set[int] = set()
        seen = False
        for name in ("/proc/net/tcp", "/proc/net/tcp6"):
            data = await self.pool.read_head(db.name, name, 4 << 20, past_listeners)
            if not isinstance(data, bytes):
                continue
            seen = True
            ports |= listening_ports(data.decode("ascii", "replace"), db.address)
        return ports if seen else None

    async def _decoded_files(self, db: Host, ca_pem: bytes | None, cert_pem: bytes | None,
                             key_pem: bytes | None) -> list[CheckResult]:
        """On the DB host, the decoded files equal the secrets; the key is 0600 and owned 70:70."""
        out: list[CheckResult] = []
        base = self.env.host_path(db, "/etc/ssl/internal")
        for fname, expected in (("ca.crt", ca_pem), ("server.crt", cert_pem)):
            data = await self.pool.read_file(db.name, f"{base}/{fname}", 1 << 16)
            target = f"{db.name}:/etc/ssl/internal/{fname}"
            if not isinstance(data, bytes):
                out.append(_res("files.decoded", target, Verdict.WARN, f"not readable: {data}"))
            elif expected is None:
                out.append(_res("files.decoded", target, Verdict.ERROR, "no value in Secrets Manager to compare"))
            elif _sha(data.strip()) == _sha(expected.strip()):
                out.append(_ok("files.decoded", target, "matches Secrets Manager"))
            else:
                out.append(_res("files.decoded", target, Verdict.FAIL,
                                "differs from Secrets Manager — the host has not decoded the new material "
                                "(restart the database service)"))
        key_path = f"{base}/server.key"
        st = await self.pool.stat(db.name, key_path)
        target = f"{db.name}:/etc/ssl/internal/server.key"
        if not isinstance(st, FileStat):
            out.append(_res("files.key", target, Verdict.WARN, f"not readable: {st}"))
        else:
            mode, uid, gid = st.permissions, st.uid, st.gid
            problems = []
            if mode & 0o077:
                problems.append(f"mode {mode & 0o777:o} (want 600)")
            if (uid, gid) != (70, 70):
                problems.append(f"owner {uid}:{gid} (want 70:70)")
            if problems:
                out.append(_res("files.key", target, Verdict.FAIL, "; ".join(problems)))
            else:
                key_data = await self.pool.read_file(db.name, key_path, 1 << 16)
                if isinstance(key_data, bytes) and key_pem is not None:
                    same = _sha(key_data.strip()) == _sha(key_pem.strip())
                    del key_data
                    out.append(_ok("files.key", target, "mode 600, owner 70:70, matches Secrets Manager") if same
                               else _res("files.key", target, Verdict.FAIL, "differs from Secrets Manager"))
                else:
                    out.append(_ok("files.key", target, "mode 600, owner 70:70"))
        return out

    # -------------------------------------------------------------------------- instances
    async def _host_io(self, host: Host, reach: Awaitable[CheckResult]) -> HostIO:
        """An instance's own reads, started as soon as its connection is up (they need nothing else)."""
        r = await reach
        if r.verdict is not Verdict.OK:
            return HostIO(None, None, None)

        async def nothing() -> None:
            return None

        url = self.env.health_url(host)
        ca, telpro, health = await asyncio.gather(
            self._read_cached(host.name, self.env.host_path(host, DEFAULT_CA)),
            self._telpro_check(host) if host.service == "telpro" and self.env.commands.telpro_ssl_check
            else nothing(),
            self._health(host, url) if url else nothing())
        return HostIO(ca, telpro, health)

    async def _instance(self, host: Host, reachable: bool | None, configured: Mapping[str, ConfiguredValue],
                        ca_pem: bytes | None, conns: tuple[Connection, ...], io: HostIO) -> InstanceState:
        checks: list[CheckResult] = []
        ca_ok: bool | None = None
        telpro: bool | None = None
        healthy: bool | None = None
        if reachable:
            ca_var = configured.get("DATABASE_SSL_CA_FILE")
            ca_path = (ca_var.value if ca_var and ca_var.value else DEFAULT_CA)
            data = io.ca if ca_path == DEFAULT_CA else \
                await self._read_cached(host.name, self.env.host_path(host, ca_path))
            if not isinstance(data, bytes):
                ca_ok = False
                checks.append(_res("instance.ca_file", host.name, Verdict.FAIL, f"{ca_path} missing: {data}"))
            elif ca_pem is None:
                checks.append(_res("instance.ca_file", host.name, Verdict.ERROR,
                                   "internal CA unknown (not in Secrets Manager)"))
            elif _sha(data.strip()) == _sha(ca_pem.strip()):
                ca_ok = True
                checks.append(_ok("instance.ca_file", host.name, f"{ca_path} is the internal CA"))
            else:
                ca_ok = False
                checks.append(_res("instance.ca_file", host.name, Verdict.FAIL,
                                   f"{ca_path} is not the internal CA in Secrets Manager — restart to re-decode"))
            if io.telpro is not None:
                telpro, res = io.telpro
                checks.append(res)
            if io.health is not None:
                healthy, res = io.health
                checks.append(res)

        mine = [c for c in conns if c.instance == host.name]
        leg1 = [c for c in mine if c.leg in ("leg1", "postgres")]
        redis = [c for c in mine if c.leg == "redis"]
        db_tls = None if not leg1 else all(c.tls for c in leg1)
        redis_tls = None if not redis else all(c.tls for c in redis)
        drift: list[str] = []
        mode = configured.get("DATABASE_SSL_MODE")
        if mode is not None and not mode.source.startswith("error"):
            if not mode.value:
                checks.append(_res("config.sslmode", host.name, Verdict.WARN,
                                   "DATABASE_SSL_MODE unset: the driver's default 'prefer' goes to unverified TLS "
                                   "as soon as PgBouncer allows it — set it explicitly"))
            wants_tls = mode.value in ("require", "verify-ca", "verify-full")
            if db_tls is not None and wants_tls and not db_tls:
                drift.append(f"DATABASE_SSL_MODE={mode.value} configured, but connected to PgBouncer in plaintext "
                             "(not restarted since?)")
            if db_tls is True and mode.value == "disable":
                drift.append("DATABASE_SSL_MODE=disable configured, but connected with TLS (not restarted since?)")
        rtls = configured.get("REDIS_TLS_ENABLED")
        if rtls is not None and not rtls.source.startswith("error") and redis_tls is not None:
            if (rtls.value == "true") != redis_tls:
                drift.append(f"REDIS_TLS_ENABLED={rtls.value} configured, but connected to Redis "
                             f"{'with TLS' if redis_tls else 'in plaintext'} (not restarted since?)")
        for text in drift:
            checks.append(_res("instance.drift", host.name, Verdict.WARN, text))
        if reachable is False:
            checks.append(_res("ssh.reachable", host.name, Verdict.ERROR, "unreachable: instance checks skipped"))
        return InstanceState(host=host.name, service=host.service, address=host.address, reachable=reachable,
                             ca_file_ok=ca_ok, telpro_ssl=telpro, healthy=healthy, db_tls=db_tls,
                             redis_tls=redis_tls, configured=dict(configured), drift=tuple(drift),
                             checks=tuple(checks))

    async def _read_cached(self, host_name: str, path: str) -> bytes | Any:
        """A small file's bytes: one stat per round, re-read when its size or mtime changed, and at
        least every FILE_REREAD seconds — SFTP's mtime has whole seconds, so a same-size rewrite
        within the second of the last read (`require` ↔ `disable`) would look unchanged."""
        st = await self.pool.stat(host_name, path)
        if not isinstance(st, FileStat):
            self._files.pop((host_name, path), None)
            return st
        key = (host_name, path)
        cached = self._files.get(key)
        now = time.monotonic()
        if cached is not None and cached[0] == (st.size, st.mtime) and now - cached[2] < FILE_REREAD:
            return cached[1]
        data = await self.pool.read_file(host_name, path, 1 << 16)
        if isinstance(data, bytes):
            self._files[key] = ((st.size, st.mtime), data, now)
        return data

    def invalidate(self) -> None:
        """Forget cached configuration, listeners and healthy probe results (the engine calls this
        right after it writes the config store and after each restart)."""
        self._config_cache.clear()
        self._secrets_round = {}
        self._bound = None
        self._files.clear()
        self._handshakes = None
        self._e2e = None

    def _fresh(self, cached: tuple[float, tuple[Any, ...], Any] | None, key: tuple[Any, ...]) -> Any:
        """A cached healthy probe result for `key`, if it is younger than `probe_ttl`."""
        if cached is not None and cached[1] == key and time.monotonic() - cached[0] < self.probe_ttl:
            return cached[2]
        return None

    async def _telpro_check(self, host: Host) -> tuple[bool | None, CheckResult]:
        cached = self._telpro.get(host.name)
        if cached is not None and time.monotonic() - cached[0] < self.telpro_ttl:
            return cached[1], cached[2]
        cmd = self.env.commands.telpro_ssl_check.replace("{root}", host.root.rstrip("/"))
        r = await self.pool.run(host.name, cmd)
        if r.error:
            return None, _res("telpro.ssl_build", host.name, Verdict.ERROR, r.error)
        has = r.exit_status == 0
        res = (_ok("telpro.ssl_build", host.name, "image has hiredis_ssl") if has else
               _res("telpro.ssl_build", host.name, Verdict.WARN,
                    "image lacks hiredis_ssl — ship the SSL build before flipping Redis TLS"))
        self._telpro[host.name] = (time.monotonic(), has, res)
        return has, res

    async def _health(self, host: Host, url: str) -> tuple[bool | None, CheckResult]:
        """GET the health URL through a tunnel from that host (its own side of the network)."""
        from urllib.parse import urlsplit

        u = urlsplit(url)
        ep = await self.pool.forward(host.name, u.hostname or host.address, u.port or 80)
        if not isinstance(ep, tuple):
            return None, _res("instance.health", host.name, Verdict.ERROR, f"no tunnel for {url}: {ep}")
        try:
            async with asyncio.timeout(self.timeout):
                head = await self._http.get(host.name, ep, u.path or "/", u.hostname or host.address)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            return None, _res("instance.health", host.name, Verdict.ERROR, f"{url}: {type(exc).__name__}")
        parts = head.decode("latin-1").split()
        code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if code == 200:
            return True, _ok("instance.health", host.name, f"{url}: 200")
        return False, _res("instance.health", host.name, Verdict.FAIL, f"{url}: {code or 'no HTTP answer'}")

    # -------------------------------------------------------------------------- the round
    async def snapshot(self) -> FleetSnapshot:
        """One round; concurrent callers (a UI poll during an apply's verification) take turns."""
        async with self._round_lock:
            return await self._snapshot()

    async def _snapshot(self) -> FleetSnapshot:
        t0 = time.monotonic()
        taken = time.time()
        env = self.env
        if env.managed_database:
            c = _res("runbook.applies", env.name, Verdict.WARN,
                     "managed database (RDS/ElastiCache): no self-hosted Postgres, PgBouncer or Redis — "
                     "the runbook does not apply")
            return FleetSnapshot(env.name, taken, 0.0, True, {}, None, (), (), (c,))
        errors: list[CheckResult] = []
        now_m = time.monotonic()
        if now_m - self._secrets_at > self.config_ttl:
            self._secrets_round = {}
            self._config_cache.clear()
            self._secrets_at = now_m
        hosts = list(env.hosts)
        reach_tasks = [asyncio.ensure_future(check_reachable(self.pool, h.name, round_trip=False)) for h in hosts]
        app_hosts = [h for h in hosts if env.service(h.service).role != "database"]
        io_tasks = {h.name: asyncio.ensure_future(self._host_io(h, t)) for h, t in zip(hosts, reach_tasks, strict=True)
                    if h in app_hosts}
        aws_early: Any = None
        try:
            self.aws  # noqa: B018 - builds the clients, may raise AwsError
            # AWS needs nothing from SSH: start its reads now, alongside the connects
            for svc in env.service_names:
                if svc not in self._config_cache:
                    self._service_params(svc)
                self._service_secrets(svc)
            aws_early = asyncio.ensure_future(asyncio.gather(self._credentials(),
                                                             self._tls_material(list(env.service_names))))
        except AwsError:
            pass
        db_host = env.database_host
        db_reach = reach_tasks[hosts.index(db_host)]

        async def early_ports() -> None:  # the DB host's own reads need nothing else: start them now
            if (await db_reach).verdict is Verdict.OK:
                await self._bound_ports(db_host)

        early = asyncio.ensure_future(early_ports())
        reach_of = {h.name: t for h, t in zip(hosts, reach_tasks, strict=True)}
        services = env.service_names

        async def first_reachable(service: str) -> Host | None:
            """The service's first host that is reachable, as soon as it is known (not after every
            host of the fleet has connected)."""
            for h in env.hosts_for(service):
                if (await reach_of[h.name]).verdict is Verdict.OK:
                    return h
            return None

        async def svc_config(service: str) -> tuple[str, dict[str, ConfiguredValue]]:
            cached = self._config_cache.get(service)
            if cached is not None:
                return service, dict(cached[1])
            role = env.service(service).role
            first = await first_reachable(service)
            manifest = await self._manifest(service, first) if first else {}
            boot = await self._bootstrap_env(first) if first else {}
            store_file = env.config_store.path if env.config_store.kind == "envfile" else ""
            envfile = (await self._env_file(first, store_file) if first else {}) if store_file else None
            values = await read_service_config(self.aws, env, service, role, manifest=manifest, bootstrap=boot,
                                               envfile=envfile, secrets=self._service_secrets(service),
                                               params=self._service_params(service))
            if not any(v.source.startswith("error") for v in values.values()):
                self._config_cache[service] = (time.monotonic(), values)
            return service, values

        try:
            aws_ok = True
            self.aws  # noqa: B018 - builds the clients, may raise AwsError
        except AwsError as exc:
            aws_ok = False
            errors.append(_res("aws.setup", env.name, Verdict.ERROR, str(exc)))

        if aws_ok and aws_early is not None:
            ((creds, cred_check), (material, mat_errors)), configs = await asyncio.gather(
                aws_early, asyncio.gather(*(svc_config(s) for s in services)))
            errors += [cred_check, *mat_errors]
            configured = dict(configs)
        else:
            creds, material, configured = None, {}, {}
        cert_checks = self._cert_checks(material) if material else []
        db_service = env.database_host.service
        ca_b64, cert_b64, key_b64 = material.get(db_service, (None, None, None))
        ca_pem, cert_pem, key_pem = (_decode(ca_b64), _decode(cert_b64), _decode(key_b64))
        addr_map = {h.address: h for h in hosts}
        dbstate = await self._guard(
            self._database(creds, ca_pem, cert_pem, key_pem, (await db_reach).verdict is Verdict.OK, addr_map,
                           configured.get(db_service, {})),
            "db.collect", env.database_host.name, errors)
        await early
        reach_results = await asyncio.gather(*reach_tasks)
        reachable = {h.name: r.verdict is Verdict.OK for h, r in zip(hosts, reach_results, strict=True)}
        conns = dbstate.connections if dbstate else ()
        ios = dict(zip(io_tasks, await asyncio.gather(*io_tasks.values(), return_exceptions=True), strict=True))
        inst = await asyncio.gather(*(
            self._guard(self._instance(h, reachable.get(h.name), configured.get(h.service, {}),
                                       _decode(material.get(h.service, (None,))[0]) or ca_pem, conns,
                                       _io(ios.get(h.name))),
                        "instance.collect", h.name, errors)
            for h in app_hosts))
        instances = tuple(i for i in inst if i is not None)
        all_checks = [*reach_results, *errors, *cert_checks, *(dbstate.checks if dbstate else ()),
                      *(c for i in instances for c in i.checks)]
        return FleetSnapshot(
            env=env.name, taken_at=taken, duration_ms=(time.monotonic() - t0) * 1000, managed_database=False,
            configured=configured, database=dbstate, instances=instances, certs=tuple(cert_checks),
            checks=tuple(all_checks))


async def probe_pg_tls_safe(ep: tuple[str, int], name: str, ca_pem: bytes | None, fp: str | None, t: float,
                            label: str) -> CheckResult:
    return await tls.probe_pg_tls(ep[0], ep[1], server_name=name, ca_pem=ca_pem, expected_cert_fingerprint=fp,
                                  timeout=t, label=label)


def _io(result: Any) -> HostIO:
    if isinstance(result, HostIO):
        return result
    if isinstance(result, BaseException):  # a bug in a read: reported by the instance as unknowns
        return HostIO(f"internal error: {type(result).__name__}: {result}", None, None)
    return HostIO(None, None, None)


async def _value(v: T) -> T:
    return v


async def _none() -> None:
    return None


def judge(c: CheckResult, val: Callable[[str], str | None], pg: PostgresFacts | None, pb: PgBouncerFacts | None,
          rd: RedisFacts | None) -> CheckResult:
    """A DB-side fact judged against the configuration: plaintext where the configuration still
    allows it is the rollout's state, not a problem; a live setting that differs from the
    configured one is drift (configured, not restarted)."""
    if c.verdict is Verdict.ERROR:
        return c

    def ok(summary: str) -> CheckResult:
        return replace(c, verdict=Verdict.OK, summary=summary)

    def drift(summary: str) -> CheckResult:
        return replace(c, verdict=Verdict.WARN, summary=summary + " — configured, not restarted?")

    if c.check == "postgres.ssl" and pg is not None and pg.ssl is not None:
        want = val("POSTGRES_TLS_ENABLED") == "on"
        live = "on" if pg.ssl else "off"
        return ok(f"ssl = {live}, as configured") if pg.ssl == want else \
            drift(f"ssl = {live} but POSTGRES_TLS_ENABLED={val('POSTGRES_TLS_ENABLED')}")
    if c.check == "postgres.hba" and pg is not None and pg.hostssl_only is not None:
        want = val("POSTGRES_FORCE_SSL") == "on"
        if pg.hostssl_only == want:
            return ok(c.summary + " (as configured)" if c.verdict is not Verdict.OK else c.summary)
        return drift(f"pg_hba hostssl-only={'yes' if pg.hostssl_only else 'no'} but POSTGRES_FORCE_SSL="
                     f"{val('POSTGRES_FORCE_SSL')}")
    if c.check == "postgres.backends" and c.verdict is Verdict.WARN and val("POSTGRES_FORCE_SSL") != "on":
        return ok(c.summary + " (allowed until POSTGRES_FORCE_SSL=on)")
    if c.check == "pgbouncer.clients" and c.verdict is Verdict.WARN and \
            val("PGBOUNCER_CLIENT_TLS_SSLMODE") not in ("require", "verify-ca", "verify-full"):
        return ok(c.summary + " (allowed: client_tls_sslmode does not require TLS yet)")
    if c.check == "pgbouncer.servers" and c.verdict is Verdict.WARN:
        if val("PGBOUNCER_SERVER_TLS_SSLMODE") in ("require", "verify-ca", "verify-full"):
            return drift(c.summary + f" while PGBOUNCER_SERVER_TLS_SSLMODE={val('PGBOUNCER_SERVER_TLS_SSLMODE')}")
        return ok(c.summary + " (server_tls_sslmode does not require TLS yet)")
    if c.check == "redis.listeners" and c.verdict is Verdict.WARN and rd is not None:
        tls_on = val("REDIS_TLS_ENABLED") == "true"
        if (rd.tls_port or 0) > 0 == tls_on or ((rd.tls_port or 0) == 0 and not tls_on):
            return ok(c.summary + " (as configured)")
    if c.check == "redis.clients" and c.verdict is Verdict.WARN and val("REDIS_FORCE_TLS") != "true":
        return ok(c.summary + " (allowed until REDIS_FORCE_TLS=true)")
    return c


def past_listeners(proc_net_tcp: bytes) -> bool:
    """Whether this start of /proc/net/tcp{,6} holds a complete line for a socket that is not
    listening. The kernel lists the listening sockets first (its iterator walks the listening hash
    before the established one), so from there on nothing listens: a DB host with thousands of
    client connections is read for its few dozen listeners, not its whole socket table."""
    end = proc_net_tcp.rfind(b"\n")
    for line in proc_net_tcp[:end].split(b"\n")[1:]:
        parts = line.split()
        if len(parts) >= 4 and parts[3] != b"0A":
            return True
    return False


def listening_ports(proc_net_tcp: str, address: str) -> set[int]:
    """Ports in LISTEN state (0A) bound to `address` or to any address, from /proc/net/tcp text."""
    import ipaddress
    import socket
    import struct

    want = {address}
    out: set[int] = set()
    for line in proc_net_tcp.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 4 or parts[3] != "0A":
            continue
        hexaddr, _, hexport = parts[1].partition(":")
        try:
            if len(hexaddr) == 8:
                ip = socket.inet_ntoa(struct.pack("<I", int(hexaddr, 16)))
                anyaddr = ip == "0.0.0.0"
            else:
                raw = bytes.fromhex(hexaddr)
                ip6 = ipaddress.IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
                ip = str(ip6.ipv4_mapped) if ip6.ipv4_mapped else str(ip6)
                anyaddr = ip6 == ipaddress.IPv6Address("::")
            if anyaddr or ip in want:
                out.add(int(hexport, 16))
        except ValueError:
            continue
    return out


def _retarget(r: CheckResult, target: str) -> CheckResult:
    """Name the host:port, not the local end of a tunnel, in what people read."""
    summary = r.summary.replace(r.target, target) if r.target else r.summary
    return replace(r, target=target, summary=summary)


def _relabel(r: CheckResult, check: str) -> CheckResult:
    return replace(r, check=check) if r.check != check else r


def _verified(r: CheckResult, _kind: str) -> bool | None:
    """A handshake verified (True), did not (False: refused, not offered, bad cert), or unknown (None)."""
    if r.verdict is Verdict.ERROR:
        return None
    if r.evidence.get("answer") == "N" or r.evidence.get("listening") is False:
        return False
    return r.verdict in (Verdict.OK, Verdict.WARN)


def _decode(b64: str | None) -> bytes | None:
    if not b64:
        return None
    try:
        return base64.b64decode(b64, validate=True)
    except ValueError:
        return None
