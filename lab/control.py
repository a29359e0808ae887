"""`lab up | down | status | scenario`: start, stop, show and reshape the lab fleet."""

from __future__ import annotations

import concurrent.futures
import grp
import hashlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lab import aws, faults, hostfs, procs, sshd
from lab.topology import (
    APP_SERVICES,
    DB_UID,
    PROBE_CONSOLE_USER,
    PROBE_ENV,
    PROBE_ROLE,
    ROLLOUT_ENV,
    LabError,
    LabHost,
    LabSpec,
)

PG_BIN = Path(os.environ.get("LAB_PG_BIN", "/usr/lib/postgresql/15/bin"))
REQUIRED = {  # binary -> Debian package
    str(PG_BIN / "postgres"): "postgresql",
    str(PG_BIN / "initdb"): "postgresql",
    "/usr/sbin/pgbouncer": "pgbouncer",
    "/usr/bin/redis-server": "redis-server",
    sshd.SSHD: "openssh-server",
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def check_binaries() -> None:
    missing = sorted({pkg for path, pkg in REQUIRED.items() if not os.access(path, os.X_OK)})
    if missing:
        raise LabError(
            f"missing Debian package(s): {' '.join(missing)} — install with: apt-get install -y {' '.join(missing)}"
        )


def ensure_db_user(uid: int = DB_UID) -> None:
    """The DB servers run as uid/gid 70, the official images' Postgres uid (the runbook's 70:70), or
    as another uid (`key-owner`: 999); an existing user or group with that id is used as it is."""
    if os.geteuid() != 0:
        return
    name = "labdb" if uid == DB_UID else f"labdb{uid}"
    try:
        grp.getgrgid(uid)
    except KeyError:
        subprocess.run(["groupadd", "-g", str(uid), name], check=True)
    try:
        pwd.getpwuid(uid)
    except KeyError:
        subprocess.run(
            ["useradd", "-u", str(uid), "-g", str(uid), "-M", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", name],
            check=True,
        )


def _traversable(path: Path) -> None:
    """uid 70 must reach files in the lab dir: make the dir and its parents searchable."""
    for p in [path, *path.parents]:
        try:
            mode = p.stat().st_mode
            if not mode & 0o001:
                os.chmod(p, mode | 0o011)
        except PermissionError:
            pass


def _initdb(spec: LabSpec) -> None:
    db = spec.database
    data = Path(db.root) / "mnt" / "data" / "postgres"
    uid = spec.db_uid if os.geteuid() == 0 else None
    if (data / "PG_VERSION").exists():
        if uid is not None and data.stat().st_uid != uid:  # the lab dir was used with another variant
            for dirpath, _dirs, files in os.walk(data.parent):
                for n in [dirpath, *(os.path.join(dirpath, f) for f in files)]:
                    os.lchown(n, uid, uid)
        return
    data.mkdir(parents=True, exist_ok=True)
    pwfile = Path(db.root) / "run" / ".initdb-pw"
    pwfile.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(aws.lab_secrets(spec)["POSTGRES_PASSWORD"] + "\n")
    if uid is not None:
        for p in (data, data.parent, pwfile):
            os.chown(p, uid, uid)
    kw: dict[str, Any] = {"user": uid, "group": uid, "extra_groups": []} if uid is not None else {}
    try:
        r = subprocess.run(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                "voiceai",
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            check=False,
            cwd="/",
            **kw,
        )
        if r.returncode != 0:
            raise LabError(f"initdb failed: {r.stderr.strip()[-400:]}")
        r = subprocess.run(
            [str(PG_BIN / "postgres"), "--single", "-D", str(data), "-c", "fsync=off", "postgres"],
            input="CREATE DATABASE voiceai;\n",
            capture_output=True,
            text=True,
            check=False,
            cwd="/",
            **kw,
        )
        if r.returncode != 0:
            raise LabError(f"creating database voiceai failed: {r.stderr.strip()[-400:]}")
    finally:
        pwfile.unlink(missing_ok=True)


def run_update(spec: LabSpec, host: LabHost, *, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run `update.sh --restart-only --yes` on a lab host directly (not over SSH: faster for set-up)."""
    script = Path(host.root) / "opt" / "services" / host.service / "update.sh"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    return subprocess.run(
        [str(script), "--restart-only", "--yes"],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _restart(spec: LabSpec, hosts: list[LabHost], parallel: int = 4) -> None:
    db = [h for h in hosts if h.role == "database"]
    apps = [h for h in hosts if h.role == "app"]
    for h in db:
        r = run_update(spec, h)
        if r.returncode != 0:
            raise LabError(f"{h.name}: update.sh failed: {r.stderr.strip()}")
    errors: list[str] = []
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        for h, r in zip(apps, pool.map(lambda h: run_update(spec, h), apps), strict=True):
            if r.returncode != 0:
                errors.append(f"{h.name}: {r.stderr.strip()}")
    if errors:
        raise LabError("update.sh failed on: " + "; ".join(errors))


def _running_check(spec: LabSpec, service: str) -> str:
    """Exit 0 when every process of the service on the host runs (its pid file names a live, non-zombie
    process), 1 when not: read-only and cheap (no Python, no AWS, no `exit` in the command)."""
    alive = (
        "p=$(cat {root}/run/$n.pid 2>/dev/null); "
        "s=$(sed -n 's/^State:[[:space:]]*\\([A-Z]\\).*/\\1/p' /proc/$p/status 2>/dev/null); "
        '[ -n "$p" ] && [ -n "$s" ] && [ "$s" != Z ] && [ "$s" != X ]'
    )
    names = "postgres pgbouncer redis otel-collector" if service == "database" else "{service}"
    return f"r=0; for n in {names}; do {alive} || r=1; done; [ $r = 0 ]"


def _logs(spec: LabSpec, service: str) -> str:
    if service == "database":
        return "tail -n 20 " + " ".join(f"{{root}}/var/log/{n}.log" for n in ("postgres", "pgbouncer", "redis"))
    return "tail -n 40 {root}/var/log/{service}.log"


def _toml(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _inventory_head(spec: LabSpec, env: str) -> list[str]:
    """The environment's own table, SSH and the bastion."""
    d = sshd.ssh_dir(spec)
    return [
        "# Written by `cockpit lab up`: the lab as a cockpit inventory (format: docs/inventory.md).",
        f"# Lab variants: {', '.join(spec.variants) or 'none (the default lab)'}.",
        "version = 1",
        f'default_env = "{spec.environment}"',
        "",
        f"[{env}]",
        f'namespace = "{spec.namespace}"',
        f'region = "{spec.region}"',
        'profile = ""',
        f'endpoint_url = "{spec.aws_endpoint}"',
        "protected = false",
        'after = ""',
        "managed_database = false",
        "",
        f"[{env}.ssh]",
        f'known_hosts = "{d / "known_hosts"}"',
        f'identity_files = ["{sshd.client_key(spec)}"]',
        'config = ""',
        "connect_timeout = 10.0",
        "command_timeout = 90.0",
        "max_channels = 6",
        "max_connects_in_flight = 24",  # global pacing; MaxStartups applies per target sshd
        "",
        f"[{env}.bastion]",
        f'address = "{spec.bastion.address}"',
        f"port = {spec.ssh_port}",
        'user = "root"',
        "",
    ]


def _inventory_database(spec: LabSpec, env: str) -> list[str]:
    """The database host, the probe credentials (where each variant keeps them), cert material, the store."""
    if spec.has("envfile"):
        creds = [f'file = "{PROBE_ENV}"']
    elif spec.has("probe-not-superuser"):
        creds = [f'secret = "{spec.probe_secret_name}"']
    else:
        creds = [f'secret = "{spec.namespace}/database/secrets"']
    if spec.has("probe-not-superuser"):
        creds += [f'postgres_user = "{PROBE_ROLE}"', f'pgbouncer_admin_user = "{PROBE_CONSOLE_USER}"']
    tls_secrets = (
        ['layout = "shared"', f'name = "{spec.shared_tls_secret_name}"']
        if spec.has("envfile")
        else ['layout = "json"', 'secret_suffix = "secrets"']
    )
    store = ['kind = "envfile"', f'path = "{ROLLOUT_ENV}"'] if spec.has("envfile") else ['kind = "ssm"']
    return [
        f"[{env}.database]",
        f'host = "{spec.database.name}"',
        f'dns_name = "{spec.db_dns_name}"',
        'access = "tunnel"',
        f"postgres_port = {spec.postgres_port}",
        f"pgbouncer_port = {spec.pgbouncer_port}",
        f"redis_port = {spec.redis_port}",
        f"redis_tls_port = {spec.redis_tls_port}",
        'dbname = "voiceai"',
        'pg_hba_path = "/mnt/data/postgres/pg_hba.conf"',
        "",
        f"[{env}.credentials]",
        *creds,
        'postgres_user_key = "POSTGRES_USER"',
        'postgres_password_key = "POSTGRES_PASSWORD"',
        'pgbouncer_admin_user_key = "PGBOUNCER_ADMIN_USER"',
        'pgbouncer_admin_password_key = "PGBOUNCER_ADMIN_PASSWORD"',
        'redis_password_key = "REDIS_PASSWORD"',
        "",
        f"[{env}.tls_secrets]",
        *tls_secrets,
        "",
        f"[{env}.config_store]",
        *store,
        "",
        f"[{env}.paths]",
        '"/etc/ssl/internal" = "/etc/ssl/internal"',
        "",
        f"[{env}.commands]",
        'update = "{root}/opt/services/{service}/update.sh --restart-only --yes"',
        'telpro_ssl_check = "grep -qw hiredis_ssl {root}/opt/services/telpro/image-modules"',
        'read_only = ["telpro_ssl_check", "running_check"]',
        "",
    ]


def _inventory_fleet(spec: LabSpec, env: str) -> list[str]:
    """A table per service the fleet runs (a service with no instances is not part of this platform),
    then every host behind the bastion."""
    lines: list[str] = []
    for svc in ["database", *(s for s in APP_SERVICES if spec.instances.get(s, 0) > 0)]:
        material = ", ".join(f'"{m}"' for m in aws.tls_material_names(spec, svc))
        lines += [
            f"[{env}.services.{svc}]",
            f'role = "{"database" if svc == "database" else "app"}"',
            f"tls_material = [{material}]",
            f"running_check = {_toml(_running_check(spec, svc))}",
            f"logs = {_toml(_logs(spec, svc))}",
        ]
        if svc == "api":
            lines.append(f'health_url = "http://{{address}}:{spec.health_port}/health"')
        lines.append("")
    for h in spec.hosts()[1:]:
        lines += [
            f"[[{env}.hosts]]",
            f'name = "{h.name}"',
            f'address = "{h.address}"',
            f"port = {spec.ssh_port}",
            'user = "root"',
            f'service = "{h.service}"',
            "jump = true",
            f'root = "{h.root}"',
            "",
        ]
    return lines


def write_inventory(spec: LabSpec) -> Path:
    """The lab as a cockpit inventory, shaped by its variants."""
    env = f"environments.{spec.environment}"
    lines = [*_inventory_head(spec, env), *_inventory_database(spec, env), *_inventory_fleet(spec, env)]
    path = spec.path / "inventory.toml"
    path.write_text("\n".join(lines))
    return path


def up(spec: LabSpec) -> dict[str, float]:
    """Start (or complete) the lab; safe to run twice. Returns phase timings."""
    t: dict[str, float] = {}
    t0 = time.monotonic()
    check_binaries()
    if spec.path.joinpath("lab.json").exists():
        old = LabSpec.load(spec.path)
        if (old.net, old.instances, old.environment, old.variants) != (
            spec.net,
            spec.instances,
            spec.environment,
            spec.variants,
        ) and any(procs.running(sshd.pidfile(old, h)) for h in old.hosts()):
            raise LabError(
                f"a different lab is running in {spec.path} (net {old.net}, {old.instances}, "
                f"variants: {','.join(old.variants) or 'none'}); run `lab down` first"
            )
        if old.variants != spec.variants:
            _reset_variant_state(spec)
    preflight(spec)
    ensure_db_user(spec.db_uid)
    spec.path.mkdir(parents=True, exist_ok=True)
    _traversable(spec.path)
    spec.save()
    fresh_aws = aws.start(spec)
    t["aws_started"] = time.monotonic() - t0
    sshd.write_client_files(spec)
    for h in spec.hosts():
        hostfs.write_host(spec, h)
        sshd.start(spec, h)
    t["sshd_started"] = time.monotonic() - t0
    _initdb(spec)
    t["initdb"] = time.monotonic() - t0
    aws.wait_ready(spec)
    if fresh_aws:
        aws.seed(spec)
    t["aws_seeded"] = time.monotonic() - t0
    todo = [h for h in spec.hosts() if h.role != "bastion" and not _host_running(spec, h)]
    _restart(spec, todo)
    t["services_started"] = time.monotonic() - t0
    for h in spec.hosts():
        sshd.wait_ready(spec, h)
    write_inventory(spec)
    t["total"] = time.monotonic() - t0
    return t


def _reset_variant_state(spec: LabSpec) -> None:
    """A stopped lab restarted with other variants: moto starts empty (seeded anew) and the host files
    a variant writes once are written again."""
    for h in spec.hosts():
        (Path(h.root) / ROLLOUT_ENV.lstrip("/")).unlink(missing_ok=True)
        (Path(h.root) / PROBE_ENV.lstrip("/")).unlink(missing_ok=True)


def preflight(spec: LabSpec) -> None:
    """Every port the lab will bind is free (or already ours) before anything starts."""
    busy: list[str] = []
    for h in spec.hosts():
        if not procs.running(sshd.pidfile(spec, h)) and not procs.port_free(h.address, spec.ssh_port):
            busy.append(f"{h.name} {h.address}:{spec.ssh_port}")
    if not procs.running(aws.pidfile(spec)) and not procs.port_free(spec.aws_address, spec.aws_port):
        busy.append(f"AWS stand-in {spec.aws_address}:{spec.aws_port}")
    db = spec.database
    if not _host_running(spec, db):
        for port in (spec.postgres_port, spec.pgbouncer_port, spec.redis_port, spec.redis_tls_port):
            if not procs.port_free(db.address, port):
                busy.append(f"{db.name} {db.address}:{port}")
    if busy:
        raise LabError(
            f"{', '.join(busy)} already in use (nothing was started); stop what holds it or choose another --net"
        )


def _host_running(spec: LabSpec, h: LabHost) -> bool:
    run = Path(h.root) / "run"
    names = ["postgres", "pgbouncer", "redis", "otel-collector"] if h.role == "database" else [h.service]
    return all(procs.running(run / f"{n}.pid") for n in names)


def down(directory: Path) -> list[int]:
    """Stop everything the lab started; returns pids still alive (empty on success)."""
    spec = LabSpec.load(directory)
    faults.release_mounts(spec.path)  # a fault a killed test never restored
    for h in spec.app_hosts():
        procs.stop_pidfile(Path(h.root) / "run" / f"{h.service}.pid")
    db = Path(spec.database.root) / "run"
    for name in ("otel-collector", "pgbouncer", "redis", "postgres"):
        procs.stop_pidfile(db / f"{name}.pid", sig=signal.SIGINT if name == "postgres" else signal.SIGTERM)
    for h in spec.hosts():
        sshd.stop(spec, h)
    aws.stop(spec)
    for pid in procs.lab_pids(spec.path):  # safety net: anything else started from the lab dir
        procs.stop_pid(pid, timeout=5)
    return procs.lab_pids(spec.path)


def _app_host(spec: LabSpec, host: LabHost | str) -> LabHost:
    h = spec.host(host) if isinstance(host, str) else host
    if h.role != "app":
        raise LabError(f"{h.name}: not an app host; stop_service/start_service act on one app instance")
    return h


def stop_service(spec: LabSpec, host: LabHost | str) -> None:
    """Stop the service's process on one app host, configuration untouched (`docker stop`); its sshd
    keeps running."""
    h = _app_host(spec, host)
    if not procs.stop_pidfile(Path(h.root) / "run" / f"{h.service}.pid"):
        raise LabError(f"{h.name}: {h.service} did not stop")


def start_service(spec: LabSpec, host: LabHost | str, *, timeout: float = 10.0) -> int:
    """Start the stopped process again as it was created (`docker start`: same command and environment,
    nothing re-resolved); returns its pid. Already running: its pid."""
    h = _app_host(spec, host)
    run = Path(h.root) / "run"
    pid = procs.running(run / f"{h.service}.pid")
    if pid:
        return pid
    try:
        c = json.loads((run / f"{h.service}.container.json").read_text())
    except (OSError, ValueError):
        raise LabError(f"{h.name}: {h.service} was never started here; run update.sh") from None
    pid = procs.start_daemon(c["argv"], pidfile=run / f"{h.service}.pid", logfile=Path(c["logfile"]), env=c["env"])
    meter = Path(h.root) / "var" / "lib" / "lab" / f"{h.service}.meter.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # started = the new process writes its meter
        try:
            if json.loads(meter.read_text()).get("pid") == pid:
                return pid
        except (OSError, ValueError):
            pass
        if not procs.pid_alive(pid):
            break
        time.sleep(0.05)
    raise LabError(f"{h.name}: {h.service} did not start (see {c['logfile']})")


def _meter_files(spec: LabSpec) -> list[tuple[LabHost, Path]]:
    return [
        (h, f)
        for h in [spec.database, *spec.app_hosts()]
        for f in sorted((Path(h.root) / "var" / "lib" / "lab").glob("*.meter.json"))
    ]


def reset_meters(spec: LabSpec, timeout: float = 5.0) -> None:
    """Zero every running instance's meter (SIGUSR1) and wait until each has done it."""
    t = time.time()
    pending: list[Path] = []
    for h, f in _meter_files(spec):
        name = f.name.removesuffix(".meter.json")
        pid = procs.running(Path(h.root) / "run" / f"{name}.pid")
        if pid:
            os.kill(pid, signal.SIGUSR1)
            pending.append(f)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        still = []
        for f in pending:
            try:
                if json.loads(f.read_text()).get("reset_at", 0) < t:
                    still.append(f)
            except (OSError, ValueError):
                still.append(f)
        pending = still
        time.sleep(0.05)
    if pending:
        raise LabError(f"meters did not reset: {', '.join(str(p) for p in pending)}")


def meters(spec: LabSpec) -> dict[str, dict[str, Any]]:
    """Each instance's meter, keyed `host/process`."""
    out: dict[str, dict[str, Any]] = {}
    for h, f in _meter_files(spec):
        try:
            m = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        out[f"{h.name}/{f.name.removesuffix('.meter.json')}"] = m
    return out


def digest(values: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def status(spec: LabSpec) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for h in spec.hosts():
        run = Path(h.root) / "run"
        row: dict[str, Any] = {
            "host": h.name,
            "address": h.address,
            "service": h.service,
            "sshd": bool(procs.running(sshd.pidfile(spec, h))),
            "processes": {},
            "listening": [],
        }
        names = {"database": ["postgres", "pgbouncer", "redis", "otel-collector"], "bastion": []}.get(
            h.role, [h.service]
        )
        for n in names:
            row["processes"][n] = procs.running(run / f"{n}.pid")
        ports = [spec.ssh_port]
        if h.role == "database":
            ports += [spec.postgres_port, spec.pgbouncer_port, spec.redis_port, spec.redis_tls_port]
        if h.service == "api":
            ports.append(spec.health_port)
        row["listening"] = [p for p in ports if procs.port_open(h.address, p, 0.1)]
        rows.append(row)
    return rows


def require_tools_for_scenarios() -> None:
    if shutil.which("bash") is None:
        raise LabError("bash is required by the lab's update.sh")
