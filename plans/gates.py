"""Gates: pure decisions read from one `FleetSnapshot` — may a step run now, and did it work.

`evaluate(gate, snapshot, service=..., now=...)` returns a `GateResult` whose status is "open",
"closed" or "unknown" and whose reason is a sentence a person can act on. The UI and the CLI show
that same reason. "unknown" means a fact the gate needs could not be measured (`None` in the
snapshot). Like "closed", it blocks; it is never treated as a pass. The same registry holds the
checks that run *before* a step (its gates) and *after* it (its verification).

This module also reads the other facts that `plans.position` builds on: whether a step's values are
in the config store (`config_reading`), and whether they run on the hosts (`read_live`,
`read_live_instance`). It also decides whether a rollback is safe (`rollback_blockers`) and whether
a step may run in an environment before the previous one verified it (`env_order_gate`).
Everything here is pure: no I/O, no clock (the caller passes `now`), and no textual.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Literal

from probes.model import CheckResult, Verdict
from probes.snapshot import ConfiguredValue, Connection, DatabaseState, FleetSnapshot, InstanceState

if TYPE_CHECKING:
    from plans.plan import Plan, Step
    from plans.position import Position
    from probes.inventory import Environment

__all__ = [
    "DEFAULT_MAX_AGE",
    "GATES",
    "LIVE",
    "GateResult",
    "GateSpec",
    "GateStatus",
    "LiveFact",
    "Reading",
    "config_reading",
    "configured_value",
    "env_order_gate",
    "evaluate",
    "read_live",
    "read_live_instance",
    "rollback_blockers",
]

GateStatus = Literal["open", "closed", "unknown"]

DEFAULT_MAX_AGE: Final = 60.0  # seconds: a gate never opens on a snapshot older than this

# libpq / PgBouncer sslmodes
_MODES_REQUIRING_TLS: Final = frozenset({"require", "verify-ca", "verify-full"})
_SERVER_MODES_VERIFYING: Final = frozenset({"verify-ca", "verify-full"})
_MODES_WITHOUT_TLS: Final = frozenset({"", "disable"})
_TRUE: Final = frozenset({"true", "on", "yes", "1"})

NO_DATABASE: Final = (
    "the database host could not be observed (unreachable, or its probes failed) — "
    "check SSH to it and refresh"
)


@dataclass(frozen=True, slots=True)
class GateResult:
    """One gate's verdict on one snapshot (and one service, for per-service gates)."""

    gate: str
    status: GateStatus
    reason: str
    service: str | None = None

    @property
    def open(self) -> bool:
        return self.status == "open"

    def to_json(self) -> dict[str, str | None]:
        return {"gate": self.gate, "status": self.status, "reason": self.reason, "service": self.service}


@dataclass(frozen=True, slots=True)
class Reading:
    """One fact read from the snapshot: True/False, or None when it could not be measured."""

    value: bool | None
    detail: str


_Verdict = tuple[GateStatus, str]
_Check = Callable[[FleetSnapshot, str | None], _Verdict]


@dataclass(frozen=True, slots=True)
class GateSpec:
    name: str
    per_service: bool  # True: needs `service` (checks one app service's instances)
    summary: str  # what must hold for it to open, in one line (docs, UI)
    check: _Check


@dataclass(frozen=True, slots=True)
class LiveFact:
    """How a step's "running as configured" is read: from the database host or from each instance."""

    name: str
    per_instance: bool
    summary: str
    read_database: Callable[[DatabaseState], Reading] | None = None
    read_instance: Callable[[InstanceState], Reading] | None = None


# --------------------------------------------------------------------------------------------
# phrasing


def _join(items: Sequence[str]) -> str:
    """["a"] -> "a"; ["a", "b"] -> "a and b"; ["a", "b", "c"] -> "a, b and c"."""
    items = list(items)
    if not items:
        return "(none)"
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def _unique(items: Iterable[str]) -> list[str]:
    out: list[str] = []
    for i in items:
        if i not in out:
            out.append(i)
    return out


_UNIDENTIFIED: Final = "an unidentified client"


def _group(conns: Iterable[Connection], extra: Iterable[InstanceState] = ()) -> dict[str, list[str]]:
    """Who, by service, with their instances (or addresses when the instance is unknown)."""
    groups: dict[str, list[str]] = {}
    for c in conns:
        who = c.service if c.service and c.service != "?" else _UNIDENTIFIED
        where = c.instance or c.addr
        lst = groups.setdefault(who, [])
        if where not in lst:
            lst.append(where)
    for inst in extra:
        lst = groups.setdefault(inst.service, [])
        if inst.host not in lst:
            lst.append(inst.host)
    return groups


def _who(groups: Mapping[str, list[str]]) -> str:
    return _join([f"{svc} ({', '.join(sorted(where))})" for svc, where in groups.items()])


def _verb(groups: Mapping[str, list[str]], singular: str, plural: str) -> str:
    return singular if len(groups) == 1 else plural


def _named(groups: Mapping[str, list[str]]) -> list[str]:
    return [s for s in groups if s != _UNIDENTIFIED]


def _combine(closed: list[str], unknown: list[str], ok: str) -> _Verdict:
    """Closed wins over unknown (a measured problem is reason enough); both block."""
    if closed:
        return "closed", "; ".join(closed + unknown)
    if unknown:
        return "unknown", "; ".join(unknown)
    return "open", ok


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


# --------------------------------------------------------------------------------------------
# the gates


def _certs_valid(s: FleetSnapshot, service: str | None) -> _Verdict:
    checks = [c for c in s.certs]
    if not checks:
        return "unknown", "no cert check has run — run the cert checks and refresh"

    def grouped(results: list[CheckResult]) -> str:
        by_summary: dict[tuple[str, str], list[str]] = {}
        for c in results:
            by_summary.setdefault((c.check, c.summary), []).append(c.target)
        everywhere = set(c.target for c in results)
        parts = [
            summary if set(t) == everywhere else f"{', '.join(_unique(t))}: {summary}"
            for (_, summary), t in by_summary.items()
        ]
        return "; ".join(parts[:4]) + (f" (and {len(parts) - 4} more)" if len(parts) > 4 else "")

    fails = [c for c in checks if c.verdict is Verdict.FAIL]
    errors = [c for c in checks if c.verdict is Verdict.ERROR]
    warns = [c for c in checks if c.verdict is Verdict.WARN]
    covered = {c.target for c in checks}
    consumers = _unique(i.service for i in s.instances)
    uncovered = [
        svc
        for svc in consumers
        if svc not in covered and not any(i.host in covered for i in s.instances_of(svc))
    ]
    if fails:
        where = _join(_unique(c.target for c in fails))
        return (
            "closed",
            f"the cert material fails its checks under {where} ({grouped(fails)}) — fix the material "
            "and push it again (cockpit certs push)",
        )
    if errors:
        where = _join(_unique(c.target for c in errors))
        return (
            "unknown",
            f"the cert checks could not run under {where} ({grouped(errors)}) — fix what stops them "
            "and refresh",
        )
    if uncovered:
        return (
            "unknown",
            f"no cert check covers {_join(uncovered)}: the material under "
            f"{'its' if len(uncovered) == 1 else 'their'} prefix was not read — refresh the cert checks",
        )
    ok = f"the cert material passes every check under {_join(_unique(c.target for c in checks))}"
    if warns:
        ok += f" (warning: {grouped(warns)})"
    return "open", ok


def _postgres_tls_verifies(s: FleetSnapshot, service: str | None) -> _Verdict:
    db = s.database
    if db is None:
        return "unknown", NO_DATABASE
    if db.postgres_tls_verified is True:
        return "open", "Postgres TLS verifies against the internal CA and the database's DNS name"
    if db.postgres_ssl is False:
        return (
            "closed",
            "Postgres does not serve TLS yet (ssl = off) — set POSTGRES_TLS_ENABLED=on and restart "
            "the database host",
        )
    if db.postgres_tls_verified is None:
        return "unknown", "could not measure whether Postgres TLS verifies (handshake not tried) — refresh"
    return (
        "closed",
        "Postgres serves TLS but the handshake does not verify against the internal CA and the "
        "database's DNS name — check the cert material (SAN, CA, expiry) and push it again",
    )


def _leg2_tls_and_e2e(s: FleetSnapshot, service: str | None) -> _Verdict:
    db = s.database
    if db is None:
        return "unknown", NO_DATABASE
    leg2 = s.connections("leg2")
    closed: list[str] = []
    unknown: list[str] = []
    plain = [c for c in leg2 if not c.tls]
    if plain:
        closed.append(
            f"{_count(len(plain), 'PgBouncer→Postgres connection')} ({', '.join(c.addr for c in plain)}) "
            f"{'is' if len(plain) == 1 else 'are'} still plaintext — set PGBOUNCER_SERVER_TLS_SSLMODE="
            "verify-ca and restart the database host"
        )
    elif not leg2:
        unknown.append(
            "no PgBouncer→Postgres connection seen yet — send a query through PgBouncer (or wait for "
            "traffic) and refresh"
        )
    if db.end_to_end_ok is False:
        closed.append(
            "a query through PgBouncer did not answer in time — check PgBouncer's log for the server "
            "TLS handshake"
        )
    elif db.end_to_end_ok is None:
        unknown.append("the end-to-end query through PgBouncer was not measured — refresh")
    return _combine(
        closed,
        unknown,
        f"every PgBouncer→Postgres connection is TLS ({_count(len(leg2), 'connection')}) and a query "
        "through PgBouncer answers",
    )


def _client_mode_problem(db: DatabaseState) -> tuple[list[str], list[str]]:
    closed: list[str] = []
    unknown: list[str] = []
    mode = db.pgbouncer_client_tls_sslmode
    if mode is None:
        unknown.append("PgBouncer's client_tls_sslmode could not be read — refresh")
    elif mode in _MODES_WITHOUT_TLS:
        closed.append(
            f"PgBouncer does not offer TLS to clients (client_tls_sslmode = {mode or 'disable'}) — set "
            "PGBOUNCER_CLIENT_TLS_SSLMODE=allow and restart the database host first"
        )
    if db.pgbouncer_tls_verified is False and not closed:
        closed.append(
            "PgBouncer's TLS does not verify against the internal CA and the database's DNS name — "
            "check the cert material"
        )
    elif db.pgbouncer_tls_verified is None and not closed:
        unknown.append("could not measure whether PgBouncer's TLS verifies — refresh")
    return closed, unknown


def _pgbouncer_offers_tls_and_ca_files(s: FleetSnapshot, service: str | None) -> _Verdict:
    assert service is not None
    db = s.database
    if db is None:
        return "unknown", NO_DATABASE
    closed, unknown = _client_mode_problem(db)
    insts = s.instances_of(service)
    if not insts:
        unknown.append(f"no instance of {service} is in the snapshot — check the inventory and refresh")
    bad = [i.host for i in insts if i.ca_file_ok is False]
    unseen = [i.host for i in insts if i.ca_file_ok is None]
    if bad:
        closed.append(
            f"the CA file on {_join(bad)} is missing or is not the internal CA — push the certs and restart "
            f"{'it' if len(bad) == 1 else 'them'} so init.sh writes /etc/ssl/internal/ca.crt"
        )
    if unseen:
        unknown.append(f"could not check the CA file on {_join(unseen)} (unreachable?) — refresh")
    return _combine(
        closed,
        unknown,
        f"PgBouncer offers verified TLS to clients and every {service} instance "
        f"({', '.join(i.host for i in insts)}) has the internal CA file",
    )


def _pgbouncer_tls_verifies(s: FleetSnapshot, service: str | None) -> _Verdict:
    db = s.database
    if db is None:
        return "unknown", NO_DATABASE
    closed, unknown = _client_mode_problem(db)
    return _combine(
        closed,
        unknown,
        f"PgBouncer offers TLS to clients (client_tls_sslmode = {db.pgbouncer_client_tls_sslmode}) and it "
        "verifies against the internal CA",
    )


def _app_instances(s: FleetSnapshot) -> list[InstanceState]:
    """The instances that are clients: all but the database host itself."""
    db_host = s.database.host if s.database is not None else None
    return [i for i in s.instances if i.host != db_host]


def _plaintext_leg1(s: FleetSnapshot) -> tuple[dict[str, list[str]], int, list[str]]:
    """(plaintext clients by service, TLS connections seen, app instances never seen on Leg 1)."""
    leg1 = s.connections("leg1")
    plain = [c for c in leg1 if not c.tls]
    seen = {c.instance for c in leg1 if c.instance}
    apps = _app_instances(s)
    extra = [i for i in apps if i.db_tls is False and i.host not in seen]
    unseen = [i.host for i in apps if i.db_tls is None and i.host not in seen]
    return _group(plain, extra), sum(1 for c in leg1 if c.tls), unseen


def _no_plaintext_leg1(s: FleetSnapshot, service: str | None) -> _Verdict:
    if s.database is None:
        return "unknown", NO_DATABASE
    groups, tls_seen, unseen = _plaintext_leg1(s)
    if groups:
        named = _named(groups)
        action = f"flip {_join(named)} first" if named else "identify it and move it to TLS first"
        verb = _verb(groups, "still connects", "still connect")
        return "closed", f"{_who(groups)} {verb} to PgBouncer in plaintext — {action}"
    if tls_seen == 0 and not any(i.db_tls for i in _app_instances(s)):
        return (
            "unknown",
            "no client connection to PgBouncer is seen, so plaintext clients cannot be ruled out — make "
            "sure the apps are running and refresh",
        )
    ok = f"no client connects to PgBouncer in plaintext ({_count(tls_seen, 'TLS connection')} seen)"
    if unseen:
        ok += f"; no connection seen from {_join(unseen)}"
    return "open", ok


def _no_plaintext_postgres(s: FleetSnapshot, service: str | None) -> _Verdict:
    if s.database is None:
        return "unknown", NO_DATABASE
    closed: list[str] = []
    leg2 = [c for c in s.connections("leg2") if not c.tls]
    if leg2:
        closed.append(
            f"PgBouncer ({', '.join(c.addr for c in leg2)}) still connects to Postgres in plaintext — set "
            "PGBOUNCER_SERVER_TLS_SSLMODE=verify-ca and restart the database host first"
        )
    direct = [c for c in s.connections("postgres") if not c.tls]
    if direct:
        groups = _group(direct)
        verb = _verb(groups, "still connects", "still connect")
        closed.append(
            f"{_who(groups)} {verb} directly to Postgres in plaintext — move "
            f"{'it' if len(groups) == 1 else 'them'} to TLS first; hostssl-only would refuse "
            f"{'it' if len(groups) == 1 else 'them'}"
        )
    n = len(s.connections("leg2")) + len(s.connections("postgres"))
    return _combine(closed, [], f"no connection to Postgres is plaintext ({_count(n, 'connection')} seen)")


def _postgres_hostssl_only(s: FleetSnapshot, service: str | None) -> _Verdict:
    db = s.database
    if db is None:
        return "unknown", NO_DATABASE
    closed: list[str] = []
    unknown: list[str] = []
    if db.pg_hba_hostssl_only is False:
        closed.append(
            "pg_hba.conf still accepts plaintext (not hostssl-only) — set POSTGRES_FORCE_SSL=on and "
            "restart the database host"
        )
    elif db.pg_hba_hostssl_only is None:
        unknown.append("pg_hba.conf could not be read — refresh")
    status, reason = _no_plaintext_postgres(s, service)
    if status == "closed":
        closed.append(reason)
    return _combine(closed, unknown, "pg_hba.conf is hostssl-only and no connection to Postgres is plaintext")


def _redis_tls_verifies(s: FleetSnapshot, service: str | None) -> _Verdict:
    db = s.database
    if db is None:
        return "unknown", NO_DATABASE
    if db.redis_tls_verified is True:
        return "open", "Redis's TLS listener verifies against the internal CA and the database's DNS name"
    if db.redis_tls_port == 0:
        return (
            "closed",
            "Redis has no TLS listener yet (tls-port 0) — set REDIS_TLS_ENABLED=true on the database and "
            "restart the database host",
        )
    if db.redis_tls_verified is None:
        return "unknown", "could not measure whether Redis TLS verifies (handshake not tried) — refresh"
    return (
        "closed",
        f"Redis listens for TLS on :{db.redis_tls_port} but the handshake does not verify against the "
        "internal CA and the database's DNS name — check the cert material",
    )


def _telpro_ssl_build(s: FleetSnapshot, service: str | None) -> _Verdict:
    svc = service or "telpro"
    insts = s.instances_of(svc)
    if not insts:
        return "unknown", f"no {svc} instance is in the snapshot — check the inventory and refresh"
    bad = [i.host for i in insts if i.telpro_ssl is False]
    unseen = [i.host for i in insts if i.telpro_ssl is None]
    closed = (
        [
            f"{_join(bad)} {'runs' if len(bad) == 1 else 'run'} a voiceai-telpro image without hiredis_ssl — "
            "ship the SSL build of voiceai-telpro before flipping its Redis to TLS"
        ]
        if bad
        else []
    )
    unknown = [f"could not check the voiceai-telpro build on {_join(unseen)} — refresh"] if unseen else []
    return _combine(
        closed, unknown, f"every {svc} instance runs the SSL build of voiceai-telpro (hiredis_ssl)"
    )


def _plaintext_redis(s: FleetSnapshot) -> tuple[dict[str, list[str]], int]:
    conns = s.connections("redis")
    plain = [c for c in conns if not c.tls]
    seen = {c.instance for c in conns if c.instance}
    extra = [i for i in _app_instances(s) if i.redis_tls is False and i.host not in seen]
    return _group(plain, extra), sum(1 for c in conns if c.tls)


def _endpoint_port(endpoint: str) -> int | None:
    _, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return int(port)


def _no_plaintext_redis(s: FleetSnapshot, service: str | None) -> _Verdict:
    db = s.database
    if db is None:
        return "unknown", NO_DATABASE
    closed: list[str] = []
    groups, tls_seen = _plaintext_redis(s)
    if groups:
        named = _named(groups)
        action = f"flip {_join(named)} first" if named else "identify it and move it to TLS first"
        closed.append(
            f"{_who(groups)} {_verb(groups, 'still connects', 'still connect')} to Redis in plaintext "
            f"— {action}"
        )
    ep = db.otel_redis_endpoint
    if ep is not None and db.redis_port and _endpoint_port(ep) == db.redis_port:
        closed.append(
            f"the OTel collector's REDIS_ENDPOINT is still the plaintext port ({ep}) — restart the database "
            "host so init.sh switches it to the TLS port"
        )
    if not closed and tls_seen == 0:
        return (
            "unknown",
            "no Redis client connection is seen, so plaintext clients cannot be ruled out — make sure the "
            "apps and the OTel collector are running and refresh",
        )
    return _combine(
        closed, [], f"no client connects to Redis in plaintext ({_count(tls_seen, 'TLS connection')} seen)"
    )


def _redis_plaintext_dropped(s: FleetSnapshot, service: str | None) -> _Verdict:
    db = s.database
    if db is None:
        return "unknown", NO_DATABASE
    if db.redis_port is None:
        return "unknown", "Redis's plaintext port could not be read — refresh"
    if db.redis_port != 0:
        return (
            "closed",
            f"Redis still listens in plaintext on :{db.redis_port} — set REDIS_FORCE_TLS=true and restart "
            "the database host",
        )
    status, reason = _no_plaintext_redis(s, service)
    if status == "closed":
        return status, reason
    return "open", "Redis no longer listens in plaintext (port 0)"


def _service_tls(
    s: FleetSnapshot, service: str, fact: Callable[[InstanceState], bool | None], what: str
) -> _Verdict:
    insts = s.instances_of(service)
    if not insts:
        return "unknown", f"no instance of {service} is in the snapshot — check the inventory and refresh"
    plain = [i.host for i in insts if fact(i) is False]
    down = [i.host for i in insts if fact(i) is None and i.healthy is False]
    unseen = [i.host for i in insts if fact(i) is None and i.healthy is not False]
    closed: list[str] = []
    unknown: list[str] = []
    if plain:
        closed.append(
            f"{_join(plain)} still {'connects' if len(plain) == 1 else 'connect'} to {what} in plaintext — "
            f"restart {'it' if len(plain) == 1 else 'them'} so the new setting takes effect"
        )
    if down:
        closed.append(
            f"{_join(down)} {'is' if len(down) == 1 else 'are'} unhealthy with no connection to {what} — "
            "check its logs: the TLS connection may be refused"
        )
    if unseen:
        unknown.append(f"no connection to {what} seen from {_join(unseen)} — make sure it runs and refresh")
    return _combine(
        closed,
        unknown,
        f"every {service} instance ({', '.join(i.host for i in insts)}) connects to {what} over TLS",
    )


def _service_postgres_tls(s: FleetSnapshot, service: str | None) -> _Verdict:
    assert service is not None
    return _service_tls(s, service, lambda i: i.db_tls, "PgBouncer")


def _service_redis_tls(s: FleetSnapshot, service: str | None) -> _Verdict:
    assert service is not None
    return _service_tls(s, service, lambda i: i.redis_tls, "Redis")


def _spec(name: str, per_service: bool, summary: str, check: _Check) -> tuple[str, GateSpec]:
    return name, GateSpec(name, per_service, summary, check)


GATES: Final[Mapping[str, GateSpec]] = MappingProxyType(
    dict(
        [
            _spec(
                "certs_valid",
                False,
                "every cert check under every consuming service is OK or WARN",
                _certs_valid,
            ),
            _spec("postgres_tls_verifies", False, "database.postgres_tls_verified", _postgres_tls_verifies),
            _spec(
                "leg2_tls_and_e2e",
                False,
                "every leg2 connection is TLS (at least one seen) and database.end_to_end_ok",
                _leg2_tls_and_e2e,
            ),
            _spec(
                "pgbouncer_tls_verifies",
                False,
                "PgBouncer's client_tls_sslmode is not disable and database.pgbouncer_tls_verified",
                _pgbouncer_tls_verifies,
            ),
            _spec(
                "pgbouncer_offers_tls_and_ca_files",
                True,
                "PgBouncer offers verified TLS to clients and every instance of the service has ca_file_ok",
                _pgbouncer_offers_tls_and_ca_files,
            ),
            _spec(
                "service_postgres_tls",
                True,
                "every instance of the service has db_tls",
                _service_postgres_tls,
            ),
            _spec(
                "no_plaintext_leg1",
                False,
                "no leg1 connection (or instance db_tls) is plaintext",
                _no_plaintext_leg1,
            ),
            _spec(
                "no_plaintext_postgres",
                False,
                "no postgres or leg2 connection is plaintext",
                _no_plaintext_postgres,
            ),
            _spec(
                "postgres_hostssl_only",
                False,
                "database.pg_hba_hostssl_only and no plaintext postgres/leg2 connection",
                _postgres_hostssl_only,
            ),
            _spec("redis_tls_verifies", False, "database.redis_tls_verified", _redis_tls_verifies),
            _spec(
                "telpro_ssl_build",
                True,
                "every instance of the service (default telpro) has telpro_ssl",
                _telpro_ssl_build,
            ),
            _spec(
                "service_redis_tls",
                True,
                "every instance of the service has redis_tls",
                _service_redis_tls,
            ),
            _spec(
                "no_plaintext_redis",
                False,
                "no redis connection (OTel collector included) or instance redis_tls is plaintext",
                _no_plaintext_redis,
            ),
            _spec(
                "redis_plaintext_dropped",
                False,
                "database.redis_port == 0 and no plaintext redis connection",
                _redis_plaintext_dropped,
            ),
        ]
    )
)


def evaluate(
    gate_name: str,
    snapshot: FleetSnapshot,
    *,
    service: str | None = None,
    now: float,
    max_age: float | None = DEFAULT_MAX_AGE,
) -> GateResult:
    """Decide `gate_name` on `snapshot` (for `service`, when the gate checks one service).

    A snapshot older than `max_age` seconds at `now` gives "unknown" (None: no age limit, used to
    read a position as of the snapshot itself). A managed database gives "closed": the runbook does
    not apply. An unknown gate name, or a per-service gate without `service`, is a bug: ValueError.
    """
    spec = GATES.get(gate_name)
    if spec is None:
        raise ValueError(f"unknown gate {gate_name!r}; known gates: {', '.join(GATES)}")
    if spec.per_service and not service:
        raise ValueError(f"gate {gate_name!r} checks one service; pass service=")
    svc = service if spec.per_service else None
    if snapshot.managed_database:
        return GateResult(
            gate_name,
            "closed",
            f"{snapshot.env} uses a managed database (RDS/ElastiCache): there is no Postgres, PgBouncer or "
            "Redis to flip, and the runbook does not apply",
            svc,
        )
    if max_age is not None:
        age = now - snapshot.taken_at
        if age > max_age:
            return GateResult(
                gate_name,
                "unknown",
                f"the snapshot is {age:.0f} s old (limit {max_age:.0f} s) — refresh before deciding",
                svc,
            )
    status, reason = spec.check(snapshot, svc)
    return GateResult(gate_name, status, reason, svc)


# --------------------------------------------------------------------------------------------
# live facts: is a step's setting running?


def _bool_reading(v: bool | None, yes: str, no: str, unknown: str) -> Reading:
    return Reading(v, yes if v else (unknown if v is None else no))


def _mode(v: str | None, what: str) -> str:
    return f"{what} = {v or 'disable'}" if v is not None else f"{what} could not be read"


def _live_postgres_ssl(db: DatabaseState) -> Reading:
    return _bool_reading(db.postgres_ssl, "ssl = on", "ssl = off", "ssl could not be read")


def _live_server_tls(db: DatabaseState) -> Reading:
    v = db.pgbouncer_server_tls_sslmode
    return Reading(None if v is None else v in _SERVER_MODES_VERIFYING, _mode(v, "server_tls_sslmode"))


def _live_client_offered(db: DatabaseState) -> Reading:
    v = db.pgbouncer_client_tls_sslmode
    return Reading(None if v is None else v not in _MODES_WITHOUT_TLS, _mode(v, "client_tls_sslmode"))


def _live_client_required(db: DatabaseState) -> Reading:
    v = db.pgbouncer_client_tls_sslmode
    return Reading(None if v is None else v in _MODES_REQUIRING_TLS, _mode(v, "client_tls_sslmode"))


def _live_hostssl(db: DatabaseState) -> Reading:
    return _bool_reading(
        db.pg_hba_hostssl_only,
        "pg_hba.conf is hostssl-only",
        "pg_hba.conf accepts plaintext",
        "pg_hba.conf could not be read",
    )


def _live_redis_tls_listener(db: DatabaseState) -> Reading:
    p = db.redis_tls_port
    if p is None:
        return Reading(None, "Redis's tls-port could not be read")
    return Reading(p > 0, f"tls-port = {p}")


def _live_redis_plaintext_dropped(db: DatabaseState) -> Reading:
    p = db.redis_port
    if p is None:
        return Reading(None, "Redis's port could not be read")
    return Reading(p == 0, f"port = {p}")


def _instance_reading(i: InstanceState, v: bool | None, what: str) -> Reading:
    if v is None and i.reachable is False:
        return Reading(None, f"{i.host} is unreachable")
    return _bool_reading(
        v,
        f"connects to {what} over TLS",
        f"connects to {what} in plaintext",
        f"no connection to {what} seen",
    )


def _live_instance_db_tls(i: InstanceState) -> Reading:
    return _instance_reading(i, i.db_tls, "PgBouncer")


def _live_instance_redis_tls(i: InstanceState) -> Reading:
    return _instance_reading(i, i.redis_tls, "Redis")


def _db_fact(name: str, summary: str, read: Callable[[DatabaseState], Reading]) -> tuple[str, LiveFact]:
    return name, LiveFact(name, False, summary, read_database=read)


def _inst_fact(name: str, summary: str, read: Callable[[InstanceState], Reading]) -> tuple[str, LiveFact]:
    return name, LiveFact(name, True, summary, read_instance=read)


LIVE: Final[Mapping[str, LiveFact]] = MappingProxyType(
    dict(
        [
            _db_fact("postgres_ssl", "database.postgres_ssl is True", _live_postgres_ssl),
            _db_fact(
                "pgbouncer_server_tls",
                "pgbouncer_server_tls_sslmode is verify-ca or verify-full",
                _live_server_tls,
            ),
            _db_fact(
                "pgbouncer_client_tls_offered",
                "pgbouncer_client_tls_sslmode is not disable",
                _live_client_offered,
            ),
            _db_fact(
                "pgbouncer_client_tls_required",
                "pgbouncer_client_tls_sslmode is require, verify-ca or verify-full",
                _live_client_required,
            ),
            _db_fact("pg_hba_hostssl_only", "database.pg_hba_hostssl_only is True", _live_hostssl),
            _db_fact("redis_tls_listener", "database.redis_tls_port > 0", _live_redis_tls_listener),
            _db_fact("redis_plaintext_dropped", "database.redis_port == 0", _live_redis_plaintext_dropped),
            _inst_fact("instance_db_tls", "the instance's db_tls is True", _live_instance_db_tls),
            _inst_fact("instance_redis_tls", "the instance's redis_tls is True", _live_instance_redis_tls),
        ]
    )
)


def read_live(name: str, snapshot: FleetSnapshot) -> Reading:
    """A database-level live fact (ValueError for an unknown or per-instance name)."""
    fact = LIVE.get(name)
    if fact is None or fact.read_database is None:
        raise ValueError(f"{name!r} is not a database-level live fact; known: {', '.join(LIVE)}")
    if snapshot.database is None:
        return Reading(None, NO_DATABASE)
    return fact.read_database(snapshot.database)


def read_live_instance(name: str, instance: InstanceState) -> Reading:
    """A per-instance live fact (ValueError for an unknown or database-level name)."""
    fact = LIVE.get(name)
    if fact is None or fact.read_instance is None:
        raise ValueError(f"{name!r} is not a per-instance live fact; known: {', '.join(LIVE)}")
    return fact.read_instance(instance)


# --------------------------------------------------------------------------------------------
# configured facts: is a step's setting in the config store?


def configured_value(
    snapshot: FleetSnapshot, service: str, var: str, instance: InstanceState | None = None
) -> ConfiguredValue | None:
    """What `service` (or `instance`, with a per-host env-file store) resolves `var` to; None when
    the snapshot does not say. Per-host values win; without `instance`, the hosts' values count when
    every host of the service holds the same one."""
    if instance is not None and var in instance.configured:
        return instance.configured[var]
    per_service = snapshot.configured.get(service)
    if per_service is not None and var in per_service:
        return per_service[var]
    if instance is None:
        insts = snapshot.instances_of(service)
        vals = [i.configured[var] for i in insts if var in i.configured]
        if vals and len(vals) == len(insts) and len({v.value for v in vals}) == 1:
            return vals[0]
    return None


def config_reading(
    plan: Plan, step: Step, service: str, snapshot: FleetSnapshot, instance: InstanceState | None = None
) -> Reading:
    """Does the config store hold every value `step` sets, for `service` (or one of its hosts)?

    A value a later step of the plan sets for the same variable counts too (after pg-6 sets
    PGBOUNCER_CLIENT_TLS_SSLMODE=require, pg-4's `allow` is superseded, not undone). None when a
    value could not be read and none is known to differ.
    """
    wrong: list[str] = []
    unread: list[str] = []
    right: list[str] = []
    for ch in step.changes:
        cv = configured_value(snapshot, service, ch.var, instance)
        if cv is None or cv.source == "error":
            unread.append(ch.var)
        elif cv.value is not None and cv.value in plan.accepted_values(step, ch.var):
            right.append(f"{ch.var}={cv.value}")
        else:
            shown = "unset" if cv.value is None else f"{cv.value!r}"
            wrong.append(f"{ch.var} is {shown} ({cv.source}), not {ch.value!r}")
    if wrong:
        return Reading(False, "; ".join(wrong))
    if unread:
        return Reading(None, f"{_join(unread)} could not be read from the config store")
    return Reading(True, f"{', '.join(right)} in the config store")


# --------------------------------------------------------------------------------------------
# rollback safety


def _in_place(plan: Plan, step: Step, service: str, snapshot: FleetSnapshot) -> Reading:
    """Is `step` still in place for `service` — configured, or still running?"""
    cfg = config_reading(plan, step, service, snapshot)
    if cfg.value:
        return Reading(True, cfg.detail)
    fact = LIVE.get(step.live)
    if fact is None:
        return cfg
    if fact.per_instance:
        insts = snapshot.instances_of(service)
        readings = [(i.host, read_live_instance(step.live, i)) for i in insts]
        live = [h for h, r in readings if r.value]
        if live:
            return Reading(True, f"still live on {_join(live)}")
        unread = [h for h, r in readings if r.value is None]
        if unread and cfg.value is False:
            return Reading(None, f"cannot tell whether it still runs on {_join(unread)}")
        return Reading(cfg.value, cfg.detail)
    live_r = read_live(step.live, snapshot)
    if live_r.value:
        return Reading(True, f"still live ({live_r.detail})")
    if live_r.value is None:
        return Reading(None, live_r.detail)
    return cfg


def _app_services(plan: Plan, snapshot: FleetSnapshot) -> list[str]:
    names = _unique([*(i.service for i in snapshot.instances), *snapshot.configured])
    return [n for n in names if n != plan.database_service]


def _db_value(plan: Plan, snapshot: FleetSnapshot, var: str) -> ConfiguredValue | None:
    return configured_value(snapshot, plan.database_service, var)


def _hazards(plan: Plan, step: Step, service: str | None, snapshot: FleetSnapshot) -> list[str]:
    """What the runbook's variables say breaks if this step's values go back."""
    out: list[str] = []
    db = snapshot.database
    nodb = "cannot tell whether the rollback is safe: " + NO_DATABASE
    for ch in step.changes:
        back = ch.rollback
        if step.scope == "database" and ch.var == "POSTGRES_TLS_ENABLED":
            if db is None:
                out.append(nodb)
                continue
            mode = db.pgbouncer_server_tls_sslmode
            if mode is None:
                out.append(
                    "cannot tell how PgBouncer connects to Postgres (server_tls_sslmode unread) — refresh"
                )
            elif mode in _MODES_REQUIRING_TLS:
                out.append(
                    f"PgBouncer connects to Postgres with server_tls_sslmode = {mode}: "
                    "turning Postgres TLS off "
                    "would cut Leg 2 — roll back PGBOUNCER_SERVER_TLS_SSLMODE first"
                )
            cv = _db_value(plan, snapshot, "PGBOUNCER_SERVER_TLS_SSLMODE")
            if cv is not None and cv.value in _MODES_REQUIRING_TLS and mode != cv.value:
                out.append(
                    f"PGBOUNCER_SERVER_TLS_SSLMODE={cv.value} is configured: "
                    "after the next restart PgBouncer "
                    "would need Postgres TLS — roll it back first"
                )
            if db.pg_hba_hostssl_only:
                out.append(
                    "pg_hba.conf is hostssl-only: with TLS off nobody could connect to Postgres — roll back "
                    "POSTGRES_FORCE_SSL first"
                )
        elif step.scope == "database" and ch.var == "PGBOUNCER_SERVER_TLS_SSLMODE":
            if back is not None and back in _MODES_REQUIRING_TLS:
                continue
            if db is None:
                out.append(nodb)
            elif db.pg_hba_hostssl_only:
                out.append(
                    "pg_hba.conf is hostssl-only: PgBouncer would be refused in plaintext — roll back "
                    "POSTGRES_FORCE_SSL first"
                )
        elif step.scope == "database" and ch.var == "PGBOUNCER_CLIENT_TLS_SSLMODE":
            if back is not None and back not in _MODES_WITHOUT_TLS:
                continue  # e.g. require -> allow: TLS is still offered
            needing: list[str] = []
            unread: list[str] = []
            for svc in _app_services(plan, snapshot):
                cv = configured_value(snapshot, svc, "DATABASE_SSL_MODE")
                tls_live = [i.host for i in snapshot.instances_of(svc) if i.db_tls]
                if cv is not None and cv.value in _MODES_REQUIRING_TLS:
                    needing.append(f"{svc} (DATABASE_SSL_MODE={cv.value})")
                elif tls_live:
                    needing.append(f"{svc} ({', '.join(tls_live)} connect over TLS)")
                elif cv is None or cv.source == "error":
                    unread.append(svc)
            if needing:
                out.append(
                    f"{_join(needing)} {'requires' if len(needing) == 1 else 'require'} "
                    "TLS to PgBouncer: with "
                    "client TLS off they would be locked out — roll back their DATABASE_SSL_MODE first"
                )
            if unread:
                out.append(
                    f"cannot tell whether {_join(unread)} require TLS to PgBouncer (DATABASE_SSL_MODE unread)"
                )
        elif step.scope == "database" and ch.var == "REDIS_TLS_ENABLED":
            needing = []
            for svc in _app_services(plan, snapshot):
                cv = configured_value(snapshot, svc, "REDIS_TLS_ENABLED")
                tls_live = [i.host for i in snapshot.instances_of(svc) if i.redis_tls]
                if cv is not None and (cv.value or "").lower() in _TRUE:
                    needing.append(f"{svc} (REDIS_TLS_ENABLED=true)")
                elif tls_live:
                    needing.append(f"{svc} ({', '.join(tls_live)} connect over TLS)")
            if needing:
                out.append(
                    f"{_join(needing)} {'uses' if len(needing) == 1 else 'use'} "
                    "Redis over TLS: dropping the TLS "
                    "listener would cut them off — roll back their REDIS_TLS_ENABLED first"
                )
        elif step.scope == "service" and ch.var == "DATABASE_SSL_MODE":
            if back is not None and back in _MODES_REQUIRING_TLS:
                continue
            if db is None:
                out.append(nodb)
                continue
            mode = db.pgbouncer_client_tls_sslmode
            cv = _db_value(plan, snapshot, "PGBOUNCER_CLIENT_TLS_SSLMODE")
            if mode is None:
                out.append("cannot tell whether PgBouncer requires TLS (client_tls_sslmode unread) — refresh")
            elif mode in _MODES_REQUIRING_TLS or (cv is not None and cv.value in _MODES_REQUIRING_TLS):
                out.append(
                    f"PgBouncer requires TLS from clients (client_tls_sslmode = "
                    f"{mode if mode in _MODES_REQUIRING_TLS else (cv.value if cv else mode)}): "
                    f"{service} would be "
                    "refused in plaintext — roll back PGBOUNCER_CLIENT_TLS_SSLMODE=require first"
                )
        elif step.scope == "service" and ch.var == "REDIS_TLS_ENABLED":
            if db is None:
                out.append(nodb)
                continue
            cv = _db_value(plan, snapshot, "REDIS_FORCE_TLS")
            if db.redis_port is None:
                out.append("cannot tell whether Redis still listens in plaintext (port unread) — refresh")
            elif db.redis_port == 0 or (cv is not None and (cv.value or "").lower() in _TRUE):
                out.append(
                    "Redis's plaintext listener is dropped (or REDIS_FORCE_TLS=true is configured): "
                    f"{service} "
                    "would be cut off in plaintext — roll back REDIS_FORCE_TLS first"
                )
    return out


def rollback_blockers(plan: Plan, step: Step, service: str | None, snapshot: FleetSnapshot) -> list[str]:
    """Why rolling back `step` (for `service`, on a per-service step) now is unsafe; [] = safe.

    Two kinds of reason: a later step (one that runs after this one) is still in place —
    configured, or still running — since rollback goes newest first; or a fact the runbook's
    variables depend on says the rollback would cut someone off (Postgres TLS off while PgBouncer
    verifies it, client TLS off while an app requires it, Redis TLS off while an app uses it, …).
    A fact that could not be measured blocks too.
    """
    if step.kind == "certs":
        return [
            f"{step.id} ({step.title}) has no rollback: the cockpit does not remove cert material, since "
            "every TLS listener and client depends on it"
        ]
    if step.scope == "service" and not service:
        raise ValueError(f"step {step.id} is per service; pass the service to roll back")
    out: list[str] = []
    for later in reversed(plan.descendants(step)):
        if later.kind == "certs":
            continue
        if later.scope == "service":
            svcs = [service] if (step.scope == "service" and service) else _app_services(plan, snapshot)
        else:
            svcs = [plan.database_service]
        in_place: list[str] = []
        unsure: list[str] = []
        for svc in svcs:
            r = _in_place(plan, later, svc, snapshot)
            if r.value:
                in_place.append(svc)
            elif r.value is None:
                unsure.append(f"{svc}: {r.detail}")
        if in_place:
            out.append(
                f"{later.id} ({later.summary}) is still in place on {_join(in_place)} — roll it back "
                f"{'there ' if later.scope == 'service' else ''}first (newest first)"
            )
        for u in unsure:
            out.append(f"cannot tell whether {later.id} ({later.summary}) is still in place ({u}) — refresh")
    out.extend(_hazards(plan, step, service, snapshot))
    return _unique(out)


# --------------------------------------------------------------------------------------------
# environments in order


def env_order_gate(
    step: Step,
    env: Environment,
    previous_env_position: Position | None,
    *,
    service: str | None = None,
    override: str | None = None,
) -> GateResult:
    """May `step` run in `env` yet? Only once the environment it comes after (`env.after`) has it
    verified — for `service` when given, else for every target there. `override` is a reason
    given by a person; a non-blank one opens the gate and is quoted in the reason."""
    name = "env_order"
    if not env.after:
        return GateResult(name, "open", f"no environment comes before {env.name}", service)
    prev = env.after
    verdict: _Verdict
    if previous_env_position is None:
        verdict = (
            "unknown",
            f"{env.name} comes after {prev}, whose position is unknown — take a snapshot of {prev} first",
        )
    else:
        sp = previous_env_position.step_position(step.id)
        if sp is None:
            verdict = ("unknown", f"{prev}'s position has no step {step.id} (another plan?) — refresh {prev}")
        else:
            targets = [t for t in sp.targets if service is None or t.service == service] or list(sp.targets)
            if not targets:
                verdict = ("unknown", f"{step.id} has no target in {prev}, so it cannot be verified there")
            else:
                behind = [t for t in targets if t.state != "verified"]
                if behind:
                    where = ", ".join(f"{t.service or prev}: {t.state}" for t in behind)
                    verdict = (
                        "closed",
                        f"{step.id} is not verified in {prev} yet ({where}) — finish it there first, or "
                        "override with a reason",
                    )
                else:
                    verdict = ("open", f"{step.id} is verified in {prev}")
    status, reason = verdict
    if status != "open" and override is not None:
        if override.strip():
            return GateResult(name, "open", f"overridden: {override.strip()} (otherwise: {reason})", service)
        reason += "; an override needs a non-empty reason"
    return GateResult(name, status, reason, service)
