"""The Postgres, PgBouncer and Redis sessions of the database side, kept between rounds (a warm round costs
queries, not connects) and opened again when where they dial or how changes, plus the end-to-end query
through PgBouncer (re-measured every `probe_ttl` seconds while it is healthy, every round when it is not)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from inventory.model import Environment
from probes.collect.fleetconfig import ProbeCredentials
from probes.collect.handshakes import Endpoints
from probes.model import CheckResult, Unknown, Verdict, Why
from probes.pgbouncer import PgBouncerFacts, PgBouncerSession
from probes.postgres import PostgresFacts, PostgresSession, probe_end_to_end
from probes.redis import RedisFacts, RedisSession
from probes.ssh.results import SshError, ssh_why
from probes.tlscontext import make_client_context

T = TypeVar("T")


@dataclass(frozen=True)
class Sampled:
    """One round's samples: None where there was no session (no endpoint, no user)."""

    postgres: PostgresFacts | None
    pgbouncer: PgBouncerFacts | None
    redis: RedisFacts | None
    end_to_end: CheckResult | Unknown


class DbSessions:
    """The database side's kept sessions; `aclose()` them at the end of the cockpit's session."""

    def __init__(self, env: Environment, *, timeout: float, probe_ttl: float) -> None:
        self.env = env
        self.timeout = timeout
        self.probe_ttl = probe_ttl
        self._pg: PostgresSession | None = None
        self._bouncer: PgBouncerSession | None = None
        self._redis: RedisSession | None = None
        self._redis_key: tuple[str, int, bool] | None = None
        self._ca_ctx: tuple[bytes, ssl.SSLContext] | None = None
        self._e2e: tuple[float, tuple[Any, ...], CheckResult] | None = None

    async def aclose(self) -> None:
        for s in (self._pg, self._bouncer, self._redis):
            if s is not None:
                with contextlib.suppress(Exception):
                    await s.aclose()
        self._pg = self._bouncer = self._redis = None

    def invalidate(self) -> None:
        self._e2e = None

    def _client_ctx(self, ca_pem: bytes) -> ssl.SSLContext:
        if self._ca_ctx is None or self._ca_ctx[0] != ca_pem:
            self._ca_ctx = (ca_pem, make_client_context(ca_pem, server_name=self.env.database.dns_name))
        return self._ca_ctx[1]

    async def sample(
        self, eps: Endpoints, creds: ProbeCredentials, ca_pem: bytes | None, pg_offers: bool, plain_up: bool
    ) -> Sampled:
        """Sample each server on its kept session (Redis over plaintext while that listener is up, else
        TLS; Postgres over TLS when it offers it) and run the end-to-end query."""
        ctx = self._client_ctx(ca_pem) if ca_pem else None
        pg_ep, pb_ep = eps.postgres, eps.pgbouncer
        if isinstance(pg_ep, tuple) and isinstance(creds.pg_user, str):
            await self._keep_postgres(pg_ep, creds, ctx if pg_offers else None)
        if isinstance(pb_ep, tuple) and isinstance(creds.admin_user, str):
            await self._keep_bouncer(pb_ep, creds)
        redis_ep = eps.redis if (isinstance(eps.redis, tuple) and plain_up) else eps.redis_tls
        if isinstance(redis_ep, tuple):
            use_tls = redis_ep is eps.redis_tls
            await self._keep_redis(redis_ep, creds, use_tls, ctx if use_tls else None)
        e2e, e2e_key, reused = self._end_to_end(pb_ep, creds)
        pg_f, pb_f, rd_f, e2e_r = await asyncio.gather(
            self._pg.sample() if (self._pg and isinstance(pg_ep, tuple)) else _value(None),
            self._bouncer.sample() if (self._bouncer and isinstance(pb_ep, tuple)) else _value(None),
            self._redis.sample() if (self._redis and isinstance(redis_ep, tuple)) else _value(None),
            e2e,
        )
        if isinstance(e2e_r, CheckResult) and not reused:
            self._e2e = (time.monotonic(), e2e_key, e2e_r) if e2e_r.verdict is Verdict.OK else None
        return Sampled(pg_f, pb_f, rd_f, e2e_r)

    async def _keep_postgres(self, ep: tuple[str, int], creds: ProbeCredentials, ctx: ssl.SSLContext | None) -> None:
        pg = self._pg
        if pg is not None and (pg.host, pg.port) == ep and (pg.ssl_ctx is not None) == (ctx is not None):
            return
        if pg is not None:
            await pg.aclose()
        assert isinstance(creds.pg_user, str)
        d = self.env.database
        self._pg = PostgresSession(
            ep[0],
            ep[1],
            user=creds.pg_user,
            password=creds.pg_password,
            dbname=d.dbname,
            ssl_ctx_or_none=ctx,
            timeout=self.timeout,
        )

    async def _keep_bouncer(self, ep: tuple[str, int], creds: ProbeCredentials) -> None:
        if self._bouncer is not None and (self._bouncer.host, self._bouncer.port) == ep:
            return
        if self._bouncer is not None:
            await self._bouncer.aclose()
        assert isinstance(creds.admin_user, str)
        self._bouncer = PgBouncerSession(
            ep[0], ep[1], admin_user=creds.admin_user, admin_password=creds.admin_password, timeout=self.timeout
        )

    async def _keep_redis(
        self, ep: tuple[str, int], creds: ProbeCredentials, use_tls: bool, ctx: ssl.SSLContext | None
    ) -> None:
        key = (ep[0], ep[1], use_tls)
        if self._redis is not None and self._redis_key == key:
            return
        if self._redis is not None:
            await self._redis.aclose()
        self._redis = RedisSession(
            ep[0],
            ep[1],
            password=creds.redis_password,
            timeout=self.timeout,
            ssl_context=ctx,
            server_name=self.env.database.dns_name,
        )
        self._redis_key = key

    def _end_to_end(
        self, pb_ep: tuple[str, int] | SshError | None, creds: ProbeCredentials
    ) -> tuple[Awaitable[CheckResult | Unknown], tuple[Any, ...], bool]:
        """The end-to-end query to run (or the healthy answer from under `probe_ttl` ago, or why not)."""
        d = self.env.database
        if not (isinstance(pb_ep, tuple) and isinstance(creds.pg_user, str)):
            why = (
                creds.pg_user
                if isinstance(creds.pg_user, Unknown)
                else Unknown(
                    ssh_why(pb_ep) if isinstance(pb_ep, SshError) else Why.NOT_CHECKED, "no tunnel to PgBouncer"
                )
            )
            return _value(why), (), False
        key = (pb_ep, creds.pg_user, creds.pg_password, d.dbname)
        cached = self._e2e
        if cached is not None and cached[1] == key and time.monotonic() - cached[0] < self.probe_ttl:
            return _value(cached[2]), key, True
        query = probe_end_to_end(
            pb_ep[0],
            pb_ep[1],
            user=creds.pg_user,
            password=creds.pg_password,
            dbname=d.dbname,
            ssl="prefer",
            timeout=max(self.timeout, 3.0),
        )
        return query, key, False


async def _value(v: T) -> T:
    return v
