"""A lab service instance: a real client of PgBouncer and Redis with an availability meter.

It behaves like the platform's apps: one connection to PgBouncer (`application_name` = its
service) and one to Redis (`CLIENT SETNAME` its service), both from its own host's address,
verifying the way the service is configured (verify-full checks the DB's private DNS name).
Every ~200 ms it runs a query and a ping. Like a real pool, a request may reconnect and retry
within a 3-second budget; the meter counts requests that still fail after it, keeps the last
error and the longest stall, and writes them to a status file that survives restarts.

`--otel` runs the OTel-collector stand-in instead: a Redis-only client of `REDIS_ENDPOINT`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import ssl
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import TimeoutError as RedisTimeoutError

BUDGET_S = 3.0
INTERVAL_S = 0.2


def _parse_resolve(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(","):
        name, sep, addr = part.partition("=")
        if sep:
            out[name.strip()] = addr.strip()
    return out


RESOLVE = _parse_resolve(os.environ.get("LAB_RESOLVE", ""))
BIND = os.environ.get("LAB_HOST_ADDRESS", "")


class LabLoop(asyncio.SelectorEventLoop):
    """Resolves the lab's private DNS names and binds outgoing connections to the host's address.

    The lab has no DNS; apps still dial (and verify) the DB's private name, as real apps do.
    """

    async def create_connection(self, protocol_factory, host=None, port=None, **kw):  # type: ignore[no-untyped-def]
        if host in RESOLVE:
            if kw.get("ssl") and kw.get("server_hostname") is None:
                kw["server_hostname"] = host
            host = RESOLVE[host]
        if BIND and kw.get("sock") is None and kw.get("local_addr") is None:
            kw["local_addr"] = (BIND, 0)
        return await super().create_connection(protocol_factory, host, port, **kw)


class Meter:
    def __init__(self, path: Path, service: str, instance: str) -> None:
        self.path = path
        self.data: dict[str, Any] = {
            "version": 1,
            "service": service,
            "instance": instance,
            "requests_ok": 0,
            "requests_failed": 0,
            "db_ok": 0,
            "db_failed": 0,
            "redis_ok": 0,
            "redis_failed": 0,
            "longest_stall_ms": 0.0,
            "last_error": "",
            "last_error_at": None,
            "last_failure": "",
            "last_failure_at": None,
        }
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError, OSError):
            old = json.loads(path.read_text())
            for k in self.data:
                if k in old and k not in ("service", "instance", "version"):
                    self.data[k] = old[k]
        self.data["pid"] = os.getpid()
        self.data["started_at"] = time.time()
        self.state: dict[str, Any] = {}

    def record(self, leg: str, ok: bool, stall_s: float, error: str = "") -> None:
        d = self.data
        if ok:
            d["requests_ok"] += 1
            d[f"{leg}_ok"] += 1
        else:
            d["requests_failed"] += 1
            d[f"{leg}_failed"] += 1
            d["last_failure"] = f"{leg}: {error}"[:300]
            d["last_failure_at"] = time.time()
        d["longest_stall_ms"] = max(d["longest_stall_ms"], round(stall_s * 1000, 1))

    def reset(self) -> None:
        """Zero the counters (SIGUSR1): a test or scenario starts measuring from here."""
        for k in ("requests_ok", "requests_failed", "db_ok", "db_failed", "redis_ok", "redis_failed"):
            self.data[k] = 0
        self.data.update(longest_stall_ms=0.0, last_failure="", last_failure_at=None, reset_at=time.time())
        self.flush()

    def note_error(self, leg: str, error: str) -> None:
        self.data["last_error"] = f"{leg}: {error}"[:300]
        self.data["last_error_at"] = time.time()

    def flush(self) -> None:
        self.data["updated_at"] = time.time()
        self.data.update(self.state)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        os.replace(tmp, self.path)


_TIMEOUTS = (TimeoutError, RedisTimeoutError)  # asyncio's and redis-py's own


def _ctx(ca_file: str, check_hostname: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=ca_file)
    return ctx


def db_ssl_arg(mode: str, ca_file: str) -> Any:
    """What asyncpg gets for the service's DATABASE_SSL_MODE (unset: asyncpg's default, prefer).

    verify-ca/verify-full without DATABASE_SSL_CA_FILE is asyncpg without sslrootcert: it looks for
    ~/.postgresql/root.crt of the process's HOME and fails when it is absent, as the platform's apps do."""
    if mode in ("", "prefer"):
        return "prefer"
    if mode in ("disable", "allow", "require") or not ca_file:
        return mode
    return _ctx(ca_file, check_hostname=(mode == "verify-full"))


class Service:
    def __init__(self, env: dict[str, str], meter: Meter, *, otel: bool) -> None:
        self.env = env
        self.meter = meter
        self.otel = otel
        self.service = env.get("LAB_SERVICE", "app")
        self.db: asyncpg.Connection | None = None
        self.redis: aioredis.Redis | None = None
        self.redis_ok = False
        self.hiredis_ssl = env.get("LAB_HIREDIS_SSL", "1") == "1"
        self.stopping = False  # set on SIGTERM: the container is being recreated

    # -- connections ------------------------------------------------------------------
    async def _db_connect(self, budget: float) -> asyncpg.Connection:
        e = self.env
        mode = e.get("DATABASE_SSL_MODE", "")
        conn = await asyncpg.connect(
            host=e["DATABASE_HOST"],
            port=int(e.get("DATABASE_PORT", "6432")),
            user=e.get("DATABASE_USER", "voiceai"),
            password=e.get("DATABASE_PASSWORD", ""),
            database=e.get("DATABASE_NAME", "voiceai"),
            ssl=db_ssl_arg(mode, e.get("DATABASE_SSL_CA_FILE", "")),
            timeout=max(budget, 0.1),
            statement_cache_size=0,
            server_settings={"application_name": self.service},
        )
        tls = conn._transport.get_extra_info("ssl_object") is not None
        self.meter.state["db"] = {"connected": True, "tls": bool(tls), "mode": mode or "(unset: prefer)"}
        return conn

    def _redis_target(self) -> tuple[str, int, bool, str]:
        e = self.env
        if self.otel:
            host, _, port_text = e["REDIS_ENDPOINT"].rpartition(":")
            return host, int(port_text), e.get("OTEL_REDIS_TLS", "false") == "true", e.get("REDIS_TLS_CA_FILE", "")
        tls = e.get("REDIS_TLS_ENABLED", "false") == "true"
        port = int(e.get("REDIS_TLS_PORT", "6380") if tls else e.get("REDIS_PORT", "6379"))
        return e["REDIS_HOST"], port, tls, e.get("REDIS_TLS_CA_FILE", "")

    async def _redis_connect(self, budget: float) -> aioredis.Redis:
        host, port, tls, ca = self._redis_target()
        if tls and not self.hiredis_ssl:
            raise RuntimeError("ndb_redis: REDIS_TLS_ENABLED=true but this image lacks hiredis_ssl")
        kw: dict[str, Any] = {}
        if tls:
            kw = {"ssl": True, "ssl_ca_certs": ca or None, "ssl_cert_reqs": "required", "ssl_check_hostname": True}
        r = aioredis.Redis(
            host=host,
            port=port,
            password=self.env.get("REDIS_PASSWORD") or None,
            client_name="otel-collector" if self.otel else self.service,
            socket_timeout=max(min(budget, 1.0), 0.1),
            socket_connect_timeout=max(min(budget, 1.0), 0.1),
            retry_on_timeout=False,
            # one attempt per connect: the request's own loop retries within its budget, and redis-py's
            # default retries (with backoff) would outlast the budget and hide the error as a timeout
            retry=Retry(NoBackoff(), 0),
            **kw,
        )
        await r.ping()
        self.meter.state["redis"] = {"connected": True, "tls": tls, "port": port}
        return r

    # -- requests ----------------------------------------------------------------------
    async def _request(self, leg: str) -> None:
        start = time.monotonic()
        last = ""
        while True:
            if self.stopping:
                return  # cut short by our own shutdown: not a request a user saw fail
            remaining = BUDGET_S - (time.monotonic() - start)
            if remaining <= 0:
                self.meter.record(leg, False, time.monotonic() - start, last)
                if leg == "redis":
                    self.redis_ok = False
                return
            try:
                if leg == "db":
                    if self.db is None or self.db.is_closed():
                        self.db = await asyncio.wait_for(self._db_connect(remaining), remaining)
                    db = self.db
                    assert db is not None
                    await db.fetchval("SELECT 1", timeout=min(1.0, remaining))
                else:
                    if self.redis is None:
                        self.redis = await asyncio.wait_for(self._redis_connect(remaining), remaining)
                    await asyncio.wait_for(self.redis.ping(), min(1.0, remaining))
                    self.redis_ok = True
                self.meter.record(leg, True, time.monotonic() - start)
                return
            except Exception as exc:
                err = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                # on a loaded host an attempt may time out after one that said why (a certificate that
                # does not verify): the request's error stays the one that says why, as an app's log would
                if not (isinstance(exc, _TIMEOUTS) and last and not last.startswith("TimeoutError")):
                    last = err
                    self.meter.note_error(leg, last)
                await self._drop(leg)
                self.meter.state[leg] = {"connected": False}
                await asyncio.sleep(0.1)

    async def _drop(self, leg: str) -> None:
        if leg == "db" and self.db is not None:
            conn, self.db = self.db, None
            with contextlib.suppress(Exception):
                conn.terminate()
        if leg == "redis" and self.redis is not None:
            r, self.redis = self.redis, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(r.aclose(), 0.5)

    async def run(self, stop: asyncio.Event) -> None:
        last_flush = 0.0
        while not stop.is_set():
            t0 = time.monotonic()
            if not self.otel:
                await self._request("db")
            await self._request("redis")
            if time.monotonic() - last_flush > 0.5:
                self.meter.flush()
                last_flush = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, INTERVAL_S - (time.monotonic() - t0)))
        self.meter.flush()
        await self._drop("db")
        await self._drop("redis")

    async def serve_health(self, address: str, port: int) -> asyncio.Server:
        """`GET /health`: 200 while Redis answers, else 503. HTTP/1.1 keep-alive, like the web
        servers the platform runs (an HTTP/1.0 request, or `Connection: close`, gets one answer)."""

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while True:
                    request = await asyncio.wait_for(reader.readline(), 60)
                    if not request:
                        break
                    close = not request.rstrip().endswith(b"HTTP/1.1")
                    while (line := await asyncio.wait_for(reader.readline(), 2)) not in (b"\r\n", b"\n", b""):
                        if line.lower().startswith(b"connection:") and b"close" in line.lower():
                            close = True
                    ok = self.redis_ok
                    body = b'{"status":"ok"}' if ok else b'{"status":"redis unreachable"}'
                    head = b"HTTP/1.1 200 OK" if ok else b"HTTP/1.1 503 Service Unavailable"
                    writer.write(
                        head
                        + b"\r\nContent-Type: application/json\r\nContent-Length: "
                        + str(len(body)).encode()
                        + b"\r\nConnection: "
                        + (b"close" if close else b"keep-alive")
                        + b"\r\n\r\n"
                        + body
                    )
                    await writer.drain()
                    if close:
                        break
            writer.close()

        return await asyncio.start_server(handle, address, port)


async def amain(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    meter = Meter(Path(args.meter), env.get("LAB_SERVICE", "app"), env.get("LAB_INSTANCE", "?"))
    svc = Service(env, meter, otel=args.otel)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def shutdown() -> None:
        svc.stopping = True
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, shutdown)
    loop.add_signal_handler(signal.SIGUSR1, meter.reset)
    server = None
    if args.health_port:
        server = await svc.serve_health(BIND or "127.0.0.1", args.health_port)
    await svc.run(stop)
    if server is not None:
        server.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lab-app")
    ap.add_argument("--meter", required=True)
    ap.add_argument("--otel", action="store_true")
    ap.add_argument("--health-port", type=int, default=0)
    args = ap.parse_args(argv)
    with asyncio.Runner(loop_factory=LabLoop) as runner:
        return runner.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
