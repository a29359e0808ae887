"""Rollback safety: may a step's values go back now? Pure, from one `FleetSnapshot`.

Two kinds of reason. A later step (one that runs after this one) still in place — configured, or
still running — since rollback goes newest first. And a hazard: what the runbook's variables say
breaks if this value goes back (Postgres TLS off while PgBouncer verifies it, client TLS off while an
app requires it, …). Hazards are a registry keyed by (scope, variable): a plan that sets a variable
with no rule loads with a warning (`has_rule`, `Plan.warnings`), and its rollback is said to be unchecked.

Every reason is a `Blocker` with an id, so a person can override exactly one (`--override ID`).
What could not be measured blocks — except a later step that the config store says is not configured
while its live fact cannot be read: that is a warning (the store is the cockpit's own write; the
live fact is only a confirmation), and rollback stays possible when a fact is unmeasurable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

from plans.facts import (
    LIVE,
    MODES_REQUIRING_TLS,
    MODES_WITHOUT_TLS,
    NO_DATABASE,
    TRUE,
    ConfigReading,
    Reading,
    config_reading,
    configured_value,
    join,
    read_live,
    read_live_instance,
    sorted_hosts,
)
from plans.model import Change as PlanChange
from plans.model import Plan, Step
from probes.model import Unknown
from probes.snapshot import DatabaseState, FleetSnapshot, LegUse

__all__ = ["HAZARDS", "Blocker", "has_rule", "rollback_blockers"]

BlockerKind = Literal["block", "warn"]


@dataclass(frozen=True, slots=True)
class Blocker:
    """One reason a rollback is unsafe now (`kind` "block"), or worth knowing ("warn")."""

    id: str  # what `--override` names, e.g. "later:pg-7", "hazard:PGBOUNCER_CLIENT_TLS_SSLMODE"
    text: str
    kind: BlockerKind = "block"

    @property
    def blocks(self) -> bool:
        return self.kind == "block"

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "text": self.text, "kind": self.kind}

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class HazardContext:
    plan: Plan
    step: Step
    change: PlanChange
    service: str | None  # the app service, for a per-service step
    snapshot: FleetSnapshot

    @property
    def back(self) -> str | None:
        return self.change.rollback

    @property
    def db(self) -> DatabaseState | Unknown:
        return self.snapshot.database

    def hazard(self, text: str) -> Blocker:
        return Blocker(f"hazard:{self.change.var}", text)


HazardRule = Callable[[HazardContext], list[Blocker]]


def _value(ctx: HazardContext, service: str, var: str) -> str | Unknown | None:
    cv = configured_value(ctx.snapshot, service, var)
    if cv is None:
        return None
    if isinstance(cv, Unknown):
        return cv
    return cv.value


def _app_services(ctx: HazardContext) -> list[str]:
    names = dict.fromkeys([*(i.service for i in ctx.snapshot.instances), *ctx.snapshot.configured])
    return [n for n in names if n != ctx.plan.database_service]


def _no_db(ctx: HazardContext) -> list[Blocker]:
    return [ctx.hazard(f"cannot tell whether rolling back {ctx.change.var} is safe: {NO_DATABASE}")]


def _postgres_tls(ctx: HazardContext) -> list[Blocker]:
    db = ctx.db
    if isinstance(db, Unknown):
        return _no_db(ctx)
    out: list[Blocker] = []
    mode = db.pgbouncer_server_tls_sslmode
    if isinstance(mode, Unknown):
        out.append(ctx.hazard("cannot tell how PgBouncer connects to Postgres (server_tls_sslmode unread) — refresh"))
    elif mode in MODES_REQUIRING_TLS:
        out.append(
            ctx.hazard(
                f"PgBouncer connects to Postgres with server_tls_sslmode = {mode}: turning Postgres TLS "
                "off would cut Leg 2 — roll back PGBOUNCER_SERVER_TLS_SSLMODE first"
            )
        )
    cv = _value(ctx, ctx.plan.database_service, "PGBOUNCER_SERVER_TLS_SSLMODE")
    if isinstance(cv, str) and cv in MODES_REQUIRING_TLS and mode != cv:
        out.append(
            ctx.hazard(
                f"PGBOUNCER_SERVER_TLS_SSLMODE={cv} is configured: after the next restart PgBouncer "
                "would need Postgres TLS — roll it back first"
            )
        )
    if db.pg_hba_hostssl_only is True:
        out.append(
            ctx.hazard(
                "pg_hba.conf is hostssl-only: with TLS off nobody could connect to Postgres — roll back "
                "POSTGRES_FORCE_SSL first"
            )
        )
    return out


def _server_tls(ctx: HazardContext) -> list[Blocker]:
    if ctx.back is not None and ctx.back in MODES_REQUIRING_TLS:
        return []
    db = ctx.db
    if isinstance(db, Unknown):
        return _no_db(ctx)
    if db.pg_hba_hostssl_only is True:
        return [
            ctx.hazard(
                "pg_hba.conf is hostssl-only: PgBouncer would be refused in plaintext — roll back "
                "POSTGRES_FORCE_SSL first"
            )
        ]
    return []


def _client_tls(ctx: HazardContext) -> list[Blocker]:
    if ctx.back is not None and ctx.back not in MODES_WITHOUT_TLS:
        return []  # e.g. require -> allow: TLS is still offered
    needing: list[str] = []
    unread: list[str] = []
    for svc in _app_services(ctx):
        cv = _value(ctx, svc, "DATABASE_SSL_MODE")
        tls_live = [i.host for i in ctx.snapshot.instances_of(svc) if isinstance(i.db, LegUse) and i.db.tls]
        if isinstance(cv, str) and cv in MODES_REQUIRING_TLS:
            needing.append(f"{svc} (DATABASE_SSL_MODE={cv})")
        elif tls_live:
            needing.append(f"{svc} ({', '.join(sorted_hosts(tls_live))} connect over TLS)")
        elif isinstance(cv, Unknown):
            unread.append(svc)
    out: list[Blocker] = []
    if needing:
        out.append(
            ctx.hazard(
                f"{join(needing)} {'requires' if len(needing) == 1 else 'require'} TLS to PgBouncer: "
                "with client TLS off they would be locked out — roll back their DATABASE_SSL_MODE first"
            )
        )
    if unread:
        out.append(
            ctx.hazard(f"cannot tell whether {join(unread)} require TLS to PgBouncer (DATABASE_SSL_MODE unread)")
        )
    return out


def _redis_listener(ctx: HazardContext) -> list[Blocker]:
    needing: list[str] = []
    for svc in _app_services(ctx):
        cv = _value(ctx, svc, "REDIS_TLS_ENABLED")
        tls_live = [i.host for i in ctx.snapshot.instances_of(svc) if isinstance(i.redis, LegUse) and i.redis.tls]
        if isinstance(cv, str) and cv.lower() in TRUE:
            needing.append(f"{svc} (REDIS_TLS_ENABLED=true)")
        elif tls_live:
            needing.append(f"{svc} ({', '.join(sorted_hosts(tls_live))} connect over TLS)")
    if needing:
        return [
            ctx.hazard(
                f"{join(needing)} {'uses' if len(needing) == 1 else 'use'} Redis over TLS: dropping the TLS "
                "listener would cut them off — roll back their REDIS_TLS_ENABLED first"
            )
        ]
    return []


def _app_sslmode(ctx: HazardContext) -> list[Blocker]:
    if ctx.back is not None and ctx.back in MODES_REQUIRING_TLS:
        return []
    db = ctx.db
    if isinstance(db, Unknown):
        return _no_db(ctx)
    mode = db.pgbouncer_client_tls_sslmode
    cv = _value(ctx, ctx.plan.database_service, "PGBOUNCER_CLIENT_TLS_SSLMODE")
    if isinstance(mode, Unknown):
        if isinstance(cv, str) and cv in MODES_REQUIRING_TLS:
            mode = cv
        else:
            return [ctx.hazard("cannot tell whether PgBouncer requires TLS (client_tls_sslmode unread) — refresh")]
    if mode in MODES_REQUIRING_TLS or (isinstance(cv, str) and cv in MODES_REQUIRING_TLS):
        shown = mode if mode in MODES_REQUIRING_TLS else cv
        return [
            ctx.hazard(
                f"PgBouncer requires TLS from clients (client_tls_sslmode = {shown}): {ctx.service} would "
                "be refused in plaintext — roll back PGBOUNCER_CLIENT_TLS_SSLMODE=require first"
            )
        ]
    return []


def _app_redis(ctx: HazardContext) -> list[Blocker]:
    db = ctx.db
    if isinstance(db, Unknown):
        return _no_db(ctx)
    cv = _value(ctx, ctx.plan.database_service, "REDIS_FORCE_TLS")
    forced = isinstance(cv, str) and cv.lower() in TRUE
    if isinstance(db.redis_port, Unknown) and not forced:
        return [ctx.hazard("cannot tell whether Redis still listens in plaintext (port unread) — refresh")]
    if db.redis_port == 0 or forced:
        return [
            ctx.hazard(
                f"Redis's plaintext listener is dropped (or REDIS_FORCE_TLS=true is configured): "
                f"{ctx.service} would be cut off in plaintext — roll back REDIS_FORCE_TLS first"
            )
        ]
    return []


def _ca_file(mode_var: str, wants: Callable[[str], bool]) -> HazardRule:
    """A CA-file variable going back while its TLS setting stays: the app would look for the CA in the
    driver's default place (no default on a real service) — only safe when the step rolls both back."""

    def rule(ctx: HazardContext) -> list[Blocker]:
        if any(c.var == mode_var for c in ctx.step.changes) or ctx.service is None:
            return []
        v = _value(ctx, ctx.service, mode_var)
        if isinstance(v, Unknown):
            return [ctx.hazard(f"cannot tell whether {ctx.service} still verifies with the CA ({mode_var} unread)")]
        if isinstance(v, str) and wants(v):
            return [
                ctx.hazard(
                    f"{ctx.service} still has {mode_var}={v}: without {ctx.change.var} it would look for "
                    f"the CA elsewhere — roll back {mode_var} first"
                )
            ]
        return []

    return rule


def _none(ctx: HazardContext) -> list[Blocker]:
    return []


HAZARDS: Final[Mapping[tuple[str, str], HazardRule]] = MappingProxyType(
    {
        ("database", "POSTGRES_TLS_ENABLED"): _postgres_tls,
        ("database", "PGBOUNCER_SERVER_TLS_SSLMODE"): _server_tls,
        ("database", "PGBOUNCER_CLIENT_TLS_SSLMODE"): _client_tls,
        ("database", "POSTGRES_FORCE_SSL"): _none,  # going back to host rules refuses nobody
        ("database", "REDIS_TLS_ENABLED"): _redis_listener,
        ("database", "REDIS_FORCE_TLS"): _none,  # the plaintext listener comes back: refuses nobody
        ("service", "DATABASE_SSL_MODE"): _app_sslmode,
        ("service", "DATABASE_SSL_CA_FILE"): _ca_file("DATABASE_SSL_MODE", lambda v: v in ("verify-ca", "verify-full")),
        ("service", "REDIS_TLS_ENABLED"): _app_redis,
        ("service", "REDIS_TLS_CA_FILE"): _ca_file("REDIS_TLS_ENABLED", lambda v: v.lower() in TRUE),
    }
)


def has_rule(scope: str, var: str) -> bool:
    """Whether rolling back `var` in `scope` has a safety rule (possibly "always safe")."""
    return (scope, var) in HAZARDS


# ------------------------------------------------------------------------------------ later steps


def _later_in_place(plan: Plan, later: Step, service: str, snapshot: FleetSnapshot) -> Blocker | None:
    """Is `later` still in place for `service` — configured, or still running?"""
    cfg: ConfigReading = config_reading(plan, later, service, snapshot)
    what = f"{later.id} ({later.summary})"
    where = f" on {service}" if later.per_service else ""
    if cfg.value is True:
        return Blocker(
            f"later:{later.id}",
            f"{what} is still configured{where}: {cfg.detail} — roll it back "
            f"{'there ' if later.per_service else ''}first (newest first)",
        )
    if cfg.partial:
        return Blocker(
            f"later:{later.id}", f"{what} is partly configured{where} ({cfg.detail}) — complete or roll it back first"
        )
    live = _live(later, service, snapshot)
    if live.value is True:
        return Blocker(
            f"later:{later.id}",
            f"{what} is still live{where} ({live.detail}) until a restart — roll it back (or restart) first",
        )
    if cfg.value is False and isinstance(live.value, Unknown):
        return Blocker(
            f"unmeasured:{later.id}",
            f"{what} is not configured{where}, but whether it still runs could not be measured ({live.detail})",
            "warn",
        )
    if isinstance(cfg.value, Unknown) and live.value is False:
        return Blocker(
            f"unmeasured:{later.id}",
            f"{what}: the config store could not be read{where} ({cfg.value.detail}); it is not running",
            "warn",
        )
    if isinstance(cfg.value, Unknown):
        return Blocker(
            f"unsure:{later.id}",
            f"cannot tell whether {what} is still in place{where}: the config store "
            f"could not be read ({cfg.value.detail}) and {live.detail} — refresh",
        )
    return None


def _live(step: Step, service: str, snapshot: FleetSnapshot) -> Reading:
    fact = LIVE.get(step.live)
    if fact is None:
        return Reading(False, "no live fact")
    if not fact.per_instance:
        return read_live(step.live, snapshot)
    readings = [(i.host, read_live_instance(step.live, i)) for i in snapshot.instances_of(service)]
    live = [h for h, r in readings if r.value is True]
    if live:
        return Reading(True, f"still live on {join(sorted_hosts(live))}")
    unread = [h for h, r in readings if isinstance(r.value, Unknown)]
    if unread:
        first = next(r.value for _, r in readings if isinstance(r.value, Unknown))
        assert isinstance(first, Unknown)
        return Reading(first, f"could not tell on {join(sorted_hosts(unread))}")
    return Reading(False, "not live on any instance")


def rollback_blockers(plan: Plan, step: Step, service: str | None, snapshot: FleetSnapshot) -> list[Blocker]:
    """Why rolling back `step` (for `service`, on a per-service step) now is unsafe (`kind` "block"),
    and what is worth knowing ("warn"); no blocker = safe."""
    if step.kind == "certs":
        return [
            Blocker(
                "no-rollback",
                f"{step.id} ({step.title}) has no rollback: the cockpit does not remove cert "
                "material, since every TLS listener and client depends on it",
            )
        ]
    if step.scope == "service" and not service:
        raise ValueError(f"step {step.id} is per service; pass the service to roll back")
    out: list[Blocker] = []
    for later in reversed(plan.descendants(step)):
        if later.kind == "certs":
            continue
        if later.scope == "service":
            svcs = (
                [service]
                if (step.scope == "service" and service)
                else [s for s in plan.targets(later, _app_order(plan, snapshot))]
            )
        else:
            svcs = [plan.database_service]
        for svc in svcs:
            if svc is None:
                continue
            b = _later_in_place(plan, later, svc, snapshot)
            if b is not None:
                out.append(b)
    for ch in step.changes:
        rule = HAZARDS.get((step.scope, ch.var))
        if rule is None:  # a plan may add variables: said, not refused (Plan.warnings says it at load time)
            out.append(
                Blocker(
                    f"hazard:{ch.var}",
                    f"no rollback-safety rule for {ch.var} ({step.scope}): the cockpit "
                    "cannot tell whether rolling it back is safe — check by hand",
                    "warn",
                )
            )
            continue
        out += rule(HazardContext(plan, step, ch, service, snapshot))
    seen: set[tuple[str, str]] = set()
    unique = []
    for b in out:
        if (b.id, b.text) not in seen:
            seen.add((b.id, b.text))
            unique.append(b)
    return unique


def _app_order(plan: Plan, snapshot: FleetSnapshot) -> list[str]:
    names = dict.fromkeys([*(i.service for i in snapshot.instances), *snapshot.configured])
    return [n for n in names if n != plan.database_service]
