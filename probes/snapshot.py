"""`FleetSnapshot`: everything the cockpit knows about one environment at one moment.

Frozen, JSON-serialisable (schema in docs/snapshot.md, versioned by `SCHEMA_VERSION`), and the
only thing the plans engine and the UI read. A fact that could not be measured is an `Unknown`
(with its reason), never `None`: gates treat it as unknown — never as ok, never as "no", never as
missing. Schema 1 (where `null` meant could-not-measure) is still read, upgraded on the way in.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, get_args

from probes.model import CheckResult, Unknown, Verdict, Why, worst

SCHEMA_VERSION = 2
T = TypeVar("T")

Leg = Literal["leg1", "leg2", "postgres", "redis"]  # app→PgBouncer, PgBouncer→Postgres, direct Postgres, Redis
LEGS: tuple[Leg, ...] = get_args(Leg)
Consumes = Literal["postgres", "redis"]  # what an app service is a client of (inventory `consumes`)


class ConfigSource(enum.StrEnum):
    """Where a configured value came from, as the host's fetch-env.sh resolves it."""

    BOOTSTRAP = "bootstrap"
    ENVFILE = "envfile"
    SSM = "ssm"
    SECRETS = "secrets"
    DEFAULT = "default"
    UNSET = "unset"


class Handshake(enum.StrEnum):
    """What a TLS handshake against a listener showed (could-not-measure is an `Unknown`)."""

    VERIFIED = "verified"  # TLS offered; the certificate verifies against the internal CA and the DB's name
    NOT_VERIFIED = "not-verified"  # TLS offered, but the certificate does not verify (chain, name, expiry)
    NOT_OFFERED = "not-offered"  # the listener declines TLS (SSLRequest answered N) or nothing listens

    def __bool__(self) -> bool:
        raise TypeError("a Handshake has no truth value; compare it with Handshake.VERIFIED")


class CaFile(enum.StrEnum):
    """The CA file at one path on an instance, compared with the internal CA."""

    MATCHES = "matches"
    DIFFERS = "differs"
    MISSING = "missing"

    def __bool__(self) -> bool:
        raise TypeError("a CaFile state has no truth value; compare it with CaFile.MATCHES")


@dataclass(frozen=True, slots=True)
class ConfiguredValue:
    """A rollout variable as the host would resolve it (bootstrap → env file / SSM → Secrets Manager →
    the manifest default). A value that could not be read is an `Unknown` in its place."""

    value: str | None  # effective value; None = unset with no default
    source: ConfigSource
    version: int | None = None  # the config store's version (SSM parameter version)

    def __post_init__(self) -> None:
        if not isinstance(self.source, ConfigSource):  # a plain string is accepted and checked
            object.__setattr__(self, "source", ConfigSource(self.source))

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "source": self.source.value, "version": self.version}


Configured = ConfiguredValue | Unknown


@dataclass(frozen=True, slots=True)
class Connection:
    """One observed connection on a leg, attributed to a service and an instance when possible."""

    leg: Leg
    service: str  # application_name / CLIENT SETNAME, or "?" when none
    instance: str | None  # the inventory host whose address it comes from; None: no host has that address
    addr: str  # client address:port as the server saw it
    tls: bool
    detail: str = ""  # TLS version/cipher, or the listener (laddr) for Redis

    def to_json(self) -> dict[str, Any]:
        return {
            "leg": self.leg,
            "service": self.service,
            "instance": self.instance,
            "addr": self.addr,
            "tls": self.tls,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class LegView:
    """Who one server says is connected on one leg. The cockpit's own probe connections (its own and
    any other cockpit's) are never in `connections`; `own` counts them."""

    connections: tuple[Connection, ...] = ()
    own: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"connections": [c.to_json() for c in self.connections], "own": self.own}


@dataclass(frozen=True, slots=True)
class LegUse:
    """One instance's connections on one leg, counted (a measured fact: 0 and 0 = none seen)."""

    tls: int = 0
    plain: int = 0

    @property
    def seen(self) -> bool:
        return self.tls + self.plain > 0

    @property
    def all_tls(self) -> bool:
        """Connected, and only over TLS."""
        return self.tls > 0 and self.plain == 0

    def to_json(self) -> dict[str, int]:
        return {"tls": self.tls, "plain": self.plain}


@dataclass(frozen=True, slots=True)
class Cause:
    """A root cause that makes many facts unknown at once, said once (no credentials, fleet unreachable)."""

    why: Why
    text: str

    def to_json(self) -> dict[str, str]:
        return {"why": self.why.value, "text": self.text}


_UNMEASURED = Unknown(Why.NOT_CHECKED)


@dataclass(frozen=True, slots=True)
class InstanceState:
    host: str
    service: str
    address: str
    reachable: bool | Unknown = _UNMEASURED  # SSH to the host works
    running: bool | Unknown = _UNMEASURED  # the service's process runs (running check, or its health port)
    healthy: bool | Unknown = _UNMEASURED  # its health URL answered 200 (not-checked: it has none)
    ca_files: Mapping[str, CaFile | Unknown] = field(default_factory=dict)  # container path → state
    telpro_ssl: bool | Unknown = _UNMEASURED  # TelPro: the image has hiredis_ssl
    db: LegUse | Unknown = _UNMEASURED  # its connections to PgBouncer (and directly to Postgres)
    redis: LegUse | Unknown = _UNMEASURED  # its connections to Redis
    consumes: tuple[Consumes, ...] = ("postgres", "redis")  # from the inventory
    configured: Mapping[str, Configured] = field(default_factory=dict)  # per host (env-file store)
    drift: tuple[str, ...] = ()  # configured ≠ observed, in words
    checks: tuple[CheckResult, ...] = ()

    @property
    def verdict(self) -> Verdict:
        return worst(tuple(c.verdict for c in self.checks))

    def ca_file(self, path: str) -> CaFile | Unknown:
        return self.ca_files.get(path, Unknown(Why.NOT_CHECKED, f"{path} was not read on {self.host}"))


@dataclass(frozen=True, slots=True)
class DatabaseState:
    host: str
    reachable: bool | Unknown = _UNMEASURED
    postgres_ssl: bool | Unknown = _UNMEASURED  # live `SHOW ssl`
    pg_hba_hostssl_only: bool | Unknown = _UNMEASURED  # no rule lets a non-TLS TCP connection in
    pgbouncer_client_tls_sslmode: str | Unknown = _UNMEASURED  # live SHOW CONFIG
    pgbouncer_server_tls_sslmode: str | Unknown = _UNMEASURED
    redis_port: int | Unknown = _UNMEASURED  # live CONFIG GET port (0 = plaintext listener dropped)
    redis_tls_port: int | Unknown = _UNMEASURED  # live CONFIG GET tls-port (0 = no TLS listener)
    postgres_tls: Handshake | Unknown = _UNMEASURED
    pgbouncer_tls: Handshake | Unknown = _UNMEASURED
    redis_tls: Handshake | Unknown = _UNMEASURED
    end_to_end_ok: bool | Unknown = _UNMEASURED  # a query through PgBouncer answered in time
    otel_redis_endpoint: str | Unknown = _UNMEASURED  # the OTel collector's Redis listener; "" = none seen
    legs: Mapping[Leg, LegView | Unknown] = field(default_factory=dict)
    checks: tuple[CheckResult, ...] = ()

    def leg(self, leg: Leg) -> LegView | Unknown:
        return self.legs.get(leg, Unknown(Why.NOT_CHECKED, f"{leg} connections were not read"))


@dataclass(frozen=True, slots=True)
class FleetSnapshot:
    env: str
    taken_at: float  # epoch seconds
    duration_ms: float
    managed_database: bool
    configured: Mapping[str, Mapping[str, Configured]]  # service -> VAR -> value
    database: DatabaseState | Unknown  # Unknown: not observed at all (managed, or no inventory host)
    instances: tuple[InstanceState, ...]
    certs: tuple[CheckResult, ...]  # cert material in Secrets Manager (+ decoded files on the DB host)
    checks: tuple[CheckResult, ...]  # every check, flat (includes the above)
    causes: tuple[Cause, ...] = ()  # root causes of many unknowns, said once
    schema: int = SCHEMA_VERSION

    # -- queries the plans engine and the UI share -------------------------------------
    def configured_value(self, service: str, var: str) -> Configured | None:
        """The service's resolved value; None when the snapshot holds nothing for it (not read)."""
        return self.configured.get(service, {}).get(var)

    def instances_of(self, service: str) -> tuple[InstanceState, ...]:
        return tuple(i for i in self.instances if i.service == service)

    def leg(self, leg: Leg) -> LegView | Unknown:
        """Who is connected on `leg` (the cockpit's own connections left out), or why it is unknown."""
        if isinstance(self.database, Unknown):
            return self.database
        return self.database.leg(leg)

    def check(self, check_id: str, target: str | None = None) -> CheckResult | None:
        for c in self.checks:
            if c.check == check_id and (target is None or c.target == target):
                return c
        return None

    @property
    def verdict(self) -> Verdict:
        return worst(tuple(c.verdict for c in self.checks))


# ------------------------------------------------------------------------------ JSON (schema v2)


def to_json_value(obj: Any) -> Any:
    if isinstance(obj, (CheckResult, ConfiguredValue, Connection, Unknown, LegView, LegUse, Cause)):
        return obj.to_json()
    if isinstance(obj, enum.Enum):
        return obj.value
    if hasattr(obj, "__dataclass_fields__"):
        return {k: to_json_value(getattr(obj, k)) for k in obj.__dataclass_fields__}
    if isinstance(obj, Mapping):
        return {str(k): to_json_value(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json_value(v) for v in obj]
    return obj


def snapshot_to_json(s: FleetSnapshot) -> dict[str, Any]:
    """The documented JSON form (docs/snapshot.md); `schema` says which version."""
    out: dict[str, Any] = to_json_value(s)
    out["verdict"] = s.verdict.value
    return out


class SnapshotFormatError(ValueError):
    """A snapshot JSON that does not follow the schema (the message says where)."""


def _fail(where: str, what: str) -> SnapshotFormatError:
    return SnapshotFormatError(f"snapshot {where}: {what}")


def _obj(d: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(d, Mapping):
        raise _fail(where, f"expected an object, got {type(d).__name__}")
    return d


def _or_unknown(conv: Callable[[Any, str], T]) -> Callable[[Any, str], T | Unknown]:
    def read(d: Any, where: str) -> T | Unknown:
        if isinstance(d, Mapping) and "unknown" in d:
            try:
                return Unknown.from_json(d)
            except (ValueError, KeyError) as exc:
                raise _fail(where, f"bad unknown {d!r}: {exc}") from None
        return conv(d, where)

    return read


def _bool(d: Any, where: str) -> bool:
    if not isinstance(d, bool):
        raise _fail(where, f"expected true/false, got {d!r}")
    return d


def _int(d: Any, where: str) -> int:
    if isinstance(d, bool) or not isinstance(d, int):
        raise _fail(where, f"expected an integer, got {d!r}")
    return d


def _str(d: Any, where: str) -> str:
    if not isinstance(d, str):
        raise _fail(where, f"expected a string, got {d!r}")
    return d


def _num(d: Any, where: str) -> float:
    if isinstance(d, bool) or not isinstance(d, (int, float)) or math.isnan(d):
        raise _fail(where, f"expected a number, got {d!r}")
    return float(d)


def _enum(kind: type[enum.StrEnum]) -> Callable[[Any, str], Any]:
    def read(d: Any, where: str) -> Any:
        try:
            return kind(d)
        except ValueError:
            raise _fail(where, f"not a {kind.__name__}: {d!r}") from None

    return read


def _checks(d: Any, where: str) -> tuple[CheckResult, ...]:
    if d is None:
        return ()
    if not isinstance(d, list):
        raise _fail(where, "expected a list of checks")
    out = []
    for n, c in enumerate(d):
        try:
            out.append(CheckResult.from_json(_obj(c, f"{where}[{n}]")))
        except (KeyError, ValueError, TypeError) as exc:
            raise _fail(f"{where}[{n}]", f"bad check: {exc}") from None
    return tuple(out)


def _configured_value(d: Any, where: str) -> ConfiguredValue:
    o = _obj(d, where)
    v = o.get("value")
    if v is not None and not isinstance(v, str):
        raise _fail(where, f"value must be a string or null, got {v!r}")
    version = o.get("version")
    if version is not None:
        version = _int(version, where + ".version")
    return ConfiguredValue(v, _enum(ConfigSource)(o.get("source"), where + ".source"), version)


_configured_or_unknown = _or_unknown(_configured_value)


def _configured(d: Any, where: str) -> dict[str, Configured]:
    return {str(k): _configured_or_unknown(v, f"{where}.{k}") for k, v in _obj(d or {}, where).items()}


def _leg_name(d: Any, where: str) -> Leg:
    if d not in LEGS:
        raise _fail(where, f"not a leg: {d!r}")
    return d  # type: ignore[no-any-return]


def _connection(d: Any, where: str) -> Connection:
    o = _obj(d, where)
    inst = o.get("instance")
    return Connection(
        _leg_name(o.get("leg"), where + ".leg"),
        _str(o.get("service", "?"), where + ".service"),
        None if inst is None else _str(inst, where + ".instance"),
        _str(o.get("addr", ""), where),
        _bool(o.get("tls"), where + ".tls"),
        _str(o.get("detail", ""), where + ".detail"),
    )


def _leg_view(d: Any, where: str) -> LegView:
    o = _obj(d, where)
    conns = o.get("connections", [])
    if not isinstance(conns, list):
        raise _fail(where, "connections must be a list")
    return LegView(
        tuple(_connection(c, f"{where}.connections[{n}]") for n, c in enumerate(conns)),
        _int(o.get("own", 0), where + ".own"),
    )


def _leg_use(d: Any, where: str) -> LegUse:
    o = _obj(d, where)
    return LegUse(_int(o.get("tls", 0), where + ".tls"), _int(o.get("plain", 0), where + ".plain"))


_FactReader = Callable[[Any, str], Any]
_BOOL = _or_unknown(_bool)
_INT = _or_unknown(_int)
_STR = _or_unknown(_str)
_HANDSHAKE = _or_unknown(_enum(Handshake))
_CAFILE = _or_unknown(_enum(CaFile))
_LEGVIEW = _or_unknown(_leg_view)
_LEGUSE = _or_unknown(_leg_use)

_DB_FIELDS: dict[str, _FactReader] = {
    "reachable": _BOOL,
    "postgres_ssl": _BOOL,
    "pg_hba_hostssl_only": _BOOL,
    "pgbouncer_client_tls_sslmode": _STR,
    "pgbouncer_server_tls_sslmode": _STR,
    "redis_port": _INT,
    "redis_tls_port": _INT,
    "postgres_tls": _HANDSHAKE,
    "pgbouncer_tls": _HANDSHAKE,
    "redis_tls": _HANDSHAKE,
    "end_to_end_ok": _BOOL,
    "otel_redis_endpoint": _STR,
}
_INSTANCE_FIELDS: dict[str, _FactReader] = {
    "reachable": _BOOL,
    "running": _BOOL,
    "healthy": _BOOL,
    "telpro_ssl": _BOOL,
    "db": _LEGUSE,
    "redis": _LEGUSE,
}


def _database(d: Any, where: str) -> DatabaseState | Unknown:
    if isinstance(d, Mapping) and "unknown" in d:
        return Unknown.from_json(d)
    o = _obj(d, where)
    fields = {k: conv(o[k], f"{where}.{k}") for k, conv in _DB_FIELDS.items() if k in o}
    legs = {
        _leg_name(k, f"{where}.legs"): _LEGVIEW(v, f"{where}.legs.{k}")
        for k, v in _obj(o.get("legs", {}), where + ".legs").items()
    }
    return DatabaseState(
        host=_str(o.get("host"), where + ".host"),
        **fields,
        legs=legs,
        checks=_checks(o.get("checks"), where + ".checks"),
    )


def _instance(d: Any, where: str) -> InstanceState:
    o = _obj(d, where)
    fields = {k: conv(o[k], f"{where}.{k}") for k, conv in _INSTANCE_FIELDS.items() if k in o}
    ca = {str(k): _CAFILE(v, f"{where}.ca_files.{k}") for k, v in _obj(o.get("ca_files", {}), where).items()}
    consumes = o.get("consumes", ["postgres", "redis"])
    if not isinstance(consumes, list) or any(c not in ("postgres", "redis") for c in consumes):
        raise _fail(where + ".consumes", f"bad value {consumes!r}")
    drift = o.get("drift", [])
    if not isinstance(drift, list):
        raise _fail(where + ".drift", "expected a list")
    return InstanceState(
        host=_str(o.get("host"), where + ".host"),
        service=_str(o.get("service"), where + ".service"),
        address=_str(o.get("address", ""), where + ".address"),
        **fields,
        ca_files=ca,
        consumes=tuple(consumes),
        configured=_configured(o.get("configured"), where + ".configured"),
        drift=tuple(_str(x, where + ".drift") for x in drift),
        checks=_checks(o.get("checks"), where + ".checks"),
    )


def snapshot_from_json(d: Mapping[str, Any]) -> FleetSnapshot:
    """Inverse of `snapshot_to_json` (for replay). Schema 1 is upgraded; any other schema, and any
    field that does not follow it, raises `SnapshotFormatError` (a ValueError) saying where."""
    d = _obj(d, "")
    if d.get("schema") == 1:
        d = upgrade_v1(d)
    if d.get("schema") != SCHEMA_VERSION:
        raise SnapshotFormatError(
            f"snapshot schema {d.get('schema')!r} not supported (this cockpit reads 1 and {SCHEMA_VERSION})"
        )
    instances = d.get("instances", [])
    if not isinstance(instances, list):
        raise _fail("instances", "expected a list")
    causes = d.get("causes", [])
    if not isinstance(causes, list):
        raise _fail("causes", "expected a list")
    return FleetSnapshot(
        env=_str(d.get("env"), "env"),
        taken_at=_num(d.get("taken_at"), "taken_at"),
        duration_ms=_num(d.get("duration_ms", 0.0), "duration_ms"),
        managed_database=_bool(d.get("managed_database", False), "managed_database"),
        configured={
            str(svc): _configured(v, f"configured.{svc}")
            for svc, v in _obj(d.get("configured", {}), "configured").items()
        },
        database=_database(d.get("database"), "database"),
        instances=tuple(_instance(i, f"instances[{n}]") for n, i in enumerate(instances)),
        certs=_checks(d.get("certs"), "certs"),
        checks=_checks(d.get("checks"), "checks"),
        causes=tuple(
            Cause(
                _enum(Why)(_obj(c, "causes").get("why"), "causes.why"),
                _str(_obj(c, "causes").get("text"), "causes.text"),
            )
            for c in causes
        ),
    )


# ------------------------------------------------------------------------------ schema 1 → 2

_V1 = {"unknown": Why.NOT_CHECKED.value, "detail": "not measured (recorded with schema 1)"}


def _v1_fact(v: Any) -> Any:
    return dict(_V1) if v is None else v


def _v1_handshake(v: Any) -> Any:
    if v is None:
        return dict(_V1)
    return Handshake.VERIFIED.value if v else Handshake.NOT_VERIFIED.value


def _v1_use(v: Any) -> Any:
    if v is None:
        return dict(_V1)
    return {"tls": 1, "plain": 0} if v else {"tls": 0, "plain": 1}


def _v1_configured(values: Any) -> Any:
    out = {}
    for k, v in (values or {}).items():
        if isinstance(v, Mapping) and str(v.get("source", "")).startswith("error"):
            out[k] = {"unknown": Why.UNREACHABLE.value, "detail": str(v.get("source"))[6:]}
        else:
            out[k] = v
    return out


def upgrade_v1(d: Mapping[str, Any]) -> dict[str, Any]:
    """A schema-1 snapshot (null = could not measure) in schema 2's shape."""
    out = dict(d)
    out["schema"] = SCHEMA_VERSION
    out["configured"] = {s: _v1_configured(v) for s, v in (d.get("configured") or {}).items()}
    db = d.get("database")
    if db is None:
        out["database"] = dict(_V1)
    elif isinstance(db, Mapping):
        new = {
            k: _v1_fact(db.get(k))
            for k in (
                "reachable",
                "postgres_ssl",
                "pg_hba_hostssl_only",
                "pgbouncer_client_tls_sslmode",
                "pgbouncer_server_tls_sslmode",
                "redis_port",
                "redis_tls_port",
                "end_to_end_ok",
            )
        }
        new["otel_redis_endpoint"] = db.get("otel_redis_endpoint") or ""
        for old, key in (
            ("postgres_tls_verified", "postgres_tls"),
            ("pgbouncer_tls_verified", "pgbouncer_tls"),
            ("redis_tls_verified", "redis_tls"),
        ):
            new[key] = _v1_handshake(db.get(old))
        legs: dict[str, Any] = {leg: {"connections": [], "own": 0} for leg in LEGS}
        for c in db.get("connections") or ():
            if isinstance(c, Mapping) and c.get("leg") in legs:
                legs[c["leg"]]["connections"].append(c)
        new.update(host=db.get("host"), legs=legs, checks=db.get("checks") or [])
        out["database"] = new
    instances = []
    for i in d.get("instances") or ():
        if not isinstance(i, Mapping):
            instances.append(i)
            continue
        new = {k: i.get(k) for k in ("host", "service", "address", "drift", "checks")}
        new.update(
            reachable=_v1_fact(i.get("reachable")),
            healthy=_v1_fact(i.get("healthy")),
            telpro_ssl=_v1_fact(i.get("telpro_ssl")),
            db=_v1_use(i.get("db_tls")),
            redis=_v1_use(i.get("redis_tls")),
            configured=_v1_configured(i.get("configured")),
        )
        ca = i.get("ca_file_ok")
        new["ca_files"] = {
            "/etc/ssl/internal/ca.crt": dict(_V1)
            if ca is None
            else (CaFile.MATCHES.value if ca else CaFile.DIFFERS.value)
        }
        new["drift"] = i.get("drift") or []
        new["checks"] = i.get("checks") or []
        instances.append(new)
    out["instances"] = instances
    return out
