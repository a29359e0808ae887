"""Benchmark the cockpit TUI with a synthetic 50-host fleet (no lab needed).

    .venv/bin/python bench/tui.py [--runs 5] [--cpu-seconds 30] [--write-docs]

Measures: applying a new 50-host snapshot to the screen (view + record + tables + render), key-to-screen
latency, CPU of the UI process at 1 snapshot/s, recording size for 8 h × 50 hosts (extrapolated from a
measured hour at 1 snapshot/s, and checked on an 8-hour file made from that hour), and replay open + seek
on that 8-hour file. Targets from issue 5. The screen figures are timings on a shared machine: `--runs N`
measures them N times (a fresh app each time) and reports the median of each figure over the runs; the
load average is printed with them. `--write-docs` puts the table into docs/benchmarks.md (section "TUI").
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from plans.plan import default_plan  # noqa: E402
from probes.model import CheckResult, Verdict  # noqa: E402
from probes.snapshot import (  # noqa: E402
    CaFile,
    ConfiguredValue,
    Connection,
    DatabaseState,
    FleetSnapshot,
    Handshake,
    InstanceState,
    LegUse,
    LegView,
)
from session.feed import Observation  # noqa: E402
from session.recording.reader import Recording  # noqa: E402
from session.recording.writer import Recorder  # noqa: E402
from session.view import build_view  # noqa: E402
from tui.app import make_app  # noqa: E402

T0 = 1_800_000_000.0
SHAPE = {"api": 12, "web": 8, "voice": 14, "ops": 6, "telpro": 4, "media": 6}  # 50 app hosts
SERVICES = tuple(SHAPE)
DB = "prod-database-01"


def _cv(v: str | None, src: str = "ssm", ver: int | None = 3) -> ConfiguredValue:
    return ConfiguredValue(v, src, ver)


def base_fleet() -> FleetSnapshot:
    """A 50-host fleet half-way through the rollout (pg-5 under way), shaped like the collector's output."""
    rnd = random.Random(1)
    configured: dict[str, dict[str, ConfiguredValue]] = {
        "database": {
            "POSTGRES_TLS_ENABLED": _cv("on"),
            "POSTGRES_FORCE_SSL": _cv("off", "default", None),
            "PGBOUNCER_SERVER_TLS_SSLMODE": _cv("verify-ca"),
            "PGBOUNCER_CLIENT_TLS_SSLMODE": _cv("allow"),
            "REDIS_TLS_ENABLED": _cv("true"),
            "REDIS_FORCE_TLS": _cv("false", "default", None),
        }
    }
    instances: list[InstanceState] = []
    conns: list[Connection] = [
        Connection(
            "leg2", "pgbouncer", None, f"10.0.1.20:{40000 + i}", True, "TLSv1.3/TLS_AES_256_GCM_SHA384/ECDH=prime256v1"
        )
        for i in range(12)
    ]
    for si, (svc, n) in enumerate(SHAPE.items()):
        flipped = si < 3
        cfg = {
            "DATABASE_SSL_MODE": _cv("verify-full" if flipped else None, "ssm" if flipped else "unset"),
            "DATABASE_SSL_CA_FILE": _cv("/etc/ssl/internal/ca.crt", "default", None),
            "REDIS_TLS_ENABLED": _cv("false", "default", None),
            "REDIS_TLS_CA_FILE": _cv("", "default", None),
        }
        configured[svc] = cfg
        for k in range(1, n + 1):
            host = f"prod-{svc}-{k:02d}"
            addr = f"10.0.{si + 2}.{10 + k}"
            for c in range(2):
                conns.append(
                    Connection(
                        "leg1",
                        svc,
                        host,
                        f"{addr}:{50000 + 10 * k + c}",
                        flipped,
                        "TLSv1.3/TLS_AES_256_GCM_SHA384" if flipped else "",
                    )
                )
            conns.append(Connection("redis", svc, host, f"{addr}:{51000 + k}", False, "laddr 10.0.1.20:6379"))
            checks = (
                CheckResult(
                    "ssh.reachable", host, Verdict.OK, "reachable (sftp stat /)", {"via": "bastion"}, rnd.uniform(1, 9)
                ),
                CheckResult("instance.ca_file", host, Verdict.OK, "/etc/ssl/internal/ca.crt is the internal CA"),
                CheckResult("instance.health", host, Verdict.OK, f"http://{addr}:8080/health: 200"),
                CheckResult(
                    "config.sslmode",
                    host,
                    Verdict.WARN if not flipped else Verdict.OK,
                    "DATABASE_SSL_MODE unset: the driver's default 'prefer' goes to unverified TLS"
                    if not flipped
                    else "DATABASE_SSL_MODE=verify-full",
                ),
            )
            instances.append(
                InstanceState(
                    host,
                    svc,
                    addr,
                    reachable=True,
                    running=True,
                    healthy=True,
                    ca_files={"/etc/ssl/internal/ca.crt": CaFile.MATCHES},
                    telpro_ssl=True if svc == "telpro" else False,
                    db=LegUse(tls=2, plain=0) if flipped else LegUse(tls=0, plain=2),
                    redis=LegUse(tls=0, plain=1),
                    configured=dict(cfg),
                    checks=checks,
                )
            )
    cert_ev = {
        "subject": "CN=prod-database-01.voiceai.internal",
        "issuer": "CN=VoiceAI Internal CA",
        "sans": ["DNS:prod-database-01.voiceai.internal", "DNS:localhost", "IP:10.0.1.20"],
        "not_before": "2026-01-01T00:00:00+00:00",
        "not_after": "2027-01-01T00:00:00+00:00",
        "days_left": 200,
        "fingerprint": "9f" * 32,
    }
    redis_clients = [{"name": c.service, "addr": c.addr, "laddr": "10.0.1.20:6379"} for c in conns if c.leg == "redis"]
    pgb_plain = [
        {"addr": c.addr.rsplit(":", 1)[0], "port": int(c.addr.rsplit(":", 1)[1]), "application_name": c.service}
        for c in conns
        if c.leg == "leg1" and not c.tls
    ]
    db_checks = (
        CheckResult(
            "redis.clients",
            f"{DB}:6379",
            Verdict.WARN,
            f"{len(redis_clients)} of {len(redis_clients)} client(s) on plaintext (allowed until REDIS_FORCE_TLS=true)",
            {"total": len(redis_clients), "tls": 0, "plaintext": redis_clients},
            0.9,
        ),
        CheckResult(
            "pgbouncer.clients",
            f"{DB}:6432",
            Verdict.WARN,
            f"{len(pgb_plain)} client(s) on plaintext (allowed: client_tls_sslmode does not require TLS yet)",
            {"total": len(pgb_plain) + 36, "tls": 36, "plaintext": pgb_plain},
            1.1,
        ),
        CheckResult(
            "tls.postgres",
            f"{DB}:5432",
            Verdict.OK,
            "TLSv1.3 ok, certificate covers the DNS name",
            {"answer": "S", "tls_version": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384", **cert_ev},
            3.2,
        ),
        CheckResult("tls.pgbouncer", f"{DB}:6432", Verdict.OK, "TLSv1.3 ok", {"answer": "S", **cert_ev}, 1.4),
        CheckResult("listener.redis", f"{DB}:6379", Verdict.OK, "Redis answered", {"listening": True}, 0.8),
        CheckResult("tls.redis", f"{DB}:6380", Verdict.OK, "TLSv1.3 ok", {"listening": True, **cert_ev}, 1.5),
        CheckResult("e2e.query", DB, Verdict.OK, "a query through PgBouncer answered in 4 ms", {}, 4.0),
        *(
            CheckResult("listener.bound", f"{DB}:{p}", Verdict.OK, f"listening on :{p}")
            for p in (5432, 6432, 6379, 6380)
        ),
    )
    expiry_ev = {
        "not_before": cert_ev["not_before"],
        "not_after": cert_ev["not_after"],
        "days_left": 200,
        "warn_days": 21,
        "now": "2027-01-15T08:00:00+00:00",
    }
    certs = tuple(
        CheckResult(c, s, Verdict.OK, f"{c} ok", expiry_ev if c == "certs.expiry" else {})
        for s in ("database", *SERVICES)
        for c in (
            "certs.present",
            "certs.decode",
            "certs.ca",
            "certs.chain",
            "certs.key_match",
            "certs.san",
            "certs.expiry",
        )
    )
    legs = {
        leg: LegView(tuple(c for c in conns if c.leg == leg), own=2 if leg != "postgres" else 0)
        for leg in ("leg1", "leg2", "postgres", "redis")
    }
    db = DatabaseState(
        DB,
        reachable=True,
        postgres_ssl=True,
        pg_hba_hostssl_only=False,
        pgbouncer_client_tls_sslmode="allow",
        pgbouncer_server_tls_sslmode="verify-ca",
        redis_port=6379,
        redis_tls_port=6380,
        postgres_tls=Handshake.VERIFIED,
        pgbouncer_tls=Handshake.VERIFIED,
        redis_tls=Handshake.VERIFIED,
        end_to_end_ok=True,
        otel_redis_endpoint="10.0.1.20:6380",
        legs=legs,
        checks=db_checks,
    )
    all_checks = (
        *(c for i in instances for c in i.checks[:1]),
        *certs,
        *db_checks,
        *(c for i in instances for c in i.checks[1:]),
    )
    return FleetSnapshot("production", T0, 850.0, False, configured, db, tuple(instances), certs, all_checks)


class Churn:
    """Successive snapshots as a live fleet gives them: timings every round, the clocks inside evidence
    (the cert expiry check's "now") every round, the servers' client lists (SHOW CLIENTS, CLIENT LIST)
    in a new order every round, a reconnect now and then, a health flap every few minutes."""

    def __init__(self, base: FleetSnapshot, seed: int = 7) -> None:
        self.snap = base
        self.rnd = random.Random(seed)
        self.n = 0

    def next(self) -> FleetSnapshot:
        s, rnd = self.snap, self.rnd
        self.n += 1
        t = T0 + self.n

        now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(t))
        shift = rnd.randrange(1, 50)

        def retime(c: CheckResult) -> CheckResult:
            ev = c.evidence
            if c.check == "certs.expiry":
                ev = {**ev, "now": now}
            elif isinstance(ev.get("plaintext"), list) and ev["plaintext"]:
                plain = list(ev["plaintext"])
                k = shift % len(plain)
                ev = {**ev, "plaintext": plain[k:] + plain[:k]}  # the server's order, new every round
            if ev is not c.evidence:
                c = dataclasses.replace(c, evidence=ev)
            return dataclasses.replace(c, duration_ms=round(rnd.uniform(0.5, 9.0), 2)) if c.duration_ms else c

        insts = list(s.instances)
        db = s.database
        assert isinstance(db, DatabaseState)
        legs: dict[Any, Any] = {}
        for leg, view in db.legs.items():
            assert isinstance(view, LegView)
            conns = list(view.connections)
            if conns and leg == "leg1" and self.n % 20 == 0:  # an app reconnects: a new client port
                i = rnd.randrange(len(conns))
                c = conns[i]
                host, _, port = c.addr.rpartition(":")
                conns[i] = dataclasses.replace(c, addr=f"{host}:{int(port) + 1000}")
            k = shift % len(conns) if conns else 0
            legs[leg] = dataclasses.replace(view, connections=tuple(conns[k:] + conns[:k]))  # the server's order
        if self.n % 240 == 0:  # a health flap
            i = rnd.randrange(len(insts))
            inst = insts[i]
            insts[i] = dataclasses.replace(inst, healthy=not inst.healthy)
        checks = tuple(retime(c) for c in s.checks)
        db = dataclasses.replace(db, legs=legs, checks=tuple(retime(c) for c in db.checks))
        self.snap = dataclasses.replace(
            s,
            taken_at=t,
            duration_ms=round(rnd.uniform(400, 1200), 1),
            instances=tuple(insts),
            database=db,
            checks=checks,
            certs=tuple(retime(c) for c in s.certs),
        )
        return self.snap


class Feed:
    def __init__(self, snaps: list[FleetSnapshot]) -> None:
        self.snaps = snaps
        self.i = 0

    async def observe(self) -> Observation:
        s = self.snaps[self.i % len(self.snaps)]
        self.i += 1
        return Observation(s, lock=None, lock_known=True)


def pct(values: list[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, round(p / 100 * (len(v) - 1)))]


# ------------------------------------------------------------------------------------------------


RENDERS: list[float] = []  # perf_counter() at the end of every screen update (compositor refresh)


def _watch_renders() -> None:
    """Record when each screen update finishes: that is when a change is on the screen."""
    from textual.screen import Screen

    if getattr(Screen._compositor_refresh, "_bench_timed", False):
        return  # already watched (an earlier run)
    original = Screen._compositor_refresh

    def timed(self: Screen[Any]) -> None:
        original(self)
        RENDERS.append(time.perf_counter())

    timed._bench_timed = True  # type: ignore[attr-defined]
    Screen._compositor_refresh = timed  # type: ignore[method-assign]


def _shown_after(t0: float, t_end: float) -> float | None:
    """ms from t0 to the last screen update that finished before t_end (None: none happened)."""
    done = [t for t in RENDERS if t0 <= t <= t_end]
    return (done[-1] - t0) * 1000 if done else None


async def ui_figures(snaps: list[FleetSnapshot], tmp: Path) -> dict[str, Any]:
    _watch_renders()
    clock = [T0]
    rec = Recorder(tmp / "ui.jsonl", env="production", mode="watch", services=SERVICES, clock=lambda: clock[0])
    app = make_app(
        "watch",
        env_name="production",
        protected=True,
        services=SERVICES,
        feed=Feed(snaps[:1]),
        recorder=rec,
        clock=lambda: clock[0],
        poll_interval=None,
    )
    apply_ms: list[float] = []
    view_ms: list[float] = []
    keys_ms: list[float] = []
    per_key: dict[str, list[float]] = {}
    async with app.run_test(size=(120, 40)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        plan = app.config.plan
        for s in snaps[1:41]:
            clock[0] = s.taken_at
            t0 = time.perf_counter()
            build_view(plan, s, SERVICES, now=clock[0])
            view_ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            app.absorb(Observation(s, lock=None, lock_known=True))  # view + verdict changes + record + post
            await pilot.pause()  # SnapshotArrived handled, tables reconciled, screen rendered
            shown = _shown_after(t0, time.perf_counter())
            if shown is not None:
                apply_ms.append(shown)
        sequence = ["down"] * 8 + ["up"] * 8 + ["2", "down", "down", "up", "4", "3", "1"] + ["down", "up"] * 4
        for _ in range(4):
            for key in sequence:
                await pilot.pause()
                t0 = time.perf_counter()
                await pilot.press(key)
                shown = _shown_after(t0, time.perf_counter())
                if shown is not None:
                    keys_ms.append(shown)
                    per_key.setdefault(key, []).append(shown)
    rec.close()
    return {
        "apply_ms": apply_ms,
        "view_ms": view_ms,
        "keys_ms": keys_ms,
        "per_key": {k: max(v) for k, v in per_key.items()},
    }


async def cpu_figure(snaps: list[FleetSnapshot], tmp: Path, seconds: float) -> dict[str, float]:
    rec = Recorder(tmp / "cpu.jsonl", env="production", mode="watch", services=SERVICES)
    app = make_app(
        "watch",
        env_name="production",
        protected=True,
        services=SERVICES,
        feed=Feed(snaps),
        recorder=rec,
        poll_interval=1.0,
    )
    async with app.run_test(size=(120, 40)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        c0, w0, p0 = time.process_time(), time.monotonic(), app.polls
        await asyncio.sleep(seconds)
        c1, w1, p1 = time.process_time(), time.monotonic(), app.polls
    rec.close()
    return {"cpu_pct": (c1 - c0) / (w1 - w0) * 100, "polls_per_s": (p1 - p0) / (w1 - w0)}


_PREFIX = re.compile(r'^\{"t":"([a-z-]+)","ts":([0-9.eE+-]+)(,"seq":([0-9]+))?')


def recording_figures(tmp: Path) -> dict[str, Any]:
    churn = Churn(base_fleet())
    hour = tmp / "hour.jsonl"
    clock = [T0]
    rec = Recorder(hour, env="production", mode="watch", services=SERVICES, full_every=300.0, clock=lambda: clock[0])
    t0 = time.perf_counter()
    record_ms: list[float] = []
    for _ in range(3600):
        s = churn.next()
        clock[0] = s.taken_at
        a = time.perf_counter()
        rec.snapshot(s, ts=s.taken_at)
        record_ms.append((time.perf_counter() - a) * 1000)
    rec.close()
    hour_secs = time.perf_counter() - t0
    hour_bytes = hour.stat().st_size
    # 8 hours: the measured hour, shifted 8 times (each hour starts on a full frame)
    lines = hour.read_text().splitlines()
    header, body = lines[0], [ln for ln in lines[1:] if not ln.startswith('{"t":"end"')]
    eight = tmp / "eight.jsonl"
    with eight.open("w") as out:
        out.write(header + "\n")
        for h in range(8):
            for ln in body:
                m = _PREFIX.match(ln)
                assert m is not None
                ts = float(m.group(2)) + h * 3600
                seq = f',"seq":{int(m.group(4)) + h * 3600}' if m.group(4) else ""
                out.write(f'{{"t":"{m.group(1)}","ts":{ts}{seq}' + ln[m.end() :] + "\n")
    os.chmod(eight, 0o600)
    eight_bytes = eight.stat().st_size
    opens: list[float] = []
    seeks: list[float] = []
    rnd = random.Random(3)
    plan = default_plan()
    for _ in range(5):
        t0 = time.perf_counter()
        r = Recording.open(eight)
        opens.append((time.perf_counter() - t0) * 1000)
        for _ in range(6):
            target = rnd.uniform(r.start, r.end)
            t1 = time.perf_counter()
            i = r.snap_index_at(target)
            snap = r.snapshot(i)
            assert snap is not None
            build_view(plan, snap, SERVICES, now=target)
            seeks.append((time.perf_counter() - t1) * 1000)
            r._cache = None  # every seek cold
            r._snap_cache.clear()
        r.close()
    return {
        "hour_bytes": hour_bytes,
        "eight_bytes": eight_bytes,
        "hour_secs": hour_secs,
        "record_ms": record_ms,
        "open_ms": opens,
        "seek_ms": seeks,
        "snaps": 8 * 3600,
    }


def screen_stats(ui: dict[str, Any]) -> dict[str, float]:
    """The screen figures of one run."""
    a, k = ui["apply_ms"], ui["keys_ms"]
    return {
        "apply_med": statistics.median(a),
        "apply_p95": pct(a, 95),
        "apply_max": max(a),
        "view_med": statistics.median(ui["view_ms"]),
        "keys_p50": pct(k, 50),
        "keys_p95": pct(k, 95),
        "keys_max": max(k),
        "keys_n": len(k),
    }


def load_text() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (1 min) / {five:.2f} (5 min)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1, help="measure the screen figures this many times (median)")
    ap.add_argument("--cpu-seconds", type=float, default=30.0)
    ap.add_argument("--write-docs", action="store_true")
    ap.add_argument(
        "--recording-only",
        action="store_true",
        help="measure the recording (size of an hour and of 8 hours, replay open + seek) only",
    )
    args = ap.parse_args()
    if args.recording_only:
        return recording_only()
    base = base_fleet()
    churn = Churn(base)
    snaps = [base] + [churn.next() for _ in range(60)]
    load_before = load_text()
    runs: list[dict[str, float]] = []
    per_key: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for n in range(max(1, args.runs)):
            run_dir = tmp / f"ui-{n + 1}"  # each run records to its own file
            run_dir.mkdir()
            ui = asyncio.run(ui_figures(snaps, run_dir))
            runs.append(screen_stats(ui))
            for key, ms in ui["per_key"].items():
                per_key[key] = max(per_key.get(key, 0.0), ms)
            r = runs[-1]
            print(
                f"run {n + 1}: apply {r['apply_med']:.1f} / {r['apply_p95']:.1f} / {r['apply_max']:.1f} ms, "
                f"keys {r['keys_p50']:.1f} / {r['keys_p95']:.1f} / {r['keys_max']:.1f} ms, load {load_text()}"
            )
        cpu = asyncio.run(cpu_figure(snaps, tmp, args.cpu_seconds))
        recf = recording_figures(tmp)
    load_after = load_text()
    ui_med = {name: statistics.median(r[name] for r in runs) for name in runs[0]}
    of_runs = f", median of {len(runs)} runs" if len(runs) > 1 else ""
    mb = 1024 * 1024
    rows = [
        (
            f"apply a new 50-host snapshot to the screen (median / p95 / max{of_runs})",
            f"{ui_med['apply_med']:.1f} / {ui_med['apply_p95']:.1f} / {ui_med['apply_max']:.1f} ms",
            "≤ 50 ms",
        ),
        ("  of which building the view (plan position, gates, rows)", f"{ui_med['view_med']:.1f} ms median", ""),
        (
            f"key to screen (p50 / p95 / max, {ui_med['keys_n']:.0f} keys{of_runs})",
            f"{ui_med['keys_p50']:.1f} / {ui_med['keys_p95']:.1f} / {ui_med['keys_max']:.1f} ms",
            "≤ 100 ms p95",
        ),
        (
            f"CPU of the UI process at 1 snapshot/s ({args.cpu_seconds:.0f} s, {cpu['polls_per_s']:.2f} polls/s)",
            f"{cpu['cpu_pct']:.1f} % of one core",
            "≤ 15 %",
        ),
        (
            "recording one hour (3600 snapshots × 50 hosts, full frame every 300 s)",
            f"{recf['hour_bytes'] / mb:.2f} MB; {statistics.median(recf['record_ms']):.2f} ms per snapshot",
            "",
        ),
        ("recording 8 h × 50 hosts (extrapolated: 8 × the hour)", f"{8 * recf['hour_bytes'] / mb:.1f} MB", "≤ 100 MB"),
        ("8-hour file made from that hour (28,800 snapshots)", f"{recf['eight_bytes'] / mb:.1f} MB", ""),
        (
            "replay: open the 8-hour file (index every line; median / max)",
            f"{statistics.median(recf['open_ms']):.0f} / {max(recf['open_ms']):.0f} ms",
            "",
        ),
        (
            "replay: seek to a random moment, cold (frame + diffs + view; p95 / max)",
            f"{pct(recf['seek_ms'], 95):.0f} / {max(recf['seek_ms']):.0f} ms",
            "",
        ),
        (
            "replay: open + seek (max open + max seek)",
            f"{max(recf['open_ms']) + max(recf['seek_ms']):.0f} ms",
            "≤ 500 ms",
        ),
    ]
    print("slowest key to screen by key, over all runs (ms):", {k: round(v, 1) for k, v in per_key.items()})
    print(f"load average: {load_before} before, {load_after} after ({os.cpu_count()} cores)")
    w = max(len(r[0]) for r in rows)
    table = [f"| {'what':<{w}} | measured | target |", f"|{'-' * (w + 2)}|---|---|"]
    table += [f"| {a:<{w}} | {b} | {c} |" for a, b, c in rows]
    text = "\n".join(table)
    print(text)
    if args.write_docs:
        options = (f" --runs {len(runs)}" if len(runs) > 1 else "") + (
            f" --cpu-seconds {args.cpu_seconds:g}" if args.cpu_seconds != 30.0 else ""
        )
        write_docs(text, options=options, load=f"{load_before} before the run, {load_after} after")
    return 0


def recording_only() -> int:
    """The recording's figures alone (no UI run): what docs/recording.md quotes."""
    mb = 1024 * 1024
    with tempfile.TemporaryDirectory() as d:
        recf = recording_figures(Path(d))
    print(
        f"recording one hour (3600 snapshots × 50 hosts, full frame every 300 s): {recf['hour_bytes'] / mb:.2f} MB; "
        f"{statistics.median(recf['record_ms']):.2f} ms per snapshot (median)"
    )
    print(
        f"recording 8 h × 50 hosts: {8 * recf['hour_bytes'] / mb:.1f} MB (8 × the hour); the 8-hour file made from "
        f"the hour: {recf['eight_bytes'] / mb:.1f} MB"
    )
    print(
        f"replay: open the 8-hour file median {statistics.median(recf['open_ms']):.0f} ms (max "
        f"{max(recf['open_ms']):.0f}); seek cold p95 {pct(recf['seek_ms'], 95):.0f} ms "
        f"(max {max(recf['seek_ms']):.0f})"
    )
    return 0


def write_docs(table: str, *, options: str, load: str) -> None:
    path = ROOT / "docs" / "benchmarks.md"
    import platform

    section = (
        "## TUI\n\n"
        f"`.venv/bin/python bench/tui.py{options} --write-docs` — a synthetic 50-host fleet (6 services, 150 observed "
        "connections, ~330 check results per snapshot) shaped like the collector's output, with a live fleet's "
        "churn (every check's timing each round, a reconnect every 20 s, a health flap every 4 min). The UI runs "
        "headless (`App.run_test`, 120×40) in watch mode with recording on; the probes' own CPU is not included "
        "(see `bench/status.py` for that).\n\n"
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, textual 8.2.8; load average {load} "
        "(the screen timings are wall-clock times: they grow when other work shares the cores).\n\n"
        f"{table}\n"
    )
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if "## TUI\n" in text:
        start = text.index("## TUI\n")
        # the generated part ends at the next section or at the section's own "###" notes (kept)
        ends = [i for i in (text.find("\n## ", start + 1), text.find("\n### ", start + 1)) if i >= 0]
        nxt = min(ends) if ends else -1
        text = text[:start] + section + ("\n" + text[nxt + 1 :] if nxt >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
