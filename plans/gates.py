"""Gates: pure decisions read from one `FleetSnapshot` — may a step run now, and did it work.

`evaluate(gate, snapshot, service=..., now=..., plan=..., step=...)` returns a `GateResult` whose status
is "open", "closed" or "unknown", with a reason a person can act on (the UI and the CLI show the same
one). A gate opens only on positive evidence about every instance the inventory names: "no connection
seen" proves nothing, the cockpit's own connections are never evidence (the collector leaves them out),
and a fact that could not be measured gives "unknown", which blocks like "closed". The same registry,
`GATES`, holds the checks that run before a step (its gates) and after it (its verification); the checks
themselves are `plans.servergates`' and `plans.clientgates`'.

Pure: no I/O, no clock (the caller passes `now`), no textual.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from plans.clientgates import (
    ca_files,
    no_plaintext_leg1,
    no_plaintext_redis,
    pgbouncer_offers_tls_and_ca_files,
    service_postgres_tls,
    service_redis_tls,
    telpro_ssl_build,
)
from plans.gatecheck import GateCheck, GateContext, GateStatus
from plans.model import Plan, Step
from plans.servergates import (
    certs_valid,
    leg2_tls_and_e2e,
    no_plaintext_postgres,
    pgbouncer_tls_verifies,
    postgres_hostssl_only,
    postgres_tls_verifies,
    redis_plaintext_dropped,
    redis_tls_verifies,
)
from probes.snapshot import FleetSnapshot

__all__ = [
    "DEFAULT_MAX_AGE",
    "GATES",
    "GateResult",
    "GateSpec",
    "GateStatus",
    "evaluate",
    "override",
]

DEFAULT_MAX_AGE: Final = 60.0  # seconds: a gate never opens on a snapshot older than this


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
class GateSpec:
    name: str
    per_service: bool  # True: needs `service` (checks one app service's instances)
    summary: str  # what must hold for it to open, in one line (docs, UI)
    check: GateCheck


def _spec(name: str, per_service: bool, summary: str, check: GateCheck) -> tuple[str, GateSpec]:
    return name, GateSpec(name, per_service, summary, check)


GATES: Final[Mapping[str, GateSpec]] = MappingProxyType(
    dict(
        [
            _spec("certs_valid", False, "every cert check under every consuming service is OK or WARN", certs_valid),
            _spec("postgres_tls_verifies", False, "Postgres's TLS handshake verifies", postgres_tls_verifies),
            _spec(
                "leg2_tls_and_e2e",
                False,
                "every PgBouncer→Postgres connection of an app is TLS (at least one seen) and a "
                "query through PgBouncer answers",
                leg2_tls_and_e2e,
            ),
            _spec(
                "pgbouncer_tls_verifies",
                False,
                "PgBouncer offers TLS to clients and its handshake verifies",
                pgbouncer_tls_verifies,
            ),
            _spec(
                "pgbouncer_offers_tls_and_ca_files",
                True,
                "PgBouncer offers verified TLS to clients and every instance of "
                "the service has the internal CA at the path it will use",
                pgbouncer_offers_tls_and_ca_files,
            ),
            _spec(
                "ca_files",
                True,
                "every instance of the service has the internal CA at each path the step sets",
                ca_files,
            ),
            _spec(
                "service_postgres_tls",
                True,
                "every instance of the service connects to PgBouncer over TLS only",
                service_postgres_tls,
            ),
            _spec(
                "no_plaintext_leg1",
                False,
                "every instance of every service consuming Postgres is configured for TLS and "
                "seen on TLS (or down, configured for TLS); no unidentified plaintext client",
                no_plaintext_leg1,
            ),
            _spec(
                "no_plaintext_postgres",
                False,
                "no PgBouncer→Postgres or direct connection to Postgres is plaintext",
                no_plaintext_postgres,
            ),
            _spec(
                "postgres_hostssl_only",
                False,
                "pg_hba.conf is hostssl-only and no connection to Postgres is plaintext",
                postgres_hostssl_only,
            ),
            _spec("redis_tls_verifies", False, "Redis's TLS listener's handshake verifies", redis_tls_verifies),
            _spec(
                "telpro_ssl_build",
                True,
                "every instance of the service (default telpro) runs the hiredis_ssl build",
                telpro_ssl_build,
            ),
            _spec(
                "service_redis_tls",
                True,
                "every instance of the service connects to Redis over TLS only",
                service_redis_tls,
            ),
            _spec(
                "no_plaintext_redis",
                False,
                "every instance of every service consuming Redis is configured for TLS and "
                "seen on TLS (or down, configured for TLS); the OTel collector uses the TLS port",
                no_plaintext_redis,
            ),
            _spec(
                "redis_plaintext_dropped",
                False,
                "Redis's plaintext port is 0 and no plaintext Redis client is seen",
                redis_plaintext_dropped,
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
    plan: Plan,
    step: Step | None = None,
) -> GateResult:
    """Decide `gate_name` on `snapshot` (for `service`, when the gate checks one service), as a gate
    or the verification of `step` in `plan` (default: the plan's first step that uses this gate).

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
