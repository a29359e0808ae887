"""Facts the plan reads from one `FleetSnapshot`: is a step's setting in the config store, and is it
running on the hosts. Pure: no I/O, no clock.

A reading is `True`, `False`, or an `Unknown` (could not be measured, with why). A step whose values
are only partly in the store is `partial` — a state nobody chose, never "pending".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from plans.model import Plan, Step
from probes.model import Unknown, Why
from probes.snapshot import (
    ConfigSource,
    Configured,
    ConfiguredValue,
    DatabaseState,
    FleetSnapshot,
    Handshake,
    InstanceState,
    LegUse,
)

__all__ = [
    "LIVE",
    "MODES_REQUIRING_TLS",
    "MODES_WITHOUT_TLS",
    "NO_DATABASE",
    "TRUE",
    "ConfigReading",
    "LiveFact",
    "Reading",
    "config_reading",
    "configured_value",
    "join",
    "read_live",
    "read_live_instance",
]

MODES_REQUIRING_TLS: Final = frozenset({"require", "verify-ca", "verify-full"})  # libpq / PgBouncer sslmodes
SERVER_MODES_VERIFYING: Final = frozenset({"verify-ca", "verify-full"})
MODES_WITHOUT_TLS: Final = frozenset({"", "disable"})
TRUE: Final = frozenset({"true", "on", "yes", "1"})

NO_DATABASE: Final = (
    "the database host could not be observed (unreachable, or its probes failed) — check SSH to it and refresh"
)


def join(items: Iterable[str]) -> str:
    """["a"] -> "a"; ["a", "b"] -> "a and b"; ["a", "b", "c"] -> "a, b and c"."""
    items = list(items)
    if not items:
        return "(none)"
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


@dataclass(frozen=True, slots=True)
class Reading:
    """One fact read from the snapshot: True/False, or Unknown when it could not be measured."""

    value: bool | Unknown
    detail: str

    @property
    def unknown(self) -> bool:
        return isinstance(self.value, Unknown)


@dataclass(frozen=True, slots=True)
class ConfigReading:
    """Does the config store hold a step's values? `value` is True when every value is in place,
    False when none is, Unknown when one could not be read; `partial` lists the values in place
    when only some are (then `value` is False and the state is a danger, not "pending")."""

    value: bool | Unknown
    detail: str
    partial: tuple[str, ...] = ()

    @property
    def reading(self) -> Reading:
        return Reading(self.value, self.detail)


# ----------------------------------------------------------------------------------- configured


def configured_value(
    snapshot: FleetSnapshot, service: str, var: str, instance: InstanceState | None = None
) -> Configured | None:
    """What `service` (or `instance`, with a per-host env-file store) resolves `var` to; None when the
    snapshot holds nothing for it. Per-host values win; without `instance`, the hosts' values count
    when every host of the service holds the same one (else the disagreement is an Unknown)."""
    if instance is not None and var in instance.configured:
        return instance.configured[var]
    per_service = snapshot.configured.get(service)
    if per_service is not None and var in per_service:
        return per_service[var]
    if instance is None:
        insts = snapshot.instances_of(service)
        vals = [i.configured[var] for i in insts if var in i.configured]
        if vals and len(vals) == len(insts):
            unknown = next((v for v in vals if isinstance(v, Unknown)), None)
            if unknown is not None:
                return unknown
            distinct = {v.value for v in vals if isinstance(v, ConfiguredValue)}
            if len(distinct) == 1:
                return vals[0]
            shown = ", ".join(
                f"{i.host}={v.value if isinstance(v, ConfiguredValue) else '?'}"
                for i, v in zip(insts, vals, strict=True)
            )
            return Unknown(Why.NOT_CHECKED, f"the hosts of {service} disagree on {var} ({shown})")
    return None


def config_reading(
    plan: Plan, step: Step, service: str, snapshot: FleetSnapshot, instance: InstanceState | None = None
) -> ConfigReading:
    """Does the config store hold every value `step` sets, for `service` (or one of its hosts)?

    A value a later step of the plan sets for the same variable counts too (after pg-6 sets
    PGBOUNCER_CLIENT_TLS_SSLMODE=require, pg-4's `allow` is superseded, not undone). A value that
    could not be read makes the reading Unknown unless another is known to differ."""
    wrong: list[str] = []
    unread: list[tuple[str, Unknown]] = []
    right: list[str] = []
    written: list[str] = []  # right, and set in the store (not a manifest default that happens to match)
    for ch in step.changes:
        cv = configured_value(snapshot, service, ch.var, instance)
        if cv is None:
            unread.append((ch.var, Unknown(Why.NOT_CHECKED, f"{ch.var} was not read for {service}")))
        elif isinstance(cv, Unknown):
            unread.append((ch.var, cv))
        elif cv.value is not None and cv.value in plan.accepted_values(step, ch.var):
            right.append(f"{ch.var}={cv.value}")
            if cv.source not in (ConfigSource.DEFAULT, ConfigSource.UNSET):
                written.append(f"{ch.var}={cv.value}")
        else:
            shown = "unset" if cv.value is None else repr(cv.value)
            wrong.append(f"{ch.var} is {shown} ({cv.source.value}), not {ch.value!r}")
    if wrong and written:
        return ConfigReading(False, f"partly configured: {', '.join(written)} but {'; '.join(wrong)}", tuple(written))
    if wrong:
        return ConfigReading(False, "; ".join(wrong))
    if unread:
        first = unread[0][1]
        text = f"{join(v for v, _ in unread)} could not be read from the config store ({first.detail})"
        return ConfigReading(Unknown(first.why, text), text)
    return ConfigReading(True, f"{', '.join(right)} in the config store")


# ----------------------------------------------------------------------------------- live


@dataclass(frozen=True, slots=True)
class LiveFact:
    """How a step's "running as configured" is read: from the database host or from each instance."""

    name: str
    per_instance: bool
    summary: str
    read_database: Callable[[DatabaseState], Reading] | None = None
    read_instance: Callable[[InstanceState], Reading] | None = None


def _bool_reading(v: bool | Unknown, yes: str, no: str, what: str) -> Reading:
    if isinstance(v, Unknown):
        return Reading(v, f"{what} could not be read ({v.why.value}: {v.detail})")
    return Reading(v, yes if v else no)


def _mode_reading(v: str | Unknown, what: str, test: Callable[[str], bool]) -> Reading:
    if isinstance(v, Unknown):
        return Reading(v, f"{what} could not be read ({v.why.value}: {v.detail})")
    return Reading(test(v), f"{what} = {v or 'disable'}")


def _port_reading(v: int | Unknown, what: str, test: Callable[[int], bool]) -> Reading:
    if isinstance(v, Unknown):
        return Reading(v, f"{what} could not be read ({v.why.value}: {v.detail})")
    return Reading(test(v), f"{what} = {v}")


def _instance_reading(i: InstanceState, use: LegUse | Unknown, what: str) -> Reading:
    if isinstance(use, Unknown):
        return Reading(use, f"{i.host}'s connections to {what} could not be read ({use.detail})")
    if use.plain:
        return Reading(False, f"connects to {what} in plaintext")
    if use.tls:
        return Reading(True, f"connects to {what} over TLS")
    if i.running is False:
        return Reading(Unknown(Why.NOT_CHECKED, f"{i.host} is not running"), f"{i.host} is not running")
    if isinstance(i.reachable, Unknown) or i.reachable is False:
        return Reading(
            Unknown(Why.UNREACHABLE, f"{i.host} is unreachable"),
            f"{i.host} is unreachable, and no connection to {what} is seen",
        )
    return Reading(
        Unknown(Why.NOT_CHECKED, f"no connection to {what} seen from {i.host}"), f"no connection to {what} seen"
    )


def _db_fact(name: str, summary: str, read: Callable[[DatabaseState], Reading]) -> tuple[str, LiveFact]:
    return name, LiveFact(name, False, summary, read_database=read)


def _inst_fact(name: str, summary: str, read: Callable[[InstanceState], Reading]) -> tuple[str, LiveFact]:
    return name, LiveFact(name, True, summary, read_instance=read)


LIVE: Final[Mapping[str, LiveFact]] = MappingProxyType(
    dict(
        [
            _db_fact(
                "postgres_ssl",
                "database.postgres_ssl is true",
                lambda db: _bool_reading(db.postgres_ssl, "ssl = on", "ssl = off", "Postgres's ssl"),
            ),
            _db_fact(
                "pgbouncer_server_tls",
                "pgbouncer_server_tls_sslmode is verify-ca or verify-full",
                lambda db: _mode_reading(
                    db.pgbouncer_server_tls_sslmode, "server_tls_sslmode", lambda v: v in SERVER_MODES_VERIFYING
                ),
            ),
            _db_fact(
                "pgbouncer_client_tls_offered",
                "pgbouncer_client_tls_sslmode is not disable",
                lambda db: _mode_reading(
                    db.pgbouncer_client_tls_sslmode, "client_tls_sslmode", lambda v: v not in MODES_WITHOUT_TLS
                ),
            ),
            _db_fact(
                "pgbouncer_client_tls_required",
                "pgbouncer_client_tls_sslmode is require, verify-ca or verify-full",
                lambda db: _mode_reading(
                    db.pgbouncer_client_tls_sslmode, "client_tls_sslmode", lambda v: v in MODES_REQUIRING_TLS
                ),
            ),
            _db_fact(
                "pg_hba_hostssl_only",
                "database.pg_hba_hostssl_only is true",
                lambda db: _bool_reading(
                    db.pg_hba_hostssl_only,
                    "pg_hba.conf is hostssl-only",
                    "pg_hba.conf accepts plaintext",
                    "pg_hba.conf",
                ),
            ),
            _db_fact(
                "redis_tls_listener",
                "database.redis_tls_port > 0",
                lambda db: _port_reading(db.redis_tls_port, "tls-port", lambda p: p > 0),
            ),
            _db_fact(
                "redis_plaintext_dropped",
                "database.redis_port == 0",
                lambda db: _port_reading(db.redis_port, "port", lambda p: p == 0),
            ),
            _inst_fact(
                "instance_db_tls",
                "the instance connects to PgBouncer over TLS only",
                lambda i: _instance_reading(i, i.db, "PgBouncer"),
            ),
            _inst_fact(
                "instance_redis_tls",
                "the instance connects to Redis over TLS only",
                lambda i: _instance_reading(i, i.redis, "Redis"),
            ),
        ]
    )
)


def read_live(name: str, snapshot: FleetSnapshot) -> Reading:
    """A database-level live fact (ValueError for an unknown or per-instance name)."""
    fact = LIVE.get(name)
    if fact is None or fact.read_database is None:
        raise ValueError(f"{name!r} is not a database-level live fact; known: {', '.join(LIVE)}")
    if isinstance(snapshot.database, Unknown):
        return Reading(snapshot.database, NO_DATABASE)
    return fact.read_database(snapshot.database)


def read_live_instance(name: str, instance: InstanceState) -> Reading:
    """A per-instance live fact (ValueError for an unknown or database-level name)."""
    fact = LIVE.get(name)
    if fact is None or fact.read_instance is None:
        raise ValueError(f"{name!r} is not a per-instance live fact; known: {', '.join(LIVE)}")
    return fact.read_instance(instance)


def handshake_text(h: Handshake | Unknown) -> str:
    if isinstance(h, Unknown):
        return f"could not be measured ({h.why.value}: {h.detail})"
    return {
        Handshake.VERIFIED: "verified",
        Handshake.NOT_VERIFIED: "offered, but does not verify",
        Handshake.NOT_OFFERED: "not offered",
    }[h]


def unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def sorted_hosts(hosts: Sequence[str]) -> list[str]:
    """A stable order for every list a gate names (no reordering between polls)."""
    return sorted(dict.fromkeys(hosts))
