"""Shared pieces of the TUI tests (no tests here): a fake feed (the engine test double is in
tests/engine_double.py), lab-like snapshots from `tests/snapshots_factory.py`, and fixed
recordings made from them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cli.paths import screenshots_dir
from plans.plan import default_plan
from probes.model import CheckResult, Verdict
from probes.snapshot import CaFile, FleetSnapshot
from session.feed import Observation
from session.recording.writer import Recorder
from tests import snapshots_factory as f
from tui.app import CockpitApp, make_app

T0 = f.T0
SERVICES = f.SERVICES
# values standing in for the lab's passwords and key material: none may reach a recording
LAB_SECRETS = ("Xq9-labPostgresPw-77Zk", "Rb3-labRedisPw-41Qm", "Pg4-labAdminPw-08Hv")
FAKE_KEY_B64 = "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCk1JSUV2UUlCQURBTkJna3Foa2lHOXcwQkFRRUZBQVND"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, t: float = T0 + 3) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def lab_like(snap: FleetSnapshot, *, cert_fail: bool = False) -> FleetSnapshot:
    """`snap` with the database checks the real collector adds (handshakes, listeners, e2e)."""
    db = snap.database
    assert db is not None
    target = f"{f.DB_HOST}"
    pg = CheckResult(
        "tls.postgres",
        f"{target}:5432",
        Verdict.OK,
        "TLSv1.3 ok, certificate covers staging-database-01.voiceai.internal"
        if db.postgres_ssl
        else "plaintext only: TLS not offered (POSTGRES_TLS_ENABLED is not on)",
        {
            "answer": "S" if db.postgres_ssl else "N",
            "tls_version": "TLSv1.3" if db.postgres_ssl else None,
            "fingerprint": "9f" * 32,
            "sans": ["DNS:staging-database-01.voiceai.internal"],
        },
        3.2,
    )
    if cert_fail:
        pg = dataclasses.replace(
            pg, verdict=Verdict.FAIL, summary="certificate does not cover staging-database-01.voiceai.internal (SAN)"
        )
    offered = db.pgbouncer_client_tls_sslmode not in (None, "disable")
    pb = CheckResult(
        "tls.pgbouncer",
        f"{target}:6432",
        Verdict.OK,
        "TLSv1.3 ok, certificate covers staging-database-01.voiceai.internal"
        if offered
        else "plaintext only: TLS not offered (client_tls_sslmode=disable)",
        {"answer": "S" if offered else "N"},
        1.4,
    )
    rp = CheckResult(
        "listener.redis",
        f"{target}:6379",
        Verdict.OK,
        "Redis answered in plaintext" if db.redis_port else "plaintext listener dropped",
        {"listening": bool(db.redis_port)},
        0.8,
    )
    rt = CheckResult(
        "tls.redis",
        f"{target}:6380",
        Verdict.OK,
        "TLSv1.3 ok" if db.redis_tls_port else "no TLS listener (REDIS_TLS_ENABLED is not true)",
        {"listening": bool(db.redis_tls_port)},
        1.5,
    )
    e2e = CheckResult(
        "e2e.query",
        target,
        Verdict.OK if db.end_to_end_ok else Verdict.FAIL,
        "a query through PgBouncer answered in 4 ms" if db.end_to_end_ok else "no answer in 3 s",
        {},
        4.0,
    )
    checks = (pg, pb, rp, rt, e2e)
    certs = snap.certs
    return dataclasses.replace(snap, database=dataclasses.replace(db, checks=checks), checks=tuple(certs) + checks)


def scenario(name: str, taken_at: float = T0) -> FleetSnapshot:
    """Named fleet states for the screens: fresh, ready-pg5, straggler, cert-fail, done, ca-missing."""
    if name == "fresh":
        return lab_like(f.fleet(pg=1, taken_at=taken_at))
    if name == "ready-pg5":
        return lab_like(f.fleet(pg=4, redis=1, taken_at=taken_at))
    if name == "straggler":
        return lab_like(
            f.fleet(pg=5, redis=1, running={"staging-voice-02": {"DATABASE_SSL_MODE": None}}, taken_at=taken_at)
        )
    if name == "cert-fail":
        return lab_like(f.fleet(pg=2, certs="bad-san", taken_at=taken_at), cert_fail=True)
    if name == "done":
        return lab_like(f.fleet(pg=7, redis=3, taken_at=taken_at))
    if name == "ca-missing":  # pg-5 for api is next, and blocked: the CA is not on staging-api-01
        snap = scenario("ready-pg5", taken_at)
        inst = next(i for i in snap.instances if i.host == "staging-api-01")
        return f.with_instance(snap, inst.host, ca_files=dict.fromkeys(inst.ca_files, CaFile.MISSING))
    raise KeyError(name)


class FakeFeed:
    """Observations from a list of snapshots (the last one repeats)."""

    def __init__(
        self,
        snaps: Sequence[FleetSnapshot],
        *,
        lock: dict[str, Any] | None = None,
        journal: Sequence[dict[str, Any]] = (),
    ) -> None:
        self.snaps = list(snaps)
        self.i = 0
        self.lock = lock
        self.journal = list(journal)

    async def observe(self) -> Observation:
        s = self.snaps[min(self.i, len(self.snaps) - 1)]
        self.i += 1
        return Observation(s, lock=self.lock, lock_known=True, journal=tuple(self.journal))


# -- apps and recordings ----------------------------------------------------------------------------


def watch_app(
    snaps: Sequence[FleetSnapshot],
    *,
    clock: Callable[[], float] | None = None,
    recorder: Recorder | None = None,
    protected: bool = False,
    env: str = "staging",
    lock: dict[str, Any] | None = None,
    journal: Sequence[dict[str, Any]] = (),
) -> CockpitApp:
    return make_app(
        "watch",
        env_name=env,
        protected=protected,
        services=SERVICES,
        feed=FakeFeed(snaps, lock=lock, journal=journal),
        clock=clock or Clock(),
        recorder=recorder,
        poll_interval=None,
        screenshots=screenshots_dir(),
    )


def drive_app(
    engine: Any,
    *,
    clock: Callable[[], float] | None = None,
    recorder: Recorder | None = None,
    protected: bool = False,
    env: str = "staging",
) -> CockpitApp:
    return make_app(
        "drive",
        env_name=env,
        protected=protected,
        services=SERVICES,
        feed=FakeFeed(engine.snaps),
        engine=engine,
        clock=clock or Clock(),
        recorder=recorder,
        poll_interval=None,
        screenshots=screenshots_dir(),
    )


JOURNAL = (
    {
        "v": 1,
        "ts": T0 - 600,
        "env": "staging",
        "who": "alice",
        "where": "bastion",
        "event": "apply",
        "step": "pg-4",
        "ok": True,
        "reason": "change window 42",
    },
)


def make_recording(path: Path, *, full_every: float = 5.0) -> Path:
    """A fixed recording: the fleet from fresh to a straggler, an action cycle with a failure and its
    rollback, lock and journal records — what a drive session writes."""
    clock = Clock(T0)
    rec = Recorder(
        path,
        env="staging",
        mode="drive",
        protected=False,
        plan="internal-encryption",
        services=SERVICES,
        full_every=full_every,
        clock=clock,
        who="tester",
    )
    from session.view import build_view, verdict_changes

    plan = default_plan()
    states = ["fresh"] * 3 + ["cert-fail"] * 3 + ["ready-pg5"] * 6 + ["straggler"] * 6 + ["ready-pg5"] * 4
    prev = None
    base = {"step": "pg-5", "service": "api", "direction": "advance", "who": "tester"}
    for n, name in enumerate(states):
        clock.t = T0 + n * 2
        snap = scenario(name, taken_at=clock.t)
        view = build_view(plan, snap, SERVICES, now=clock.t)
        r = rec.snapshot(snap, ts=clock.t)
        changes = verdict_changes(prev, view)
        if changes:
            rec.record("verdict", ts=clock.t, seq=r["seq"], changes=changes)
        prev = view
        if n == 1:
            rec.record("journal", entry=JOURNAL[0], backlog=True)
            rec.record("lock", holder=None, known=True)
        if n == 12:
            rec.record("action", kind="lock", **base)
            rec.record(
                "lock",
                holder={"who": "tester", "where": "here", "step": "pg-5", "since": clock.t, "token": "t"},
                known=True,
            )
            rec.record(
                "action",
                kind="preview",
                preview={
                    "change_lines": ["/voiceai/staging/api/DATABASE_SSL_MODE: (unset → verify-full)"],
                    "restarts": [{"host": "staging-api-01"}, {"host": "staging-api-02"}],
                    "gates": [{"gate": "pgbouncer_offers_tls_and_ca_files", "status": "open", "reason": "ok"}],
                },
                **base,
            )
            rec.record("action", kind="confirm", reason="change window 42: api first", **base)
            rec.record("event", kind="restart", host="staging-api-01", text="update.sh --restart-only", at=clock.t)
            rec.record(
                "event",
                kind="output",
                host="staging-api-01",
                text=f"REDIS_PASSWORD={LAB_SECRETS[1]} postgresql://postgres:{LAB_SECRETS[0]}@db/x",
                at=clock.t,
            )
            rec.record("event", kind="error", host="staging-api-02", text="health check failed", at=clock.t)
            rec.record(
                "outcome",
                outcome={"ok": False, "stage": "verify", "reason": "staging-api-02 unhealthy"},
                reason="change window 42: api first",
                **base,
            )
            rec.record("action", kind="unlock", **base)
        if n == 14:
            rb = {**base, "direction": "rollback"}
            rec.record("action", kind="confirm", reason="api-02 unhealthy: back", **rb)
            rec.record(
                "outcome",
                outcome={"ok": True, "stage": "verified", "reason": "rolled back"},
                reason="api-02 unhealthy: back",
                **rb,
            )
            rec.record("lock", holder=None, known=True)
    rec.close()
    return path


def screen_text(app: CockpitApp) -> str:
    """Every line of the screen on top as plain text (what the operator sees, colours aside)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())
