"""PgBouncer's admin console: its TLS settings and who is connected on TLS, per leg.

Why psycopg 3 and not asyncpg: asyncpg always uses the extended query protocol
(Parse/Bind/Execute), which PgBouncer's admin console rejects ("extended query protocol not
supported by admin console") -- ``fetch("SHOW CLIENTS")`` fails and the connection is dropped.
psycopg 3 sends a parameterless query with the simple protocol. It needs ``autocommit=True``
(otherwise it sends BEGIN: "invalid command 'BEGIN'") and ``prepare_threshold=None`` (otherwise
a kept connection auto-prepares the sixth identical SHOW, and PgBouncer rejects that too).

``SHOW CLIENTS.tls`` is the only place Leg 1 (app → PgBouncer) is visible; ``SHOW SERVERS.tls``
shows Leg 2 (PgBouncer → Postgres). ``tls`` is empty for plaintext, e.g.
``TLSv1.3/TLS_AES_256_GCM_SHA384`` for a TLS client (server rows add ``/ECDH=prime256v1``).

Nothing here raises: failures become results in the returned facts.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

from probes.model import CheckResult, Verdict
from probes.plaintext import plaintext_verdict
from probes.session import KeptSession

__all__ = [
    "Client",
    "PgBouncerFacts",
    "PgBouncerSession",
    "Server",
    "probe_pgbouncer",
]

_APP_NAME_PREFIX = "rollout-cockpit-probe"


@dataclass(frozen=True, slots=True)
class Client:
    """One ``SHOW CLIENTS`` row: a connection to PgBouncer (Leg 1)."""

    user: str
    database: str
    addr: str
    port: int | None
    application_name: str
    tls: bool  # the connection uses TLS
    tls_info: str  # PgBouncer's raw value: "" or e.g. "TLSv1.3/TLS_AES_256_GCM_SHA384"
    state: str = ""
    local_addr: str = ""
    local_port: int | None = None
    ptr: str = ""
    link: str = ""  # ptr of the server connection it is linked to, "" when none


@dataclass(frozen=True, slots=True)
class Server:
    """One ``SHOW SERVERS`` row: PgBouncer's connection to Postgres (Leg 2)."""

    addr: str
    tls: bool
    tls_info: str
    application_name: str
    link: str  # ptr of the client using it, "" when idle
    port: int | None = None
    user: str = ""
    database: str = ""
    state: str = ""
    ptr: str = ""
    remote_pid: int | None = None  # the Postgres backend pid (matches pg_stat_ssl.pid)


@dataclass(frozen=True, slots=True)
class PgBouncerFacts:
    """What one sample saw. ``None`` means "could not be read"; see `results` for why."""

    target: str
    connected: bool
    config: Mapping[str, str] | None  # every SHOW CONFIG key → value
    client_tls_sslmode: str | None
    server_tls_sslmode: str | None
    clients: tuple[Client, ...] | None  # without the probe's own admin connection
    servers: tuple[Server, ...] | None
    admin_connection_tls: bool | None
    results: tuple[CheckResult, ...]
    duration_ms: float = 0.0

    @property
    def plaintext_clients(self) -> tuple[Client, ...]:
        return tuple(c for c in self.clients or () if not c.tls)

    @property
    def plaintext_servers(self) -> tuple[Server, ...]:
        return tuple(s for s in self.servers or () if not s.tls)


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def _int(v: Any) -> int | None:
    try:
        return int(v) if v is not None and v != "" else None
    except (TypeError, ValueError):
        return None


def _str(v: Any) -> str:
    return "" if v is None else str(v)


def _client(row: Mapping[str, Any]) -> Client:
    tls = _str(row.get("tls"))
    return Client(
        user=_str(row.get("user")),
        database=_str(row.get("database")),
        addr=_str(row.get("addr")),
        port=_int(row.get("port")),
        application_name=_str(row.get("application_name")),
        tls=bool(tls),
        tls_info=tls,
        state=_str(row.get("state")),
        local_addr=_str(row.get("local_addr")),
        local_port=_int(row.get("local_port")),
        ptr=_str(row.get("ptr")),
        link=_str(row.get("link")),
    )


def _server(row: Mapping[str, Any]) -> Server:
    tls = _str(row.get("tls"))
    return Server(
        addr=_str(row.get("addr")),
        tls=bool(tls),
        tls_info=tls,
        application_name=_str(row.get("application_name")),
        link=_str(row.get("link")),
        port=_int(row.get("port")),
        user=_str(row.get("user")),
        database=_str(row.get("database")),
        state=_str(row.get("state")),
        ptr=_str(row.get("ptr")),
        remote_pid=_int(row.get("remote_pid")),
    )


def _classify_connect_error(exc: BaseException, target: str, timeout: float, user: str) -> tuple[Verdict, str]:
    if isinstance(exc, TimeoutError):
        return Verdict.ERROR, f"no answer from the admin console on {target} within {timeout:g}s"
    text = str(exc)
    low = text.lower()
    if "connection refused" in low:
        return Verdict.FAIL, f"nothing listening on {target}"
    if "timeout expired" in low:
        return Verdict.ERROR, f"no answer from the admin console on {target} within {timeout:g}s"
    if "password authentication failed" in low or "sasl authentication failed" in low:
        return Verdict.FAIL, f"admin console login refused for {user}: wrong password"
    if "not allowed" in low or "no such user" in low:
        return (
            Verdict.FAIL,
            f"admin console login refused: {user} is not in admin_users/stats_users ({text.strip()})",
        )
    if "invalid response to ssl negotiation" in low:
        return Verdict.FAIL, f"not a Postgres/PgBouncer server: {text.strip()[-80:]}"
    if "server does not support ssl" in low or "ssl was required" in low:
        return (
            Verdict.FAIL,
            "TLS required for the admin connection but PgBouncer does not offer it (answered N)",
        )
    if "certificate" in low or "ssl" in low:
        return Verdict.FAIL, f"TLS to the admin console failed: {text.strip()}"
    if "could not translate host name" in low or "no route" in low or "unreachable" in low:
        return Verdict.ERROR, f"cannot reach {target}: {text.strip()}"
    return Verdict.ERROR, f"admin console connect to {target} failed: {type(exc).__name__}: {text.strip()}"


def _write_ca(ca_pem: bytes) -> str:
    fd, path = tempfile.mkstemp(prefix="cockpit-ca-", suffix=".crt")
    try:
        os.write(fd, ca_pem)
    finally:
        os.close(fd)
    return path


@dataclass(frozen=True, slots=True)
class _Shown:
    """What one round of SHOW commands returned."""

    config_rows: list[dict[str, Any]]
    client_rows: list[dict[str, Any]]
    client_columns: list[str]
    server_rows: list[dict[str, Any]]


class PgBouncerSession(KeptSession[psycopg.AsyncConnection[Any], _Shown, PgBouncerFacts]):
    """A kept admin-console connection for repeated `sample()` calls.

    `sslmode` is libpq's: "prefer" (default; TLS when offered, not verified -- the TLS probe
    does the verifying), "disable", "require", "verify-ca", "verify-full". For the verify
    modes pass `ca_pem` ("require" with `ca_pem` also verifies the CA, as libpq does); with
    "verify-full" the certificate is checked against `server_name`
    while `host` is dialled (libpq's host/hostaddr split), so tunnels work.

    The connection opens lazily and is dropped after any failure; the next sample reconnects.
    """

    check = "pgbouncer"
    connect_errors = (TimeoutError, psycopg.Error, OSError)  # anything else is a bug (pgbouncer.connect)

    def __init__(
        self,
        host: str,
        port: int,
        *,
        admin_user: str,
        admin_password: str | None,
        timeout: float = 3.0,
        sslmode: str = "prefer",
        ca_pem: bytes | None = None,
        server_name: str | None = None,
    ) -> None:
        super().__init__(host, port, timeout=timeout)
        self.admin_user = admin_user
        self.admin_password = admin_password
        self.sslmode = sslmode
        self.ca_pem = ca_pem
        self.server_name = server_name
        self.application_name = f"{_APP_NAME_PREFIX}-{uuid.uuid4().hex[:8]}"
        self._own: tuple[str, int] | None = None  # our local (addr, port), as PgBouncer may see it

    async def _close(self, conn: psycopg.AsyncConnection[Any]) -> None:
        try:
            async with asyncio.timeout(1.0):
                await conn.close()
        except Exception:  # includes TimeoutError
            with contextlib.suppress(Exception):
                conn.pgconn.finish()

    def _closed(self, conn: psycopg.AsyncConnection[Any]) -> bool:
        return conn.closed

    async def _hostaddr(self) -> str:
        try:
            ipaddress.ip_address(self.host)
            return self.host
        except ValueError:
            loop = asyncio.get_running_loop()
            infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
            return str(infos[0][4][0])

    async def _open(self) -> psycopg.AsyncConnection[Any]:
        kwargs: dict[str, Any] = {
            "hostaddr": await self._hostaddr(),
            "host": self.server_name or self.host,
            "port": self.port,
            "user": self.admin_user,
            "dbname": "pgbouncer",
            "sslmode": self.sslmode,
            "application_name": self.application_name,
            "connect_timeout": max(2, math.ceil(self.timeout)),  # libpq: whole seconds, at least 2
            "autocommit": True,
            "prepare_threshold": None,
            "row_factory": dict_row,
        }
        if self.admin_password is not None:
            kwargs["password"] = self.admin_password
        ca_path: str | None = None
        if self.ca_pem is not None and self.sslmode in ("verify-ca", "verify-full", "require"):
            ca_path = await asyncio.to_thread(_write_ca, self.ca_pem)
            kwargs["sslrootcert"] = ca_path
        try:
            conn: psycopg.AsyncConnection[Any] = await psycopg.AsyncConnection.connect(**kwargs)
        finally:
            if ca_path is not None:  # libpq reads it during the handshake only
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(os.unlink, ca_path)
        with contextlib.suppress(OSError, ValueError):
            sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
            try:
                addr = sock.getsockname()
                self._own = (str(addr[0]), int(addr[1]))
            finally:
                sock.close()
        return conn

    def _facts(self, t0: float, results: list[CheckResult], **kw: Any) -> PgBouncerFacts:
        fields: dict[str, Any] = {
            "connected": False,
            "config": None,
            "client_tls_sslmode": None,
            "server_tls_sslmode": None,
            "clients": None,
            "servers": None,
            "admin_connection_tls": None,
        }
        fields.update(kw)
        return PgBouncerFacts(target=self.target, results=tuple(results), duration_ms=_ms(t0), **fields)

    async def _query(self, conn: psycopg.AsyncConnection[Any]) -> _Shown:
        cur = await conn.execute("SHOW CONFIG")
        config_rows = await cur.fetchall()
        cur = await conn.execute("SHOW CLIENTS")
        client_rows = await cur.fetchall()
        client_columns = [c.name for c in cur.description or ()]
        cur = await conn.execute("SHOW SERVERS")
        server_rows = await cur.fetchall()
        return _Shown(config_rows, client_rows, client_columns, server_rows)

    def _stale(self, exc: Exception) -> bool:
        return not isinstance(exc, TimeoutError)

    def _connect_failed(self, exc: BaseException, t0: float) -> CheckResult:
        verdict, summary = _classify_connect_error(exc, self.target, self.timeout, self.admin_user)
        evidence = {"error": f"{type(exc).__name__}: {exc}".strip(), "sslmode": self.sslmode}
        return CheckResult("pgbouncer.connect", self.target, verdict, summary, evidence, _ms(t0))

    def _query_failed(self, exc: Exception, t0: float) -> CheckResult:
        summary = (
            f"admin console on {self.target} did not answer within {self.timeout:g}s"
            if isinstance(exc, TimeoutError)
            else f"admin console query failed: {type(exc).__name__}: {exc}"
        )
        return CheckResult("pgbouncer.query", self.target, Verdict.ERROR, summary, {}, _ms(t0))

    def _read(self, raw: _Shown, t0: float) -> PgBouncerFacts:
        target = self.target
        config = {_str(r.get("key")): _str(r.get("value")) for r in raw.config_rows}
        client_mode = config.get("client_tls_sslmode")
        server_mode = config.get("server_tls_sslmode")
        all_clients = [_client(r) for r in raw.client_rows]
        own = [c for c in all_clients if c.database == "pgbouncer" and c.application_name == self.application_name]
        if not own and self._own is not None:
            own = [c for c in all_clients if (c.addr, c.port) == self._own]
        own_ptrs = {c.ptr for c in own}
        clients = tuple(c for c in all_clients if c.ptr not in own_ptrs)
        servers = tuple(_server(r) for r in raw.server_rows)
        tls_config = {k: v for k, v in config.items() if k.startswith(("client_tls_", "server_tls_"))}
        results: list[CheckResult] = [
            CheckResult(
                "pgbouncer.config",
                target,
                Verdict.OK,
                f"client_tls_sslmode={client_mode}, server_tls_sslmode={server_mode}",
                {"client_tls_sslmode": client_mode, "server_tls_sslmode": server_mode, **tls_config},
                _ms(t0),
            )
        ]
        if "tls" not in raw.client_columns:
            summary = "this PgBouncer's SHOW CLIENTS has no tls column (older than 1.18?)"
            evidence = {"columns": raw.client_columns}
            results.append(CheckResult("pgbouncer.clients", target, Verdict.ERROR, summary, evidence, _ms(t0)))
        else:
            results.append(_leg_result("pgbouncer.clients", target, "client", list(clients), t0))
        results.append(_leg_result("pgbouncer.servers", target, "server connection", list(servers), t0))
        return self._facts(
            t0,
            results,
            connected=True,
            config=config,
            client_tls_sslmode=client_mode,
            server_tls_sslmode=server_mode,
            clients=clients,
            servers=servers,
            admin_connection_tls=own[0].tls if own else None,
        )


def _leg_result(check: str, target: str, what: str, rows: list[Client] | list[Server], t0: float) -> CheckResult:
    plain = [r for r in rows if not r.tls]
    evidence = [{"addr": r.addr, "port": r.port, "application_name": r.application_name} for r in plain]
    names = [r.application_name or r.addr for r in plain]
    return plaintext_verdict(check, target, what, len(rows), evidence, names, none=f"no {what}s", duration_ms=_ms(t0))


async def probe_pgbouncer(
    host: str,
    port: int,
    *,
    admin_user: str,
    admin_password: str | None,
    timeout: float = 3.0,  # noqa: ASYNC109 - a probe's budget, enforced with asyncio.timeout inside
    sslmode: str = "prefer",
    ca_pem: bytes | None = None,
    server_name: str | None = None,
) -> PgBouncerFacts:
    """One sample on a fresh admin-console connection (see `PgBouncerSession` to keep one).

    Results (check ids): pgbouncer.connect (only on failure), pgbouncer.config,
    pgbouncer.clients (WARN when any client is on plaintext), pgbouncer.servers (same for Leg 2).
    """
    session = PgBouncerSession(
        host,
        port,
        admin_user=admin_user,
        admin_password=admin_password,
        timeout=timeout,
        sslmode=sslmode,
        ca_pem=ca_pem,
        server_name=server_name,
    )
    try:
        return await session.sample()
    finally:
        await session.aclose()
