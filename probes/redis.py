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

from probes.model import CheckResult, Verdict, bug_result

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

    def __init__(
        self, *, ssl_context: ssl.SSLContext, server_hostname: str | None = None, **kwargs: Any
    ) -> None:
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


class RedisSession:
    """A kept connection for repeated `sample()` calls: CONFIG GET port/tls-port, CLIENT LIST.

    With `ssl_context` (e.g. ``probes.tlscontext.make_client_context(ca_pem)``) the connection uses TLS
    and verifies `server_name` (default: `host`); without, plaintext. The connection is opened
    lazily and dropped after any failure; the next sample reconnects.
    """

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
        self.host = host
        self.port = port
        self.password = password
        self.username = username
        self.timeout = timeout
        self.ssl_context = ssl_context
        self.server_name = server_name
        self.client_name = f"{PROBE_CLIENT_NAME}-{uuid.uuid4().hex[:8]}"  # CLIENT SETNAME: who we are
        self._client: Redis | None = None
        self._lock = asyncio.Lock()

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

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

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            async with asyncio.timeout(1.0):
                await client.aclose()
                await client.connection_pool.disconnect()
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

    async def sample(self) -> RedisFacts:
        async with self._lock:
            t0 = time.perf_counter()
            try:
                return await self._sample(t0, retry=True)
            except Exception as exc:
                await self.aclose()
                return self._facts(t0, [bug_result("redis.connect", self.target, exc, t0)])

    async def _sample(self, t0: float, *, retry: bool) -> RedisFacts:
        target = self.target
        reused = self._client is not None
        if self._client is None:
            self._client = self._make_client()
        client = self._client
        config_error: str | None = None
        try:
            async with asyncio.timeout(self.timeout):
                own_id = _int(await _cmd(client, "CLIENT", "ID"))
                try:
                    port_reply = await _cmd(client, "CONFIG", "GET", "port")
                    tls_reply = await _cmd(client, "CONFIG", "GET", "tls-port")
                    auth_reply = await _cmd(client, "CONFIG", "GET", "tls-auth-clients")
                except ResponseError as exc:  # CONFIG renamed/disabled, or an ACL without +config
                    port_reply = tls_reply = auth_reply = None
                    config_error = str(exc)
                raw = await _cmd(client, "CLIENT", "LIST")
        except Exception as exc:  # only driver calls above: whatever they raise is about the connection
            await self.aclose()
            if reused and retry and not isinstance(exc, TimeoutError | RedisTimeoutError | ResponseError):
                # the kept connection went stale (Redis restarted, CLIENT KILL): one fresh attempt
                return await self._sample(t0, retry=False)
            verdict, summary = _classify(exc, target, self.timeout)
            return self._facts(
                t0,
                [
                    CheckResult(
                        "redis.connect",
                        target,
                        verdict,
                        summary,
                        {"error": f"{type(exc).__name__}: {exc}", "tls": self.ssl_context is not None},
                        _ms(t0),
                    )
                ],
            )

        port = _int(_config_value(port_reply, "port"))
        tls_port = _int(_config_value(tls_reply, "tls-port"))
        tls_auth = _config_value(auth_reply, "tls-auth-clients")
        entries = parse_client_list(_text(raw)) if not isinstance(raw, list) else [dict(e) for e in raw]
        clients = tuple(
            RedisClient(
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
            for e in entries
            if own_id is None or _int(e.get("id")) != own_id
        )

        results: list[CheckResult] = []
        listeners_ev: dict[str, Any] = {"port": port, "tls_port": tls_port, "tls_auth_clients": tls_auth}
        if config_error is not None:
            results.append(
                CheckResult(
                    "redis.listeners",
                    target,
                    Verdict.ERROR,
                    f"CONFIG GET refused ({config_error}): cannot tell TLS clients from plaintext ones",
                    listeners_ev,
                    _ms(t0),
                )
            )
        elif not tls_port:
            results.append(
                CheckResult(
                    "redis.listeners",
                    target,
                    Verdict.WARN,
                    f"no TLS listener (tls-port 0); plaintext on {port}",
                    listeners_ev,
                    _ms(t0),
                )
            )
        else:
            plain = f"plaintext on {port}" if port else "plaintext listener dropped (port 0)"
            results.append(
                CheckResult(
                    "redis.listeners",
                    target,
                    Verdict.OK,
                    f"TLS on {tls_port} (tls-auth-clients {tls_auth}); {plain}",
                    listeners_ev,
                    _ms(t0),
                )
            )

        if config_error is None:
            plain_clients = [c for c in clients if not c.tls]
            ev: dict[str, Any] = {
                "total": len(clients),
                "tls": len(clients) - len(plain_clients),
                "plaintext": [{"name": c.name, "addr": c.addr, "laddr": c.laddr} for c in plain_clients],
            }
            if plain_clients:
                names = ", ".join(sorted({c.name or c.addr for c in plain_clients}))
                results.append(
                    CheckResult(
                        "redis.clients",
                        target,
                        Verdict.WARN,
                        f"{len(plain_clients)} of {len(clients)} client(s) on plaintext: {names}",
                        ev,
                        _ms(t0),
                    )
                )
            else:
                summary = f"all {len(clients)} client(s) use TLS" if clients else "no other clients"
                results.append(CheckResult("redis.clients", target, Verdict.OK, summary, ev, _ms(t0)))

        return self._facts(
            t0,
            results,
            connected=True,
            port=port,
            tls_port=tls_port,
            tls_auth_clients=tls_auth,
            clients=clients,
        )


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
