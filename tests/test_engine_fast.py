"""The engine in memory (the fast tier): compare-and-swap, automatic rollback, overrides by id, deadlines,
pause and stop, and refusals journaled — against a fake fleet, store, hosts and lock (`tests.enginefakes`).
Milliseconds each; the real-server behaviour is `tests/test_engine.py`'s (lab)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plans.engine import EngineError, EngineEvent, RollControl
from plans.plan import default_plan
from tests.enginefakes import CannedCollector, FakeFleet, World, environment, with_deadlines, world
from tests.snapshots_factory import CA_FILE, DB_HOST

API = ("staging-api-01", "staging-api-02")


def done_entries(w: World) -> list[dict[str, object]]:
    return [e for e in w.journal_entries() if e["event"] == "apply-done"]


async def test_the_store_changed_under_the_cockpit_refuses_and_writes_nothing(tmp_path: Path) -> None:
    w = world(tmp_path, pg=4)
    await w.engine.acquire_lock("pg-5")
    p = await w.engine.preview("pg-5", "api")
    assert p.open, p.describe()
    w.fleet.store["api"]["DATABASE_SSL_MODE"] = "require"  # someone else, between preview and apply
    out = await w.engine.apply(p, reason="cas test")
    assert not out.ok and out.stage == "refused"
    assert "changed since the preview" in out.reason and "DATABASE_SSL_MODE" in out.reason
    assert w.store.writes == [] and w.hosts.restarted() == []
    assert w.fleet.store["api"]["DATABASE_SSL_MODE"] == "require"  # theirs, not overwritten
    assert [(e["stage"], e["ok"]) for e in done_entries(w)] == [("refused", False)]
    assert b"changed since the preview" in w.fleet_journal()  # said where every operator reads


async def test_a_failed_instance_stops_the_roll_and_rolls_back_by_itself(tmp_path: Path) -> None:
    w = world(tmp_path, pg=4)
    w.hosts.failing.add(API[1])
    await w.engine.acquire_lock("pg-5")
    events: list[EngineEvent] = []
    out = await w.engine.apply(await w.engine.preview("pg-5", "api"), reason="fault test", on_event=events.append)
    assert not out.ok and out.stage == "restart"
    assert API[1] in out.reason and "the roll stopped here" in out.reason and "rolled back automatically" in out.reason
    assert out.rolled_back is not None and out.rolled_back.ok
    # forward on both (the second failed), back only on the one that runs the new values
    assert w.hosts.restarted() == [API[0], API[1], API[0]]
    assert w.fleet.store["api"].get("DATABASE_SSL_MODE") is None
    assert w.fleet.store["api"].get("DATABASE_SSL_CA_FILE") is None
    assert w.fleet.running[API[0]]["DATABASE_SSL_MODE"] is None
    assert any(e.kind == "rollback" for e in events)
    automatic = [e for e in w.journal_entries() if e["event"] == "apply-start" and e["automatic"]]
    assert [e["direction"] for e in automatic] == ["rollback"]
    assert w.lock.held is not None  # the rollback ran under the same lock; the caller releases it


async def test_overrides_open_exactly_the_named_gate_and_are_journaled(tmp_path: Path) -> None:
    w = world(tmp_path, pg=1, certs="missing-voice")  # certs_valid closed: voice lacks the material
    await w.engine.acquire_lock("pg-2")
    p = await w.engine.preview("pg-2")
    assert not p.open and [i for i, _ in p.closed] == ["certs_valid"]
    out = await w.engine.apply(p, reason="voice is being decommissioned", overrides=["certs_valid"])
    assert out.ok, out.reason
    assert w.fleet.store["database"]["POSTGRES_TLS_ENABLED"] == "on"
    assert w.hosts.restarted() == [DB_HOST]
    ov = [e for e in w.journal_entries() if e["event"] == "override"]
    assert len(ov) == 1 and ov[0]["ids"] == ["certs_valid"] and ov[0]["reason"] == "voice is being decommissioned"
    assert str(ov[0]["overridden"][0]).startswith("certs_valid: ")  # type: ignore[index]
    start = next(e for e in w.journal_entries() if e["event"] == "apply-start")
    gate = next(g for g in start["preview"]["gates"] if g["gate"] == "certs_valid")  # type: ignore[index]
    assert gate["status"] == "open" and gate["overridden"] == "voice is being decommissioned"


async def test_an_unknown_override_id_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    w = world(tmp_path, pg=1, certs="missing-voice")
    await w.engine.acquire_lock("pg-2")
    p = await w.engine.preview("pg-2")
    out = await w.engine.apply(p, reason="typo", overrides=["certs_vaild"])
    assert not out.ok and out.stage == "refused"
    assert "--override certs_vaild: no such gate or blocker" in out.reason and "certs_valid" in out.reason
    out = await w.engine.apply(p, reason="no override")  # a closed gate left unnamed
    assert not out.ok and out.stage == "refused" and out.reason.startswith("refused: certs_valid: ")
    assert w.store.writes == [] and w.hosts.commands == []
    assert [e["stage"] for e in done_entries(w)] == ["refused", "refused"]


async def test_a_hung_instance_ends_at_its_timeout_and_rolls_back(tmp_path: Path) -> None:
    w = world(tmp_path, pg=4)
    w.hosts.hanging.add(API[1])
    await w.engine.acquire_lock("pg-5")
    out = await w.engine.apply(await w.engine.preview("pg-5", "api"), reason="hang test")
    assert not out.ok and out.stage == "restart" and "timed out" in out.reason
    assert out.rolled_back is not None and out.rolled_back.ok
    timeout = w.engine.env.ssh.command_timeout
    assert (API[1], w.engine.env.update_command(w.engine.env.host(API[1])), timeout) in w.hosts.commands
    assert out.changed == (API[0],)  # the hung one never ran the new values
    assert w.hosts.restarted() == [API[0], API[1], API[0]]
    assert w.fleet.store["api"].get("DATABASE_SSL_MODE") is None
    await w.engine.release_lock()
    assert w.lock.held is None and w.journal_entries()[-1]["event"] == "unlock"


async def test_an_instance_that_never_runs_as_configured_ends_at_the_deadline(tmp_path: Path) -> None:
    w = world(tmp_path, pg=4, plan=with_deadlines(default_plan(), 0.05))
    w.hosts.stuck.add(API[0])  # update.sh exits 0, but it comes back on the old values
    await w.engine.acquire_lock("pg-5")
    out = await w.engine.apply(await w.engine.preview("pg-5", "api"), reason="deadline test")
    assert not out.ok and out.stage == "restart"
    assert "not running as configured within" in out.reason and "rolled back automatically" in out.reason
    assert w.hosts.restarted() == [API[0]]  # the roll stopped at the first; nothing ran the new values
    assert w.fleet.store["api"].get("DATABASE_SSL_MODE") is None


async def test_pause_then_resume_goes_on_and_stop_ends_between_instances(tmp_path: Path) -> None:
    w = world(tmp_path, pg=4)
    await w.engine.acquire_lock("pg-5")
    control = RollControl()
    kinds: list[str] = []

    def on_event(e: EngineEvent) -> None:
        kinds.append(e.kind)
        if e.kind == "instance-done" and kinds.count("instance-done") == 1:
            control.pause()
        elif e.kind == "paused":
            control.resume()

    out = await w.engine.apply(
        await w.engine.preview("pg-5", "api"), reason="pause", on_event=on_event, control=control
    )
    assert out.ok, out.reason
    assert kinds.index("paused") < kinds.index("resumed") < len(kinds) - 1
    assert w.hosts.restarted() == list(API)

    w = world(tmp_path / "stop", pg=4)
    await w.engine.acquire_lock("pg-5")
    control = RollControl()

    def stop_after_first(e: EngineEvent) -> None:
        if e.kind == "instance-done":
            control.pause()
        elif e.kind == "paused":
            control.stop()

    out = await w.engine.apply(
        await w.engine.preview("pg-5", "api"), reason="stop", on_event=stop_after_first, control=control
    )
    assert not out.ok and out.stage == "stopped"
    assert out.reason == f"stopped by the operator after 1 of 2 instance(s) ({API[0]} changed)"
    assert w.hosts.restarted() == [API[0]] and out.changed == (API[0],)
    assert [(e["stage"], e["changed"]) for e in done_entries(w)] == [("stopped", [API[0]])]
    assert w.fleet.store["api"]["DATABASE_SSL_MODE"] == "verify-full"  # stopped, not rolled back


async def test_refusals_are_journaled_where_every_operator_reads(tmp_path: Path) -> None:
    w = world(tmp_path, pg=1)
    p = await w.engine.preview("pg-2")
    out = await w.engine.apply(p, reason="no lock")  # the lock is not held
    assert not out.ok and out.stage == "refused" and "lock is not held" in out.reason
    await w.engine.acquire_lock("pg-2")
    w.hosts.unreachable.add(DB_HOST)
    out = await w.engine.apply(p, reason="unreachable")
    assert not out.ok and out.stage == "preflight"
    assert out.reason.startswith("preflight failed, nothing was written: ") and DB_HOST in out.reason
    w.hosts.unreachable.clear()
    w.store.unwritable = "access denied"
    out = await w.engine.apply(p, reason="read-only store")
    assert not out.ok and out.stage == "preflight" and "the config store is not writable: access denied" in out.reason
    await w.engine.refused(p, "refused: a gate the operator would not override")
    assert w.store.writes == [] and w.hosts.restarted() == []
    entries = done_entries(w)
    assert [e["stage"] for e in entries] == ["refused", "preflight", "preflight", "refused"]
    assert all(e["ok"] is False and e["step"] == "pg-2" and e["direction"] == "advance" for e in entries)
    fleet = [json.loads(x) for x in w.fleet_journal().splitlines()]
    assert [e["reason"] for e in fleet if e["event"] == "apply-done"] == [e["reason"] for e in entries]


async def test_a_reader_that_is_not_the_collector_needs_every_dependency(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="needs store, journal, lock and hosts"):
        from plans.engine import Engine

        Engine(environment(), default_plan(), CannedCollector(FakeFleet()))
    w = world(tmp_path)
    with pytest.raises(EngineError, match="applied one service at a time"):
        await w.engine.preview("pg-5")
    assert w.fleet.snapshots == 0  # refused before anything was read


async def test_a_rerun_restarts_only_the_instances_not_running_as_configured(tmp_path: Path) -> None:
    w = world(tmp_path, pg=4, plan=with_deadlines(default_plan(), 0.05))
    w.hosts.stuck.add(API[1])
    await w.engine.acquire_lock("pg-5")
    first = await w.engine.apply(await w.engine.preview("pg-5", "api"), reason="first")
    assert not first.ok  # api-02 came back on the old values (and pg-5 rolls back by itself)
    w.fleet.store["api"].update({"DATABASE_SSL_MODE": "verify-full", "DATABASE_SSL_CA_FILE": CA_FILE})
    w.fleet.restart(API[0])  # configured again, api-01 running it; api-02 still on the old values
    w.hosts.stuck.clear()
    p = await w.engine.preview("pg-5", "api")
    assert p.changes == () and [r.host for r in p.restarts] == [API[1]]
    out = await w.engine.apply(p, reason="converge")
    assert out.ok, out.reason
    assert w.fleet.running[API[1]]["DATABASE_SSL_MODE"] == "verify-full"
