"""`FleetSnapshot`: everything the cockpit knows about one environment at one moment.

Frozen, JSON-serialisable (schema in docs/snapshot.md, versioned by `SCHEMA_VERSION`), and the
only thing the plans engine and the UI read. `None` in an observed field means "could not be
measured" — gates treat it as unknown, never as ok or as fail.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from probes.model import CheckResult, Verdict, worst

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class ConfiguredValue:
    """A rollout variable as the host would resolve it (bootstrap → SSM → Secrets Manager → default)."""

    value: str | None  # effective value; None = unset with no default
    source: str  # "ssm" | "secrets" | "bootstrap" | "envfile" | "default" | "unset" | "error"
    version: int | None = None  # the config store's version (SSM parameter version), for compare-and-swap

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "source": self.source, "version": self.version}


@dataclass(frozen=True, slots=True)
class Connection:
    """One observed connection on a leg, attributed to a service and instance when possible."""

    leg: str  # "leg1" (app→PgBouncer) | "leg2" (PgBouncer→Postgres) | "postgres" (direct) | "redis"
    service: str  # application_name / CLIENT SETNAME, or "?" when unknown
    instance: str | None  # inventory host name matched by client address, None when unknown
    addr: str  # client address:port as the server saw it
    tls: bool
    detail: str = ""  # e.g. TLS version/cipher, or the listener port for Redis

    def to_json(self) -> dict[str, Any]:
        return {"leg": self.leg, "service": self.service, "instance": self.instance, "addr": self.addr,
                "tls": self.tls, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class InstanceState:
    host: str
    service: str
    address: str
    reachable: bool | None  # SSH connection works (None: not tried)
    ca_file_ok: bool | None  # the CA file the service uses exists and equals the internal CA
    telpro_ssl: bool | None  # TelPro only: the image has hiredis_ssl
    healthy: bool | None  # health endpoint where the service has one
    db_tls: bool | None  # all of this instance's Leg-1 connections are TLS (None: none seen / unknown)
    redis_tls: bool | None  # all of this instance's Redis connections are TLS
    configured: Mapping[str, ConfiguredValue] = field(default_factory=dict)  # per host (env-file store)
    drift: tuple[str, ...] = ()  # configured ≠ observed, in words
    checks: tuple[CheckResult, ...] = ()

    @property
    def verdict(self) -> Verdict:
        return worst(tuple(c.verdict for c in self.checks))


@dataclass(frozen=True, slots=True)
class DatabaseState:
    host: str
    reachable: bool | None
    postgres_ssl: bool | None  # live `SHOW ssl`
    pg_hba_hostssl_only: bool | None
    pgbouncer_client_tls_sslmode: str | None  # live SHOW CONFIG
    pgbouncer_server_tls_sslmode: str | None
    redis_port: int | None  # live CONFIG GET port (0 = plaintext listener dropped)
    redis_tls_port: int | None  # live CONFIG GET tls-port (0 = no TLS listener)
    postgres_tls_verified: bool | None  # handshake verifies against the internal CA and DNS name
    pgbouncer_tls_verified: bool | None
    redis_tls_verified: bool | None
    end_to_end_ok: bool | None  # a query through PgBouncer answered in time
    otel_redis_endpoint: str | None
    connections: tuple[Connection, ...] = ()
    checks: tuple[CheckResult, ...] = ()


@dataclass(frozen=True, slots=True)
class FleetSnapshot:
    env: str
    taken_at: float  # epoch seconds
    duration_ms: float
    managed_database: bool
    configured: Mapping[str, Mapping[str, ConfiguredValue]]  # service -> VAR -> value
    database: DatabaseState | None  # None when the DB host is unreachable or managed
    instances: tuple[InstanceState, ...]
    certs: tuple[CheckResult, ...]  # cert material in Secrets Manager (+ decoded files on the DB host)
    checks: tuple[CheckResult, ...]  # every check, flat (includes the above)
    schema: int = SCHEMA_VERSION

    # -- queries the plans engine and the UI share -------------------------------------
    def value(self, service: str, var: str) -> str | None:
        v = self.configured.get(service, {}).get(var)
        return v.value if v is not None else None

    def instances_of(self, service: str) -> tuple[InstanceState, ...]:
        return tuple(i for i in self.instances if i.service == service)

    def connections(self, leg: str) -> tuple[Connection, ...]:
        return tuple(c for c in (self.database.connections if self.database else ()) if c.leg == leg)

    def check(self, check_id: str, target: str | None = None) -> CheckResult | None:
        for c in self.checks:
            if c.check == check_id and (target is None or c.target == target):
                return c
        return None

    @property
    def verdict(self) -> Verdict:
        return worst(tuple(c.verdict for c in self.checks))


# ------------------------------------------------------------------------------ JSON (schema v1)


def _enc(obj: Any) -> Any:
    if isinstance(obj, CheckResult):
        return obj.to_json()
    if isinstance(obj, (ConfiguredValue, Connection)):
        return obj.to_json()
    if hasattr(obj, "__dataclass_fields__"):
        return {k: _enc(getattr(obj, k)) for k in obj.__dataclass_fields__}
    if isinstance(obj, Mapping):
        return {str(k): _enc(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_enc(v) for v in obj]
    return obj


def snapshot_to_json(s: FleetSnapshot) -> dict[str, Any]:
    """The documented JSON form (docs/snapshot.md); `schema` says which version."""
    out: dict[str, Any] = _enc(s)
    out["verdict"] = s.verdict.value
    return out


def _checks(data: Any) -> tuple[CheckResult, ...]:
    return tuple(CheckResult.from_json(c) for c in data or ())


def _configured(data: Any) -> dict[str, ConfiguredValue]:
    return {k: ConfiguredValue(v["value"], v["source"], v.get("version")) for k, v in (data or {}).items()}


def snapshot_from_json(d: Mapping[str, Any]) -> FleetSnapshot:
    """Inverse of `snapshot_to_json` (for replay); refuses schemas it does not know."""
    if d.get("schema") != SCHEMA_VERSION:
        raise ValueError(f"snapshot schema {d.get('schema')!r} not supported (this cockpit reads {SCHEMA_VERSION})")
    db = d.get("database")
    database = None
    if db is not None:
        fields = {k: v for k, v in db.items() if k not in ("connections", "checks")}
        database = DatabaseState(**fields, connections=tuple(Connection(**c) for c in db.get("connections", ())),
                                 checks=_checks(db.get("checks")))
    instances = tuple(
        InstanceState(**{k: v for k, v in i.items() if k not in ("configured", "drift", "checks")},
                      configured=_configured(i.get("configured")), drift=tuple(i.get("drift", ())),
                      checks=_checks(i.get("checks")))
        for i in d.get("instances", ()))
    return FleetSnapshot(
        env=d["env"], taken_at=float(d["taken_at"]), duration_ms=float(d["duration_ms"]),
        managed_database=bool(d["managed_database"]),
        configured={svc: _configured(v) for svc, v in d.get("configured", {}).items()},
        database=database, instances=instances, certs=_checks(d.get("certs")), checks=_checks(d.get("checks")))
