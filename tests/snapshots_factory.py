"""Build `FleetSnapshot`s in memory for the plans tests: the fleet after any runbook step, with
stragglers, refused clients and facts that could not be measured.

The model is small but follows the platform: each service's rollout variables sit in the config
store (`config`); each host runs what it read at its last restart (`running`, default: the config).
The observed facts (connections, live settings, verifications) follow from what runs:

* an app connects to PgBouncer over TLS when it runs DATABASE_SSL_MODE=verify-full and PgBouncer
  offers client TLS; it is refused (no connection, unhealthy) when the two disagree;
* PgBouncer connects to Postgres over TLS when server_tls_sslmode is verify-ca; it fails when
  Postgres has no TLS, or when pg_hba is hostssl-only and PgBouncer talks plaintext;
* an app (and the OTel collector on the database host) uses Redis's TLS port when it runs
  REDIS_TLS_ENABLED=true; TelPro needs its SSL build for that.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from probes.model import CheckResult, Unknown, Verdict, Why
from probes.snapshot import (
    CaFile,
    ConfigSource,
    ConfiguredValue,
    Connection,
    DatabaseState,
    FleetSnapshot,
    Handshake,
    InstanceState,
    Leg,
    LegUse,
    LegView,
)

T0 = 1_800_000_000.0
CA_FILE = "/etc/ssl/internal/ca.crt"
DB_HOST = "staging-database-01"
DB_ADDR = "10.0.1.20"
SERVICES = ("api", "web", "voice", "ops", "telpro")  # app services in inventory order
INSTANCES: dict[str, tuple[str, ...]] = {
    "api": ("staging-api-01", "staging-api-02"),
    "web": ("staging-web-01",),
    "voice": ("staging-voice-01", "staging-voice-02"),
    "ops": ("staging-ops-01",),
    "telpro": ("staging-telpro-01",),
}
NO_HEALTH = {"ops"}  # services without a health endpoint

DATABASE_DEFAULTS = {
    "POSTGRES_TLS_ENABLED": "off",
    "POSTGRES_FORCE_SSL": "off",
    "PGBOUNCER_SERVER_TLS_SSLMODE": "disable",
    "PGBOUNCER_CLIENT_TLS_SSLMODE": "disable",
    "REDIS_TLS_ENABLED": "false",
    "REDIS_FORCE_TLS": "false",
}
APP_DEFAULTS = {
    "DATABASE_SSL_MODE": "disable",
    "DATABASE_SSL_CA_FILE": CA_FILE,
    "REDIS_TLS_ENABLED": "false",
    "REDIS_TLS_CA_FILE": "",
}

Settings = dict[str, dict[str, str | None]]  # service -> VAR -> value (None: unset)


def _pg_steps(n: int, s: Settings) -> None:
    steps: list[tuple[str, dict[str, str]]] = [
        ("", {}),  # 1: certs (always provisioned here unless `certs` says otherwise)
        ("database", {"POSTGRES_TLS_ENABLED": "on"}),
        ("database", {"PGBOUNCER_SERVER_TLS_SSLMODE": "verify-ca"}),
        ("database", {"PGBOUNCER_CLIENT_TLS_SSLMODE": "allow"}),
        ("*", {"DATABASE_SSL_MODE": "verify-full", "DATABASE_SSL_CA_FILE": CA_FILE}),
        ("database", {"PGBOUNCER_CLIENT_TLS_SSLMODE": "require"}),
        ("database", {"POSTGRES_FORCE_SSL": "on"}),
    ]
    for where, values in steps[:n]:
        for svc in SERVICES if where == "*" else ((where,) if where else ()):
            s[svc].update(values)


def _redis_steps(n: int, s: Settings) -> None:
    steps: list[tuple[str, dict[str, str]]] = [
        ("database", {"REDIS_TLS_ENABLED": "true"}),
        ("*", {"REDIS_TLS_ENABLED": "true", "REDIS_TLS_CA_FILE": CA_FILE}),
        ("database", {"REDIS_FORCE_TLS": "true"}),
    ]
    for where, values in steps[:n]:
        for svc in SERVICES if where == "*" else (where,):
            s[svc].update(values)


def settings(pg: int = 1, redis: int = 0) -> Settings:
    """The config store after Postgres steps 1..pg and Redis steps 1..redis (only what is set)."""
    s: Settings = {svc: {} for svc in ("database", *SERVICES)}
    _pg_steps(pg, s)
    _redis_steps(redis, s)
    return s


def _resolve(service: str, set_values: Mapping[str, str | None]) -> dict[str, ConfiguredValue]:
    defaults = DATABASE_DEFAULTS if service == "database" else APP_DEFAULTS
    out: dict[str, ConfiguredValue] = {}
    for var, default in defaults.items():
        if var in set_values and set_values[var] is not None:
            out[var] = ConfiguredValue(set_values[var], ConfigSource.SSM, 1)
        else:
            out[var] = ConfiguredValue(default, ConfigSource.DEFAULT)
    return out


def _effective(service: str, set_values: Mapping[str, str | None]) -> dict[str, str]:
    return {k: v.value or "" for k, v in _resolve(service, set_values).items() if isinstance(v, ConfiguredValue)}


def _cert_checks(certs: str, services: tuple[str, ...]) -> tuple[CheckResult, ...]:
    if certs == "none":
        return ()
    out: list[CheckResult] = []
    ids = (
        "certs.present",
        "certs.decode",
        "certs.ca",
        "certs.chain",
        "certs.key_match",
        "certs.san",
        "certs.expiry",
    )
    for svc in services:
        for check in ids:
            verdict, summary = Verdict.OK, f"{check} ok"
            if certs == "bad-san" and check == "certs.san":
                verdict = Verdict.FAIL
                summary = "server cert SAN lacks staging-database-01.voiceai.internal"
            elif certs == "warn" and check == "certs.expiry":
                verdict, summary = Verdict.WARN, "server cert expires in 12 days"
            elif certs == "error" and check == "certs.present" and svc == "voice":
                verdict, summary = Verdict.ERROR, "could not read voice's secret (AccessDenied)"
            elif certs == "missing" and check == "certs.present":
                verdict, summary = Verdict.FAIL, "INTERNAL_CA_CRT_B64, INTERNAL_TLS_CERT_B64 are missing"
            elif certs == "missing-voice" and svc == "voice" and check == "certs.present":
                verdict, summary = Verdict.FAIL, "INTERNAL_CA_CRT_B64, INTERNAL_TLS_CERT_B64 are missing"
            out.append(CheckResult(check, svc, verdict, summary))
    return tuple(out)


def fleet(
    pg: int = 1,
    redis: int = 0,
    *,
    config: Mapping[str, Mapping[str, str | None]] | None = None,
    running: Mapping[str, Mapping[str, str | None]] | None = None,
    telpro_ssl: bool = True,
    certs: str = "ok",
    taken_at: float = T0,
    env: str = "staging",
) -> FleetSnapshot:
    """The fleet after Postgres steps 1..`pg` and Redis steps 1..`redis` (pg=1, redis=0: fresh).

    `config` overrides the config store per service (None: unset). `running` overrides, per host
    (or per service, for all its hosts), what that host runs — e.g. {"staging-voice-02":
    {"DATABASE_SSL_MODE": None}} for a host not restarted since. `certs`: "ok", "warn", "bad-san",
    "missing" (pg=0 implies it), "missing-voice", "error" or "none" (no cert check ran).
    """
    store = settings(pg, redis)
    if pg < 1 and certs == "ok":
        certs = "missing"  # step 1 not done: no service holds cert material
    for svc, values in (config or {}).items():
        store.setdefault(svc, {}).update(values)
    running = running or {}

    def runs(service: str, host: str) -> dict[str, str]:
        values = dict(store.get(service, {}))
        values.update(running.get(service, {}))
        values.update(running.get(host, {}))
        return _effective(service, values)

    d = runs("database", DB_HOST)
    certs_ok = certs in ("ok", "warn", "missing-voice")
    pg_ssl = d["POSTGRES_TLS_ENABLED"] == "on"
    hostssl = d["POSTGRES_FORCE_SSL"] == "on" and pg_ssl
    server_mode = d["PGBOUNCER_SERVER_TLS_SSLMODE"]
    client_mode = d["PGBOUNCER_CLIENT_TLS_SSLMODE"]
    tls_listener = d["REDIS_TLS_ENABLED"] == "true"
    plain_dropped = tls_listener and d["REDIS_FORCE_TLS"] == "true"

    conns: list[Connection] = []
    # Leg 2
    leg2_tls = server_mode != "disable"
    leg2_works = (pg_ssl and certs_ok) if leg2_tls else not hostssl
    if leg2_works:
        conns.append(Connection("leg2", "pgbouncer", DB_HOST, f"{DB_ADDR}:40001", leg2_tls, ""))
    # OTel collector on the database host
    conns.append(
        Connection(
            "redis",
            "otel-collector",
            DB_HOST,
            f"{DB_ADDR}:40002",
            tls_listener,
            "6380" if tls_listener else "6379",
        )
    )

    instances: list[InstanceState] = []
    port = 50000
    for svc in SERVICES:
        for n, host in enumerate(INSTANCES[svc], start=1):
            r = runs(svc, host)
            addr = f"10.0.{SERVICES.index(svc) + 2}.{10 + n}"
            port += 1
            wants_db_tls = r["DATABASE_SSL_MODE"] in ("require", "verify-ca", "verify-full")
            if wants_db_tls:
                db_ok = client_mode != "disable" and certs_ok
            else:
                db_ok = client_mode in ("disable", "allow", "prefer")
            db_use = LegUse()
            if db_ok and leg2_works:
                conns.append(Connection("leg1", svc, host, f"{addr}:{port}", wants_db_tls, ""))
                db_use = LegUse(1, 0) if wants_db_tls else LegUse(0, 1)
            wants_redis_tls = r["REDIS_TLS_ENABLED"] == "true"
            if wants_redis_tls:
                redis_ok = tls_listener and bool(r["REDIS_TLS_CA_FILE"]) and (svc != "telpro" or telpro_ssl)
            else:
                redis_ok = not plain_dropped
            redis_use = LegUse()
            if redis_ok:
                conns.append(
                    Connection(
                        "redis",
                        svc,
                        host,
                        f"{addr}:{port + 1000}",
                        wants_redis_tls,
                        "6380" if wants_redis_tls else "6379",
                    )
                )
                redis_use = LegUse(1, 0) if wants_redis_tls else LegUse(0, 1)
            healthy: bool | Unknown = (
                Unknown(Why.NOT_CHECKED, f"{svc} has no health URL")
                if svc in NO_HEALTH
                else (db_use.seen and redis_use.seen)
            )
            instances.append(
                InstanceState(
                    host=host,
                    service=svc,
                    address=addr,
                    reachable=True,
                    running=True,
                    healthy=healthy,
                    ca_files={CA_FILE: CaFile.MATCHES},
                    telpro_ssl=telpro_ssl if svc == "telpro" else Unknown(Why.NOT_CHECKED, "not a TelPro host"),
                    db=db_use,
                    redis=redis_use,
                )
            )

    legs: dict[Leg, LegView] = {
        leg: LegView(tuple(c for c in conns if c.leg == leg)) for leg in ("leg1", "leg2", "postgres", "redis")
    }

    def shake(offered: bool) -> Handshake:
        return (Handshake.VERIFIED if certs_ok else Handshake.NOT_VERIFIED) if offered else Handshake.NOT_OFFERED

    database = DatabaseState(
        host=DB_HOST,
        reachable=True,
        postgres_ssl=pg_ssl,
        pg_hba_hostssl_only=hostssl,
        pgbouncer_client_tls_sslmode=client_mode,
        pgbouncer_server_tls_sslmode=server_mode,
        redis_port=0 if plain_dropped else 6379,
        redis_tls_port=6380 if tls_listener else 0,
        postgres_tls=shake(pg_ssl),
        pgbouncer_tls=shake(client_mode != "disable"),
        redis_tls=shake(tls_listener),
        end_to_end_ok=leg2_works,
        otel_redis_endpoint=f"{DB_ADDR}:6380" if tls_listener else f"{DB_ADDR}:6379",
        legs=legs,
    )
    cert_checks = _cert_checks(certs, ("database", *SERVICES))
    configured = {svc: _resolve(svc, store.get(svc, {})) for svc in ("database", *SERVICES)}
    return FleetSnapshot(
        env=env,
        taken_at=taken_at,
        duration_ms=12.0,
        managed_database=False,
        configured=configured,
        database=database,
        instances=tuple(instances),
        certs=cert_checks,
        checks=cert_checks,
    )


# -- edits for facts that could not be measured, and other odd states ---------------------------


def with_database(snap: FleetSnapshot, **changes: Any) -> FleetSnapshot:
    assert isinstance(snap.database, DatabaseState)
    return dataclasses.replace(snap, database=dataclasses.replace(snap.database, **changes))


def without_database(snap: FleetSnapshot, why: Why = Why.UNREACHABLE) -> FleetSnapshot:
    return dataclasses.replace(snap, database=Unknown(why, "the database host could not be observed"))


def with_instance(snap: FleetSnapshot, host: str, **changes: Any) -> FleetSnapshot:
    hosts = [i.host for i in snap.instances]
    assert host in hosts, f"no instance {host}; have {hosts}"
    return dataclasses.replace(
        snap,
        instances=tuple(dataclasses.replace(i, **changes) if i.host == host else i for i in snap.instances),
    )


def with_connections(snap: FleetSnapshot, *conns: Connection, leg: Leg | None = None) -> FleetSnapshot:
    """Replace the connections of `leg` (all of them when None) with `conns`; the instances' own
    counts follow (as the collector attributes them)."""
    assert isinstance(snap.database, DatabaseState)
    legs: dict[Leg, LegView | Unknown] = dict(snap.database.legs)
    for name in ("leg1", "leg2", "postgres", "redis"):
        if leg is None or name == leg:
            legs[name] = LegView(tuple(c for c in conns if c.leg == name))  # type: ignore[index]
    snap = with_database(snap, legs=legs)
    return _recount(snap)


def with_leg_unknown(snap: FleetSnapshot, leg: Leg, why: Why = Why.REFUSED) -> FleetSnapshot:
    """`leg` could not be read (and so every instance's use of it)."""
    assert isinstance(snap.database, DatabaseState)
    legs: dict[Leg, LegView | Unknown] = dict(snap.database.legs)
    legs[leg] = Unknown(why, f"{leg} could not be read")
    return _recount(with_database(snap, legs=legs))


def _recount(snap: FleetSnapshot) -> FleetSnapshot:
    assert isinstance(snap.database, DatabaseState)
    db = snap.database

    def use(host: str, names: tuple[Leg, ...]) -> LegUse | Unknown:
        tls = plain = 0
        for n in names:
            view = db.leg(n)
            if isinstance(view, Unknown):
                return view
            for c in view.connections:
                if c.instance == host:
                    tls, plain = (tls + 1, plain) if c.tls else (tls, plain + 1)
        return LegUse(tls, plain)

    return dataclasses.replace(
        snap,
        instances=tuple(
            dataclasses.replace(i, db=use(i.host, ("leg1", "postgres")), redis=use(i.host, ("redis",)))
            for i in snap.instances
        ),
    )


def with_config(snap: FleetSnapshot, service: str, var: str, value: ConfiguredValue | Unknown | None) -> FleetSnapshot:
    """Set (or, with None, drop: "not read") one configured value."""
    configured = {s: dict(v) for s, v in snap.configured.items()}
    if value is None:
        configured.get(service, {}).pop(var, None)
    else:
        configured.setdefault(service, {})[var] = value
    return dataclasses.replace(snap, configured=configured)


def managed(snap: FleetSnapshot) -> FleetSnapshot:
    return dataclasses.replace(snap, managed_database=True, database=Unknown(Why.NOT_CHECKED, "managed database"))
