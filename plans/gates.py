"""Gates: pure decisions read from one `FleetSnapshot` — may a step run now, and did it work.

`evaluate(gate, snapshot, service=..., now=..., plan=..., step=...)` returns a `GateResult` whose status
is "open", "closed" or "unknown", with a reason a person can act on (the UI and the CLI show the same
one). A gate opens only on positive evidence about every instance the inventory names: "no connection
seen" proves nothing, the cockpit's own connections are never evidence (the collector leaves them out),
and a fact that could not be measured gives "unknown", which blocks like "closed". The same registry
holds the checks that run before a step (its gates) and after it (its verification).

Pure: no I/O, no clock (the caller passes `now`), no textual.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Literal

from plans.facts import (
    LIVE,
    MODES_WITHOUT_TLS,
    NO_DATABASE,
    Reading,
    config_reading,
    configured_value,
    join,
    read_live,
    read_live_instance,
    sorted_hosts,
    unique,
)
from probes.model import CheckResult, Unknown, Verdict
from probes.snapshot import (
    CaFile,
    ConfiguredValue,
    Connection,
    DatabaseState,
    FleetSnapshot,
    Handshake,
    InstanceState,
    LegUse,
    LegView,
)

if TYPE_CHECKING:
    from plans.plan import Plan, Step

__all__ = [
    "DEFAULT_MAX_AGE",
    "GATES",
    "LIVE",
    "NO_DATABASE",
    "GateResult",
    "GateSpec",
    "GateStatus",
    "Reading",
    "config_reading",
    "configured_value",
    "evaluate",
    "read_live",
    "read_live_instance",
]

GateStatus = Literal["open", "closed", "unknown"]
DEFAULT_MAX_AGE: Final = 60.0  # seconds: a gate never opens on a snapshot older than this
DEFAULT_CA: Final = "/etc/ssl/internal/ca.crt"


@dataclass(frozen=True, slots=True)
class GateResult:
    """One gate's verdict on one snapshot (and one service, for per-service gates). `overridden`
    holds a person's reason when a closed or unknown gate was opened on purpose."""

    gate: str
    status: GateStatus
    reason: str
    service: str | None = None
    overridden: str | None = None

    @property
    def open(self) -> bool:
        return self.status == "open"

    def to_json(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {
            "gate": self.gate,
            "status": self.status,
            "reason": self.reason,
            "service": self.service,
        }
        if self.overridden is not None:
            out["overridden"] = self.overridden
        return out


@dataclass(frozen=True, slots=True)
class GateContext:
    """What a gate may know besides the snapshot: the plan, the step it guards or verifies, the service."""

    plan: Plan
    step: Step | None
    service: str | None


_Verdict = tuple[GateStatus, str]
_Check = Callable[[FleetSnapshot, GateContext], _Verdict]


@dataclass(frozen=True, slots=True)
class GateSpec:
    name: str
    per_service: bool  # True: needs `service` (checks one app service's instances)
    summary: str  # what must hold for it to open, in one line (docs, UI)
    check: _Check


# ------------------------------------------------------------------------------------ phrasing


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def _combine(closed: list[str], unknown: list[str], ok: str) -> _Verdict:
    """Closed wins over unknown (a measured problem is reason enough); both block."""
    if closed:
        return "closed", "; ".join(closed + unknown)
    if unknown:
        return "unknown", "; ".join(unknown)
    return "open", ok


def _why(u: Unknown) -> str:
    return f"{u.why.value}: {u.detail}" if u.detail else u.why.value


def _db(s: FleetSnapshot) -> DatabaseState | _Verdict:
    if isinstance(s.database, Unknown):
        return "unknown", f"{NO_DATABASE} ({_why(s.database)})"
    if s.database.reachable is not True:
        r = s.database.reachable
        return "unknown", NO_DATABASE + (f" ({_why(r)})" if isinstance(r, Unknown) else "")
    return s.database


def _leg(s: FleetSnapshot, leg: Literal["leg1", "leg2", "postgres", "redis"], what: str) -> LegView | str:
    view = s.leg(leg)
    if isinstance(view, Unknown):
        return f"who is connected to {what} could not be read ({_why(view)}) — refresh"
    return view


_UNIDENTIFIED: Final = "an unidentified client"


def _by_service(insts: Iterable[InstanceState], note: Callable[[InstanceState], str] = lambda i: "") -> tuple[str, str]:
    """("voice (staging-voice-01, staging-voice-02) and ops (staging-ops-01)", "voice and ops"), in
    inventory order — stable from one poll to the next."""
    groups: dict[str, list[str]] = {}
    for i in insts:
        groups.setdefault(i.service, []).append(i.host + note(i))
    return join(f"{svc} ({', '.join(hosts)})" for svc, hosts in groups.items()), join(groups)


def _who(conns: Iterable[Connection]) -> str:
    groups: dict[str, list[str]] = {}
    for c in conns:
        who = c.service if c.service and c.service != "?" else _UNIDENTIFIED
        groups.setdefault(who, []).append(c.instance or c.addr)
    return join(f"{svc} ({', '.join(sorted_hosts(where))})" for svc, where in sorted(groups.items()))


# ------------------------------------------------------------------------------------ the gates


def _certs_valid(s: FleetSnapshot, ctx: GateContext) -> _Verdict:
    checks = list(s.certs)
    if not checks:
        return "unknown", "no cert check has run (the cert material could not be read) — fix access and refresh"

    def grouped(results: list[CheckResult]) -> str:
        by_summary: dict[tuple[str, str], list[str]] = {}
        for c in results:
            by_summary.setdefault((c.check, c.summary), []).append(c.target)
        everywhere = {c.target for c in results}
        parts = [
            summary if set(t) == everywhere else f"{', '.join(unique(t))}: {summary}"
            for (_, summary), t in sorted(by_summary.items())
        ]
        return "; ".join(parts[:4]) + (f" (and {len(parts) - 4} more)" if len(parts) > 4 else "")

    fails = [c for c in checks if c.verdict is Verdict.FAIL]
    errors = [c for c in checks if c.verdict is Verdict.ERROR]
    warns = [c for c in checks if c.verdict is Verdict.WARN]
    covered = unique([c.target for c in checks])
    consumers = unique([i.service for i in s.instances])
    uncovered = [svc for svc in consumers if svc not in covered]
    if fails:
        return (
            "closed",
            f"the cert material fails its checks under {join(unique([c.target for c in fails]))} "
            f"({grouped(fails)}) — fix the material and push it again (cockpit certs push)",
        )
    if errors:
        return (
            "unknown",
            f"the cert checks could not run under {join(unique([c.target for c in errors]))} "
            f"({grouped(errors)}) — fix what stops them and refresh",
        )
    if uncovered:
        return "unknown", (
            f"no cert check covers {join(uncovered)}: the material under "
            f"{'its' if len(uncovered) == 1 else 'their'} prefix was not read — refresh"
        )
    ok = f"the cert material passes every check under {join(covered)}"
    if warns:
        ok += f" (warning: {grouped(warns)})"
    return "open", ok


def _handshake_gate(h: Handshake | Unknown, what: str, not_offered: str) -> _Verdict:
    if isinstance(h, Unknown):
        return "unknown", f"could not measure whether {what} TLS verifies ({_why(h)}) — refresh"
    if h is Handshake.VERIFIED:
        return "open", f"{what} TLS verifies against the internal CA and the database's DNS name"
    if h is Handshake.NOT_OFFERED:
        return "closed", not_offered
    return "closed", (
        f"{what} serves TLS but the handshake does not verify against the internal CA and the "
        "database's DNS name — check the cert material (SAN, CA, expiry) and push it again"
    )


def _postgres_tls_verifies(s: FleetSnapshot, ctx: GateContext) -> _Verdict:
    db = _db(s)
    if not isinstance(db, DatabaseState):
        return db
    return _handshake_gate(
        db.postgres_tls,
        "Postgres",
        "Postgres does not serve TLS yet — set POSTGRES_TLS_ENABLED=on and restart the database host",
    )


def _redis_tls_verifies(s: FleetSnapshot, ctx: GateContext) -> _Verdict:
    db = _db(s)
    if not isinstance(db, DatabaseState):
        return db
    return _handshake_gate(
        db.redis_tls,
        "Redis's",
        "Redis has no TLS listener yet — set REDIS_TLS_ENABLED=true on the database and restart the database host",
    )


def _leg2_tls_and_e2e(s: FleetSnapshot, ctx: GateContext) -> _Verdict:
    db = _db(s)
    if not isinstance(db, DatabaseState):
        return db
    closed: list[str] = []
    unknown: list[str] = []
    leg2 = _leg(s, "leg2", "Postgres from PgBouncer")
    n = 0
    if isinstance(leg2, str):
        unknown.append(leg2)
    else:
        plain = [c for c in leg2.connections if not c.tls]
        n = len(leg2.connections)
        if plain:
            closed.append(
                f"{_count(len(plain), 'PgBouncer→Postgres connection')} "
                f"({', '.join(sorted_hosts([c.addr for c in plain]))}) {'is' if len(plain) == 1 else 'are'} "
                "still plaintext — set PGBOUNCER_SERVER_TLS_SSLMODE=verify-ca and restart the database host"
            )
        elif not leg2.connections:
            unknown.append(
                "no PgBouncer→Postgres connection of an app is seen yet — make sure the apps run and refresh"
            )
    if isinstance(db.end_to_end_ok, Unknown):
        unknown.append(f"the end-to-end query through PgBouncer was not measured ({_why(db.end_to_end_ok)})")
    elif not db.end_to_end_ok:
        closed.append(
            "a query through PgBouncer did not answer in time — check PgBouncer's log for the server TLS handshake"
        )
    return _combine(
        closed,
        unknown,
        f"every PgBouncer→Postgres connection is TLS ({_count(n, 'connection')}) and a query through PgBouncer answers",
    )


def _client_mode_problems(db: DatabaseState) -> tuple[list[str], list[str]]:
    closed: list[str] = []
    unknown: list[str] = []
    mode = db.pgbouncer_client_tls_sslmode
    if isinstance(mode, Unknown):
        unknown.append(f"PgBouncer's client_tls_sslmode could not be read ({_why(mode)}) — refresh")
    elif mode in MODES_WITHOUT_TLS:
        closed.append(
            f"PgBouncer does not offer TLS to clients (client_tls_sslmode = {mode or 'disable'}) — set "
            "PGBOUNCER_CLIENT_TLS_SSLMODE=allow and restart the database host first"
        )
    if not closed:
        status, reason = _handshake_gate(db.pgbouncer_tls, "PgBouncer's", "PgBouncer does not offer TLS to clients")
        if status == "closed":
            closed.append(reason)
        elif status == "unknown":
            unknown.append(reason)
    return closed, unknown


def _pgbouncer_tls_verifies(s: FleetSnapshot, ctx: GateContext) -> _Verdict:
    db = _db(s)
    if not isinstance(db, DatabaseState):
        return db
    closed, unknown = _client_mode_problems(db)
    return _combine(
        closed,
        unknown,
        f"PgBouncer offers TLS to clients (client_tls_sslmode = "
        f"{db.pgbouncer_client_tls_sslmode}) and it verifies against the internal CA",
    )


def _ca_variables(plan: Plan) -> tuple[str, ...]:
    return tuple(getattr(plan, "ca_file_variables", ("DATABASE_SSL_CA_FILE", "REDIS_TLS_CA_FILE")))


def _ca_paths(s: FleetSnapshot, ctx: GateContext, inst: InstanceState) -> list[tuple[str, str | Unknown | None]]:
    """(variable, path) the service will use once the step is applied: the step's own value for each
    CA-file variable it sets, else the value configured now (its vars.yaml default included). None when
    that is empty: the driver would look in its own default place (asyncpg: ~/.postgresql/root.crt), which
    is no evidence the internal CA is there. Unknown when the configuration could not be read."""
    out: list[tuple[str, str | Unknown | None]] = []
    step_values = {c.var: c.value for c in ctx.step.changes} if ctx.step is not None else {}
    ca_vars = _ca_variables(ctx.plan)
    wanted = [v for v in ca_vars if v in step_values] or [v for v in ca_vars if v.startswith("DATABASE")][:1]
    for var in wanted:
        if var in step_values:
            out.append((var, step_values[var] or None))
            continue
        cv = configured_value(s, inst.service, var, inst)
        if isinstance(cv, Unknown):
            out.append((var, cv))
        else:
            out.append((var, cv.value if isinstance(cv, ConfiguredValue) and cv.value else None))
    return out


def _ca_file_problems(s: FleetSnapshot, ctx: GateContext, service: str) -> tuple[list[str], list[str], str]:
    closed: list[str] = []
    unknown: list[str] = []
    insts = s.instances_of(service)
    if not insts:
        return [], [f"no instance of {service} is in the snapshot — check the inventory and refresh"], ""
    bad: dict[str, list[str]] = {}
    unseen: dict[str, list[str]] = {}
    no_path: dict[str, list[str]] = {}
    paths: set[str] = set()
    for inst in insts:
        for var, path in _ca_paths(s, ctx, inst):
            if path is None:
                no_path.setdefault(var, []).append(inst.host)
                continue
            if isinstance(path, Unknown):
                unseen.setdefault(f"{var}'s path", []).append(f"{inst.host} ({_why(path)})")
                continue
            paths.add(path)
            state = inst.ca_file(path)
            if isinstance(state, Unknown):
                unseen.setdefault(path, []).append(f"{inst.host} ({_why(state)})")
            elif state is not CaFile.MATCHES:
                bad.setdefault(path, []).append(f"{inst.host} ({state.value})")
    for path, hosts in sorted(bad.items()):
        closed.append(
            f"the internal CA is not at {path} on {join(unique(hosts))} — push the certs and restart "
            f"{'it' if len(hosts) == 1 else 'them'} (cockpit restart {service}) so init.sh writes it"
        )
    for var, hosts in sorted(no_path.items()):
        closed.append(
            f"{var} is empty for {service} on {join(unique(hosts))}: verification would use the driver's own "
            f"default CA location, which the cockpit cannot check — set {var} (the runbook's pg-5 and redis-2 "
            f"set it to {DEFAULT_CA})"
        )
    for path, hosts in sorted(unseen.items()):
        unknown.append(f"could not check {path} on {join(unique(hosts))} — refresh")
    return closed, unknown, join(sorted(paths))


def _pgbouncer_offers_tls_and_ca_files(s: FleetSnapshot, ctx: GateContext) -> _Verdict:
    assert ctx.service is not None
    db = _db(s)
    if not isinstance(db, DatabaseState):
        return db
    closed, unknown = _client_mode_problems(db)
    c2, u2, paths = _ca_file_problems(s, ctx, ctx.service)
    hosts = ", ".join(unique([i.host for i in s.instances_of(ctx.service)]))
    return _combine(
        closed + c2,
        unknown + u2,
        f"PgBouncer offers verified TLS to clients and every {ctx.service} "
        f"instance ({hosts}) has the internal CA at {paths}",
    )


def _ca_files(s: FleetSnapshot, ctx: GateContext) -> _Verdict:
    assert ctx.service is not None
    closed, unknown, paths = _ca_file_problems(s, ctx, ctx.service)
    hosts = ", ".join(unique([i.host for i in s.instances_of(ctx.service)]))
    return _combine(closed, unknown, f"every {ctx.service} instance ({hosts}) has the internal CA at {paths}")


def _service_tls(
    s: FleetSnapshot, service: str, use: Callable[[InstanceState], LegUse | Unknown], what: str
) -> _Verdict:
    insts = s.instances_of(service)
    if not insts:
        return "unknown", f"no instance of {service} is in the snapshot — check the inventory and refresh"
    plain, down, unseen, unread = [], [], [], []
    for i in insts:
        u = use(i)
        if isinstance(u, Unknown):
            unread.append(f"{i.host} ({_why(u)})")
        elif u.plain:
            plain.append(i.host)
        elif not u.tls:
            if i.running is False:
                down.append(f"{i.host} (not running)")
            elif i.healthy is False:
                down.append(f"{i.host} (unhealthy)")
            else:
                unseen.append(i.host)
    closed: list[str] = []
    unknown: list[str] = []
    if plain:
        closed.append(
            f"{join(unique(plain))} still {'connects' if len(plain) == 1 else 'connect'} to {what} in "
            f"plaintext — restart {'it' if len(plain) == 1 else 'them'} so the new setting takes effect"
        )
    if down:
        closed.append(
            f"{join(unique(down))} {'has' if len(down) == 1 else 'have'} no connection to {what} — "
            "check its logs: the TLS connection may be refused"
        )
    if unread:
        unknown.append(f"could not read the connections of {join(unique(unread))} — refresh")
    if unseen:
        unknown.append(f"no connection to {what} seen from {join(unique(unseen))} — make sure it runs and refresh")
    hosts = ", ".join(unique([i.host for i in insts]))
    return _combine(closed, unknown, f"every {service} instance ({hosts}) connects to {what} over TLS")


def _service_postgres_tls(s: FleetSnapshot, ctx: GateContext) -> _Verdict:
    assert ctx.service is not None
    return _service_tls(s, ctx.service, lambda i: i.db, "PgBouncer")


def _service_redis_tls(s: FleetSnapshot, ctx: GateContext) -> _Verdict:
    assert ctx.service is not None
    return _service_tls(s, ctx.service, lambda i: i.redis, "Redis")


def _client_step(ctx: GateContext, live: str) -> Step | None:
    """The per-service step that moves clients of one leg (its live fact is `live`): among the
    step's own dependencies when there is a step, else anywhere in the plan."""
    plan = ctx.plan
    pool = plan.ancestors(ctx.step) if ctx.step is not None else plan.steps
    return next((st for st in reversed(pool) if st.per_service and st.live == live), None)


def _no_plaintext_clients(
    s: FleetSnapshot,
    ctx: GateContext,
    leg: Literal["leg1", "redis"],
    consumes: str,
    use: Callable[[InstanceState], LegUse | Unknown],
    live: str,
    what: str,
) -> tuple[list[str], list[str], int]:
    """Positive evidence about every instance of every service consuming `what`: configured for TLS (the
    per-service step is in place for it) AND seen on TLS — or known to be down, configured for TLS
    (it will come back on TLS). Anything else, named."""
    closed: list[str] = []
    unknown: list[str] = []
    view = _leg(s, leg, what)
    if isinstance(view, str):
        return [], [view], 0
    strays = [c for c in view.connections if not c.tls and c.instance is None]
    if strays:
        closed.append(
            f"{_who(strays)} {'connects' if len(strays) == 1 else 'connect'} to {what} in plaintext from an "
            "address that is no host of the inventory — identify it and move it to TLS first"
        )
    step = _client_step(ctx, live)
    plain: list[InstanceState] = []
    unconfigured: list[InstanceState] = []
    unsure: list[str] = []
    for i in (i for i in s.instances if consumes in i.consumes):
        u = use(i)
        if isinstance(u, LegUse) and u.plain:
            plain.append(i)
            continue
        cfg = config_reading(ctx.plan, step, i.service, s, i) if step is not None else None
        if cfg is not None and cfg.value is False:
            unconfigured.append(i)
            continue
        if cfg is not None and isinstance(cfg.value, Unknown):
            unsure.append(f"{i.host} (its configuration could not be read: {_why(cfg.value)})")
        elif isinstance(u, Unknown):
            unsure.append(f"{i.host} ({_why(u)})")
        elif u.tls or i.running is False:
            continue  # seen on TLS; or down, configured for TLS: it will come back on TLS
        elif i.reachable is not True:
            unsure.append(f"{i.host} (no connection seen; unreachable)")
        elif isinstance(i.running, Unknown):
            unsure.append(f"{i.host} (no connection seen; not known to be running or stopped)")
        else:
            unsure.append(f"{i.host} (no connection seen; running but not connected)")
    if plain:
        who, svcs = _by_service(plain)
        one = len({i.service for i in plain}) == 1
        closed.append(f"{who} still {'connects' if one else 'connect'} to {what} in plaintext — flip {svcs} first")
    if unconfigured:
        who, svcs = _by_service(unconfigured, lambda i: ", stopped" if i.running is False else "")
        one = len({i.service for i in unconfigured}) == 1
        closed.append(
            f"{who} {'is' if one else 'are'} still configured for plaintext to {what} "
            f"({step.id if step else 'its per-service step'} not in place: stopped or not, "
            f"{'it' if len(unconfigured) == 1 else 'they'} would come back on plaintext) — flip {svcs} first"
        )
    if unsure:
        unknown.append(
            f"no evidence that {join(unsure)} would use TLS to {what} — start it, or override this gate "
            "with a reason if you know better"
        )
    tls = sum(1 for c in view.connections if c.tls)
    return closed, unknown, tls


def _no_plaintext_leg1(s: FleetSnapshot, ctx: GateContext) -> _Verdict:
    db = _db(s)
    if not isinstance(db, DatabaseState):
        return db
    closed, unknown, tls = _no_plaintext_clients(
        s, ctx, "leg1", "postgres", lambda i: i.db, "instance_db_tls", "PgBouncer"
    )
    return _combine(
        closed,
        unknown,
        f"every client of PgBouncer is configured for TLS and connects over TLS ({_count(tls, 'TLS connection')} seen)",
    )


def _no_plaintext_redis(s: FleetSnapshot, ctx: GateContext) -> _Verdict:
    db = _db(s)
    if not isinstance(db, DatabaseState):
        return db
    closed, unknown, tls = _no_plaintext_clients(
        s, ctx, "redis", "redis", lambda i: i.redis, "instance_redis_tls", "Redis"
    )
    ep, port = db.otel_redis_endpoint, db.redis_port
    if isinstance(ep, Unknown):
        unknown.append(f"the OTel collector's Redis connection could not be read ({_why(ep)})")
    elif not ep:
        unknown.append(
            "the OTel collector's Redis connection is not seen — make sure it runs (it may still use the "
            "plaintext port)"
        )
    elif isinstance(port, Unknown):
        unknown.append(f"cannot tell whether the OTel collector ({ep}) uses the plaintext port: Redis's port could "
                       f"not be read ({_why(port)})")
    elif port and ep.rpartition(":")[2] == str(port):
        closed.append(
            f"the OTel collector's REDIS_ENDPOINT is still the plaintext port ({ep}) — restart the database "
            "host so init.sh switches it to the TLS port"
        )
    return _combine(
        closed,
        unknown,
        f"every client of Redis is configured for TLS and connects over TLS ({_count(tls, 'TLS connection')} seen)",
    )


def _no_plaintext_postgres(s: FleetSnapshot, ctx: GateContext) -> _Verdict:
    db = _db(s)
    if not isinstance(db, DatabaseState):
        return db
    closed: list[str] = []
    unknown: list[str] = []
    n = 0
    for leg in ("leg2", "postgres"):
        view = _leg(s, leg, "Postgres")
        if isinstance(view, str):
            unknown.append(view)
            continue
        n += len(view.connections)
        plain = [c for c in view.connections if not c.tls]
        if plain and leg == "leg2":
            closed.append(
                f"PgBouncer ({', '.join(sorted_hosts([c.addr for c in plain]))}) still connects to Postgres "
                "in plaintext — set PGBOUNCER_SERVER_TLS_SSLMODE=verify-ca and restart the database host first"
            )
        elif plain:
            closed.append(
                f"{_who(plain)} still {'connects' if len(plain) == 1 else 'connect'} directly to Postgres in "
                f"plaintext — move {'it' if len(plain) == 1 else 'them'} to TLS first; hostssl-only would "
                f"refuse {'it' if len(plain) == 1 else 'them'}"
            )
    return _combine(closed, unknown, f"no connection to Postgres is plaintext ({_count(n, 'connection')} seen)")


def _postgres_hostssl_only(s: FleetSnapshot, ctx: GateContext) -> _Verdict:
    db = _db(s)
    if not isinstance(db, DatabaseState):
        return db
    closed: list[str] = []
    unknown: list[str] = []
    hba = db.pg_hba_hostssl_only
    if isinstance(hba, Unknown):
        unknown.append(f"pg_hba.conf could not be read ({_why(hba)}) — refresh")
    elif not hba:
        closed.append(
            "pg_hba.conf still lets TCP connections in without TLS — set POSTGRES_FORCE_SSL=on and restart "
            "the database host"
        )
    status, reason = _no_plaintext_postgres(s, ctx)
    (closed if status == "closed" else unknown if status == "unknown" else []).append(reason)
    return _combine(closed, unknown, "pg_hba.conf is hostssl-only and no connection to Postgres is plaintext")


def _telpro_ssl_build(s: FleetSnapshot, ctx: GateContext) -> _Verdict:
    svc = ctx.service or "telpro"
    insts = s.instances_of(svc)
    if not insts:
        return "unknown", f"no {svc} instance is in the snapshot — check the inventory and refresh"
    bad = [i.host for i in insts if i.telpro_ssl is False]
    unseen = [f"{i.host} ({_why(i.telpro_ssl)})" for i in insts if isinstance(i.telpro_ssl, Unknown)]
    closed = (
        [
            f"{join(unique(bad))} {'runs' if len(bad) == 1 else 'run'} a voiceai-telpro image without "
            "hiredis_ssl — ship the SSL build of voiceai-telpro before flipping its Redis to TLS"
        ]
        if bad
        else []
    )
    unknown = [f"could not check the voiceai-telpro build on {join(unique(unseen))}"] if unseen else []
    return _combine(closed, unknown, f"every {svc} instance runs the SSL build of voiceai-telpro (hiredis_ssl)")


def _redis_plaintext_dropped(s: FleetSnapshot, ctx: GateContext) -> _Verdict:
    db = _db(s)
    if not isinstance(db, DatabaseState):
        return db
    if isinstance(db.redis_port, Unknown):
        return "unknown", f"Redis's plaintext port could not be read ({_why(db.redis_port)}) — refresh"
    if db.redis_port != 0:
        return "closed", (
            f"Redis still listens in plaintext on :{db.redis_port} — set REDIS_FORCE_TLS=true and "
            "restart the database host"
        )
    view = _leg(s, "redis", "Redis")
    if isinstance(view, LegView):
        plain = [c for c in view.connections if not c.tls]
        if plain:
            return "closed", f"{_who(plain)} still connect to Redis in plaintext"
    else:
        return "unknown", f"Redis's plaintext port is 0, but {view}"
    return "open", "Redis no longer listens in plaintext (port 0)"


def _spec(name: str, per_service: bool, summary: str, check: _Check) -> tuple[str, GateSpec]:
    return name, GateSpec(name, per_service, summary, check)


GATES: Final[Mapping[str, GateSpec]] = MappingProxyType(
    dict(
        [
            _spec("certs_valid", False, "every cert check under every consuming service is OK or WARN", _certs_valid),
            _spec("postgres_tls_verifies", False, "Postgres's TLS handshake verifies", _postgres_tls_verifies),
            _spec(
                "leg2_tls_and_e2e",
                False,
                "every PgBouncer→Postgres connection of an app is TLS (at least one seen) and a "
                "query through PgBouncer answers",
                _leg2_tls_and_e2e,
            ),
            _spec(
                "pgbouncer_tls_verifies",
                False,
                "PgBouncer offers TLS to clients and its handshake verifies",
                _pgbouncer_tls_verifies,
            ),
            _spec(
                "pgbouncer_offers_tls_and_ca_files",
                True,
                "PgBouncer offers verified TLS to clients and every instance of "
                "the service has the internal CA at the path it will use",
                _pgbouncer_offers_tls_and_ca_files,
            ),
            _spec(
                "ca_files",
                True,
                "every instance of the service has the internal CA at each path the step sets",
                _ca_files,
            ),
            _spec(
                "service_postgres_tls",
                True,
                "every instance of the service connects to PgBouncer over TLS only",
                _service_postgres_tls,
            ),
            _spec(
                "no_plaintext_leg1",
                False,
                "every instance of every service consuming Postgres is configured for TLS and "
                "seen on TLS (or down, configured for TLS); no unidentified plaintext client",
                _no_plaintext_leg1,
            ),
            _spec(
                "no_plaintext_postgres",
                False,
                "no PgBouncer→Postgres or direct connection to Postgres is plaintext",
                _no_plaintext_postgres,
            ),
            _spec(
                "postgres_hostssl_only",
                False,
                "pg_hba.conf is hostssl-only and no connection to Postgres is plaintext",
                _postgres_hostssl_only,
            ),
            _spec("redis_tls_verifies", False, "Redis's TLS listener's handshake verifies", _redis_tls_verifies),
            _spec(
                "telpro_ssl_build",
                True,
                "every instance of the service (default telpro) runs the hiredis_ssl build",
                _telpro_ssl_build,
            ),
            _spec(
                "service_redis_tls",
                True,
                "every instance of the service connects to Redis over TLS only",
                _service_redis_tls,
            ),
            _spec(
                "no_plaintext_redis",
                False,
                "every instance of every service consuming Redis is configured for TLS and "
                "seen on TLS (or down, configured for TLS); the OTel collector uses the TLS port",
                _no_plaintext_redis,
            ),
            _spec(
                "redis_plaintext_dropped",
                False,
                "Redis's plaintext port is 0 and no plaintext Redis client is seen",
                _redis_plaintext_dropped,
            ),
        ]
    )
)


def _default_step(plan: Plan, gate: str) -> Step | None:
    return next(
        (st for st in plan.steps if gate in st.gates or st.verify == gate or any(gate in gs for _, gs in st.gates_for)),
        None,
    )


def evaluate(
    gate_name: str,
    snapshot: FleetSnapshot,
    *,
    service: str | None = None,
    now: float,
    max_age: float | None = DEFAULT_MAX_AGE,
    plan: Plan | None = None,
    step: Step | None = None,
) -> GateResult:
    """Decide `gate_name` on `snapshot` (for `service`, when the gate checks one service), as a gate
    or the verification of `step` in `plan` (default: the shipped runbook, and its first step that
    uses this gate).

    A snapshot older than `max_age` seconds at `now` gives "unknown" (None: no age limit, used to read a
    position as of the snapshot itself). A managed database gives "closed": the runbook does not apply.
    An unknown gate name, or a per-service gate without `service`, is a bug: ValueError.
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
            f"{snapshot.env} uses a managed database (RDS/ElastiCache): there is "
            "no Postgres, PgBouncer or Redis to flip, and the runbook does not apply",
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
    if plan is None:
        from plans.plan import default_plan

        plan = default_plan()
    if step is None:
        step = _default_step(plan, gate_name)
    status, reason = spec.check(snapshot, GateContext(plan, step, svc))
    if status != "open" and snapshot.causes:
        reason += f" [root cause: {snapshot.causes[0].text}]"
    return GateResult(gate_name, status, reason, svc)


def override(result: GateResult, reason: str) -> GateResult:
    """A closed or unknown gate opened on purpose, with the person's reason (journaled by the engine)."""
    if result.open:
        return result
    return GateResult(
        result.gate,
        "open",
        f"overridden: {reason.strip()} (otherwise {result.status}: {result.reason})",
        result.service,
        overridden=reason.strip(),
    )
