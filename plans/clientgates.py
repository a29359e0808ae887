"""Gate checks about the clients: each app instance's connections, its configuration and the CA file it
will use — so a step that moves or requires clients opens only on positive evidence about every instance
(named when it is missing), never on "no connection seen". Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Literal

from plans.facts import config_reading, configured_value, join, unique
from plans.gatecheck import (
    GateContext,
    GateVerdict,
    clients_text,
    combine,
    database_of,
    instances_text,
    leg_view,
    plural,
    unknown_text,
)
from plans.model import Step
from plans.servergates import client_mode_problems
from probes.model import Unknown
from probes.snapshot import CaFile, ConfiguredValue, DatabaseState, FleetSnapshot, InstanceState, LegUse

__all__ = [
    "ca_files",
    "no_plaintext_leg1",
    "no_plaintext_redis",
    "pgbouncer_offers_tls_and_ca_files",
    "service_postgres_tls",
    "service_redis_tls",
    "telpro_ssl_build",
]

DEFAULT_CA: Final = "/etc/ssl/internal/ca.crt"


def _ca_paths(s: FleetSnapshot, ctx: GateContext, inst: InstanceState) -> list[tuple[str, str | Unknown | None]]:
    """(variable, path) the service will use once the step is applied: the step's own value for each
    CA-file variable it sets, else the value configured now (its vars.yaml default included). None when
    that is empty: the driver would look in its own default place (asyncpg: ~/.postgresql/root.crt), which
    is no evidence the internal CA is there. Unknown when the configuration could not be read."""
    out: list[tuple[str, str | Unknown | None]] = []
    step_values = {c.var: c.value for c in ctx.step.changes} if ctx.step is not None else {}
    ca_vars = ctx.plan.ca_file_variables
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
                unseen.setdefault(f"{var}'s path", []).append(f"{inst.host} ({unknown_text(path)})")
                continue
            paths.add(path)
            state = inst.ca_file(path)
            if isinstance(state, Unknown):
                unseen.setdefault(path, []).append(f"{inst.host} ({unknown_text(state)})")
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


def pgbouncer_offers_tls_and_ca_files(s: FleetSnapshot, ctx: GateContext) -> GateVerdict:
    assert ctx.service is not None
    db = database_of(s)
    if not isinstance(db, DatabaseState):
        return db
    closed, unknown = client_mode_problems(db)
    c2, u2, paths = _ca_file_problems(s, ctx, ctx.service)
    hosts = ", ".join(unique([i.host for i in s.instances_of(ctx.service)]))
    return combine(
        closed + c2,
        unknown + u2,
        f"PgBouncer offers verified TLS to clients and every {ctx.service} "
        f"instance ({hosts}) has the internal CA at {paths}",
    )


def ca_files(s: FleetSnapshot, ctx: GateContext) -> GateVerdict:
    assert ctx.service is not None
    closed, unknown, paths = _ca_file_problems(s, ctx, ctx.service)
    hosts = ", ".join(unique([i.host for i in s.instances_of(ctx.service)]))
    return combine(closed, unknown, f"every {ctx.service} instance ({hosts}) has the internal CA at {paths}")


def _service_tls(
    s: FleetSnapshot, service: str, use: Callable[[InstanceState], LegUse | Unknown], what: str
) -> GateVerdict:
    insts = s.instances_of(service)
    if not insts:
        return "unknown", f"no instance of {service} is in the snapshot — check the inventory and refresh"
    plain, down, unseen, unread = [], [], [], []
    for i in insts:
        u = use(i)
        if isinstance(u, Unknown):
            unread.append(f"{i.host} ({unknown_text(u)})")
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
    return combine(closed, unknown, f"every {service} instance ({hosts}) connects to {what} over TLS")


def service_postgres_tls(s: FleetSnapshot, ctx: GateContext) -> GateVerdict:
    assert ctx.service is not None
    return _service_tls(s, ctx.service, lambda i: i.db, "PgBouncer")


def service_redis_tls(s: FleetSnapshot, ctx: GateContext) -> GateVerdict:
    assert ctx.service is not None
    return _service_tls(s, ctx.service, lambda i: i.redis, "Redis")


def _client_step(ctx: GateContext, live: str) -> Step | None:
    """The per-service step that moves clients of one leg (its live fact is `live`): among the
    step's own dependencies when there is a step, else anywhere in the plan."""
    plan = ctx.plan
    pool = plan.ancestors(ctx.step) if ctx.step is not None else plan.steps
    return next((st for st in reversed(pool) if st.per_service and st.live == live), None)


_Evidence = Literal["plain", "unconfigured", "unsure", "tls"]


def _evidence(
    s: FleetSnapshot, ctx: GateContext, step: Step | None, i: InstanceState, u: LegUse | Unknown
) -> tuple[_Evidence, str]:
    """What one client instance shows: plaintext seen, still configured for plaintext, no evidence either
    way (and why), or TLS (seen on TLS; or down, configured for TLS: it will come back on TLS)."""
    if isinstance(u, LegUse) and u.plain:
        return "plain", ""
    cfg = config_reading(ctx.plan, step, i.service, s, i) if step is not None else None
    if cfg is not None and cfg.value is False:
        return "unconfigured", ""
    if cfg is not None and isinstance(cfg.value, Unknown):
        return "unsure", f"{i.host} (its configuration could not be read: {unknown_text(cfg.value)})"
    if isinstance(u, Unknown):
        return "unsure", f"{i.host} ({unknown_text(u)})"
    if u.tls or i.running is False:
        return "tls", ""
    if i.reachable is not True:
        return "unsure", f"{i.host} (no connection seen; unreachable)"
    if isinstance(i.running, Unknown):
        return "unsure", f"{i.host} (no connection seen; not known to be running or stopped)"
    return "unsure", f"{i.host} (no connection seen; running but not connected)"


def _instance_problems(
    plain: list[InstanceState], unconfigured: list[InstanceState], step: Step | None, what: str
) -> list[str]:
    closed: list[str] = []
    if plain:
        who, svcs = instances_text(plain)
        one = len({i.service for i in plain}) == 1
        closed.append(f"{who} still {'connects' if one else 'connect'} to {what} in plaintext — flip {svcs} first")
    if unconfigured:
        who, svcs = instances_text(unconfigured, lambda i: ", stopped" if i.running is False else "")
        one = len({i.service for i in unconfigured}) == 1
        closed.append(
            f"{who} {'is' if one else 'are'} still configured for plaintext to {what} "
            f"({step.id if step else 'its per-service step'} not in place: stopped or not, "
            f"{'it' if len(unconfigured) == 1 else 'they'} would come back on plaintext) — flip {svcs} first"
        )
    return closed


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
    view = leg_view(s, leg, what)
    if isinstance(view, str):
        return [], [view], 0
    strays = [c for c in view.connections if not c.tls and c.instance is None]
    if strays:
        closed.append(
            f"{clients_text(strays)} {'connects' if len(strays) == 1 else 'connect'} to {what} in plaintext from an "
            "address that is no host of the inventory — identify it and move it to TLS first"
        )
    step = _client_step(ctx, live)
    found: dict[_Evidence, list[InstanceState]] = {"plain": [], "unconfigured": [], "unsure": [], "tls": []}
    unsure: list[str] = []
    for i in (i for i in s.instances if consumes in i.consumes):
        kind, text = _evidence(s, ctx, step, i, use(i))
        found[kind].append(i)
        if text:
            unsure.append(text)
    closed += _instance_problems(found["plain"], found["unconfigured"], step, what)
    if unsure:
        unknown.append(
            f"no evidence that {join(unsure)} would use TLS to {what} — start it, or override this gate "
            "with a reason if you know better"
        )
    tls = sum(1 for c in view.connections if c.tls)
    return closed, unknown, tls


def no_plaintext_leg1(s: FleetSnapshot, ctx: GateContext) -> GateVerdict:
    db = database_of(s)
    if not isinstance(db, DatabaseState):
        return db
    closed, unknown, tls = _no_plaintext_clients(
        s, ctx, "leg1", "postgres", lambda i: i.db, "instance_db_tls", "PgBouncer"
    )
    return combine(
        closed,
        unknown,
        f"every client of PgBouncer is configured for TLS and connects over TLS ({plural(tls, 'TLS connection')} seen)",
    )


def no_plaintext_redis(s: FleetSnapshot, ctx: GateContext) -> GateVerdict:
    db = database_of(s)
    if not isinstance(db, DatabaseState):
        return db
    closed, unknown, tls = _no_plaintext_clients(
        s, ctx, "redis", "redis", lambda i: i.redis, "instance_redis_tls", "Redis"
    )
    ep, port = db.otel_redis_endpoint, db.redis_port
    if isinstance(ep, Unknown):
        unknown.append(f"the OTel collector's Redis connection could not be read ({unknown_text(ep)})")
    elif not ep:
        unknown.append(
            "the OTel collector's Redis connection is not seen — make sure it runs (it may still use the "
            "plaintext port)"
        )
    elif isinstance(port, Unknown):
        unknown.append(
            f"cannot tell whether the OTel collector ({ep}) uses the plaintext port: Redis's port could "
            f"not be read ({unknown_text(port)})"
        )
    elif port and ep.rpartition(":")[2] == str(port):
        closed.append(
            f"the OTel collector's REDIS_ENDPOINT is still the plaintext port ({ep}) — restart the database "
            "host so init.sh switches it to the TLS port"
        )
    return combine(
        closed,
        unknown,
        f"every client of Redis is configured for TLS and connects over TLS ({plural(tls, 'TLS connection')} seen)",
    )


def telpro_ssl_build(s: FleetSnapshot, ctx: GateContext) -> GateVerdict:
    svc = ctx.service or "telpro"
    insts = s.instances_of(svc)
    if not insts:
        return "unknown", f"no {svc} instance is in the snapshot — check the inventory and refresh"
    bad = [i.host for i in insts if i.telpro_ssl is False]
    unseen = [f"{i.host} ({unknown_text(i.telpro_ssl)})" for i in insts if isinstance(i.telpro_ssl, Unknown)]
    closed = (
        [
            f"{join(unique(bad))} {'runs' if len(bad) == 1 else 'run'} a voiceai-telpro image without "
            "hiredis_ssl — ship the SSL build of voiceai-telpro before flipping its Redis to TLS"
        ]
        if bad
        else []
    )
    unknown = [f"could not check the voiceai-telpro build on {join(unique(unseen))}"] if unseen else []
    return combine(closed, unknown, f"every {svc} instance runs the SSL build of voiceai-telpro (hiredis_ssl)")
