"""Postgres facts over a real login (asyncpg): live ``ssl``, pg_hba rules, who is on TLS.

``pg_stat_ssl`` shows Leg 2 (PgBouncer → Postgres) and any client that bypasses PgBouncer;
Leg 1 (app → PgBouncer) is only visible in PgBouncer's ``SHOW CLIENTS`` (see probes.pgbouncer).

TLS verification: asyncpg verifies the certificate against the address it dials. Pass a context
from ``probes.tlscontext.make_client_context(ca_pem, server_name=...)`` to verify the DB's DNS name
whatever address (an IP, a tunnel) is dialled. ``None`` means plaintext (``ssl=False``).

Nothing here raises: failures become results in the returned facts.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from typing import Any

import asyncpg

from probes.model import CheckResult, Verdict, bug_result
from probes.pghba import HbaRule, plaintext_rules
from probes.plaintext import plaintext_verdict
from probes.session import KeptSession

__all__ = [
    "PROBE_APPLICATION_NAME",
    "Backend",
    "HbaRule",
    "PostgresFacts",
    "PostgresSession",
    "probe_end_to_end",
    "probe_postgres",
]

PROBE_APPLICATION_NAME = "rollout-cockpit-probe"
_E2E = "postgres.end_to_end"

_BACKENDS_SQL = (
    "SELECT a.pid, a.application_name, a.client_addr, a.usename, s.ssl, s.version "
    "FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) "
    "WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid() "
    "ORDER BY a.pid"
)
_HBA_SQL = (
    "SELECT line_number, type, database, user_name, address, netmask, auth_method, error "
    "FROM pg_hba_file_rules ORDER BY line_number"
)
_OWN_SSL_SQL = "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


@dataclass(frozen=True, slots=True)
class Backend:
    """One client backend (excluding the probe's own) and whether it uses TLS."""

    pid: int
    application_name: str
    client_addr: str | None  # None for a Unix socket (or when hidden from a non-privileged probe user)
    usename: str | None
    ssl: bool | None  # None: hidden from the probe user (not its own session, no pg_read_all_stats)
    version: str | None  # e.g. "TLSv1.3"; None when not TLS


@dataclass(frozen=True, slots=True)
class PostgresFacts:
    """What one probe round saw. ``None`` means "could not be read"; see `results` for why."""

    target: str
    connected: bool
    server_version: str | None
    own_connection_tls: bool | None  # did the probe's own connection use TLS?
    own_tls_version: str | None
    ssl: bool | None  # live SHOW ssl
    hba_rules: tuple[HbaRule, ...] | None
    hostssl_only: bool | None  # every non-local rule is hostssl
    backends: tuple[Backend, ...] | None
    results: tuple[CheckResult, ...]
    duration_ms: float = 0.0

    @property
    def plaintext_backends(self) -> tuple[Backend, ...]:
        return tuple(b for b in self.backends or () if b.ssl is False)

    @property
    def hidden_backends(self) -> tuple[Backend, ...]:
        """Sessions whose TLS the probe user may not see (no pg_read_all_stats / pg_monitor)."""
        return tuple(b for b in self.backends or () if b.ssl is None)


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def _classify_connect_error(exc: BaseException, target: str, timeout: float) -> tuple[Verdict, str]:
    """A connect failure in words an operator can act on."""
    if isinstance(exc, TimeoutError):
        return Verdict.ERROR, f"no answer from {target} within {timeout:g}s"
    if isinstance(exc, ConnectionRefusedError):
        return Verdict.FAIL, f"nothing listening on {target}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return Verdict.FAIL, f"TLS certificate rejected: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return Verdict.FAIL, f"TLS handshake failed: {exc.reason or exc}"
    if isinstance(exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError):
        text = str(exc)
        if "no pg_hba.conf entry" in text:
            return Verdict.FAIL, f"refused by pg_hba.conf: {text}"
        return Verdict.FAIL, f"login refused: {text}"
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return Verdict.FAIL, f"database does not exist: {exc}"
    if isinstance(exc, asyncpg.PostgresError):
        return Verdict.FAIL, f"server refused the connection: {exc}"
    if isinstance(exc, ConnectionError | OSError):
        text = str(exc)
        if "rejected SSL upgrade" in text or "SSL upgrade" in text:
            return Verdict.FAIL, "TLS not offered by the server (answered N)"
        return Verdict.ERROR, f"cannot reach {target}: {type(exc).__name__}: {text}"
    return Verdict.ERROR, f"connect to {target} failed: {type(exc).__name__}: {exc}"


async def _connect(
    host: str,
    port: int,
    *,
    user: str,
    password: str | None,
    dbname: str,
    ssl_arg: ssl.SSLContext | str | bool,
    timeout: float,  # noqa: ASYNC109 - asyncpg's own connect timeout, also bounded by the caller
    application_name: str = PROBE_APPLICATION_NAME,
) -> Any:
    return await asyncpg.connect(
        host=host,
        port=port,
        user=user,
        password=password,
        database=dbname,
        ssl=ssl_arg,
        timeout=timeout,
        command_timeout=timeout,
        server_settings={"application_name": application_name},
    )


@dataclass(frozen=True, slots=True)
class _Rows:
    """What one round of queries returned."""

    version: str
    own: Any  # the probe's own pg_stat_ssl row, or None
    ssl_on: bool
    hba_rows: list[Any] | None  # None: pg_hba_file_rules not readable (see hba_error)
    hba_error: str | None
    backend_rows: list[Any]


class PostgresSession(KeptSession[Any, _Rows, PostgresFacts]):
    """A kept connection for repeated `sample()` calls (a refresh every second must not reconnect).

    The connection is opened lazily and dropped after any failure; the next `sample()` reconnects.
    """

    check = "postgres"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        user: str,
        password: str | None,
        dbname: str,
        ssl_ctx_or_none: ssl.SSLContext | None,
        timeout: float = 3.0,
    ) -> None:
        super().__init__(host, port, timeout=timeout)
        self.user = user
        self.password = password
        self.dbname = dbname
        self.ssl_ctx = ssl_ctx_or_none

    async def _open(self) -> Any:
        return await _connect(
            self.host,
            self.port,
            user=self.user,
            password=self.password,
            dbname=self.dbname,
            ssl_arg=self.ssl_ctx if self.ssl_ctx is not None else False,
            timeout=self.timeout,
        )

    async def _close(self, conn: Any) -> None:
        try:
            async with asyncio.timeout(1.0):
                await conn.close()
        except Exception:  # includes TimeoutError
            conn.terminate()

    def _closed(self, conn: Any) -> bool:
        return bool(conn.is_closed())

    async def _query(self, conn: Any) -> _Rows:
        version = str(await conn.fetchval("SHOW server_version"))
        own = await conn.fetchrow(_OWN_SSL_SQL)
        ssl_on = str(await conn.fetchval("SHOW ssl")) == "on"
        hba_rows: list[Any] | None
        hba_error: str | None = None
        try:
            hba_rows = list(await conn.fetch(_HBA_SQL))
        except asyncpg.InsufficientPrivilegeError as exc:
            hba_rows, hba_error = None, str(exc)
        backend_rows = list(await conn.fetch(_BACKENDS_SQL))
        return _Rows(version, own, ssl_on, hba_rows, hba_error, backend_rows)

    def _stale(self, exc: Exception) -> bool:
        return not isinstance(exc, asyncpg.PostgresError | TimeoutError)

    def _connect_failed(self, exc: BaseException, t0: float) -> CheckResult:
        verdict, summary = _classify_connect_error(exc, self.target, self.timeout)
        evidence = {"error": f"{type(exc).__name__}: {exc}", "tls_requested": self.ssl_ctx is not None}
        return CheckResult("postgres.connect", self.target, verdict, summary, evidence, _ms(t0))

    def _query_failed(self, exc: Exception, t0: float) -> CheckResult:
        target = self.target
        if isinstance(exc, TimeoutError):
            summary = f"queries on {target} did not answer within {self.timeout:g}s"
            return CheckResult("postgres.query", target, Verdict.ERROR, summary, {}, _ms(t0))
        summary = f"query on {target} failed: {type(exc).__name__}: {exc}"
        return CheckResult("postgres.query", target, Verdict.ERROR, summary, {"error": str(exc)}, _ms(t0))

    def _facts(self, t0: float, results: list[CheckResult], **kw: Any) -> PostgresFacts:
        fields: dict[str, Any] = {
            "connected": False,
            "server_version": None,
            "own_connection_tls": None,
            "own_tls_version": None,
            "ssl": None,
            "hba_rules": None,
            "hostssl_only": None,
            "backends": None,
        }
        fields.update(kw)
        return PostgresFacts(target=self.target, results=tuple(results), duration_ms=_ms(t0), **fields)

    def _read(self, raw: _Rows, t0: float) -> PostgresFacts:
        target = self.target
        own_tls = bool(raw.own["ssl"]) if raw.own is not None else None
        own_version = raw.own["version"] if raw.own is not None else None
        results = [
            CheckResult(
                "postgres.ssl",
                target,
                Verdict.OK if raw.ssl_on else Verdict.FAIL,
                "ssl = on" if raw.ssl_on else "ssl = off (POSTGRES_TLS_ENABLED not applied?)",
                {"ssl": raw.ssl_on, "server_version": raw.version, "own_connection_tls": own_tls},
                _ms(t0),
            )
        ]
        rules: tuple[HbaRule, ...] | None = None
        hostssl_only: bool | None = None
        if raw.hba_rows is None:
            summary = f"cannot read pg_hba_file_rules as {self.user} (needs superuser): {raw.hba_error}"
            results.append(CheckResult("postgres.hba", target, Verdict.ERROR, summary, {}, _ms(t0)))
        else:
            rules = tuple(_hba_rule(r) for r in raw.hba_rows)
            hostssl_only = not plaintext_rules(rules)
            results.append(_hba_result(target, rules, _ms(t0)))
        backends = tuple(_backend(r) for r in raw.backend_rows)
        results.append(_backends_result(target, self.user, backends, _ms(t0)))
        return self._facts(
            t0,
            results,
            connected=True,
            server_version=raw.version,
            own_connection_tls=own_tls,
            own_tls_version=own_version,
            ssl=raw.ssl_on,
            hba_rules=rules,
            hostssl_only=hostssl_only,
            backends=backends,
        )


def _hba_rule(r: Any) -> HbaRule:
    return HbaRule(
        line_number=int(r["line_number"]) if r["line_number"] is not None else 0,
        type=str(r["type"] or ""),
        database=tuple(r["database"] or ()),
        user_name=tuple(r["user_name"] or ()),
        address=r["address"],
        netmask=r["netmask"],
        auth_method=r["auth_method"],
        error=r["error"],
    )


def _hba_result(target: str, rules: tuple[HbaRule, ...], duration_ms: float) -> CheckResult:
    """postgres.hba: every network rule hostssl (OK), some let plaintext in (WARN), invalid lines (FAIL)."""
    network = [r for r in rules if r.type and r.type != "local"]
    not_ssl = plaintext_rules(rules)
    broken = [r for r in rules if r.error]
    hostssl_only = not not_ssl
    rule_text = [
        f"{r.line_number}: {r.type} {','.join(r.database)} {','.join(r.user_name)} "
        f"{r.address or ''}{'/' + r.netmask if r.netmask else ''} {r.auth_method or ''}".strip()
        for r in rules
    ]
    evidence: dict[str, Any] = {"hostssl_only": hostssl_only, "rules": rule_text}
    if broken:
        evidence["errors"] = [f"{r.line_number}: {r.error}" for r in broken]
        verdict, summary = Verdict.FAIL, f"pg_hba.conf has {len(broken)} invalid line(s)"
    elif hostssl_only:
        verdict, summary = Verdict.OK, f"pg_hba: all {len(network)} network rule(s) are hostssl"
    else:
        lines = ", ".join(str(r.line_number) for r in not_ssl)
        verdict = Verdict.WARN
        summary = f"pg_hba allows non-TLS connections ({len(not_ssl)} rule(s): line {lines})"
    return CheckResult("postgres.hba", target, verdict, summary, evidence, duration_ms)


def _backend(r: Any) -> Backend:
    return Backend(
        pid=int(r["pid"]),
        application_name=str(r["application_name"] or ""),
        client_addr=str(r["client_addr"]) if r["client_addr"] is not None else None,
        usename=r["usename"],
        ssl=None if r["ssl"] is None else bool(r["ssl"]),
        version=r["version"],
    )


def _backends_result(target: str, user: str, backends: tuple[Backend, ...], duration_ms: float) -> CheckResult:
    """postgres.backends: N of M on plaintext; ERROR when the probe user cannot see whether they use TLS."""
    plain = [b for b in backends if b.ssl is False]
    hidden = [b for b in backends if b.ssl is None]
    rows = [
        {"pid": b.pid, "application_name": b.application_name, "client_addr": b.client_addr, "usename": b.usename}
        for b in plain
    ]
    extra = {"hidden": len(hidden)} if hidden else None
    if hidden and not plain:
        evidence: dict[str, Any] = {"total": len(backends), "tls": len(backends), "plaintext": [], **(extra or {})}
        summary = (
            f"cannot see whether {len(hidden)} of {len(backends)} backend(s) use TLS: the probe user "
            f"{user} lacks pg_read_all_stats (grant pg_monitor) — permission"
        )
        return CheckResult("postgres.backends", target, Verdict.ERROR, summary, evidence, duration_ms)
    names = [b.application_name or b.usename or "?" for b in plain]
    return plaintext_verdict(
        "postgres.backends",
        target,
        "backend",
        len(backends),
        rows,
        names,
        none="no other client backends",
        duration_ms=duration_ms,
        extra=extra,
    )


async def probe_postgres(
    host: str,
    port: int,
    *,
    user: str,
    password: str | None,
    dbname: str,
    ssl_ctx_or_none: ssl.SSLContext | None,
    timeout: float = 3.0,  # noqa: ASYNC109 - a probe's budget, enforced with asyncio.timeout inside
) -> PostgresFacts:
    """One round on a fresh connection: SHOW ssl, pg_hba_file_rules, pg_stat_ssl backends.

    Results (check ids): postgres.connect (only on failure), postgres.ssl, postgres.hba,
    postgres.backends. Reading pg_hba_file_rules needs a superuser (ERROR otherwise).
    """
    session = PostgresSession(
        host,
        port,
        user=user,
        password=password,
        dbname=dbname,
        ssl_ctx_or_none=ssl_ctx_or_none,
        timeout=timeout,
    )
    try:
        return await session.sample()
    finally:
        await session.aclose()


async def probe_end_to_end(
    host: str,
    port: int,
    *,
    user: str,
    password: str | None,
    dbname: str,
    ssl: ssl.SSLContext | str | None,
    timeout: float = 5.0,  # noqa: ASYNC109 - a hard budget, enforced with asyncio.timeout inside
    application_name: str = PROBE_APPLICATION_NAME,
) -> CheckResult:
    """``SELECT 1`` through PgBouncer under a hard timeout: the reliable health check of Leg 2.

    With server_tls_sslmode=verify-ca and a bad server cert PgBouncer does not fail the client,
    it keeps it queued -- so a hang is reported as FAIL, not ERROR. `ssl`: a context (TLS
    required), an asyncpg sslmode string ("prefer", "require", ...), or None for plaintext.
    """
    t0 = time.perf_counter()
    target = f"{host}:{port}"
    conn: Any = None
    stage = "connect"
    try:
        try:
            async with asyncio.timeout(timeout):
                conn = await _connect(
                    host,
                    port,
                    user=user,
                    password=password,
                    dbname=dbname,
                    ssl_arg=ssl if ssl is not None else False,
                    timeout=timeout,
                    application_name=application_name,
                )
                stage = "query"
                value = await conn.fetchval("SELECT 1")
                transport = getattr(conn, "_transport", None)  # asyncpg has no public accessor
                tls = transport.get_extra_info("ssl_object") is not None if transport is not None else None
            if value != 1:
                return CheckResult(_E2E, target, Verdict.FAIL, f"SELECT 1 returned {value!r}", {}, _ms(t0))
            summary = f"SELECT 1 through {target} answered in {_ms(t0):.0f} ms"
            return CheckResult(_E2E, target, Verdict.OK, summary, {"tls": tls}, _ms(t0))
        except TimeoutError:
            return await _e2e_hung(host, port, stage, timeout, t0)
        except Exception as exc:
            verdict, summary = _classify_connect_error(exc, target, timeout)
            if isinstance(exc, asyncpg.PostgresError) and stage == "query":
                verdict, summary = Verdict.FAIL, f"SELECT 1 failed: {exc}"
            evidence = {"stage": stage, "error": f"{type(exc).__name__}: {exc}"}
            return CheckResult(_E2E, target, verdict, summary, evidence, _ms(t0))
        finally:
            if conn is not None:
                try:
                    async with asyncio.timeout(1.0):
                        await conn.close()
                except Exception:
                    conn.terminate()
    except Exception as exc:
        return bug_result(_E2E, target, exc, t0)


async def _e2e_hung(host: str, port: int, stage: str, timeout: float, t0: float) -> CheckResult:  # noqa: ASYNC109
    """No answer in time. asyncpg's connect covers TCP, TLS, login and the wait for ReadyForQuery, and
    PgBouncer parks a client in its queue during login while it cannot get a server connection: a hang in
    "connect" is the same symptom as a hang in the query (FAIL). Only if the port does not even accept TCP
    is it "could not measure"."""
    target = f"{host}:{port}"
    if stage == "connect" and not await _accepts_tcp(host, port, 1.0):
        summary = f"no answer from {target} within {timeout:g}s and it does not accept TCP"
        return CheckResult(_E2E, target, Verdict.ERROR, summary, {"stage": stage}, _ms(t0))
    summary = f"query through PgBouncer did not answer in {timeout:g}s — Leg 2 broken? check the Postgres log"
    return CheckResult(_E2E, target, Verdict.FAIL, summary, {"stage": stage}, _ms(t0))


async def _accepts_tcp(host: str, port: int, budget: float) -> bool:
    try:
        async with asyncio.timeout(budget):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.transport.abort()
    return True
