"""Recordings: round trips, diffs, redaction, retention, the index; and that the non-UI modules of tui/
never load textual."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from probes.model import CheckResult, Verdict
from probes.snapshot import Connection, snapshot_to_json
from tests import snapshots_factory as f
from tests.test_tui_support import FAKE_KEY_B64, LAB_SECRETS, Clock, make_recording, scenario
from tui.recording import (
    FORMAT_VERSION,
    Recorder,
    Recording,
    RecordingError,
    apply_ops,
    diff,
    keyed,
    prune,
    read_all_snapshots,
    recording_path,
    unkeyed,
)
from tui.redact import REDACTED, Redactor, secret_key

ROOT = Path(__file__).resolve().parent.parent


def _without_check_timings(s):  # type: ignore[no-untyped-def]
    def strip(cs):  # type: ignore[no-untyped-def]
        return tuple(dataclasses.replace(c, duration_ms=0.0) for c in cs)

    db = s.database
    return dataclasses.replace(
        s, checks=strip(s.checks), certs=strip(s.certs),
        database=dataclasses.replace(db, checks=strip(db.checks)) if db else None,
        instances=tuple(dataclasses.replace(i, checks=strip(i.checks)) for i in s.instances))


def test_keyed_form_round_trips() -> None:
    for name in ("fresh", "ready-pg5", "straggler", "cert-fail", "done"):
        snap = scenario(name)
        js = snapshot_to_json(snap)
        assert unkeyed(keyed(js)) == js


def test_diffs_reproduce_every_snapshot(tmp_path: Path) -> None:
    snaps = [scenario(n, taken_at=f.T0 + i) for i, n in enumerate(
        ["fresh", "fresh", "cert-fail", "ready-pg5", "straggler", "straggler", "ready-pg5", "done"])]
    # a connection appearing mid-list, an instance disappearing, a timing changing
    snaps.append(f.with_connections(snaps[-1], Connection("leg1", "api", "staging-api-01", "10.0.2.11:1", True),
                                    leg="leg1"))
    snaps.append(dataclasses.replace(snaps[-1], instances=snaps[-1].instances[1:], taken_at=f.T0 + 20))
    path = tmp_path / "r.jsonl"
    clock = Clock(f.T0)
    rec = Recorder(path, env="staging", mode="watch", full_every=4, clock=clock)
    for i, s in enumerate(snaps):
        clock.t = f.T0 + i
        rec.snapshot(s)
    rec.close()
    back = read_all_snapshots(path)
    assert back == snaps
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
    assert back[0] == a and _without_check_timings(back[1]) == _without_check_timings(b)


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
    path.write_bytes(data + b'{"t":"diff","ts":1800009999.0,"seq":999,"ops":[{"op":"repl')
    rec = Recording.open(path)
    assert rec.snaps[-1].seq == 999  # indexed by its prefix...
    rec.snapshot(len(rec.snaps) - 2)  # ...the ones before it still load
    rec.close()


def test_retention_keeps_the_newest(tmp_path: Path) -> None:
    d = tmp_path / "rec"
    d.mkdir()
    for i in range(6):
        p = d / f"staging-{i}.jsonl"
        p.write_text("{}\n")
        os.utime(p, (1_000_000 + i * 86400, 1_000_000 + i * 86400))
    gone = prune(d, max_files=3, max_age_days=None, now=1_000_000 + 6 * 86400)
    assert sorted(p.name for p in gone) == ["staging-0.jsonl", "staging-1.jsonl", "staging-2.jsonl"]
    gone = prune(d, max_files=None, max_age_days=1.5, now=1_000_000 + 6 * 86400)
    assert sorted(p.name for p in gone) == ["staging-3.jsonl", "staging-4.jsonl"]


# -- redaction ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["REDIS_PASSWORD", "pgbouncer_admin_password", "INTERNAL_TLS_KEY_B64", "token",
                                  "AWS_SECRET_ACCESS_KEY", "private_key", "secret"])
def test_secret_key_names(name: str) -> None:
    assert secret_key(name)


@pytest.mark.parametrize("name", ["DATABASE_SSL_MODE", "postgres_password_key", "secret_name", "fingerprint",
                                  "tls_auth_clients", "REDIS_TLS_CA_FILE", "key_match"])
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
    out = r.value({"configured": {"REDIS_PASSWORD": {"value": "pw", "source": "secrets", "version": 3}},
                   "evidence": {"password": "pw2", "answer": "S", "n": 5}})
    assert out == {"configured": {"REDIS_PASSWORD": {"value": REDACTED, "source": "secrets", "version": 3}},
                   "evidence": {"password": REDACTED, "answer": "S", "n": 5}}


def test_no_secret_reaches_a_recording(tmp_path: Path) -> None:
    """Secrets in snapshots, events, journal entries and previews: a scan of the file finds none."""
    snap = scenario("straggler")
    leaky = CheckResult("redis.plain", "db:6379", Verdict.OK, f"AUTH ok (requirepass \"{LAB_SECRETS[1]}\")",
                        {"password": LAB_SECRETS[1], "dsn": f"postgresql://postgres:{LAB_SECRETS[0]}@db/app",
                         "key": f"-----BEGIN EC PRIVATE KEY-----\n{FAKE_KEY_B64}\n-----END EC PRIVATE KEY-----"})
    snap = dataclasses.replace(snap, checks=(*snap.checks, leaky))
    snap = f.with_config(snap, "api", "INTERNAL_TLS_KEY_B64",
                         type(snap.configured["api"]["DATABASE_SSL_MODE"])(FAKE_KEY_B64, "secrets", None))
    path = tmp_path / "r.jsonl"
    rec = Recorder(path, env="staging", mode="drive", clock=Clock(), redactor=Redactor(known=[LAB_SECRETS[2]]))
    rec.snapshot(snap)
    rec.snapshot(dataclasses.replace(snap, taken_at=snap.taken_at + 1,
                                     checks=(*snap.checks, dataclasses.replace(leaky, target="db2"))))
    rec.record("event", kind="output", host="h", text=f"PGBOUNCER_ADMIN_PASSWORD={LAB_SECRETS[2]} ok")
    rec.record("event", kind="output", host="h", text=f"admin pw is {LAB_SECRETS[2]}")
    rec.record("journal", entry={"who": "a", "event": "apply", "reason": f"token: {LAB_SECRETS[0]}"})
    rec.record("action", kind="preview", preview={"change_lines": [f"INTERNAL_TLS_KEY_B64: (x → {FAKE_KEY_B64})"]})
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


def test_headless_modules_never_import_textual() -> None:
    code = ("import sys; import tui.recording, tui.redact, tui.view, tui.replay, tui.report, tui.feed, "
            "tui.commands; bad = [m for m in sys.modules if m == 'textual' or m.startswith('textual.')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
