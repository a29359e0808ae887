"""The probes against REAL Postgres 15, PgBouncer 1.18 and Redis 7 servers on the claimed net (dbservers.NET).

Servers start once for the module (tests/dbservers.py) and are stopped at the end; the
teardown fails if any process is left. The DB's DNS name ``db.test.internal`` is never
resolved: every probe dials an IP and verifies the name.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from redis.asyncio import Redis
from redis.asyncio.connection import ConnectionPool

from lab.pki import Material, make_material, variant
from probes.model import Verdict
from probes.pgbouncer import PgBouncerSession, probe_pgbouncer
from probes.postgres import PostgresFacts, PostgresSession, probe_end_to_end, probe_postgres
from probes.redis import PrebuiltSSLConnection, RedisSession, probe_redis
from probes.tls import (
    probe_pg_tls,
    probe_plain_port,
    probe_redis_plain,
    probe_redis_tls,
)
from probes.tlscontext import make_client_context
from tests.dbservers import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    APP_DB,
    APP_PASSWORD,
    APP_USER,
    DEFAULT_HBA,
    DNS_NAME,
    NET,
    REDIS_PASSWORD,
    SUPERUSER,
    SUPERUSER_PASSWORD,
    DbLab,
    PgBouncer,
    Postgres,
    RedisServer,
    free_port,
)

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="starts servers as the postgres user"),
]

NOWHERE = f"{NET}.20"  # nothing ever listens here


@dataclass
class Servers:
    base: Material
    variants: dict[str, Material]
    pg: Postgres
    bouncer: PgBouncer  # client allow, server verify-ca
    bouncer_plain: PgBouncer  # client disable, server disable, auth plain
    bouncer_bad_san: PgBouncer
    bouncer_expired: PgBouncer
    bouncer_expiring: PgBouncer
    bouncer_broken_leg2: PgBouncer  # server verify-ca against the wrong CA: clients hang
    redis: RedisServer  # tls-auth-clients no
    redis_certreq: RedisServer  # tls-auth-clients yes

    @property
    def fingerprint(self) -> str:
        der = x509.load_pem_x509_certificate(self.base.cert_pem).public_bytes(serialization.Encoding.DER)
        return hashlib.sha256(der).hexdigest()


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    base = make_material(DNS_NAME)
    variants = {k: variant(k, base, DNS_NAME) for k in ("bad-san", "expired", "expiring-soon", "wrong-ca")}
    lab = DbLab()
    pids: list[int] = []
    try:
        pg = lab.start_postgres(f"{NET}.1", base)

        def bouncer(
            ip: str, name: str, m: Material | None, client: str, server: str, auth_type: str = "md5"
        ) -> PgBouncer:
            return lab.start_pgbouncer(
                ip,
                name,
                material=m,
                client_tls_sslmode=client,
                server_tls_sslmode=server,
                postgres=pg,
                auth_type=auth_type,
            )

        yield Servers(
            base=base,
            variants=variants,
            pg=pg,
            bouncer=bouncer(f"{NET}.2", "bouncer", base, "allow", "verify-ca"),
            bouncer_plain=bouncer(f"{NET}.3", "bouncer-plain", None, "disable", "disable", auth_type="plain"),
            bouncer_bad_san=bouncer(f"{NET}.4", "bad-san", variants["bad-san"], "require", "disable"),
            bouncer_expired=bouncer(f"{NET}.5", "expired", variants["expired"], "require", "disable"),
            bouncer_expiring=bouncer(f"{NET}.6", "expiring", variants["expiring-soon"], "require", "disable"),
            # same server cert, but its ca.crt (used for server_tls_ca_file) is an unrelated CA
            bouncer_broken_leg2=bouncer(f"{NET}.7", "broken-leg2", variants["wrong-ca"], "allow", "verify-ca"),
            redis=lab.start_redis(f"{NET}.8", "redis", material=base, tls_auth_clients="no"),
            redis_certreq=lab.start_redis(f"{NET}.9", "redis-certreq", material=base, tls_auth_clients="yes"),
        )
    finally:
        pids = [p.popen.pid for p in lab.procs]
        lab.close()
    time.sleep(0.05)
    alive = [pid for pid in pids if _alive(pid)]
    assert not alive, f"server processes left running: {alive}"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as fh:
            state = next((line for line in fh if line.startswith("State:")), "State: X")
    except FileNotFoundError:
        return False
    return state.split()[1] not in ("Z", "X")


# --- tiny misbehaving servers ---------------------------------------------------------------------


@asynccontextmanager
async def tcp_server(
    ip: str, handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
) -> AsyncIterator[int]:
    """A throw-away server on `ip`; on exit every connection is dropped and every handler finished."""
    writers: set[asyncio.StreamWriter] = set()
    tasks: set[asyncio.Task[None]] = set()

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(run, ip, 0)
    port = int(server.sockets[0].getsockname()[1])
    try:
        yield port
    finally:
        server.close()
        for w in list(writers):
            w.transport.abort()  # the handlers see EOF and return
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        await server.wait_closed()


async def _ssh_banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Speaks first with junk that begins with 'S' (like sshd), then keeps the connection open."""
    writer.write(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
    await writer.drain()
    await reader.read()  # until the client leaves


async def _http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers whatever it gets with an HTTP error, and keeps the connection open."""
    await reader.read(1)
    writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
    await writer.drain()
    await reader.read()


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accepts and never says a word."""
    while await reader.read(4096):
        pass


def _ctx(ca_pem: bytes) -> ssl.SSLContext:
    return make_client_context(ca_pem, server_name=DNS_NAME)


async def _pg_facts(servers: Servers, ctx: ssl.SSLContext | None) -> PostgresFacts:
    """probe_postgres as the superuser (pg_hba_file_rules needs one)."""
    return await probe_postgres(
        servers.pg.host,
        servers.pg.port,
        user=SUPERUSER,
        password=SUPERUSER_PASSWORD,
        dbname="postgres",
        ssl_ctx_or_none=ctx,
        timeout=3.0,
    )


# --- make_client_context --------------------------------------------------------------------------


def test_client_context_trusts_only_the_internal_ca(servers: Servers) -> None:
    ctx = make_client_context(servers.base.ca_pem)
    assert ctx.cert_store_stats()["x509_ca"] == 1
    assert len(ctx.get_ca_certs()) == 1
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert make_client_context(None).cert_store_stats()["x509_ca"] == 0


# --- probe_pg_tls ---------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["pg", "bouncer"])
async def test_pg_tls_ok_with_full_evidence(servers: Servers, which: str) -> None:
    srv = servers.pg if which == "pg" else servers.bouncer
    r = await probe_pg_tls(
        srv.host,
        srv.port,
        server_name=DNS_NAME,
        ca_pem=servers.base.ca_pem,
        expected_cert_fingerprint=":".join(
            servers.fingerprint[i : i + 2].upper() for i in range(0, len(servers.fingerprint), 2)
        ),
        label=which,
    )
    assert r.verdict is Verdict.OK, r
    assert r.check == f"tls.{which}"
    ev = r.evidence
    assert ev["tls_version"] == "TLSv1.3"
    assert ev["cipher"]
    assert ev["subject"] == f"CN={DNS_NAME}"
    assert ev["issuer"] == "CN=Lab Internal CA"
    assert ev["sans"] == [f"DNS:{DNS_NAME}"]
    assert ev["days_left"] > 800 and ev["not_after"]
    assert ev["fingerprint"] == servers.fingerprint
    assert ev["fingerprint_matches_expected"] is True
    assert r.duration_ms > 0


async def test_pg_tls_fingerprint_mismatch(servers: Servers) -> None:
    other = hashlib.sha256(b"some other certificate").hexdigest()
    r = await probe_pg_tls(
        servers.pg.host,
        servers.pg.port,
        server_name=DNS_NAME,
        ca_pem=servers.base.ca_pem,
        expected_cert_fingerprint=other,
    )
    assert r.verdict is Verdict.FAIL
    assert r.summary.startswith("serving a different certificate than the one in Secrets Manager")
    assert r.evidence["fingerprint"] == servers.fingerprint
    assert r.evidence["fingerprint_matches_expected"] is False


async def test_pg_tls_bad_san(servers: Servers) -> None:
    b = servers.bouncer_bad_san
    r = await probe_pg_tls(b.host, b.port, server_name=DNS_NAME, ca_pem=servers.base.ca_pem)
    assert r.verdict is Verdict.FAIL
    assert r.summary.startswith(f"certificate does not cover {DNS_NAME}")
    assert r.evidence["verify_error"] == "hostname"
    assert r.evidence["sans"] == ["DNS:wrong.invalid"]  # reported from the unverified handshake
    assert len(r.evidence["fingerprint"]) == 64


async def test_pg_tls_expired(servers: Servers) -> None:
    b = servers.bouncer_expired
    r = await probe_pg_tls(b.host, b.port, server_name=DNS_NAME, ca_pem=servers.base.ca_pem)
    assert r.verdict is Verdict.FAIL
    assert r.summary.startswith("certificate expired on ")
    assert r.evidence["verify_error"] == "expired"
    assert r.evidence["days_left"] < 0


async def test_pg_tls_wrong_ca(servers: Servers) -> None:
    # the client holds another CA (e.g. the CA was regenerated and the server not redeployed)
    r = await probe_pg_tls(
        servers.pg.host, servers.pg.port, server_name=DNS_NAME, ca_pem=servers.variants["wrong-ca"].ca_pem
    )
    assert r.verdict is Verdict.FAIL
    assert r.summary == "certificate does not chain to the internal CA"
    assert r.evidence["verify_error"] == "chain"
    assert r.evidence["fingerprint"] == servers.fingerprint


async def test_pg_tls_expiring_soon_warns(servers: Servers) -> None:
    b = servers.bouncer_expiring
    r = await probe_pg_tls(b.host, b.port, server_name=DNS_NAME, ca_pem=servers.base.ca_pem)
    assert r.verdict is Verdict.WARN
    assert "expires in" in r.summary
    assert 8 <= r.evidence["days_left"] < 30


async def test_pg_tls_not_offered_answers_n(servers: Servers) -> None:
    b = servers.bouncer_plain
    r = await probe_pg_tls(b.host, b.port, server_name=DNS_NAME, ca_pem=servers.base.ca_pem, label="pgbouncer")
    assert r.verdict is Verdict.FAIL
    assert r.summary == "TLS not offered (answered N)"
    assert r.evidence["answer"] == "N"


async def test_nothing_listening(servers: Servers) -> None:
    port = free_port(NOWHERE)
    results = await asyncio.gather(
        probe_pg_tls(NOWHERE, port, server_name=DNS_NAME, ca_pem=servers.base.ca_pem),
        probe_redis_tls(NOWHERE, port, server_name=DNS_NAME, ca_pem=servers.base.ca_pem),
        probe_redis_plain(NOWHERE, port, password=None, timeout=1.0),
        probe_plain_port(NOWHERE, port, timeout=1.0),
        probe_end_to_end(NOWHERE, port, user=APP_USER, password=APP_PASSWORD, dbname=APP_DB, ssl=None, timeout=1.0),
    )
    for r in results:
        assert r.verdict is Verdict.FAIL, r
        assert f"nothing listening on {NOWHERE}:{port}" in r.summary
    assert results[3].evidence["listening"] is False


async def test_garbage_speakers_fail_fast() -> None:
    ca = make_material(DNS_NAME).ca_pem
    async with (
        tcp_server(f"{NET}.10", _ssh_banner) as ssh_port,
        tcp_server(f"{NET}.10", _http) as http_port,
    ):
        t0 = time.perf_counter()
        banner, http, redis_tls, redis_plain, redis_plain_http = await asyncio.gather(
            probe_pg_tls(f"{NET}.10", ssh_port, server_name=DNS_NAME, ca_pem=ca, timeout=5.0),
            probe_pg_tls(f"{NET}.10", http_port, server_name=DNS_NAME, ca_pem=ca, timeout=5.0),
            probe_redis_tls(f"{NET}.10", http_port, server_name=DNS_NAME, ca_pem=ca, timeout=5.0),
            probe_redis_plain(f"{NET}.10", ssh_port, password=None, timeout=5.0),
            probe_redis_plain(f"{NET}.10", http_port, password=None, timeout=5.0),
        )
        assert time.perf_counter() - t0 < 2.0  # no waiting for the 5 s timeout
        plain_port = await probe_plain_port(f"{NET}.10", ssh_port, timeout=1.0)
    # an SSH banner starts with 'S' too: more than one byte gives it away
    assert banner.verdict is Verdict.FAIL
    assert banner.summary.startswith("not a Postgres/PgBouncer server: answered 0x5353482d")
    assert http.verdict is Verdict.FAIL
    assert http.summary.startswith("not a Postgres/PgBouncer server: answered 0x48545450")
    assert redis_tls.verdict is Verdict.FAIL
    assert "does not speak TLS" in redis_tls.summary
    assert redis_plain.verdict is Verdict.FAIL and redis_plain.summary.startswith("not a Redis server")
    assert redis_plain_http.verdict is Verdict.FAIL and redis_plain_http.summary.startswith("not a Redis server")
    assert plain_port.verdict is Verdict.OK


async def test_silent_server_is_an_error_after_the_timeout() -> None:
    ca = make_material(DNS_NAME).ca_pem
    async with tcp_server(f"{NET}.11", _silent) as port:
        t0 = time.perf_counter()
        results = await asyncio.gather(
            probe_pg_tls(f"{NET}.11", port, server_name=DNS_NAME, ca_pem=ca, timeout=0.5),
            probe_redis_tls(f"{NET}.11", port, server_name=DNS_NAME, ca_pem=ca, timeout=0.5),
            probe_redis_plain(f"{NET}.11", port, password="x", timeout=0.5),
        )
        elapsed = time.perf_counter() - t0
    assert 0.5 <= elapsed < 2.0
    for r in results:
        assert r.verdict is Verdict.ERROR, r
        assert f"no answer from {NET}.11" in r.summary and "within 0.5s" in r.summary
    assert "SSLRequest" in results[0].summary
    assert "TLS handshake" in results[1].summary


async def test_silent_server_with_the_library_probes() -> None:
    """The asyncpg / psycopg / redis-py probes give up on time too, and never raise."""
    async with tcp_server(f"{NET}.12", _silent) as port:
        t0 = time.perf_counter()
        pg, bouncer, redis_facts, e2e = await asyncio.gather(
            probe_postgres(f"{NET}.12", port, user="u", password="p", dbname="d", ssl_ctx_or_none=None, timeout=0.5),
            probe_pgbouncer(f"{NET}.12", port, admin_user="a", admin_password="p", timeout=0.5),
            probe_redis(f"{NET}.12", port, password="p", timeout=0.5),
            probe_end_to_end(f"{NET}.12", port, user="u", password="p", dbname="d", ssl=None, timeout=0.5),
        )
        elapsed = time.perf_counter() - t0
    assert elapsed < 2.5
    for facts in (pg, bouncer, redis_facts):
        assert not facts.connected
        assert facts.results[0].verdict is Verdict.ERROR, facts.results
        assert "within 0.5s" in facts.results[0].summary
    # accepted but silent is exactly what a PgBouncer with a broken Leg 2 looks like
    assert e2e.verdict is Verdict.FAIL and "did not answer in 0.5s" in e2e.summary


async def test_garbage_with_the_library_probes() -> None:
    async with tcp_server(f"{NET}.12", _http) as port:
        pg, bouncer, redis_facts = await asyncio.gather(
            probe_postgres(f"{NET}.12", port, user="u", password="p", dbname="d", ssl_ctx_or_none=None, timeout=2.0),
            probe_pgbouncer(f"{NET}.12", port, admin_user="a", admin_password="p", timeout=2.0),
            probe_redis(f"{NET}.12", port, password="p", timeout=2.0),
        )
    for facts in (pg, bouncer, redis_facts):
        assert not facts.connected
        assert facts.results[0].verdict in (Verdict.FAIL, Verdict.ERROR), facts.results
        assert not facts.results[0].summary.startswith("probe bug"), facts.results


# --- probe_redis_tls / probe_redis_plain ----------------------------------------------------------


async def test_redis_tls_ok_with_auth(servers: Servers) -> None:
    r = servers.redis
    res = await probe_redis_tls(
        r.host,
        r.tls_port,
        server_name=DNS_NAME,
        ca_pem=servers.base.ca_pem,
        expected_cert_fingerprint=servers.fingerprint,
        password=REDIS_PASSWORD,
    )
    assert res.verdict is Verdict.OK, res
    assert res.evidence["ping"] == "PONG"
    assert res.evidence["tls_version"] == "TLSv1.3"
    assert res.evidence["fingerprint"] == servers.fingerprint
    assert res.evidence["sans"] == [f"DNS:{DNS_NAME}"]

    noauth = await probe_redis_tls(r.host, r.tls_port, server_name=DNS_NAME, ca_pem=servers.base.ca_pem)
    assert noauth.verdict is Verdict.OK and noauth.evidence["ping"] == "NOAUTH"

    wrong = await probe_redis_tls(
        r.host, r.tls_port, server_name=DNS_NAME, ca_pem=servers.base.ca_pem, password="wrong"
    )
    assert wrong.verdict is Verdict.FAIL and "WRONGPASS" in wrong.summary


async def test_redis_tls_verify_failure_classified(servers: Servers) -> None:
    r = servers.redis
    res = await probe_redis_tls(
        r.host,
        r.tls_port,
        server_name="other.test.internal",
        ca_pem=servers.base.ca_pem,
        password=REDIS_PASSWORD,
    )
    assert res.verdict is Verdict.FAIL
    assert res.summary.startswith("certificate does not cover other.test.internal")
    assert res.evidence["fingerprint"] == servers.fingerprint


async def test_redis_client_cert_required_is_a_warning(servers: Servers) -> None:
    r = servers.redis_certreq
    res = await probe_redis_tls(
        r.host, r.tls_port, server_name=DNS_NAME, ca_pem=servers.base.ca_pem, password=REDIS_PASSWORD
    )
    assert res.verdict is Verdict.WARN, res
    assert res.summary == "listener requires a client certificate (tls-auth-clients yes)"
    assert res.evidence["client_cert_required"] is True
    assert res.evidence["fingerprint"] == servers.fingerprint  # the server side of TLS was verified


async def test_redis_plain(servers: Servers) -> None:
    r = servers.redis
    ok = await probe_redis_plain(r.host, r.port, password=REDIS_PASSWORD)
    assert ok.verdict is Verdict.OK and ok.evidence["ping"] == "PONG"
    noauth = await probe_redis_plain(r.host, r.port, password=None)
    assert noauth.verdict is Verdict.WARN and "NOAUTH" in noauth.summary
    assert noauth.evidence["answered"] is True
    wrong = await probe_redis_plain(r.host, r.port, password="wrong")
    assert wrong.verdict is Verdict.FAIL and "WRONGPASS" in wrong.summary
    tls_port = await probe_redis_plain(r.host, r.tls_port, password=REDIS_PASSWORD, timeout=2.0)
    assert tls_port.verdict is Verdict.FAIL and "TLS-only port" in tls_port.summary
    listening = await probe_plain_port(r.host, r.port, timeout=1.0)
    assert listening.verdict is Verdict.OK and listening.evidence["listening"] is True


# --- PgBouncer admin console ----------------------------------------------------------------------


async def _app_connections(servers: Servers) -> tuple[asyncpg.Connection, asyncpg.Connection]:
    b = servers.bouncer
    tls = await asyncpg.connect(
        host=b.host,
        port=b.port,
        user=APP_USER,
        password=APP_PASSWORD,
        database=APP_DB,
        ssl=_ctx(servers.base.ca_pem),
        server_settings={"application_name": "tls-app"},
        timeout=5,
    )
    plain = await asyncpg.connect(
        host=b.host,
        port=b.port,
        user=APP_USER,
        password=APP_PASSWORD,
        database=APP_DB,
        ssl=False,
        server_settings={"application_name": "plain-app"},
        timeout=5,
    )
    assert await tls.fetchval("SELECT 1") == 1 and await plain.fetchval("SELECT 1") == 1
    return tls, plain


async def test_pgbouncer_show_clients_and_servers(servers: Servers) -> None:
    tls_app, plain_app = await _app_connections(servers)
    b = servers.bouncer
    session = PgBouncerSession(
        b.host,
        b.port,
        admin_user=ADMIN_USER,
        admin_password=ADMIN_PASSWORD,
        sslmode="verify-full",
        ca_pem=servers.base.ca_pem,
        server_name=DNS_NAME,
    )
    try:
        facts = await session.sample()
        assert facts.connected, facts.results
        assert facts.client_tls_sslmode == "allow"
        assert facts.server_tls_sslmode == "verify-ca"
        assert facts.admin_connection_tls is True
        assert facts.clients is not None and facts.servers is not None
        by_name = {c.application_name: c for c in facts.clients}
        assert by_name["tls-app"].tls and by_name["tls-app"].tls_info.startswith("TLSv1.3/")
        assert not by_name["plain-app"].tls and by_name["plain-app"].tls_info == ""
        assert by_name["tls-app"].user == APP_USER and by_name["tls-app"].database == APP_DB
        assert by_name["tls-app"].port and by_name["tls-app"].addr
        assert all(c.application_name != session.application_name for c in facts.clients)  # own excluded
        verdicts = {r.check: r.verdict for r in facts.results}
        assert verdicts["pgbouncer.clients"] is Verdict.WARN  # plain-app
        assert verdicts["pgbouncer.servers"] is Verdict.OK  # Leg 2 is verify-ca

        servers_by_link = {s.link: s for s in facts.servers}
        leg2 = servers_by_link[by_name["plain-app"].ptr]  # a plaintext client still gets a TLS Leg 2
        assert leg2.tls and "ECDH" in leg2.tls_info and leg2.addr == servers.pg.host
        assert leg2.application_name == "plain-app" and leg2.remote_pid

        # a kept connection must survive many refreshes (psycopg would auto-prepare the 6th SHOW)
        for _ in range(8):
            again = await session.sample()
            assert again.connected, again.results
        assert {c.application_name for c in again.clients or ()} >= {"tls-app", "plain-app"}
    finally:
        await session.aclose()
        await tls_app.close()
        await plain_app.close()


async def test_pgbouncer_plain_admin_and_login_errors(servers: Servers) -> None:
    b = servers.bouncer_plain
    facts = await probe_pgbouncer(b.host, b.port, admin_user=ADMIN_USER, admin_password=ADMIN_PASSWORD)
    assert facts.connected, facts.results
    assert facts.client_tls_sslmode == "disable" and facts.server_tls_sslmode == "disable"
    assert facts.admin_connection_tls is False

    bad = await probe_pgbouncer(b.host, b.port, admin_user=ADMIN_USER, admin_password="nope")
    assert not bad.connected and bad.results[0].verdict is Verdict.FAIL
    assert "admin console login refused" in bad.results[0].summary

    need_tls = await probe_pgbouncer(
        b.host, b.port, admin_user=ADMIN_USER, admin_password=ADMIN_PASSWORD, sslmode="require"
    )
    assert need_tls.results[0].verdict is Verdict.FAIL

    gone = await probe_pgbouncer(NOWHERE, free_port(NOWHERE), admin_user=ADMIN_USER, admin_password="x")
    assert gone.results[0].verdict is Verdict.FAIL and "nothing listening" in gone.results[0].summary


# --- Postgres ------------------------------------------------------------------------------------


async def test_pg_stat_ssl_shows_leg2_tls_and_plaintext(servers: Servers) -> None:
    """Leg 2 via the verify-ca bouncer is TLS in pg_stat_ssl; via the disable bouncer it is not."""
    tls_app, plain_app = await _app_connections(servers)
    bp = servers.bouncer_plain
    via_plain = await asyncpg.connect(
        host=bp.host,
        port=bp.port,
        user=APP_USER,
        password=APP_PASSWORD,
        database=APP_DB,
        ssl=False,
        server_settings={"application_name": "via-plain-bouncer"},
        timeout=5,
    )
    try:
        await via_plain.fetchval("SELECT 1")
        bouncer_facts = await probe_pgbouncer(
            servers.bouncer.host, servers.bouncer.port, admin_user=ADMIN_USER, admin_password=ADMIN_PASSWORD
        )
        facts = await _pg_facts(servers, _ctx(servers.base.ca_pem))
        assert facts.connected, facts.results
        assert facts.ssl is True and facts.own_connection_tls is True and facts.own_tls_version == "TLSv1.3"
        assert facts.backends is not None
        by_pid = {b.pid: b for b in facts.backends}
        leg2_pids = {s.remote_pid for s in bouncer_facts.servers or ()}
        assert leg2_pids and leg2_pids <= set(by_pid)
        for pid in leg2_pids:
            assert pid is not None
            assert by_pid[pid].ssl and by_pid[pid].version == "TLSv1.3" and by_pid[pid].usename == APP_USER
        by_app = {b.application_name: b for b in facts.backends}
        assert by_app["tls-app"].ssl and by_app["plain-app"].ssl  # Leg 1 is invisible here
        assert not by_app["via-plain-bouncer"].ssl and by_app["via-plain-bouncer"].version is None
        assert all(b.application_name != "rollout-cockpit-probe" for b in facts.backends)  # own pid excluded
        results = {r.check: r for r in facts.results}
        assert results["postgres.ssl"].verdict is Verdict.OK
        assert results["postgres.backends"].verdict is Verdict.WARN
        assert "via-plain-bouncer" in results["postgres.backends"].summary
    finally:
        await via_plain.close()
        await tls_app.close()
        await plain_app.close()


async def test_pg_hba_hostssl_only(servers: Servers) -> None:
    pg = servers.pg
    before = await _pg_facts(servers, _ctx(servers.base.ca_pem))
    assert before.hostssl_only is False
    assert before.hba_rules is not None and [r.type for r in before.hba_rules] == ["local", "hostssl", "host"]
    hba = {r.check: r for r in before.results}["postgres.hba"]
    assert hba.verdict is Verdict.WARN and "line 3" in hba.summary

    pg.write_hba(["local all all trust", "hostssl all all 127.0.0.0/8 scram-sha-256"])
    try:
        await asyncio.sleep(0.2)  # the reload is asynchronous
        after = await _pg_facts(servers, _ctx(servers.base.ca_pem))
        assert after.hostssl_only is True
        assert {r.check: r for r in after.results}["postgres.hba"].verdict is Verdict.OK
        plain = await _pg_facts(servers, None)
        assert not plain.connected
        assert plain.results[0].verdict is Verdict.FAIL and "pg_hba.conf" in plain.results[0].summary
    finally:
        pg.write_hba(DEFAULT_HBA)
        await asyncio.sleep(0.2)


async def test_probe_postgres_verifies_the_name_not_the_address(servers: Servers) -> None:
    # without server_name, asyncpg verifies the dialled IP, which the cert does not cover
    wrong_name = await _pg_facts(servers, make_client_context(servers.base.ca_pem))
    assert not wrong_name.connected and wrong_name.results[0].verdict is Verdict.FAIL
    wrong_ca = await _pg_facts(servers, _ctx(servers.variants["wrong-ca"].ca_pem))
    assert not wrong_ca.connected and "certificate" in wrong_ca.results[0].summary


async def test_end_to_end_through_pgbouncer(servers: Servers) -> None:
    b = servers.bouncer
    ok = await probe_end_to_end(
        b.host,
        b.port,
        user=APP_USER,
        password=APP_PASSWORD,
        dbname=APP_DB,
        ssl=_ctx(servers.base.ca_pem),
        timeout=3.0,
    )
    assert ok.verdict is Verdict.OK, ok
    assert ok.evidence["tls"] is True


async def test_end_to_end_hangs_when_leg2_cannot_verify(servers: Servers) -> None:
    b = servers.bouncer_broken_leg2
    t0 = time.perf_counter()
    r = await probe_end_to_end(
        b.host, b.port, user=APP_USER, password=APP_PASSWORD, dbname=APP_DB, ssl=None, timeout=1.5
    )
    assert time.perf_counter() - t0 < 3.0
    assert r.verdict is Verdict.FAIL, r
    assert r.summary == ("query through PgBouncer did not answer in 1.5s — Leg 2 broken? check the Postgres log")


# --- Redis CLIENT LIST ----------------------------------------------------------------------------


async def test_redis_client_list_splits_by_laddr(servers: Servers) -> None:
    r = servers.redis
    plain = Redis(host=r.host, port=r.port, password=REDIS_PASSWORD, client_name="plain-cli")
    tls = Redis(
        connection_pool=ConnectionPool(
            connection_class=PrebuiltSSLConnection,
            ssl_context=make_client_context(servers.base.ca_pem),
            server_hostname=DNS_NAME,
            host=r.host,
            port=r.tls_port,
            password=REDIS_PASSWORD,
            client_name="tls-cli",
        )
    )
    session = RedisSession(
        r.host,
        r.tls_port,
        password=REDIS_PASSWORD,
        ssl_context=_ctx(servers.base.ca_pem),
        server_name=DNS_NAME,
    )
    try:
        assert await plain.ping() and await tls.ping()
        facts = await session.sample()
        assert facts.connected, facts.results
        assert facts.port == r.port and facts.tls_port == r.tls_port and facts.tls_auth_clients == "no"
        assert facts.connected_over_tls
        assert facts.clients is not None
        by_name = {c.name: c for c in facts.clients}
        assert by_name["tls-cli"].tls and by_name["tls-cli"].laddr == f"{r.host}:{r.tls_port}"
        assert not by_name["plain-cli"].tls and by_name["plain-cli"].laddr == f"{r.host}:{r.port}"
        assert session.client_name not in by_name  # own connection excluded
        results = {x.check: x for x in facts.results}
        assert results["redis.listeners"].verdict is Verdict.OK
        assert results["redis.clients"].verdict is Verdict.WARN and "plain-cli" in results["redis.clients"].summary
        again = await session.sample()  # the kept connection answers again
        assert again.connected and {c.name for c in again.clients or ()} >= {"tls-cli", "plain-cli"}

        over_plain = await probe_redis(r.host, r.port, password=REDIS_PASSWORD)
        assert over_plain.connected and not over_plain.connected_over_tls
        assert {c.name for c in over_plain.clients or () if c.tls} == {"tls-cli", session.client_name}

        wrong = await probe_redis(r.host, r.port, password="wrong")
        assert not wrong.connected and wrong.results[0].verdict is Verdict.FAIL
    finally:
        await session.aclose()
        await plain.aclose()
        await tls.aclose()


# --- odds and ends --------------------------------------------------------------------------------


async def test_no_ca_means_unverified_warning(servers: Servers) -> None:
    r = await probe_pg_tls(servers.pg.host, servers.pg.port, server_name=DNS_NAME, ca_pem=None)
    assert r.verdict is Verdict.WARN and "NOT verified" in r.summary
    assert r.evidence["verified"] is False and r.evidence["fingerprint"] == servers.fingerprint


async def test_a_bug_in_the_probe_is_an_error_not_an_exception(servers: Servers) -> None:
    r = await probe_pg_tls(
        servers.pg.host,
        servers.pg.port,
        server_name=DNS_NAME,
        ca_pem="a str, not bytes",  # type: ignore[arg-type]
    )
    assert r.verdict is Verdict.ERROR and r.summary.startswith("probe bug")


async def test_library_clients_verify_the_pinned_name(servers: Servers) -> None:
    """asyncpg/redis-py/libpq dial the IP; what they verify is the name they were given."""
    r = servers.redis
    other = await probe_redis(
        r.host,
        r.tls_port,
        password=REDIS_PASSWORD,
        ssl_context=make_client_context(servers.base.ca_pem),
        server_name="other.test.internal",
    )
    assert not other.connected and other.results[0].verdict is Verdict.FAIL
    assert "certificate rejected" in other.results[0].summary

    b = servers.bouncer
    admin = await probe_pgbouncer(
        b.host,
        b.port,
        admin_user=ADMIN_USER,
        admin_password=ADMIN_PASSWORD,
        sslmode="verify-full",
        ca_pem=servers.base.ca_pem,
        server_name="other.test.internal",
    )
    assert not admin.connected and admin.results[0].verdict is Verdict.FAIL
    assert "TLS to the admin console failed" in admin.results[0].summary


async def test_kept_sessions_recover_from_a_dropped_connection(servers: Servers) -> None:
    """A refresh after the server dropped the kept connection reconnects within the same sample."""
    r = servers.redis
    redis_session = RedisSession(r.host, r.port, password=REDIS_PASSWORD)
    b = servers.bouncer
    bouncer_session = PgBouncerSession(b.host, b.port, admin_user=ADMIN_USER, admin_password=ADMIN_PASSWORD)
    pg_session = PostgresSession(
        servers.pg.host,
        servers.pg.port,
        user=SUPERUSER,
        password=SUPERUSER_PASSWORD,
        dbname="postgres",
        ssl_ctx_or_none=_ctx(servers.base.ca_pem),
    )
    killer = Redis(host=r.host, port=r.port, password=REDIS_PASSWORD)
    try:
        assert (await redis_session.sample()).connected
        assert (await bouncer_session.sample()).connected
        assert (await pg_session.sample()).connected

        # Redis: CLIENT KILL the session's connection
        killed = await killer.execute_command(  # type: ignore[no-untyped-call]
            "CLIENT", "KILL", "SKIPME", "yes", "TYPE", "normal", "LADDR", f"{r.host}:{r.port}"
        )
        assert int(killed) >= 1
        # PgBouncer: the admin connection's socket dies under it (as when PgBouncer restarts)
        conn = bouncer_session._conn
        assert conn is not None
        sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        # Postgres: the backend is terminated
        await asyncio.to_thread(
            servers.pg.psql,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'rollout-cockpit-probe'",
        )

        again = await asyncio.gather(redis_session.sample(), bouncer_session.sample(), pg_session.sample())
        for facts in again:
            assert facts.connected, facts.results
    finally:
        await redis_session.aclose()
        await bouncer_session.aclose()
        await pg_session.aclose()
        await killer.aclose()


async def test_clean_probes_leave_no_trace_in_server_logs(servers: Servers) -> None:
    """Verified probes close with close_notify: no 'TLS handshake error'/EOF lines per probe."""
    b, pg, r = servers.bouncer_expiring, servers.pg, servers.redis
    before = (b.proc.log_text(), pg.proc.log_text(), r.proc.log_text())
    for _ in range(3):
        await probe_pg_tls(b.host, b.port, server_name=DNS_NAME, ca_pem=servers.base.ca_pem)
        await probe_pg_tls(pg.host, pg.port, server_name=DNS_NAME, ca_pem=servers.base.ca_pem)
        await probe_redis_tls(
            r.host, r.tls_port, server_name=DNS_NAME, ca_pem=servers.base.ca_pem, password=REDIS_PASSWORD
        )
    await asyncio.sleep(0.2)
    new_bouncer = b.proc.log_text()[len(before[0]) :]
    new_pg = pg.proc.log_text()[len(before[1]) :]
    new_redis = r.proc.log_text()[len(before[2]) :]
    assert "WARNING" not in new_bouncer and "error" not in new_bouncer.lower(), new_bouncer
    # (the broken-Leg-2 PgBouncer keeps retrying in the background: "tlsv1 alert unknown ca")
    assert "EOF detected" not in new_pg and "reset by peer" not in new_pg, new_pg
    assert "Error" not in new_redis, new_redis
