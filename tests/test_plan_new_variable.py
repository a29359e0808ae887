"""A plan that adds a step with a variable the cockpit has never seen (tests/plans/new_variable.toml) is
read from the fleet, previews, applies and rolls back — with no code change (that it validates, with a
warning, is tests/test_plan.py's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import scenarios
from lab.topology import LabSpec
from plans.engine import Engine
from plans.plan import load_plan
from probes.snapshot import ConfigSource, ConfiguredValue, FleetSnapshot
from tests.enginekit import with_engine
from tests.labkit import set_var

pytestmark = pytest.mark.lab

PLAN = Path(__file__).resolve().parent / "plans" / "new_variable.toml"
VAR = "PGBOUNCER_TLS_CIPHERS"
VALUE = "HIGH:!aNULL"


def configured(snap: FleetSnapshot) -> ConfiguredValue:
    cv = snap.configured["database"][VAR]
    assert isinstance(cv, ConfiguredValue), cv
    return cv


def test_a_new_variable_is_read_previewed_applied_and_rolled_back(lab: LabSpec, tmp_path: Path) -> None:
    scenarios.apply(lab, "pg-2")  # Postgres serves TLS: the new step's gate is open
    plan = load_plan(PLAN)

    async def go(engine: Engine) -> None:
        snap = await engine.snapshot()
        assert configured(snap) == ConfiguredValue(None, ConfigSource.UNSET)  # read from the fleet: unset
        assert engine.position(snap).state("pg-ciphers") == "pending"
        await engine.acquire_lock("pg-ciphers")
        ahead = await engine.preview("pg-ciphers")
        assert ahead.open, ahead.describe()
        assert [(c.var, c.old, c.new) for c in ahead.changes] == [(VAR, None, VALUE)]
        assert [r.host for r in ahead.restarts] == [lab.database.name]
        out = await engine.apply(ahead, reason="a variable the cockpit has no code for")
        assert out.ok, out.reason
        snap = await engine.snapshot()
        assert configured(snap).value == VALUE and configured(snap).source is ConfigSource.SSM
        assert engine.position(snap).state("pg-ciphers") == "verified"
        back = await engine.preview("pg-ciphers", direction="rollback")
        assert [(b.id, b.kind) for b in back.blockers] == [(f"hazard:{VAR}", "warn")]  # said, not refused
        assert back.open and [(c.var, c.old, c.new) for c in back.changes] == [(VAR, VALUE, None)]
        out = await engine.apply(back, reason="and back")
        assert out.ok, out.reason
        snap = await engine.snapshot()
        assert configured(snap) == ConfiguredValue(None, ConfigSource.UNSET)
        assert engine.position(snap).state("pg-ciphers") == "pending"

    try:
        with_engine(lab, go, local_dir=tmp_path, plan=plan)
    finally:
        set_var(lab, "database", VAR, None)
        scenarios.apply(lab, "fresh")
