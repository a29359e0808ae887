"""The collector a plan needs: it resolves exactly the variables the plan declares and checks the CA at
every path a step will set — so a plan that adds a variable is read from the fleet with no code change —
and judges each snapshot against the configuration (`plans.judge`) before anyone reads it.

It holds the SSH pool (`pool`, which can write: the engine's store, journal and restarts use it) and gives
the probes only its read-only view: the collection itself cannot write to a host."""

from __future__ import annotations

from inventory.model import Environment
from plans.judge import judge_snapshot
from plans.plan import Plan
from probes.collect import Collector
from probes.snapshot import FleetSnapshot
from probes.ssh.pool import SshPool
from probes.ssh.readonly import ReadOnlyPool


def plan_variables(plan: Plan) -> dict[str, tuple[str, ...]]:
    """role ("database" / "app") -> the variables the plan declares (and its steps set) for it."""
    out: dict[str, dict[str, None]] = {"database": {}, "app": {}}
    for scope, names in plan.variables.items():
        role = "database" if scope == "database" else "app"
        out[role].update(dict.fromkeys(sorted(names)))
    for step in plan.steps:
        role = "database" if step.scope == "database" else "app"
        out[role].update(dict.fromkeys(c.var for c in step.changes))
    return {role: tuple(v) for role, v in out.items()}


def ca_variables(plan: Plan) -> tuple[str, ...]:
    return tuple(getattr(plan, "ca_file_variables", ("DATABASE_SSL_CA_FILE", "REDIS_TLS_CA_FILE")))


def ca_paths(plan: Plan) -> tuple[str, ...]:
    """Every CA path a step of the plan sets (read on app hosts before the step, for its gate)."""
    names = set(ca_variables(plan))
    return tuple(
        dict.fromkeys(c.value for s in plan.steps for c in s.changes if c.var in names and c.value.startswith("/"))
    )


class PlanCollector(Collector):
    """A `Collector` reading what `plan` declares, whose snapshots are judged against the configuration."""

    def __init__(self, env: Environment, plan: Plan, *, read_only: bool = False, pool: SshPool | None = None) -> None:
        self.pool = pool or SshPool(env)  # the writing pool stays here, in plans; the probes get a read-only view
        super().__init__(
            env,
            hosts=ReadOnlyPool(self.pool),
            variables=plan_variables(plan),
            ca_variables=ca_variables(plan),
            ca_paths=ca_paths(plan),
            read_only=read_only,
        )

    async def snapshot(self) -> FleetSnapshot:
        return judge_snapshot(await super().snapshot(), self.env)


def collector_for(
    env: Environment, plan: Plan, *, read_only: bool = False, pool: SshPool | None = None
) -> PlanCollector:
    return PlanCollector(env, plan, read_only=read_only, pool=pool)
