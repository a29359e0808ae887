"""Safe on any fleet: on every lab variant — each breaking one assumption our own lab used to share with the
cockpit — the whole runbook through the CLI and back, with no override, ends with 0 failed requests; the plan
reads "every step verified" at the top and "nothing configured" at the bottom; `cockpit status` exits 0 on
the rolled-out fleet; no secret holds the private key unless its service serves TLS; an env file's hand-set
values come back after the rollback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import aws, control, scenarios
from lab.topology import LabSpec
from tests.labkit import running_lab, secret

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parent.parent
FLEET = "api=2,web=0,voice=0,ops=1,telpro=1"  # small, but every kind of service the runbook orders
VARIANTS = ("no-default-ca", "key-owner", "ca-only-secrets", "probe-not-superuser", "envfile", "hostile")


@pytest.fixture(scope="module", params=VARIANTS)
def variant_lab(request: pytest.FixtureRequest) -> Iterator[LabSpec]:
    with running_lab(FLEET, variants=request.param) as spec:
        yield spec


def cockpit(spec: LabSpec, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    inventory = str(Path(spec.dir) / "inventory.toml")
    return subprocess.run(
        [sys.executable, "-m", "cli", *args, "--inventory", inventory],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "XDG_STATE_HOME": str(state)},
    )


def plan_json(spec: LabSpec, state: Path) -> dict[str, object]:
    r = cockpit(spec, state, "plan", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    data: dict[str, object] = json.loads(r.stdout)
    return data


def envfiles(spec: LabSpec) -> dict[str, str]:
    from lab.manifests import APP_ROLLOUT, DATABASE_ROLLOUT
    from lab.rolloutenv import source

    names = [*DATABASE_ROLLOUT, *APP_ROLLOUT]
    out = {}
    for h in spec.hosts()[1:]:
        f = Path(h.root) / "opt/deployment/rollout.env"
        if f.exists():
            out[h.name] = json.dumps(source(f, names), sort_keys=True)
    return out


def test_whole_runbook_and_back_on_every_variant(variant_lab: LabSpec, tmp_path: Path) -> None:
    spec = variant_lab
    scenarios.apply(spec, "fresh")
    control.reset_meters(spec)
    before_files = envfiles(spec)
    done: list[tuple[str, str | None]] = []
    for _ in range(40):
        r = cockpit(spec, tmp_path, "advance", "--yes", "--reason", "variant rollout")
        assert r.returncode == 0, f"{spec.variants}: {r.stdout}\n{r.stderr}"
        if "nothing to advance" in r.stdout:
            break
        first = r.stdout.splitlines()[0].split()
        done.append((first[1], first[first.index("for") + 1] if "for" in first else None))
    assert "--override" not in " ".join(str(d) for d in done)
    top = plan_json(spec, tmp_path)
    assert top["next"] is None and not top["dangers"], (spec.variants, top["dangers"])
    states = {s["step"]: s["state"] for s in top["steps"]}  # type: ignore[index, union-attr]
    assert set(states.values()) == {"verified"}, (spec.variants, states)
    status = cockpit(spec, tmp_path, "status")
    assert status.returncode == 0, f"{spec.variants}: status on the rolled-out fleet\n{status.stdout}"
    # the private key is held only where TLS is served
    for svc in ("api", "ops", "telpro"):
        if not spec.has("envfile"):
            assert "INTERNAL_TLS_KEY_B64" not in secret(spec, aws.secret_name(spec, svc)), (spec.variants, svc)
    for step, svc in reversed(done):  # the full rollback, newest first
        args = ["rollback", step, "--yes", "--reason", "variant rollback"] + (
            ["--service", svc] if svc and step in ("pg-5", "redis-2") else []
        )
        r = cockpit(spec, tmp_path, *args)
        assert r.returncode == 0, f"{spec.variants} {step} {svc}: {r.stdout}\n{r.stderr}"
    bottom = plan_json(spec, tmp_path)
    for s in bottom["steps"]:  # type: ignore[union-attr]
        if s["step"] == "pg-1":  # type: ignore[index]
            continue
        for t in s["targets"]:  # type: ignore[index]
            assert t["configured"] is False and t["state"] == "pending", (spec.variants, s["step"], t)  # type: ignore[index]
    assert not bottom["dangers"], bottom["dangers"]
    failed = {
        k: (m["requests_failed"], m.get("last_failure"))
        for k, m in control.meters(spec).items()
        if m["requests_failed"]
    }
    assert not failed, (spec.variants, failed)
    if spec.has("envfile"):  # what was pinned by hand before the rollout is there again, not deleted
        assert envfiles(spec) == before_files
