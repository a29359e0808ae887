"""Real Postgres 15, PgBouncer 1.18 and Redis 7 servers for the probe tests.

Everything runs as the unprivileged ``postgres`` user (Postgres refuses root, PgBouncer too),
binds only to addresses of a loopback net claimed for the test process (`NET`, see
lab.netclaim) on free ports, and lives in one temporary directory removed at the end.
`DbLab.close()` stops every process it started (SIGINT/SIGTERM, then SIGKILL) and reaps it.

Certificates come from `lab.pki`; the DB's private DNS name is ``db.test.internal`` and is
never resolved: clients dial the IP and verify the name.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lab.netclaim import claim_net
from lab.pki import Material, write_material
from tests.tier import servers_allowed

DNS_NAME = "db.test.internal"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
PGBOUNCER = "/usr/sbin/pgbouncer"
REDIS_SERVER = "/usr/bin/redis-server"

SUPERUSER, SUPERUSER_PASSWORD = "postgres", "su-secret"
APP_USER, APP_PASSWORD, APP_DB = "app", "app-secret", "appdb"
ADMIN_USER, ADMIN_PASSWORD = "bouncer_admin", "admin-secret"
REDIS_PASSWORD = "redis-secret"

_CLAIM = claim_net()  # held for this test process
NET = _CLAIM.net


def _ids() -> tuple[int, int]:
    pw = pwd.getpwnam("postgres")
    return pw.pw_uid, pw.pw_gid


def free_port(ip: str) -> int:
    """A TCP port currently free on `ip` (bound and released; good enough for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


def wait_port(ip: str, port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}:\n{_tail(log)}")
        try:
            with socket.create_connection((ip, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{ip}:{port} not listening after {timeout}s:\n{_tail(log)}")


def _tail(log: Path, n: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _chown_tree(path: Path) -> None:
    uid, gid = _ids()
    os.chown(path, uid, gid)
    for p in path.rglob("*"):
        os.chown(p, uid, gid)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    stop_signal: int = signal.SIGTERM

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen.poll() is not None:
            return
        try:
            self.popen.send_signal(self.stop_signal)
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


@dataclass
class Postgres:
    host: str
    port: int
    socket_dir: Path
    hba_file: Path
    proc: Proc

    def psql(self, sql: str, *, db: str = "postgres") -> str:
        uid, gid = _ids()
        out = subprocess.run(
            [
                str(PG_BIN / "psql"),
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                db,
                "-v",
                "ON_ERROR_STOP=1",
                "-Atc",
                sql,
            ],
            user=uid,
            group=gid,
            extra_groups=[],
            capture_output=True,
            check=False,
            timeout=30,
        )
        if out.returncode != 0:
            raise RuntimeError(f"psql failed: {out.stderr.decode(errors='replace')}")
        return out.stdout.decode()

    def write_hba(self, lines: Iterable[str], *, reload: bool = True) -> None:
        self.hba_file.write_text("\n".join(lines) + "\n")
        _chown_tree(self.hba_file)
        if reload:
            self.psql("SELECT pg_reload_conf()")


@dataclass
class PgBouncer:
    host: str
    port: int
    ini: Path
    proc: Proc
    client_tls_sslmode: str
    server_tls_sslmode: str


@dataclass
class RedisServer:
    host: str
    port: int
    tls_port: int
    password: str | None
    proc: Proc


DEFAULT_HBA = (
    "local all all trust",
    "hostssl all all 127.0.0.0/8 scram-sha-256",
    "host all all 127.0.0.0/8 scram-sha-256",
)


@dataclass
class DbLab:
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="cockpit-dbservers-")))
    procs: list[Proc] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root.chmod(0o755)  # the postgres user must traverse it
        _chown_tree(self.root)

    # -- helpers -------------------------------------------------------------------------------------
    def _dir(self, name: str) -> Path:
        d = self.root / name
        d.mkdir(mode=0o700)
        _chown_tree(d)
        return d

    def _tls(self, name: str, material: Material) -> Path:
        d = self._dir(name) / "tls"
        write_material(material, d)
        _chown_tree(d.parent)
        return d

    def _spawn(self, name: str, argv: Sequence[str], log: Path, stop_signal: int = signal.SIGTERM) -> Proc:
        servers_allowed(name)
        uid, gid = _ids()
        with open(log, "ab") as fh:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                user=uid,
                group=gid,
                extra_groups=[],
                start_new_session=True,
                close_fds=True,
            )
        proc = Proc(name, popen, log, stop_signal)
        self.procs.append(proc)
        return proc

    # -- servers -------------------------------------------------------------------------------------
    def start_postgres(self, ip: str, material: Material, *, hba: Sequence[str] = DEFAULT_HBA) -> Postgres:
        uid, gid = _ids()
        tls = self._tls("pg", material)
        base = tls.parent
        data = base / "data"
        pwfile = base / "pwfile"
        pwfile.write_text(SUPERUSER_PASSWORD + "\n")
        _chown_tree(base)
        init = subprocess.run(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                "--pwfile",
                str(pwfile),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            user=uid,
            group=gid,
            extra_groups=[],
            capture_output=True,
            check=False,
            timeout=120,
        )
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr.decode(errors='replace')}")
        hba_file = base / "pg_hba.conf"
        hba_file.write_text("\n".join(hba) + "\n")
        _chown_tree(hba_file)
        port = free_port(ip)
        log = base / "postgres.log"
        proc = self._spawn(
            "postgres",
            [
                str(PG_BIN / "postgres"),
                "-D",
                str(data),
                "-c",
                f"listen_addresses={ip}",
                "-c",
                f"port={port}",
                "-c",
                f"unix_socket_directories={base}",
                "-c",
                "ssl=on",
                "-c",
                f"ssl_cert_file={tls / 'server.crt'}",
                "-c",
                f"ssl_key_file={tls / 'server.key'}",
                "-c",
                f"hba_file={hba_file}",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "logging_collector=off",
                "-c",
                "shared_buffers=16MB",
                "-c",
                "max_connections=40",
            ],
            log,
            stop_signal=signal.SIGINT,  # fast shutdown
        )
        wait_port(ip, port, proc.popen, log)
        pg = Postgres(ip, port, base, hba_file, proc)
        deadline = time.monotonic() + 20
        while True:  # accepting TCP is not the same as ready for queries
            try:
                pg.psql("SELECT 1")
                break
            except RuntimeError:
                if time.monotonic() > deadline or proc.popen.poll() is not None:
                    raise
                time.sleep(0.1)
        pg.psql(f"CREATE ROLE {APP_USER} LOGIN PASSWORD '{APP_PASSWORD}'")
        pg.psql(f"CREATE DATABASE {APP_DB} OWNER {APP_USER}")
        return pg

    def start_pgbouncer(
        self,
        ip: str,
        name: str,
        *,
        material: Material | None,
        client_tls_sslmode: str,
        server_tls_sslmode: str,
        postgres: Postgres | None,
        auth_type: str = "md5",
    ) -> PgBouncer:
        base = self._dir(name)
        tls = base / "tls"
        if material is not None:
            write_material(material, tls)
        port = free_port(ip)
        pg_host, pg_port = (postgres.host, postgres.port) if postgres else (f"{NET}.19", 1)
        lines = [
            "[databases]",
            f"{APP_DB} = host={pg_host} port={pg_port} dbname={APP_DB}",
            "[pgbouncer]",
            f"listen_addr = {ip}",
            f"listen_port = {port}",
            f"unix_socket_dir = {base}",
            f"auth_type = {auth_type}",
            f"auth_file = {base / 'userlist.txt'}",
            f"admin_users = {ADMIN_USER}",
            "pool_mode = session",
            "ignore_startup_parameters = extra_float_digits",
            "server_login_retry = 1",
            f"client_tls_sslmode = {client_tls_sslmode}",
            f"server_tls_sslmode = {server_tls_sslmode}",
        ]
        if material is not None:
            lines += [
                f"client_tls_cert_file = {tls / 'server.crt'}",
                f"client_tls_key_file = {tls / 'server.key'}",
                f"client_tls_ca_file = {tls / 'ca.crt'}",
                f"server_tls_ca_file = {tls / 'ca.crt'}",
            ]
        ini = base / "pgbouncer.ini"
        ini.write_text("\n".join(lines) + "\n")
        (base / "userlist.txt").write_text(f'"{ADMIN_USER}" "{ADMIN_PASSWORD}"\n"{APP_USER}" "{APP_PASSWORD}"\n')
        _chown_tree(base)
        (base / "userlist.txt").chmod(0o600)
        log = base / "pgbouncer.log"
        # 1.18: SIGTERM = immediate shutdown (SIGINT = "safe", waits for clients)
        proc = self._spawn(f"pgbouncer-{name}", [PGBOUNCER, str(ini)], log, stop_signal=signal.SIGTERM)
        wait_port(ip, port, proc.popen, log)
        return PgBouncer(ip, port, ini, proc, client_tls_sslmode, server_tls_sslmode)

    def start_redis(
        self,
        ip: str,
        name: str,
        *,
        material: Material,
        tls_auth_clients: str = "no",
        password: str | None = REDIS_PASSWORD,
    ) -> RedisServer:
        tls = self._tls(name, material)
        base = tls.parent
        port, tls_port = free_port(ip), free_port(ip)
        while tls_port == port:
            tls_port = free_port(ip)
        argv = [
            REDIS_SERVER,
            "--bind",
            ip,
            "--port",
            str(port),
            "--tls-port",
            str(tls_port),
            "--tls-cert-file",
            str(tls / "server.crt"),
            "--tls-key-file",
            str(tls / "server.key"),
            "--tls-ca-cert-file",
            str(tls / "ca.crt"),
            "--tls-auth-clients",
            tls_auth_clients,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(base),
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
            "--logfile",
            "",
        ]
        if password is not None:
            argv += ["--requirepass", password]
        log = base / "redis.log"
        proc = self._spawn(f"redis-{name}", argv, log)
        wait_port(ip, port, proc.popen, log)
        wait_port(ip, tls_port, proc.popen, log)
        return RedisServer(ip, port, tls_port, password, proc)

    # -- teardown ------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop every server (bouncers before the Postgres they use) and remove the directory.

        With DBSERVERS_LOG_DIR set, the servers' logs are copied there first (for debugging).
        """
        for proc in reversed(self.procs):
            proc.stop()
        keep = os.environ.get("DBSERVERS_LOG_DIR")
        if keep:
            dest = Path(keep)
            dest.mkdir(parents=True, exist_ok=True)
            for proc in self.procs:
                with contextlib.suppress(OSError):
                    shutil.copy(proc.log, dest / f"{proc.name}.log")
        self.procs.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    def leftover_pids(self) -> list[int]:
        return [p.popen.pid for p in self.procs if p.popen.poll() is None]
