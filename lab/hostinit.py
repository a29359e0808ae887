"""The service-specific half of the lab's `init.sh`: decode TLS material, restart, health-check.

`init.sh` sources the bootstrap `.env`, evaluates `fetch-env.sh`'s exports and runs this with
the resolved environment, as the platform's `init.sh` runs `docker compose up --force-recreate`.
Everything is validated before anything is stopped: a value that cannot be applied leaves the
running services as they were.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from lab import procs
from lab.fetchenv import read_env_file
from lab.manifests import ALLOWED, TLS_VARS

PG_BIN = Path(os.environ.get("LAB_PG_BIN", "/usr/lib/postgresql/15/bin"))


class InitError(Exception):
    """A reason to stop, printed on stderr; `restarted` says whether anything was touched."""

    def __init__(self, message: str, *, restarted: bool = False) -> None:
        super().__init__(message)
        self.restarted = restarted


@dataclass(frozen=True)
class HostCtx:
    root: Path
    service: str
    address: str
    lab: dict[str, str]

    def p(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    @property
    def db_uid(self) -> int | None:
        return int(self.lab["LAB_DB_UID"]) if os.geteuid() == 0 and self.lab.get("LAB_DB_UID") else None

    def port(self, name: str, default: int) -> int:
        return int(self.lab.get(name, default))


def validate(env: dict[str, str]) -> None:
    for name, allowed in ALLOWED.items():
        if name in env and env[name] not in allowed:
            shown = ", ".join(a or "(empty)" for a in allowed)
            raise InitError(f"{name}={env[name]!r} is not one of: {shown}; nothing was restarted")
    port = env.get("REDIS_TLS_PORT", "6380")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise InitError(f"REDIS_TLS_PORT={port!r} is not a TCP port; nothing was restarted")
    owner = env.get("TLS_KEY_OWNER", "")
    if owner and not re.fullmatch(r"\d+:\d+", owner):
        raise InitError(f"TLS_KEY_OWNER={owner!r} is not UID:GID (e.g. 70:70); nothing was restarted")
    for var in ("PROBE_POSTGRES_USER", "PGBOUNCER_STATS_USER"):
        if env.get(var) and not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", env[var]):
            raise InitError(f"{var}={env[var]!r} is not a plain role name; nothing was restarted")


def key_owner(ctx: HostCtx, env: dict[str, str]) -> tuple[int, int] | None:
    """Who owns the decoded server.key: TLS_KEY_OWNER (UID:GID), else the DB servers' uid; None unless root."""
    if os.geteuid() != 0:
        return None
    owner = env.get("TLS_KEY_OWNER", "")
    if owner:
        uid, gid = owner.split(":")
        return int(uid), int(gid)
    return (ctx.db_uid, ctx.db_uid) if ctx.db_uid is not None else None


def write_atomic(path: Path, data: bytes, mode: int, owner: int | tuple[int, int] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    if owner is not None:
        uid, gid = owner if isinstance(owner, tuple) else (owner, owner)
        os.chown(tmp, uid, gid)
    os.replace(tmp, path)


def _decode(env: dict[str, str], name: str) -> bytes:
    try:
        return base64.b64decode(env[name], validate=True)
    except Exception:
        raise InitError(f"{name} is not valid base64; fix the secret; nothing was restarted") from None


def decode_material(ctx: HostCtx, env: dict[str, str], *, needed: bool, with_key: bool) -> bool:
    """Decode the INTERNAL_* material into /etc/ssl/internal; True if written."""
    names = TLS_VARS if with_key else TLS_VARS[:1]
    missing = [n for n in names if not env.get(n)]
    if missing:
        if needed:
            raise InitError(
                f"TLS is enabled but {', '.join(missing)} is not set; push the cert material first; "
                "nothing was restarted"
            )
        return False
    ca = _decode(env, "INTERNAL_CA_CRT_B64")
    try:
        x509.load_pem_x509_certificate(ca)
    except ValueError:
        raise InitError("INTERNAL_CA_CRT_B64 does not decode to a PEM certificate; nothing was restarted") from None
    d = ctx.p("etc", "ssl", "internal")
    if with_key:
        cert, key = _decode(env, "INTERNAL_TLS_CERT_B64"), _decode(env, "INTERNAL_TLS_KEY_B64")
        try:
            c = x509.load_pem_x509_certificate(cert)
            k = serialization.load_pem_private_key(key, password=None)
        except (ValueError, TypeError):
            raise InitError(
                "INTERNAL_TLS_CERT_B64 / INTERNAL_TLS_KEY_B64 do not decode to a PEM cert and key; "
                "nothing was restarted"
            ) from None
        pub = serialization.PublicFormat.SubjectPublicKeyInfo
        enc = serialization.Encoding.DER
        if c.public_key().public_bytes(enc, pub) != k.public_key().public_bytes(enc, pub):
            if needed:
                raise InitError("INTERNAL_TLS_KEY_B64 does not match INTERNAL_TLS_CERT_B64; nothing was restarted")
            return False
        write_atomic(d / "server.crt", cert, 0o644)
        write_atomic(d / "server.key", key, 0o600, key_owner(ctx, env))
    write_atomic(d / "ca.crt", ca, 0o644)
    return True


def run_dir(ctx: HostCtx) -> Path:
    d = ctx.p("run")
    d.mkdir(parents=True, exist_ok=True)
    return d


# ---------------------------------------------------------------------------- database


def pg_hba(force_ssl: bool) -> str:
    kind = "hostssl" if force_ssl else "host"
    return (
        "# written by init.sh: POSTGRES_FORCE_SSL=" + ("on" if force_ssl else "off") + "\n"
        "local   all  all                 trust\n"
        f"{kind:<7} all  all  127.0.0.0/8    scram-sha-256\n"
    )


def restart_postgres(ctx: HostCtx, env: dict[str, str], tls: bool) -> None:
    data = ctx.p("mnt", "data", "postgres")
    sock = ctx.p("run", "postgresql")
    sock.mkdir(parents=True, exist_ok=True)
    if ctx.db_uid is not None:
        os.chown(sock, ctx.db_uid, ctx.db_uid)
    write_atomic(data / "pg_hba.conf", pg_hba(env.get("POSTGRES_FORCE_SSL") == "on").encode(), 0o600, ctx.db_uid)
    ssl_dir = ctx.p("etc", "ssl", "internal")
    argv = [
        str(PG_BIN / "postgres"),
        "-D",
        str(data),
        "-c",
        f"listen_addresses={ctx.address}",
        "-c",
        f"port={ctx.port('LAB_POSTGRES_PORT', 5432)}",
        "-c",
        f"unix_socket_directories={sock}",
        "-c",
        "max_connections=400",
        "-c",
        "fsync=off",
        "-c",
        "log_min_messages=warning",
    ]
    if tls:
        argv += [
            "-c",
            "ssl=on",
            "-c",
            f"ssl_cert_file={ssl_dir / 'server.crt'}",
            "-c",
            f"ssl_key_file={ssl_dir / 'server.key'}",
            "-c",
            f"ssl_ca_file={ssl_dir / 'ca.crt'}",
        ]
    pidfile = run_dir(ctx) / "postgres.pid"
    if not procs.stop_pidfile(pidfile, sig=signal.SIGINT, timeout=15):
        raise InitError("postgres did not stop", restarted=True)
    pid = procs.start_daemon(
        argv,
        pidfile=pidfile,
        logfile=ctx.p("var", "log", "postgres.log"),
        uid=ctx.db_uid,
        env={"PATH": "/usr/bin:/bin", "LANG": "C"},
    )
    if not _pg_ready(ctx, pid):
        raise InitError("postgres did not come up: " + _tail(ctx.p("var", "log", "postgres.log")), restarted=True)


def ensure_probe_role(ctx: HostCtx, env: dict[str, str]) -> None:
    """The probe's own role (PROBE_POSTGRES_USER): LOGIN, member of pg_monitor, not superuser — what a
    platform gives a monitoring agent. Provisioned over the local socket; the password goes on stdin."""
    role, pw = env.get("PROBE_POSTGRES_USER", ""), env.get("PROBE_POSTGRES_PASSWORD", "")
    if not role or not pw:
        return
    quoted = pw.replace("'", "''")
    sql = (
        f"DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN "
        f"CREATE ROLE {role}; END IF; END$$;\n"
        f"ALTER ROLE {role} LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB PASSWORD '{quoted}';\n"
        f"GRANT pg_monitor TO {role};\n"
    )
    r = subprocess.run(
        [
            str(PG_BIN / "psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(ctx.p("run", "postgresql")),
            "-p",
            str(ctx.port("LAB_POSTGRES_PORT", 5432)),
            "-U",
            env.get("POSTGRES_USER", "voiceai"),
            "-d",
            env.get("POSTGRES_DB", "voiceai"),
        ],
        input=sql,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "LANG": "C"},
    )
    if r.returncode != 0:
        raise InitError(f"could not provision the probe role {role}: {r.stderr.strip()[-300:]}", restarted=True)


def _pg_ready(ctx: HostCtx, pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    port = str(ctx.port("LAB_POSTGRES_PORT", 5432))
    while time.monotonic() < deadline:
        if not procs.pid_alive(pid):
            return False
        r = subprocess.run([str(PG_BIN / "pg_isready"), "-q", "-h", ctx.address, "-p", port, "-t", "1"], check=False)
        if r.returncode == 0:
            return True
        time.sleep(0.05)
    return False


def _pgbouncer_users(env: dict[str, str], admin: str, stats: str) -> list[tuple[str, str]]:
    """(user, password) for PgBouncer's auth file: the app's, the admin's, the stats user's and the probe's."""
    users = [
        (env.get("POSTGRES_USER", "voiceai"), env.get("POSTGRES_PASSWORD", "")),
        (admin, env.get("PGBOUNCER_ADMIN_PASSWORD", "")),
    ]
    if stats:
        users.append((stats, env["PGBOUNCER_STATS_PASSWORD"]))
    if env.get("PROBE_POSTGRES_USER") and env.get("PROBE_POSTGRES_PASSWORD"):
        users.append((env["PROBE_POSTGRES_USER"], env["PROBE_POSTGRES_PASSWORD"]))
    return users


def restart_pgbouncer(ctx: HostCtx, env: dict[str, str]) -> None:
    d = run_dir(ctx) / "pgbouncer"
    d.mkdir(parents=True, exist_ok=True)
    if ctx.db_uid is not None:
        os.chown(d, ctx.db_uid, ctx.db_uid)
    ssl_dir = ctx.p("etc", "ssl", "internal")
    admin = env.get("PGBOUNCER_ADMIN_USER", "pgbouncer_admin")
    stats = env.get("PGBOUNCER_STATS_USER", "") if env.get("PGBOUNCER_STATS_PASSWORD") else ""
    # The userlist lives in the runtime dir (0600), as a container's tmpfs would hold it.
    userlist = "".join(f'"{u}" "{pw}"\n' for u, pw in _pgbouncer_users(env, admin, stats))
    write_atomic(d / "userlist.txt", userlist.encode(), 0o600, ctx.db_uid)
    server_mode = env.get("PGBOUNCER_SERVER_TLS_SSLMODE", "disable")
    client_mode = env.get("PGBOUNCER_CLIENT_TLS_SSLMODE", "disable")
    dbname = env.get("POSTGRES_DB", "voiceai")
    lines = [
        "[databases]",
        f"{dbname} = host={ctx.address} port={ctx.port('LAB_POSTGRES_PORT', 5432)} dbname={dbname}",
        "[pgbouncer]",
        f"listen_addr = {ctx.address}",
        f"listen_port = {ctx.port('LAB_PGBOUNCER_PORT', 6432)}",
        "unix_socket_dir =",
        "auth_type = scram-sha-256",
        f"auth_file = {d / 'userlist.txt'}",
        f"admin_users = {admin}",
        f"stats_users = {stats}",
        "pool_mode = session",
        "max_client_conn = 2000",
        "default_pool_size = 300",
        "ignore_startup_parameters = extra_float_digits,options",
        "log_connections = 0",
        "log_disconnections = 0",
        f"server_tls_sslmode = {server_mode}",
        f"client_tls_sslmode = {client_mode}",
    ]
    if server_mode != "disable":
        lines.append(f"server_tls_ca_file = {ssl_dir / 'ca.crt'}")
    if client_mode != "disable":
        lines += [
            f"client_tls_key_file = {ssl_dir / 'server.key'}",
            f"client_tls_cert_file = {ssl_dir / 'server.crt'}",
            f"client_tls_ca_file = {ssl_dir / 'ca.crt'}",
        ]
    write_atomic(d / "pgbouncer.ini", ("\n".join(lines) + "\n").encode(), 0o600, ctx.db_uid)
    pidfile = run_dir(ctx) / "pgbouncer.pid"
    # SIGTERM is PgBouncer's immediate shutdown; SIGINT would PAUSE and wait for every session client
    if not procs.stop_pidfile(pidfile, sig=signal.SIGTERM):
        raise InitError("pgbouncer did not stop", restarted=True)
    pid = procs.start_daemon(
        ["/usr/sbin/pgbouncer", str(d / "pgbouncer.ini")],
        pidfile=pidfile,
        logfile=ctx.p("var", "log", "pgbouncer.log"),
        uid=ctx.db_uid,
        env={"PATH": "/usr/bin:/bin"},
    )
    if not procs.wait_port(ctx.address, ctx.port("LAB_PGBOUNCER_PORT", 6432), 10, pid=pid):
        raise InitError("pgbouncer did not come up: " + _tail(ctx.p("var", "log", "pgbouncer.log")), restarted=True)


def restart_redis(ctx: HostCtx, env: dict[str, str], tls: bool, force: bool) -> None:
    data = ctx.p("mnt", "data", "redis")
    data.mkdir(parents=True, exist_ok=True)
    if ctx.db_uid is not None:
        os.chown(data, ctx.db_uid, ctx.db_uid)
    ssl_dir = ctx.p("etc", "ssl", "internal")
    port = 0 if force else ctx.port("LAB_REDIS_PORT", 6379)
    tls_port = int(env.get("REDIS_TLS_PORT", "6380"))
    conf = [
        f"bind {ctx.address}",
        f"port {port}",
        "daemonize no",
        f"dir {data}",
        'save ""',
        "appendonly no",
        "protected-mode no",
        f'requirepass "{env.get("REDIS_PASSWORD", "")}"',
    ]
    if tls:
        conf += [
            f"tls-port {tls_port}",
            f"tls-cert-file {ssl_dir / 'server.crt'}",
            f"tls-key-file {ssl_dir / 'server.key'}",
            f"tls-ca-cert-file {ssl_dir / 'ca.crt'}",
            "tls-auth-clients no",
        ]
    cfg = run_dir(ctx) / "redis.conf"
    write_atomic(cfg, ("\n".join(conf) + "\n").encode(), 0o600, ctx.db_uid)
    pidfile = run_dir(ctx) / "redis.pid"
    if not procs.stop_pidfile(pidfile):
        raise InitError("redis did not stop", restarted=True)
    pid = procs.start_daemon(
        ["/usr/bin/redis-server", str(cfg)],
        pidfile=pidfile,
        logfile=ctx.p("var", "log", "redis.log"),
        uid=ctx.db_uid,
        env={"PATH": "/usr/bin:/bin"},
    )
    check = tls_port if force else ctx.port("LAB_REDIS_PORT", 6379)
    if not procs.wait_port(ctx.address, check, 10, pid=pid):
        raise InitError("redis did not come up: " + _tail(ctx.p("var", "log", "redis.log")), restarted=True)
    if tls and not procs.wait_port(ctx.address, tls_port, 5, pid=pid):
        raise InitError(
            f"redis TLS listener :{tls_port} did not come up: " + _tail(ctx.p("var", "log", "redis.log")),
            restarted=True,
        )


def app_env(ctx: HostCtx, env: dict[str, str], service: str) -> dict[str, str]:
    """The process environment of a service container: its resolved variables, paths mapped."""
    out = {k: v for k, v in env.items() if not k.startswith("INTERNAL_") and not k.startswith("PGSSL")}
    for k in ("DATABASE_SSL_CA_FILE", "REDIS_TLS_CA_FILE"):
        if out.get(k, "").startswith("/"):
            out[k] = str(ctx.root) + out[k]  # the container's bind mount of /etc/ssl/internal
    out.update(
        {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": ctx.lab.get("LAB_REPO", ""),
            "LAB_SERVICE": service,
            "LAB_INSTANCE": env.get("HOSTNAME", ctx.lab.get("LAB_HOSTNAME", "")),
            "LAB_HOST_ADDRESS": ctx.address,
            "LAB_RESOLVE": ctx.lab.get("LAB_RESOLVE", ""),
            # the container user's home, which holds no ~/.postgresql/root.crt: a client left without a CA
            # file falls back to its library's default trust and fails, as it would in the container
            "HOME": str(ctx.p("home", service)),
        }
    )
    return out


def restart_otel(ctx: HostCtx, env: dict[str, str], tls: bool) -> None:
    dns = env.get("DATABASE_PRIVATE_DNS", "")
    port = env.get("REDIS_TLS_PORT", "6380") if tls else str(ctx.port("LAB_REDIS_PORT", 6379))
    penv = app_env(ctx, env, "otel-collector")
    penv.update(
        {
            "REDIS_ENDPOINT": f"{dns}:{port}",
            "OTEL_REDIS_TLS": "true" if tls else "false",
            "REDIS_TLS_CA_FILE": str(ctx.p("etc", "ssl", "internal", "ca.crt")),
        }
    )
    pid = _restart_app_process(ctx, penv, "otel-collector", ["--otel"])
    healthy, why = wait_app_healthy(ctx, "otel-collector", pid, need_db=False, timeout=5.0)
    if not healthy:
        if not procs.pid_alive(pid):
            raise InitError(f"otel-collector did not start: {why}", restarted=True)
        # the collector container stays up when it cannot scrape Redis: a warning, not a failed restart
        print(f"init.sh: warning: otel-collector cannot reach Redis at {dns}:{port}: {why}", file=sys.stderr)
    # the collector's endpoint, for whoever checks it (no secret in it)
    write_atomic(
        ctx.p("opt", "services", "database", "otel-endpoint"), f"REDIS_ENDPOINT={dns}:{port}\n".encode(), 0o644
    )


def _restart_app_process(ctx: HostCtx, penv: dict[str, str], name: str, extra: list[str]) -> int:
    pidfile = run_dir(ctx) / f"{name}.pid"
    if not procs.stop_pidfile(pidfile):
        raise InitError(f"{name} did not stop", restarted=True)
    meter = ctx.p("var", "lib", "lab", f"{name}.meter.json")
    meter.parent.mkdir(parents=True, exist_ok=True)
    argv = [ctx.lab.get("LAB_PYTHON", sys.executable), "-m", "lab.app", "--meter", str(meter), *extra]
    logfile = ctx.p("var", "log", f"{name}.log")
    # the container as created: `lab.control.start_service` starts it again exactly so (`docker start`);
    # 0600, like the container config Docker keeps (the environment holds the service's passwords)
    write_atomic(
        run_dir(ctx) / f"{name}.container.json",
        json.dumps({"argv": argv, "env": penv, "logfile": str(logfile)}).encode(),
        0o600,
    )
    return procs.start_daemon(argv, pidfile=pidfile, logfile=logfile, env=penv)


def init_database(ctx: HostCtx, env: dict[str, str]) -> list[str]:
    pg_tls = env.get("POSTGRES_TLS_ENABLED") == "on"
    redis_tls = env.get("REDIS_TLS_ENABLED") == "true"
    redis_force = env.get("REDIS_FORCE_TLS") == "true"
    if redis_force and not redis_tls:
        raise InitError(
            "REDIS_FORCE_TLS=true needs REDIS_TLS_ENABLED=true (Redis would have no listener); nothing was restarted"
        )
    bouncer_tls = env.get("PGBOUNCER_CLIENT_TLS_SSLMODE", "disable") != "disable"
    bouncer_server_ca = env.get("PGBOUNCER_SERVER_TLS_SSLMODE", "disable") in ("verify-ca", "verify-full")
    needed = pg_tls or redis_tls or bouncer_tls or bouncer_server_ca
    decode_material(ctx, env, needed=needed, with_key=True)
    restart_postgres(ctx, env, pg_tls)
    ensure_probe_role(ctx, env)
    restart_pgbouncer(ctx, env)
    restart_redis(ctx, env, redis_tls, redis_force)
    restart_otel(ctx, env, redis_tls)
    return ["voiceai-postgres", "voiceai-pgbouncer", "voiceai-redis", "voiceai-otel-collector"]


def init_app(ctx: HostCtx, env: dict[str, str]) -> list[str]:
    decode_material(ctx, env, needed=False, with_key=False)
    penv = app_env(ctx, env, ctx.service)
    if ctx.service == "telpro":
        modules = ctx.p("opt", "services", "telpro", "image-modules")
        has = modules.exists() and "hiredis_ssl" in modules.read_text().split()
        penv["LAB_HIREDIS_SSL"] = "1" if has else "0"
    extra = ["--health-port", ctx.lab["LAB_HEALTH_PORT"]] if ctx.service == "api" else []
    pid = _restart_app_process(ctx, penv, ctx.service, extra)
    healthy, why = wait_app_healthy(ctx, ctx.service, pid)
    if not healthy:
        raise InitError(f"{ctx.service} did not become healthy: {why}", restarted=True)
    return [f"voiceai-{ctx.service}"]


def wait_app_healthy(
    ctx: HostCtx, name: str, pid: int, timeout: float = 8.0, *, need_db: bool = True
) -> tuple[bool, str]:
    """Healthy = the new process completed a query and a ping since it started."""

    meter = ctx.p("var", "lib", "lab", f"{name}.meter.json")
    deadline = time.monotonic() + timeout
    why = "no status yet"
    while time.monotonic() < deadline:
        if not procs.pid_alive(pid):
            return False, "process exited: " + _tail(ctx.p("var", "log", f"{name}.log"))
        try:
            m = json.loads(meter.read_text())
        except (OSError, ValueError):
            time.sleep(0.05)
            continue
        if m.get("pid") == pid:
            db, rd = m.get("db", {}), m.get("redis", {})
            if (db.get("connected") or not need_db) and rd.get("connected"):
                return True, ""
            why = m.get("last_error") or why
        time.sleep(0.05)
    return False, why


def _tail(path: Path, n: int = 3) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    return " | ".join(lines[-n:]) or "(empty log)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="init.sh")
    ap.add_argument("--root", required=True, type=Path)
    ap.add_argument("--service", required=True)
    args = ap.parse_args(argv)
    lab = read_env_file(args.root / "opt" / "deployment" / "lab.env")
    ctx = HostCtx(args.root, args.service, lab.get("LAB_HOST_ADDRESS", "127.0.0.1"), lab)
    env = dict(os.environ)
    t0 = time.monotonic()
    try:
        validate(env)
        started = init_database(ctx, env) if args.service == "database" else init_app(ctx, env)
    except InitError as exc:
        print(f"init.sh: {args.service} on {env.get('HOSTNAME', '?')}: {exc}", file=sys.stderr)
        return 1
    print(f"init.sh: {args.service}: recreated {', '.join(started)}; healthy in {time.monotonic() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
