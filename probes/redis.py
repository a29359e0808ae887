"""Redis facts: its listeners and which clients are connected over TLS.

``CLIENT LIST`` has no TLS flag; ``laddr`` (the local address the client connected to) is the
truth: a client whose ``laddr`` port is the ``tls-port`` is a TLS client. ``CONFIG GET port``
reads ``0`` once the plaintext listener is dropped (REDIS_FORCE_TLS).

TLS: redis-py normally builds its own context from ``ssl.create_default_context()`` -- loading
the whole system bundle on every connect (~20 ms of blocked loop) and trusting every public CA
-- and verifies the address it dials. Here a prebuilt context (internal CA only) is handed in
through a small connection class, with ``server_hostname`` set to the DB's DNS name, so
verification works whatever address (an IP, a tunnel) is dialled.

Nothing here raises: failures become results in the returned facts.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import Connection, ConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, InvalidResponse, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from probes.model import CheckResult, Verdict
from probes.plaintext import plaintext_verdict
from probes.session import KeptSession

__all__ = [
    "PROBE_CLIENT_NAME",
    "PrebuiltSSLConnection",
    "RedisClient",
    "RedisFacts",
    "RedisSession",
    "parse_client_list",
    "probe_redis",
]

PROBE_CLIENT_NAME = "rollout-cockpit-probe"


class PrebuiltSSLConnection(Connection):
    """A redis-py asyncio connection that uses a given SSLContext and server name as-is.

    Use through ``ConnectionPool(connection_class=PrebuiltSSLConnection, ssl_context=ctx,
    server_hostname="db.internal", host=..., port=...)``.
    """

    def __init__(self, *, ssl_context: ssl.SSLContext, server_hostname: str | None = None, **kwargs: Any) -> None:
        self._prebuilt_ssl = ssl_context
        self._server_hostname = server_hostname
        super().__init__(**kwargs)

    def _connection_arguments(self) -> Mapping[str, Any]:
        args = dict(super()._connection_arguments())
        args["ssl"] = self._prebuilt_ssl
        if self._server_hostname:
            args["server_hostname"] = self._server_hostname
        return args


@dataclass(frozen=True, slots=True)
class RedisClient:
    """One ``CLIENT LIST`` entry."""

    name: str
    addr: str  # the client's address, ip:port
    laddr: str  # the address it connected to on the server, ip:port
    tls: bool  # laddr's port is the tls-port
    id: int = 0
    user: str = ""
    age: int | None = None
    idle: int | None = None
    cmd: str = ""


@dataclass(frozen=True, slots=True)
class RedisFacts:
    """What one sample saw. ``None`` means "could not be read"; see `results` for why."""

    target: str
    connected: bool
    port: int | None  # CONFIG GET port (0 = plaintext listener dropped)
    tls_port: int | None  # CONFIG GET tls-port (0 = no TLS listener)
    tls_auth_clients: str | None  # CONFIG GET tls-auth-clients (yes/no/optional)
    clients: tuple[RedisClient, ...] | None  # without the probe's own connection
    connected_over_tls: bool  # the probe's own connection
    results: tuple[CheckResult, ...]
    duration_ms: float = 0.0

    @property
    def plaintext_clients(self) -> tuple[RedisClient, ...]:
        return tuple(c for c in self.clients or () if not c.tls)


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def _port_of(addr: str) -> int | None:
    try:
        return int(addr.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return None


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _text(v: Any) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return "" if v is None else str(v)


def parse_client_list(raw: str) -> list[dict[str, str]]:
    """``CLIENT LIST`` text → one dict per line (``name=`` may be empty; values have no spaces)."""
    out: list[dict[str, str]] = []
    for line in raw.splitlines():
        entry: dict[str, str] = {}
        for part in line.split(" "):
            key, sep, value = part.partition("=")
            if sep:
                entry[key] = value
        if entry:
            out.append(entry)
    return out


def _config_value(reply: Any, key: str) -> str | None:
    """CONFIG GET reply (dict in RESP3 / redis-py, or a flat list) → the value of `key`."""
    if isinstance(reply, dict):
        for k, v in reply.items():
            if _text(k) == key:
                return _text(v)
        return None
    if isinstance(reply, list | tuple):
        items = list(reply)
        for i in range(0, len(items) - 1, 2):
            if _text(items[i]) == key:
                return _text(items[i + 1])
    return None


async def _cmd(client: Redis, *args: str) -> Any:
    """One raw command (redis-py's execute_command is untyped)."""
    return await client.execute_command(*args)  # type: ignore[no-untyped-call]


def _root_ssl_error(exc: BaseException) -> ssl.SSLError | None:
    """redis-py wraps the SSL error in its ConnectionError; find it in the cause chain."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, ssl.SSLError):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def _classify(exc: BaseException, target: str, timeout: float) -> tuple[Verdict, str]:
    text = str(exc)
    if isinstance(exc, TimeoutError | RedisTimeoutError):
        return Verdict.ERROR, f"no answer from Redis on {target} within {timeout:g}s"
    if isinstance(exc, AuthenticationError) or "WRONGPASS" in text or "invalid password" in text:
        return Verdict.FAIL, f"password rejected by {target} (WRONGPASS)"
    if "NOAUTH" in text or "Authentication required" in text:
        return Verdict.FAIL, f"{target} requires a password (NOAUTH) and none was given"
    root = _root_ssl_error(exc)
    if isinstance(root, ssl.SSLCertVerificationError):
        return Verdict.FAIL, f"TLS certificate rejected: {root.verify_message}"
    if "CERTIFICATE_VERIFY_FAILED" in text:
        detail = text.split("certificate verify failed:", 1)[-1].split("(_ssl.c", 1)[0].strip(" .")
        return Verdict.FAIL, f"TLS certificate rejected: {detail}"
    if root is not None or "SSL" in text:
        if "certificate required" in text.lower() or (root is not None and _cert_required(root)):
            return Verdict.WARN, "listener requires a client certificate (tls-auth-clients yes)"
        return Verdict.FAIL, f"TLS to {target} failed: {text}"
    if "Connection refused" in text or isinstance(exc, ConnectionRefusedError):
        return Verdict.FAIL, f"nothing listening on {target}"
    if isinstance(exc, RedisConnectionError | ConnectionError | OSError):
        return Verdict.ERROR, f"cannot talk to Redis on {target}: {text}"
    if isinstance(exc, InvalidResponse):
        return Verdict.FAIL, f"not a Redis server: {text[:120]}"
    if isinstance(exc, ResponseError):
        return Verdict.ERROR, f"Redis refused a command: {text}"
    return Verdict.ERROR, f"Redis on {target}: {type(exc).__name__}: {text}"


def _cert_required(exc: ssl.SSLError) -> bool:
    return "CERTIFICATE_REQUIRED" in str(getattr(exc, "reason", "") or "").upper()


@dataclass(frozen=True, slots=True)
class _Replies:
    """What one round of commands returned (the CONFIG GET replies are None when CONFIG was refused)."""

    own_id: int | None
    port: Any
    tls_port: Any
    tls_auth: Any
    config_error: str | None
    client_list: Any


class RedisSession(KeptSession[Redis, _Replies, RedisFacts]):
    """A kept connection for repeated `sample()` calls: CONFIG GET port/tls-port, CLIENT LIST.

    With `ssl_context` (e.g. ``probes.tlscontext.make_client_context(ca_pem)``) the connection uses TLS
    and verifies `server_name` (default: `host`); without, plaintext. The connection is opened
    lazily and dropped after any failure; the next sample reconnects.
    """

    check = "redis"
    connect_errors = ()  # redis-py connects on the first command: a failure there is the query's

    def __init__(
        self,
        host: str,
        port: int,
        *,
        password: str | None,
        timeout: float = 3.0,
        ssl_context: ssl.SSLContext | None = None,
        server_name: str | None = None,
        username: str | None = None,
    ) -> None:
        super().__init__(host, port, timeout=timeout)
        self.password = password
        self.username = username
        self.ssl_context = ssl_context
        self.server_name = server_name
        self.client_name = f"{PROBE_CLIENT_NAME}-{uuid.uuid4().hex[:8]}"  # CLIENT SETNAME: who we are

    def _make_client(self) -> Redis:
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "password": self.password,
            "username": self.username,
            "socket_connect_timeout": self.timeout,
            "socket_timeout": self.timeout,
            "retry": Retry(NoBackoff(), 0),
            "client_name": self.client_name,
            "max_connections": 1,
        }
        if self.ssl_context is not None:
            kwargs["connection_class"] = PrebuiltSSLConnection
            kwargs["ssl_context"] = self.ssl_context
            kwargs["server_hostname"] = self.server_name or self.host
        return Redis(connection_pool=ConnectionPool(**kwargs))

    async def _open(self) -> Redis:
        return self._make_client()

    async def _close(self, conn: Redis) -> None:
        try:
            async with asyncio.timeout(1.0):
                await conn.aclose()
                await conn.connection_pool.disconnect()
        except Exception:  # includes TimeoutError; nothing more we can do
            pass

    def _facts(self, t0: float, results: list[CheckResult], **kw: Any) -> RedisFacts:
        fields: dict[str, Any] = {
            "connected": False,
            "port": None,
            "tls_port": None,
            "tls_auth_clients": None,
            "clients": None,
            "connected_over_tls": self.ssl_context is not None,
        }
        fields.update(kw)
        return RedisFacts(target=self.target, results=tuple(results), duration_ms=_ms(t0), **fields)

    async def _query(self, conn: Redis) -> _Replies:
        own_id = _int(await _cmd(conn, "CLIENT", "ID"))
        config_error: str | None = None
        try:
            port_reply = await _cmd(conn, "CONFIG", "GET", "port")
            tls_reply = await _cmd(conn, "CONFIG", "GET", "tls-port")
            auth_reply = await _cmd(conn, "CONFIG", "GET", "tls-auth-clients")
        except ResponseError as exc:  # CONFIG renamed/disabled, or an ACL without +config
            port_reply = tls_reply = auth_reply = None
            config_error = str(exc)
        raw = await _cmd(conn, "CLIENT", "LIST")
        return _Replies(own_id, port_reply, tls_reply, auth_reply, config_error, raw)

    def _stale(self, exc: Exception) -> bool:
        # the kept connection went stale (Redis restarted, CLIENT KILL)
        return not isinstance(exc, TimeoutError | RedisTimeoutError | ResponseError)

    def _connect_failed(self, exc: BaseException, t0: float) -> CheckResult:
        return self._query_failed(exc, t0)

    def _query_failed(self, exc: BaseException, t0: float) -> CheckResult:
        verdict, summary = _classify(exc, self.target, self.timeout)
        evidence = {"error": f"{type(exc).__name__}: {exc}", "tls": self.ssl_context is not None}
        return CheckResult("redis.connect", self.target, verdict, summary, evidence, _ms(t0))

    def _read(self, raw: _Replies, t0: float) -> RedisFacts:
        port = _int(_config_value(raw.port, "port"))
        tls_port = _int(_config_value(raw.tls_port, "tls-port"))
        tls_auth = _config_value(raw.tls_auth, "tls-auth-clients")
        listed = raw.client_list
        entries = parse_client_list(_text(listed)) if not isinstance(listed, list) else [dict(e) for e in listed]
        clients = tuple(_client(e, tls_port) for e in entries if raw.own_id is None or _int(e.get("id")) != raw.own_id)
        results = [_listeners_result(self.target, port, tls_port, tls_auth, raw.config_error, _ms(t0))]
        if raw.config_error is None:
            rows = [{"name": c.name, "addr": c.addr, "laddr": c.laddr} for c in clients if not c.tls]
            names = [c.name or c.addr for c in clients if not c.tls]
            results.append(
                plaintext_verdict(
                    "redis.clients",
                    self.target,
                    "client",
                    len(clients),
                    rows,
                    names,
                    none="no other clients",
                    duration_ms=_ms(t0),
                )
            )
        return self._facts(
            t0, results, connected=True, port=port, tls_port=tls_port, tls_auth_clients=tls_auth, clients=clients
        )


def _client(e: Mapping[str, Any], tls_port: int | None) -> RedisClient:
    return RedisClient(
        name=_text(e.get("name")),
        addr=_text(e.get("addr")),
        laddr=_text(e.get("laddr")),
        tls=bool(tls_port) and _port_of(_text(e.get("laddr"))) == tls_port,
        id=_int(e.get("id")) or 0,
        user=_text(e.get("user")),
        age=_int(e.get("age")),
        idle=_int(e.get("idle")),
        cmd=_text(e.get("cmd")),
    )


def _listeners_result(
    target: str, port: int | None, tls_port: int | None, tls_auth: str | None, config_error: str | None, ms: float
) -> CheckResult:
    """redis.listeners: the TLS listener and whether plaintext is still served (ERROR when CONFIG is refused)."""
    evidence: dict[str, Any] = {"port": port, "tls_port": tls_port, "tls_auth_clients": tls_auth}
    if config_error is not None:
        summary = f"CONFIG GET refused ({config_error}): cannot tell TLS clients from plaintext ones"
        return CheckResult("redis.listeners", target, Verdict.ERROR, summary, evidence, ms)
    if not tls_port:
        summary = f"no TLS listener (tls-port 0); plaintext on {port}"
        return CheckResult("redis.listeners", target, Verdict.WARN, summary, evidence, ms)
    plain = f"plaintext on {port}" if port else "plaintext listener dropped (port 0)"
    summary = f"TLS on {tls_port} (tls-auth-clients {tls_auth}); {plain}"
    return CheckResult("redis.listeners", target, Verdict.OK, summary, evidence, ms)


async def probe_redis(
    host: str,
    port: int,
    *,
    password: str | None,
    timeout: float = 3.0,  # noqa: ASYNC109 - a probe's budget, enforced with asyncio.timeout inside
    ssl_context: ssl.SSLContext | None = None,
    server_name: str | None = None,
    username: str | None = None,
) -> RedisFacts:
    """One sample on a fresh connection (see `RedisSession` to keep one).

    Results (check ids): redis.connect (only on failure), redis.listeners, redis.clients
    (WARN when any client is on the plaintext listener).
    """
    session = RedisSession(
        host,
        port,
        password=password,
        timeout=timeout,
        ssl_context=ssl_context,
        server_name=server_name,
        username=username,
    )
    try:
        return await session.sample()
    finally:
        await session.aclose()
