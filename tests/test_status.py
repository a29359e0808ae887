"""`cockpit status` against the lab: each scenario yields the verdicts it should."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from inventory.load import load_inventory
from lab import aws, scenarios
from lab.topology import LabSpec
from plans.collecting import collector_for
from plans.plan import default_plan
from probes.model import Verdict
from probes.snapshot import (
    CaFile,
    Connection,
    DatabaseState,
    FleetSnapshot,
    Handshake,
    LegUse,
    LegView,
    snapshot_from_json,
    snapshot_to_json,
)
from tests.labkit import set_var, update

pytestmark = pytest.mark.lab


def snap(spec: LabSpec, inventory: Path | None = None) -> FleetSnapshot:
    env = load_inventory(inventory or Path(spec.dir) / "inventory.toml").env(None)

    async def go() -> FleetSnapshot:
        c = collector_for(env, default_plan())
        try:
            return await c.snapshot()
        finally:
            await c.aclose()

    return asyncio.run(go())


def leg(s: FleetSnapshot, name: str) -> tuple[Connection, ...]:
    view = s.leg(name)  # type: ignore[arg-type]
    assert isinstance(view, LegView), view
    return view.connections


def db(s: FleetSnapshot) -> DatabaseState:
    assert isinstance(s.database, DatabaseState), s.database
    return s.database


def checks(s: FleetSnapshot, check: str, verdict: Verdict) -> list[str]:
    return [f"{c.target}: {c.summary}" for c in s.checks if c.check == check and c.verdict is verdict]


def test_fresh_is_plaintext_and_healthy(lab: LabSpec) -> None:
    scenarios.apply(lab, "fresh")
    s = snap(lab)
    assert s.verdict in (Verdict.OK, Verdict.WARN), [c for c in s.checks if c.verdict.rank > 1]
    assert db(s).postgres_ssl is False
    assert db(s).pgbouncer_client_tls_sslmode == "disable"
    leg1 = leg(s, "leg1")
    assert {c.instance for c in leg1} >= {h.name for h in lab.app_hosts()}
    assert not any(c.tls for c in leg1)
    for i in s.instances:
        assert isinstance(i.db, LegUse) and i.db.plain and not i.db.tls, i
        assert isinstance(i.redis, LegUse) and i.redis.plain and not i.redis.tls, i
        assert i.ca_file("/etc/ssl/internal/ca.crt") is CaFile.MATCHES, i
        assert i.running is True, i
    # the cockpit never counts itself: its own sessions are left out of every leg, and counted apart
    for name in ("leg1", "postgres", "redis"):
        assert not any(c.service.startswith("rollout-cockpit-probe") for c in leg(s, name)), name
    own = db(s).leg("leg1")
    assert isinstance(own, LegView) and own.own >= 1  # the end-to-end query's own client connection
    # JSON round trip of the documented schema
    data = json.loads(json.dumps(snapshot_to_json(s)))
    assert data["schema"] == 2 and snapshot_to_json(snapshot_from_json(data)) == data


def test_straggler_names_the_service_on_plaintext(lab: LabSpec) -> None:
    scenarios.apply(lab, "straggler")
    s = snap(lab)
    plain_leg1 = {(c.service, c.instance) for c in leg(s, "leg1") if not c.tls}
    assert plain_leg1 == {("voice", "staging-voice-01"), ("voice", "staging-voice-02")}
    plain_redis = {c.service for c in leg(s, "redis") if not c.tls}
    assert plain_redis == {"voice"}
    for i in s.instances:
        assert isinstance(i.db, LegUse) and i.db.all_tls is (i.service != "voice"), i
        assert isinstance(i.redis, LegUse) and i.redis.all_tls is (i.service != "voice"), i


@pytest.mark.parametrize(
    ("scenario", "check", "words"),
    [
        ("bad-san", "certs.san", "does not cover staging-database-01.voiceai.internal"),
        ("expired", "certs.expiry", "expired"),
        ("wrong-ca", "certs.chain", "CA"),
        ("key-mismatch", "certs.key_match", "key"),
        ("secret-missing", "certs.present", "INTERNAL_"),
    ],
)
def test_broken_material_fails_the_right_check(lab: LabSpec, scenario: str, check: str, words: str) -> None:
    scenarios.apply(lab, scenario)
    s = snap(lab)
    failed = checks(s, check, Verdict.FAIL)
    assert failed and all(words in f for f in failed), (failed, [c for c in s.certs if c.verdict is not Verdict.OK])
    if scenario == "secret-missing":
        assert all(f.startswith("voice:") for f in failed)
    if scenario in ("bad-san", "expired"):  # served by the live listeners too
        pg = s.check("tls.postgres")
        assert pg is not None and pg.verdict is Verdict.FAIL, pg
        assert db(s).postgres_tls is Handshake.NOT_VERIFIED


def test_telpro_without_ssl_build_is_reported(lab: LabSpec) -> None:
    scenarios.apply(lab, "telpro-no-ssl")
    s = snap(lab)
    telpro = [i for i in s.instances if i.service == "telpro"]
    assert telpro and all(i.telpro_ssl is False for i in telpro)
    assert checks(s, "telpro.ssl_build", Verdict.WARN)
    assert "hiredis_ssl" in checks(s, "telpro.ssl_build", Verdict.WARN)[0]


def test_drift_on_exactly_the_instances_not_restarted(lab: LabSpec) -> None:
    scenarios.apply(lab, "pg-4")
    set_var(lab, "api", "DATABASE_SSL_MODE", "verify-full")
    api1, api2 = [h for h in lab.app_hosts() if h.service == "api"]
    assert update(lab, api1).returncode == 0
    try:
        s = snap(lab)
        by_host = {i.host: i for i in s.instances}
        api1_db = by_host[api1.name].db
        assert not by_host[api1.name].drift and isinstance(api1_db, LegUse) and api1_db.all_tls
        assert by_host[api2.name].drift and "verify-full" in by_host[api2.name].drift[0]
        assert all(not i.drift for i in s.instances if i.service != "api")
    finally:
        set_var(lab, "api", "DATABASE_SSL_MODE", None)
        update(lab, api1)


def test_unreachable_host_is_one_clear_state(lab: LabSpec, tmp_path: Path) -> None:
    text = (Path(lab.dir) / "inventory.toml").read_text()
    text += (
        f'\n[[environments.staging.hosts]]\nname = "staging-web-09"\naddress = "{lab.net}.250"\n'
        f'port = 2222\nuser = "root"\nservice = "web"\njump = true\nroot = "{lab.dir}/hosts/x"\n'
    )
    inv = tmp_path / "inventory.toml"
    inv.write_text(text)
    s = snap(lab, inv)
    ghost = next(i for i in s.instances if i.host == "staging-web-09")
    assert ghost.reachable is False
    others = [i for i in s.instances if i.host != "staging-web-09"]
    assert all(i.reachable is True for i in others)
    assert db(s).end_to_end_ok is True


def test_status_cli_json_and_exit_codes(lab: LabSpec, tmp_path: Path) -> None:
    scenarios.apply(lab, "fresh")
    inv = Path(lab.dir) / "inventory.toml"
    r = subprocess.run(
        [sys.executable, "-m", "cli", "status", "--inventory", str(inv), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["env"] == "staging" and data["verdict"] in ("ok", "warn")
    secrets = aws.lab_secrets(lab)
    for v in secrets.values():
        assert v not in r.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("version = 1\n[environments.x]\nnamespace = 3\n")
    r = subprocess.run(
        [sys.executable, "-m", "cli", "status", "--inventory", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2 and "bad.toml:3" in r.stderr


def test_healthy_handshakes_are_reused_briefly_and_problems_never(lab: LabSpec) -> None:
    """Handshakes and the end-to-end query are re-measured every `probe_ttl` seconds while they
    are OK, every round when they are not, and at once after `invalidate()`."""
    env = load_inventory(Path(lab.dir) / "inventory.toml").env(None)
    names = ("tls.postgres", "tls.pgbouncer", "tls.redis", "e2e.query")

    def timings(s: FleetSnapshot) -> dict[str, float | None]:
        return {c.check: c.duration_ms for c in s.checks if c.check in names}

    async def go() -> None:
        scenarios.apply(lab, "redis-1")  # every listener offers verified TLS
        c = collector_for(env, default_plan())
        try:
            first = await c.snapshot()
            assert all(v is Verdict.OK for k, v in ((c.check, c.verdict) for c in first.checks) if k in names)
            assert len(timings(first)) == 4
            assert timings(await c.snapshot()) == timings(first)  # within probe_ttl: the same measurements
            c.invalidate()
            after = timings(await c.snapshot())
            assert all(after[k] != timings(first)[k] for k in names)  # measured anew
            scenarios.apply(lab, "bad-san")  # restarted outside the cockpit, with a certificate that does not cover
            c.invalidate()
            bad = await c.snapshot()
            failing = {x.check: x for x in bad.checks if x.check in names and x.verdict is Verdict.FAIL}
            assert "tls.postgres" in failing, [(x.check, x.verdict) for x in bad.checks if x.check in names]
            again = await c.snapshot()
            assert {x.check: x.duration_ms for x in again.checks if x.check in failing} != {
                k: x.duration_ms for k, x in failing.items()
            }  # a failure is measured every round
        finally:
            await c.aclose()
            scenarios.apply(lab, "fresh")

    asyncio.run(go())


def _sshd_tree(lab: LabSpec, host_name: str) -> list[int]:
    """A host's sshd listener and the per-connection sshd processes it forked."""
    from lab import procs, sshd

    listener = procs.read_pid(sshd.pidfile(lab, lab.host(host_name)))
    assert listener
    out = [listener]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) in out:
                    out.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return out


def test_one_stalled_host_does_not_stall_the_others(lab: LabSpec) -> None:
    """Issue #10: with one host's sshd stopped (SIGSTOP), that host is unknown for itself within one round,
    and every other host is measured anew in every round (rounds counted, not timed)."""
    import os
    import signal

    scenarios.apply(lab, "fresh")
    env = load_inventory(Path(lab.dir) / "inventory.toml").env(None)
    stalled = "staging-web-01"
    api1 = next(h for h in lab.app_hosts() if h.service == "api")
    ca = Path(api1.root) / "etc/ssl/internal/ca.crt"
    saved = ca.read_bytes()

    async def go() -> list[FleetSnapshot]:
        c = collector_for(env, default_plan())
        c.host_budget = 3.0
        rounds: list[FleetSnapshot] = []
        pids = []
        try:
            await c.snapshot()  # warm: every connection up
            pids = _sshd_tree(lab, stalled)
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            for n in range(4):
                if n == 2:  # a change on another host must show in the very next round
                    ca.write_bytes(saved.replace(b"-----END", b"XX-----END", 1))
                rounds.append(await c.snapshot())
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
            ca.write_bytes(saved)
            await c.aclose()
        return rounds

    rounds = asyncio.run(go())
    for n, s in enumerate(rounds):
        by = {i.host: i for i in s.instances}
        web = by[stalled]
        assert web.reachable is not True and web.ca_file("/etc/ssl/internal/ca.crt") is not CaFile.MATCHES, (n, web)
        others = [i for i in s.instances if i.host != stalled]
        assert all(i.reachable is True for i in others), (n, [i for i in others if i.reachable is not True])
        want = CaFile.DIFFERS if n >= 2 else CaFile.MATCHES
        assert by[api1.name].ca_file("/etc/ssl/internal/ca.crt") is want, (n, by[api1.name])
        assert isinstance(s.database, DatabaseState) and s.database.reachable is True
