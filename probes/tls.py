"""TLS probes: what a Postgres/PgBouncer or Redis listener actually serves.

Every probe dials ``(host, port)`` -- which may be the local end of an SSH tunnel -- and verifies
the certificate against ``server_name`` (the DB's private DNS name), never against the address
dialled. Trust is the internal CA only: a context made here never loads the system bundle.

A probe never raises. A certificate problem is classified (does not chain to the internal CA /
does not cover the name / expired) and, to say *what* is being served, a second handshake
without verification fetches the certificate so its subject, SANs, expiry and fingerprint can
be reported either way (`probes.tlsprobe`; the contexts are `probes.tlscontext`'s).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
import time
from typing import Any

from probes.model import CheckResult, Verdict, bug_result
from probes.tlsprobe import Dialer, Outcome, ms_since, tls_probe

__all__ = [
    "SSL_REQUEST",
    "probe_pg_tls",
    "probe_plain_port",
    "probe_redis_plain",
    "probe_redis_tls",
]

# Length 8, code 80877103: the Postgres SSLRequest. The answer is one byte, ``S`` or ``N``.
SSL_REQUEST = struct.pack("!ii", 8, 80877103)
PROBE_CLIENT_NAME = "rollout-cockpit-probe-handshake"  # what the Redis handshake probe calls itself


async def _pg_ssl_request(d: Dialer) -> None:
    """Send the SSLRequest; return on ``S``; raise an outcome otherwise."""
    assert d.reader is not None and d.writer is not None
    d.stage = "the answer to the SSLRequest"
    d.writer.write(SSL_REQUEST)
    await d.writer.drain()
    # A real server answers exactly one byte and then waits for the ClientHello; more than one
    # byte (an SSH banner also starts with 'S') means something else is listening.
    answer = await d.reader.read(64)
    if answer == b"S":
        return
    if answer == b"N":
        d.polite = True
        raise Outcome(Verdict.FAIL, "TLS not offered (answered N)", answer="N")
    if not answer:
        raise Outcome(
            Verdict.FAIL,
            f"{d.where} closed the connection without answering the SSLRequest (not a Postgres/PgBouncer server?)",
            answer="",
        )
    if answer[:1] == b"E":
        msg = _pg_error_message(answer)
        if msg:
            raise Outcome(Verdict.FAIL, f"server refused the SSLRequest: {msg}", answer=answer.hex())
    raise Outcome(
        Verdict.FAIL,
        f"not a Postgres/PgBouncer server: answered 0x{answer[:16].hex()}",
        answer=answer[:64].hex(),
    )


def _pg_error_message(data: bytes) -> str | None:
    """The M field of an ErrorResponse, if `data` looks like one."""
    if len(data) < 6:
        return None
    (length,) = struct.unpack("!i", data[1:5])
    if length < 4 or length > 10000:
        return None
    for field in data[5 : 1 + length].split(b"\x00"):
        if field[:1] == b"M":
            return field[1:].decode("utf-8", "replace")
    return None


# --- Postgres / PgBouncer -------------------------------------------------------------------------


async def probe_pg_tls(
    host: str,
    port: int,
    *,
    server_name: str,
    ca_pem: bytes | None,
    expected_cert_fingerprint: str | None = None,
    timeout: float = 3.0,  # noqa: ASYNC109 - a probe's budget, enforced with asyncio.timeout_at inside
    label: str = "postgres",
) -> CheckResult:
    """SSLRequest then a verified TLS handshake, as a Postgres or PgBouncer client would do.

    FAIL "TLS not offered (answered N)" when the server declines (``evidence["answer"] == "N"``);
    whether that is expected is the caller's call. ``check`` is ``f"tls.{label}"``.
    """
    return await tls_probe(
        check=f"tls.{label}",
        host=host,
        port=port,
        server_name=server_name,
        ca_pem=ca_pem,
        expected_cert_fingerprint=expected_cert_fingerprint,
        timeout=timeout,
        preamble=_pg_ssl_request,
        after=None,
    )


# --- Redis ----------------------------------------------------------------------------------------

_RESP_TYPES = b"+-:$*_#,(!=%~>|"


async def _resp_line(reader: asyncio.StreamReader, what: str) -> bytes:
    """One RESP reply line (without CRLF). Non-RESP bytes end the probe at once, no waiting."""
    first = await reader.read(1)
    if not first:
        raise EOFError(f"connection closed without {what}")
    if first not in _RESP_TYPES:
        rest = b""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.05):
                rest = await reader.read(63)
        junk = first + rest
        raise Outcome(Verdict.FAIL, f"not a Redis server: answered 0x{junk[:16].hex()}", answer=junk.hex())
    try:
        line = await reader.readuntil(b"\r\n")
    except asyncio.LimitOverrunError as exc:
        raise Outcome(Verdict.FAIL, f"not a Redis server: a {exc.consumed}+ byte line without CRLF") from exc
    return first + line[:-2]


def _resp_command(*args: str) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


async def _redis_auth_ping(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, password: str | None
) -> tuple[Verdict, str, dict[str, Any]]:
    """AUTH (if a password) and PING; the verdict is about the Redis conversation only. With AUTH the
    probe names itself in the same packet (CLIENT SETNAME), so a CLIENT LIST taken meanwhile — this
    cockpit's or a watcher's — counts it as the cockpit's own, never as a client of the link."""
    if password is not None:
        writer.write(_resp_command("AUTH", password) + _resp_command("CLIENT", "SETNAME", PROBE_CLIENT_NAME))
        await writer.drain()
        auth = await _resp_line(reader, "an answer to AUTH")
        await _resp_line(reader, "an answer to CLIENT SETNAME")
        if auth.startswith(b"-"):
            err = auth[1:].decode("utf-8", "replace")
            if err.startswith("WRONGPASS"):
                return Verdict.FAIL, "password rejected (WRONGPASS)", {"auth": "WRONGPASS", "answered": True}
            if "without any password configured" in err or "no password is set" in err:
                return (
                    Verdict.WARN,
                    "AUTH given but the server has no password set",
                    {
                        "auth": err[:120],
                        "answered": True,
                    },
                )
            return Verdict.FAIL, f"AUTH refused: {err[:120]}", {"auth": err[:120], "answered": True}
    writer.write(_resp_command("PING"))
    await writer.drain()
    pong = await _resp_line(reader, "an answer to PING")
    text = pong.decode("utf-8", "replace")
    if pong == b"+PONG":
        return Verdict.OK, "PING answered PONG", {"ping": "PONG", "answered": True}
    if text.startswith("-NOAUTH"):
        return (
            Verdict.WARN,
            "server requires a password (NOAUTH) and none was given",
            {
                "ping": "NOAUTH",
                "answered": True,
            },
        )
    if text.startswith("-WRONGPASS"):
        return Verdict.FAIL, "password rejected (WRONGPASS)", {"ping": "WRONGPASS", "answered": True}
    return Verdict.FAIL, f"unexpected answer to PING: {text[:120]}", {"ping": text[:120], "answered": True}


def _is_client_cert_required(exc: BaseException) -> bool:
    text = f"{getattr(exc, 'reason', '')} {exc}".lower().replace("_", " ")
    return "certificate required" in text or "peer did not return a certificate" in text


async def probe_redis_tls(
    host: str,
    port: int,
    *,
    server_name: str,
    ca_pem: bytes | None,
    expected_cert_fingerprint: str | None = None,
    password: str | None = None,
    timeout: float = 3.0,  # noqa: ASYNC109 - a probe's budget, enforced with asyncio.timeout_at inside
) -> CheckResult:
    """Verified TLS handshake to a Redis TLS port, then AUTH (if a password) and PING.

    A PING is sent even without a password: with TLS 1.3 a server that requires client
    certificates (``tls-auth-clients yes``) completes the handshake and rejects us only on the
    first read -- reported as WARN "listener requires a client certificate", not as broken TLS.
    A NOAUTH answer (no password given) still proves TLS works and does not lower an OK.
    """

    async def after(d: Dialer) -> tuple[Verdict, str, dict[str, Any]]:
        assert d.reader is not None and d.writer is not None
        try:
            verdict, summary, evidence = await _redis_auth_ping(d.reader, d.writer, password)
        except (ssl.SSLError, ConnectionError, EOFError, asyncio.IncompleteReadError) as exc:
            d.polite = False
            if _is_client_cert_required(exc) or isinstance(exc, EOFError | ConnectionResetError):
                return (
                    Verdict.WARN,
                    "listener requires a client certificate (tls-auth-clients yes)",
                    {"client_cert_required": True, "error": f"{type(exc).__name__}: {exc}"},
                )
            raise
        if verdict is Verdict.WARN and evidence.get("ping") == "NOAUTH" and password is None:
            return Verdict.OK, "Redis answered over TLS (NOAUTH: no password given)", evidence
        return verdict, summary, evidence

    return await tls_probe(
        check="tls.redis",
        host=host,
        port=port,
        server_name=server_name,
        ca_pem=ca_pem,
        expected_cert_fingerprint=expected_cert_fingerprint,
        timeout=timeout,
        preamble=None,
        after=after,
    )


async def probe_redis_plain(
    host: str,
    port: int,
    *,
    password: str | None,
    timeout: float = 3.0,  # noqa: ASYNC109 - a probe's budget, enforced with asyncio.timeout_at inside
) -> CheckResult:
    """PING over plaintext (AUTH first if a password). NOAUTH → WARN, WRONGPASS → FAIL.

    ``evidence["answered"]`` is True whenever a Redis answered at all, whatever the verdict.
    """
    t0 = time.perf_counter()
    target = f"{host}:{port}"
    check = "redis.plain"
    loop = asyncio.get_running_loop()
    d = Dialer(host, port, loop.time() + timeout, timeout)
    try:
        try:
            async with asyncio.timeout_at(d.deadline):
                reader, writer = await d.connect()
                d.stage = "an answer to PING"
                verdict, summary, evidence = await _redis_auth_ping(reader, writer, password)
                d.polite = True
            if verdict is Verdict.OK:
                summary = "plaintext listener answered PONG"
            return CheckResult(check, target, verdict, summary, evidence, ms_since(t0))
        except Outcome as out:
            return CheckResult(check, target, out.verdict, out.summary, out.evidence, ms_since(t0))
        except TimeoutError:
            late = d.timed_out()
            return CheckResult(check, target, late.verdict, late.summary, late.evidence, ms_since(t0))
        except (ConnectionError, EOFError, asyncio.IncompleteReadError) as exc:
            return CheckResult(
                check,
                target,
                Verdict.FAIL,
                f"{target} closed the connection without a Redis answer (a TLS-only port?)",
                {"answered": False, "error": f"{type(exc).__name__}: {exc}"},
                ms_since(t0),
            )
        finally:
            await d.aclose()
    except Exception as exc:
        return bug_result(check, target, exc, t0)


# --- plain TCP ------------------------------------------------------------------------------------


async def probe_plain_port(
    host: str,
    port: int,
    *,
    timeout: float = 3.0,  # noqa: ASYNC109 - a probe's budget, enforced with asyncio.timeout_at inside
) -> CheckResult:
    """Is anything accepting TCP connections on host:port? OK = listening, FAIL = refused.

    ERROR when the connect times out (cannot tell). The verdict is about "listening"; whether
    that is wanted (e.g. plaintext dropped after REDIS_FORCE_TLS) is the caller's call:
    ``evidence["listening"]`` is True/False, or None when unknown.
    """
    t0 = time.perf_counter()
    target = f"{host}:{port}"
    check = "port.listening"
    loop = asyncio.get_running_loop()
    d = Dialer(host, port, loop.time() + timeout, timeout)
    try:
        try:
            await d.connect()
            return CheckResult(
                check, target, Verdict.OK, f"something is listening on {target}", {"listening": True}, ms_since(t0)
            )
        except Outcome as out:
            evidence = {"listening": out.evidence.get("listening"), **out.evidence}
            return CheckResult(check, target, out.verdict, out.summary, evidence, ms_since(t0))
        finally:
            if d.writer is not None:
                d.writer.transport.abort()  # no conversation was started; nothing to say goodbye to
                d.writer = None
    except Exception as exc:
        return bug_result(check, target, exc, t0)
