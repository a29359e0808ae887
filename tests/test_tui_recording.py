"""Recordings: round trips, diffs, normalisation, typed records, redaction, retention, the index; and that
the headless session package never loads textual (tests/test_import_hygiene.py)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from probes.model import CheckResult, Verdict
from probes.snapshot import Connection, LegView, snapshot_to_json
from session.recording.format import FORMAT_VERSION, ActionKind, Direction, RecordError
from session.recording.index import RecordingError, is_recording
from session.recording.keyed import apply_ops, diff, keyed, normalised, unkeyed
from session.recording.parts import Blocker, PreviewSummary
from session.recording.reader import Recording, read_all_snapshots
from session.recording.records import Action, Event, Journal, Lock, Note, Outcome, Verdicts, parse_record
from session.recording.writer import Recorder, prune, recording_path
from session.redact import REDACTED, Redactor, secret_key
from tests import snapshots_factory as f
from tests.test_tui_support import FAKE_KEY_B64, LAB_SECRETS, Clock, make_recording, scenario

ROOT = Path(__file__).resolve().parent.parent


def _without_check_timings(s):  # type: ignore[no-untyped-def]
    def strip(cs):  # type: ignore[no-untyped-def]
        return tuple(dataclasses.replace(c, duration_ms=0.0) for c in cs)

    db = s.database
    return dataclasses.replace(
        s,
        checks=strip(s.checks),
        certs=strip(s.certs),
        database=dataclasses.replace(db, checks=strip(db.checks)) if db else None,
        instances=tuple(dataclasses.replace(i, checks=strip(i.checks)) for i in s.instances),
    )


def as_recorded(s):  # type: ignore[no-untyped-def]
    """The snapshot JSON as a recording gives it back (observed connections in a stable order)."""
    return normalised(snapshot_to_json(s))


def test_keyed_form_round_trips() -> None:
    for name in ("fresh", "ready-pg5", "straggler", "cert-fail", "done"):
        snap = scenario(name)
        js = snapshot_to_json(snap)
        assert unkeyed(keyed(js)) == js


def test_diffs_reproduce_every_snapshot(tmp_path: Path) -> None:
    snaps = [
        scenario(n, taken_at=f.T0 + i)
        for i, n in enumerate(
            ["fresh", "fresh", "cert-fail", "ready-pg5", "straggler", "straggler", "ready-pg5", "done"]
        )
    ]
    # a connection appearing mid-list, an instance disappearing, a timing changing
    snaps.append(
        f.with_connections(snaps[-1], Connection("leg1", "api", "staging-api-01", "10.0.2.11:1", True), leg="leg1")
    )
    snaps.append(dataclasses.replace(snaps[-1], instances=snaps[-1].instances[1:], taken_at=f.T0 + 20))
    path = tmp_path / "r.jsonl"
    clock = Clock(f.T0)
    rec = Recorder(path, env="staging", mode="watch", full_every=4, clock=clock)
    for i, s in enumerate(snaps):
        clock.t = f.T0 + i
        rec.snapshot(s)
    rec.close()
    back = read_all_snapshots(path)
    assert [snapshot_to_json(b) for b in back] == [as_recorded(s) for s in snaps]
    kinds = [json.loads(line)["t"] for line in path.read_text().splitlines()]
    assert kinds[0] == "header" and kinds[-1] == "end"
    assert kinds.count("frame") == 3 and kinds.count("diff") == len(snaps) - 3


def test_diffs_ignore_check_timings_but_frames_carry_them(tmp_path: Path) -> None:
    a = scenario("ready-pg5")
    b = dataclasses.replace(a, checks=tuple(dataclasses.replace(c, duration_ms=c.duration_ms + 7) for c in a.checks))
    assert diff(keyed(snapshot_to_json(a)), keyed(snapshot_to_json(b))) == []
    path = tmp_path / "r.jsonl"
    rec = Recorder(path, env="staging", mode="watch", full_every=1000, clock=Clock(f.T0))
    rec.snapshot(a)
    rec.snapshot(b)
    rec.close()
    back = read_all_snapshots(path)
    assert snapshot_to_json(back[0]) == as_recorded(a)
    assert snapshot_to_json(_without_check_timings(back[1])) == as_recorded(_without_check_timings(b))


def test_apply_ops_never_mutates_an_earlier_state() -> None:
    old = {"a": {"b": {"c": 1}}, "x": [1]}
    new = apply_ops(old, [{"op": "replace", "path": "/a/b/c", "value": 2}, {"op": "add", "path": "/y", "value": 3}])
    assert old == {"a": {"b": {"c": 1}}, "x": [1]}
    assert new == {"a": {"b": {"c": 2}}, "x": [1], "y": 3}
    assert apply_ops(new, diff(new, old)) == old


def test_file_is_private_and_versioned(tmp_path: Path) -> None:
    path = recording_path(tmp_path / "recordings", "prod/eu", f.T0)
    assert path.name == "prod_eu-20270115T080000Z.jsonl"
    rec = Recorder(path, env="prod/eu", mode="drive", protected=True, clock=Clock())
    rec.close()
    assert os.stat(path).st_mode & 0o777 == 0o600
    header = json.loads(path.read_text().splitlines()[0])
    assert header["format"] == "rollout-cockpit-recording" and header["version"] == FORMAT_VERSION
    assert header["protected"] is True and header["mode"] == "drive"
    assert recording_path(tmp_path / "recordings", "prod/eu", f.T0).name == "prod_eu-20270115T080000Z-2.jsonl"


def test_opening_refuses_what_is_not_a_recording(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl"
    p.write_text('{"hello": 1}\n')
    with pytest.raises(RecordingError, match="not a Rollout Cockpit recording"):
        Recording.open(p)
    p.write_text('{"t":"header","ts":1,"format":"rollout-cockpit-recording","version":99}\n')
    with pytest.raises(RecordingError, match="version 99"):
        Recording.open(p)


def test_a_line_cut_short_by_a_crash_is_skipped(tmp_path: Path) -> None:
    path = make_recording(tmp_path / "r.jsonl")
    data = path.read_bytes()
    lines = data.count(b"\n")
    path.write_bytes(data + b'{"t":"diff","ts":1800009999.0,"seq":999,"ops":[{"op":"repl')
    with Recording.open(path) as rec:
        assert rec.cut_short == lines + 1 and not rec.damaged  # told, not counted as damage
        assert rec.snaps[-1].seq != 999
        assert rec.snapshot(len(rec.snaps) - 1) is not None  # everything before it loads
    # a last line that is whole but lacks its newline is read
    path.write_bytes(data + b'{"t":"note","ts":1800009999.0,"text":"last words","level":"warn"}')
    with Recording.open(path) as rec:
        assert rec.cut_short is None
        assert [r.text for r in rec.records(["note"]) if isinstance(r, Note)][-1] == "last words"


def test_retention_keeps_the_newest(tmp_path: Path) -> None:
    d = tmp_path / "rec"
    d.mkdir()
    for i in range(6):
        p = d / f"staging-{i}.jsonl"
        Recorder(p, env="staging", mode="watch", clock=Clock()).close()
        os.utime(p, (1_000_000 + i * 86400, 1_000_000 + i * 86400))
    gone = prune(d, max_files=3, max_age_days=None, now=1_000_000 + 6 * 86400)
    assert sorted(p.name for p in gone) == ["staging-0.jsonl", "staging-1.jsonl", "staging-2.jsonl"]
    gone = prune(d, max_files=None, max_age_days=1.5, now=1_000_000 + 6 * 86400)
    assert sorted(p.name for p in gone) == ["staging-3.jsonl", "staging-4.jsonl"]


# -- redaction ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "REDIS_PASSWORD",
        "pgbouncer_admin_password",
        "INTERNAL_TLS_KEY_B64",
        "token",
        "AWS_SECRET_ACCESS_KEY",
        "private_key",
        "secret",
    ],
)
def test_secret_key_names(name: str) -> None:
    assert secret_key(name)


@pytest.mark.parametrize(
    "name",
    [
        "DATABASE_SSL_MODE",
        "postgres_password_key",
        "secret_name",
        "fingerprint",
        "tls_auth_clients",
        "REDIS_TLS_CA_FILE",
        "key_match",
    ],
)
def test_names_that_are_not_secrets(name: str) -> None:
    assert not secret_key(name)


def test_redaction_in_strings() -> None:
    r = Redactor(known=["hunter2-known"])
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
    cases = {
        "REDIS_PASSWORD=abc123xyz done": "abc123xyz",
        'requirepass "s3cr3t-value"': "s3cr3t-value",
        "redis-cli -a Pa55w0rd-x ping": "Pa55w0rd-x",
        "postgresql://postgres:pgpw-1234@db:5432/app": "pgpw-1234",
        '{"POSTGRES_PASSWORD": "jsonpw-999"}': "jsonpw-999",
        f"key material {FAKE_KEY_B64}": FAKE_KEY_B64,
        f"key {pem} end": "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
        "the value hunter2-known leaked": "hunter2-known",
    }
    for text, secret in cases.items():
        out = r.text(text)
        assert secret not in out, (text, out)
        assert REDACTED in out
    keep = "sha256 " + "ab" * 32 + " for /voiceai/staging/api/DATABASE_SSL_MODE: (unset → verify-full)"
    assert r.text(keep) == keep


def test_redaction_by_key_keeps_shapes() -> None:
    r = Redactor()
    out = r.value(
        {
            "configured": {"REDIS_PASSWORD": {"value": "pw", "source": "secrets", "version": 3}},
            "evidence": {"password": "pw2", "answer": "S", "n": 5},
        }
    )
    # values only: where a secret comes from is not the secret
    assert out == {
        "configured": {"REDIS_PASSWORD": {"value": REDACTED, "source": "secrets", "version": 3}},
        "evidence": {"password": REDACTED, "answer": "S", "n": 5},
    }


def test_no_secret_reaches_a_recording(tmp_path: Path) -> None:
    """Secrets in snapshots, events, journal entries and previews: a scan of the file finds none."""
    snap = scenario("straggler")
    leaky = CheckResult(
        "redis.plain",
        "db:6379",
        Verdict.OK,
        f'AUTH ok (requirepass "{LAB_SECRETS[1]}")',
        {
            "password": LAB_SECRETS[1],
            "dsn": f"postgresql://postgres:{LAB_SECRETS[0]}@db/app",
            "key": f"-----BEGIN EC PRIVATE KEY-----\n{FAKE_KEY_B64}\n-----END EC PRIVATE KEY-----",
        },
    )
    snap = dataclasses.replace(snap, checks=(*snap.checks, leaky))
    snap = f.with_config(
        snap,
        "api",
        "INTERNAL_TLS_KEY_B64",
        type(snap.configured["api"]["DATABASE_SSL_MODE"])(FAKE_KEY_B64, "secrets", None),
    )
    path = tmp_path / "r.jsonl"
    rec = Recorder(path, env="staging", mode="drive", clock=Clock(), redactor=Redactor(known=[LAB_SECRETS[2]]))
    rec.snapshot(snap)
    rec.snapshot(
        dataclasses.replace(
            snap, taken_at=snap.taken_at + 1, checks=(*snap.checks, dataclasses.replace(leaky, target="db2"))
        )
    )
    rec.record("event", kind="output", host="h", text=f"PGBOUNCER_ADMIN_PASSWORD={LAB_SECRETS[2]} ok")
    rec.record("event", kind="output", host="h", text=f"admin pw is {LAB_SECRETS[2]}")
    rec.record("journal", entry={"who": "a", "event": "apply", "reason": f"token: {LAB_SECRETS[0]}"})
    rec.record(
        "action", kind="preview", step="certs", preview={"changes": [f"INTERNAL_TLS_KEY_B64: (x → {FAKE_KEY_B64})"]}
    )
    rec.close()
    text = path.read_text()
    for secret in (*LAB_SECRETS, FAKE_KEY_B64):
        assert secret not in text
    assert text.count(REDACTED) >= 8
    assert read_all_snapshots(path)[0].env == "staging"  # still a readable recording


def test_make_recording_has_no_secret(tmp_path: Path) -> None:
    text = make_recording(tmp_path / "r.jsonl").read_text()
    for secret in LAB_SECRETS:
        assert secret not in text


# -- normalisation: volatile evidence never makes a diff ----------------------------------------------------


def churned(snap, n: int):  # type: ignore[no-untyped-def]
    """`snap` as the collector gives it round `n`: the cert expiry's clock, probe timings, and the servers'
    client lists (SHOW CLIENTS, CLIENT LIST) in a new order — nothing about the fleet changed."""

    def evidence(c: CheckResult) -> CheckResult:
        ev = dict(c.evidence)
        if c.check == "certs.expiry":
            ev["now"] = f"2027-01-15T08:{n // 60:02d}:{n % 60:02d}+00:00"
        if c.check == "ssh.reachable":
            ev["rtt_ms"] = 1.0 + n % 7
        if c.check == "redis.clients":
            plain = list(ev.get("plaintext", ()))
            ev["plaintext"] = plain[n % len(plain) :] + plain[: n % len(plain)] if plain else plain
        return dataclasses.replace(c, evidence=ev, duration_ms=float(n % 5))

    def rotated(view: LegView) -> LegView:
        conns = list(view.connections)
        k = n % max(1, len(conns))
        return dataclasses.replace(view, connections=tuple(conns[k:] + conns[:k]))

    db = snap.database
    legs = {leg: rotated(v) if isinstance(v, LegView) else v for leg, v in db.legs.items()}
    return dataclasses.replace(
        snap,
        taken_at=f.T0 + n,
        checks=tuple(evidence(c) for c in snap.checks),
        certs=tuple(evidence(c) for c in snap.certs),
        database=dataclasses.replace(db, legs=legs, checks=tuple(evidence(c) for c in db.checks)),
    )


def lab_shaped(snap):  # type: ignore[no-untyped-def]
    """The factory snapshot with the evidence the real probes put in it (clocks, timings, client lists)."""
    clients = [
        {"name": s, "addr": f"10.0.2.{10 + i}:{40000 + i}", "laddr": "10.0.1.20:6379"} for i, s in enumerate(f.SERVICES)
    ]
    extra = (
        CheckResult(
            "redis.clients",
            f"{f.DB_HOST}:6379",
            Verdict.WARN,
            "5 of 5 clients on plaintext",
            {"total": 5, "tls": 0, "plaintext": clients},
        ),
        CheckResult("ssh.reachable", f.DB_HOST, Verdict.OK, "reachable", {"rtt_ms": 1.0, "reused": True}),
    )
    certs = tuple(
        dataclasses.replace(
            c, evidence={"not_after": "2027-06-01T00:00:00+00:00", "days_left": 137, "now": "2027-01-15T08:00:00+00:00"}
        )
        if c.check == "certs.expiry"
        else c
        for c in snap.certs
    )
    db = snap.database
    return dataclasses.replace(
        snap, certs=certs, checks=(*certs, *extra), database=dataclasses.replace(db, checks=(*db.checks, *extra))
    )


def test_volatile_evidence_and_server_order_make_no_diff(tmp_path: Path) -> None:
    base = lab_shaped(scenario("straggler"))
    assert sum(len(v.connections) > 2 for v in base.database.legs.values() if isinstance(v, LegView)) >= 2
    path = tmp_path / "r.jsonl"
    rec = Recorder(path, env="staging", mode="watch", full_every=10_000, clock=Clock())
    for n in range(40):
        rec.snapshot(churned(base, n), ts=f.T0 + n)
    rec.close()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    diffs = [r for r in lines if r["t"] == "diff"]
    assert len(diffs) == 39
    touched = {op["path"] for r in diffs for op in r["ops"]}
    assert touched == {"/taken_at"}, touched  # the clock, timings and orders of the rounds never get in
    frame_size = len(json.dumps(next(r for r in lines if r["t"] == "frame")))
    assert max(len(json.dumps(r)) for r in diffs) < 120 < frame_size
    # what a replay gives back: the frame's clocks, the lists sorted — the same fleet
    back = read_all_snapshots(path)
    assert [c.verdict for c in back[-1].checks] == [c.verdict for c in churned(base, 39).checks]
    assert snapshot_to_json(back[0]) == as_recorded(churned(base, 0))


def test_a_real_change_inside_evidence_still_diffs(tmp_path: Path) -> None:
    base = lab_shaped(scenario("straggler"))
    gone = dataclasses.replace(
        base,
        checks=tuple(
            dataclasses.replace(c, evidence={**c.evidence, "total": 4, "plaintext": c.evidence["plaintext"][1:]})
            if c.check == "redis.clients"
            else c
            for c in base.checks
        ),
    )
    path = tmp_path / "r.jsonl"
    rec = Recorder(path, env="staging", mode="watch", full_every=10_000, clock=Clock())
    rec.snapshot(base, ts=f.T0)
    rec.snapshot(dataclasses.replace(gone, taken_at=f.T0 + 1), ts=f.T0 + 1)
    rec.close()
    back = read_all_snapshots(path)
    clients = next(c for c in back[1].checks if c.check == "redis.clients")
    assert clients.evidence["total"] == 4 and len(clients.evidence["plaintext"]) == 4


# -- typed records -------------------------------------------------------------------------------------------


def test_every_record_round_trips_through_its_class(tmp_path: Path) -> None:
    from tests.recording_factory import make_drive_recording

    path = make_drive_recording(tmp_path / "d.jsonl")
    seen: set[str] = set()
    for line in path.read_text().splitlines():
        obj = json.loads(line)
        rec = parse_record(obj)
        assert rec is not None
        seen.add(type(rec).__name__)
        assert parse_record(rec.to_json()) == rec
    assert seen >= {
        "Header",
        "Frame",
        "Diff",
        "Verdicts",
        "Lock",
        "Journal",
        "Action",
        "Event",
        "Outcome",
        "Note",
        "End",
    }
    kinds = {r.kind for r in map(parse_record, map(json.loads, path.read_text().splitlines())) if isinstance(r, Action)}
    assert kinds >= {
        ActionKind.LOCK,
        ActionKind.LOCK_REFUSED,
        ActionKind.PREVIEW,
        ActionKind.CONFIRM,
        ActionKind.CANCEL,
        ActionKind.ERROR,
        ActionKind.UNLOCK,
    }
    preview = next(
        r.preview
        for r in map(parse_record, map(json.loads, path.read_text().splitlines()))
        if isinstance(r, Action) and r.preview is not None
    )
    assert "/voiceai/staging/api/DATABASE_SSL_MODE: (unset → verify-full)" in preview.changes
    assert [g.status for g in preview.gates] == ["open"] and len(preview.restarts) == 2


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ({"t": "action", "ts": 1.0, "kind": "explode"}, "action.kind"),
        ({"t": "action", "ts": 1.0, "kind": "preview"}, "action.preview"),
        ({"t": "action", "ts": 1.0, "kind": "confirm", "reason": 42}, "action.reason"),
        ({"t": "action", "ts": 1.0, "kind": "confirm", "direction": "sideways"}, "action.direction"),
        ({"t": "outcome", "ts": 1.0, "outcome": {"ok": "yes"}}, "outcome.outcome.ok"),
        ({"t": "outcome", "ts": 1.0}, "outcome"),
        ({"t": "note", "ts": float("nan"), "text": "x"}, "note.ts"),
        ({"t": "note", "ts": -5, "text": "x"}, "note.ts"),
        ({"t": "note", "ts": "08:00", "text": "x"}, "note.ts"),
        ({"t": "note", "ts": 1e300, "text": "x"}, "note.ts"),
        ({"t": "note", "ts": 1.0, "text": "x", "level": "panic"}, "note.level"),
        ({"t": "lock", "ts": 1.0, "holder": {"who": ["a"]}}, "lock.holder.who"),
        ({"t": "diff", "ts": 1.0, "seq": 2, "ops": [{"op": "add", "path": "x"}]}, "diff.ops[0]"),
        ({"t": "diff", "ts": 1.0, "seq": 2, "ops": [{"op": "move", "path": "/x"}]}, "diff.ops[0].op"),
        ({"t": "frame", "ts": 1.0, "seq": 1, "snapshot": []}, "frame.snapshot"),
        ({"t": "verdict", "ts": 1.0, "changes": [{"what": 3}]}, "verdict.changes[0].what"),
        ({"t": "journal", "ts": 1.0, "entry": "apply"}, "journal.entry"),
    ],
)
def test_a_record_of_the_wrong_shape_is_refused_by_name(line: dict[str, object], field: str) -> None:
    with pytest.raises(RecordError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_record(line)


def test_what_the_readers_accept_from_older_and_newer_writers() -> None:
    assert parse_record({"t": "hologram", "ts": 1.0}) is None  # a type this reader does not know
    a = parse_record(
        {
            "t": "action",
            "ts": 1.0,
            "kind": "preview",
            "step": "pg-5",
            "preview": {
                "step": "pg-5",
                "changes": ["a"],
                "blockers": ["old style", {"id": "lock", "text": "new style"}],
            },
        }
    )
    assert isinstance(a, Action) and a.preview is not None
    assert a.preview.blockers == (Blocker("old style"), Blocker("new style", "lock"))
    o = parse_record({"t": "outcome", "ts": 1.0, "outcome": {"ok": False, "stage": "stopped", "reason": "r"}})
    assert isinstance(o, Outcome) and o.outcome.stage == "stopped"
    e = parse_record({"t": "event", "ts": 1.0, "kind": "drain", "text": "draining"})
    assert isinstance(e, Event) and e.kind == "drain"
    j = parse_record(
        {"t": "journal", "ts": 1.0, "entry": {"event": "apply-done", "ok": False, "stage": "refused", "who": "bob"}}
    )
    assert isinstance(j, Journal) and j.entry.refused
    assert isinstance(parse_record({"t": "lock", "ts": 1.0, "holder": None, "known": False, "error": "x"}), Lock)
    assert isinstance(parse_record({"t": "verdict", "ts": 1.0, "seq": 3, "changes": []}), Verdicts)
    assert PreviewSummary.from_json({"direction": "rollback"}).direction is Direction.ROLLBACK
    newer = {
        "step": "pg-5",
        "changes": [],
        "recreates": ["api"],
        "estimate_s": 40,
        "direction": "advance",
        "blockers": [{"id": "h1", "text": "t", "kind": "hazard"}],
    }
    assert {k: v for k, v in PreviewSummary.from_json(newer).to_json().items() if k in newer} == newer


def test_a_record_the_recorder_refuses_becomes_an_error_note(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    rec = Recorder(path, env="staging", mode="drive", clock=Clock())
    out = rec.record("action", kind="teleport", step="pg-5")
    # a field under a name the readers do not read is refused by name, not dropped
    dialect = rec.record("action", kind="preview", step="pg-5", preview={"changes": []}, change_lines=["x"])
    rec.record(
        "outcome",
        outcome={"ok": True, "stage": "done", "reason": "fine", "changed": ["A"]},
        step="pg-5",
        direction="advance",
    )
    rec.close()
    assert out["t"] == "note" and out["level"] == "error" and "action.kind" in out["text"]
    assert dialect["t"] == "note" and "no field 'change_lines'" in dialect["text"]
    with Recording.open(path) as r:
        assert not r.damaged
        got = list(r.records())
        assert [type(x).__name__ for x in got] == ["Note", "Note", "Outcome", "End"]
        outcome = got[2]
        assert isinstance(outcome, Outcome) and outcome.outcome.extra == {"changed": ["A"]}  # a newer engine's


# -- reading any file ----------------------------------------------------------------------------------------


def test_special_files_are_refused_in_one_line_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    for p, what in (
        (fifo, "named pipe"),
        (tmp_path, "directory"),
        (Path("/dev/null"), "device"),
        (tmp_path / "nope.jsonl", "no such file"),
    ):
        with pytest.raises(RecordingError, match=what) as exc:
            Recording.open(p)
        assert "\n" not in str(exc.value)
    assert not is_recording(fifo)


def test_a_line_longer_than_the_limit_is_damage_and_memory_stays_bounded(tmp_path: Path) -> None:
    import tracemalloc

    path = make_recording(tmp_path / "r.jsonl")
    lines = path.read_bytes().split(b"\n")
    with path.open("wb") as fh:
        fh.write(b"\n".join(lines[:10]) + b"\n")
        fh.write(b'{"t":"note","ts":1800000030.0,"text":"' + b"x" * (12 << 20) + b'"}\n')  # 12 MiB
        fh.write(b"\n".join(lines[10:]))
    tracemalloc.start()
    try:
        with Recording.open(path, max_line=4 << 20) as rec:
            assert rec.damaged == {11: "longer than 4 MiB"}
            assert rec.snapshot(len(rec.snaps) - 1) is not None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, peak


# -- retention and redaction ------------------------------------------------------------------------------


def test_prune_deletes_only_its_own_recordings(tmp_path: Path) -> None:
    d = tmp_path / "rec"
    d.mkdir()
    old = 1_000_000.0
    now = old + 100 * 86400
    others = {
        "app.jsonl": '{"level":"info","msg":"started"}\n',
        "empty.jsonl": "",
        "other-tool.jsonl": '{"t":"header","format":"someone-elses-recording","version":1}\n',
    }
    for name, text in others.items():
        (d / name).write_text(text)
    mine = d / "staging-old.jsonl"
    Recorder(mine, env="staging", mode="watch", clock=Clock()).close()
    outside = tmp_path / "elsewhere.jsonl"
    Recorder(outside, env="staging", mode="watch", clock=Clock()).close()
    (d / "link.jsonl").symlink_to(outside)
    os.mkfifo(d / "pipe.jsonl")
    (d / "dir.jsonl").mkdir()
    for p in [*(d / n for n in others), mine, outside]:
        os.utime(p, (old, old))
    gone = prune(d, max_files=None, max_age_days=90, now=now)
    assert gone == [mine] and not mine.exists()
    assert all((d / n).read_text() == t for n, t in others.items())
    assert outside.exists() and (d / "link.jsonl").is_symlink() and (d / "pipe.jsonl").exists()
    assert prune(d, max_files=0, max_age_days=None, now=now) == []  # nothing left that is provably its own


def test_redaction_keeps_who_disagrees_on_the_key(tmp_path: Path) -> None:
    from probes.certagreement import check_agreement

    key_a, key_b = FAKE_KEY_B64, FAKE_KEY_B64[::-1]
    agreement = check_agreement(
        {"api": ("Q0E=", "Q0VSVA==", key_a), "web": ("Q0E=", "Q0VSVA==", key_a), "voice": ("Q0E=", "Q0VSVA==", key_b)},
        target="staging",
    )
    assert agreement.verdict is Verdict.FAIL
    snap = scenario("ready-pg5")
    snap = dataclasses.replace(snap, certs=(*snap.certs, agreement), checks=(*snap.checks, agreement))
    path = tmp_path / "r.jsonl"
    rec = Recorder(path, env="staging", mode="watch", services=f.SERVICES, clock=Clock())
    rec.snapshot(snap)
    rec.close()
    text = path.read_text()
    assert key_a not in text and key_b not in text
    back = read_all_snapshots(path)[0]
    ev = next(c for c in back.certs if c.check == "certs.agreement").evidence
    assert ev["differ"] == {"INTERNAL_TLS_KEY_B64": ["voice"]}
    assert ev["values"]["INTERNAL_TLS_KEY_B64"]["groups"] == [["api", "web"], ["voice"]]
    assert (
        "voice holds a different INTERNAL_TLS_KEY_B64 than api, web"
        in next(c for c in back.certs if c.check == "certs.agreement").summary
    )
    # a password under a secret-named key is still a secret, in any shape
    r = Redactor(public=["api"])
    assert r.value({"REDIS_PASSWORD": ["hunter2-x", "api"]}) == {"REDIS_PASSWORD": [REDACTED, "api"]}
    assert r.value({"requirepass": "hunter2-x"}) == {"requirepass": REDACTED}
