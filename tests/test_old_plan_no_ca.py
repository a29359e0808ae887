"""Defect 1 of "Safe on any fleet": on a platform whose apps have no default CA path (lab variant
no-default-ca), a pg-5 that sets only DATABASE_SSL_MODE=verify-full (the plan before the runbook was read
line by line) would take the service off its database. Its gate now checks the CA at the path the service
will use after the change — none — and refuses, naming it; forced past that gate, the failing instance's own
error is shown and the step rolls itself back; the runbook's pg-5 (which sets the CA path too) goes through
with 0 failed requests."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab import control, scenarios
from tests.enginekit import cockpit
from tests.labkit import rollout_params, running_lab

pytestmark = pytest.mark.lab

FLEET = "api=2,web=0,voice=0,ops=0,telpro=0"


def old_plan(tmp_path: Path) -> Path:
    """The runbook with pg-5's DATABASE_SSL_CA_FILE change taken out (and a short deadline)."""
    text = (Path(__file__).resolve().parent.parent / "plans" / "runbook.toml").read_text()
    start = text.index('id = "pg-5"')
    end = text.index("[[steps]]", start)
    block = text[start:end]
    block = re.sub(r'\[\[steps\.changes\]\][^\n]*\nvar = "DATABASE_SSL_CA_FILE"\n[^\[]*', "", block)
    block = block.replace("deadline = 600", "deadline = 60")
    assert "DATABASE_SSL_CA_FILE" not in block.split("gates")[1], block
    path = tmp_path / "old-plan.toml"
    path.write_text(text[:start] + block + text[end:])
    return path


def test_an_old_pg5_without_the_ca_path_is_refused_and_forced_rolls_itself_back(tmp_path: Path) -> None:
    plan = old_plan(tmp_path)
    with running_lab(FLEET, variants="no-default-ca") as spec:
        scenarios.apply(spec, "pg-4")
        args = ("advance", "pg-5", "--service", "api", "--yes", "--plan", str(plan))
        r = cockpit(spec, *args, "--reason", "old plan", state_dir=tmp_path)
        assert r.returncode == 1, r.stdout + r.stderr
        out = r.stdout + r.stderr
        assert "DATABASE_SSL_CA_FILE is empty for api" in out and "pgbouncer_offers_tls_and_ca_files" in out, out
        assert f"/{spec.namespace}/api/DATABASE_SSL_MODE" not in rollout_params(spec)  # nothing written

        control.reset_meters(spec)
        r = cockpit(
            spec,
            *args,
            "--override",
            "pgbouncer_offers_tls_and_ca_files",
            "--reason",
            "forced old plan",
            state_dir=tmp_path,
            timeout=600,
        )
        assert r.returncode == 1, r.stdout + r.stderr
        assert "diagnostics" in r.stdout, r.stdout  # the instance's own error, not just "no connection seen"
        assert "automatic rollback OK" in r.stdout, r.stdout
        assert f"/{spec.namespace}/api/DATABASE_SSL_MODE" not in rollout_params(spec)

        control.reset_meters(spec)
        r = cockpit(
            spec, "advance", "pg-5", "--service", "api", "--yes", "--reason", "the runbook's pg-5", state_dir=tmp_path
        )
        assert r.returncode == 0, r.stdout + r.stderr
        assert rollout_params(spec)[f"/{spec.namespace}/api/DATABASE_SSL_CA_FILE"] == "/etc/ssl/internal/ca.crt"
        failed = {k: m["requests_failed"] for k, m in control.meters(spec).items() if m["requests_failed"]}
        assert not failed, failed
