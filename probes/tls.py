"""TLS probes: what a Postgres/PgBouncer or Redis listener actually serves.

Every probe dials ``(host, port)`` -- which may be the local end of an SSH tunnel -- and verifies
the certificate against ``server_name`` (the DB's private DNS name), never against the address
dialled. Trust is the internal CA only: a context made here never loads the system bundle.

A probe never raises. A certificate problem is classified (does not chain to the internal CA /
does not cover the name / expired) and, to say *what* is being served, a second handshake
without verification fetches the certificate so its subject, SANs, expiry and fingerprint can
be reported either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import socket
import ssl
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from probes.model import CheckResult, Verdict

__all__ = [
    "EXPIRY_WARN_DAYS",
    "SSL_REQUEST",
    "CertInfo",
    "bug_result",
    "cert_info",
    "make_client_context",
    "normalize_fingerprint",
    "probe_pg_tls",
    "probe_plain_port",
    "probe_redis_plain",
    "probe_redis_tls",
]

# Length 8, code 80877103: the Postgres SSLRequest. The answer is one byte, ``S`` or ``N``.
SSL_REQUEST = struct.pack("!ii", 8, 80877103)
EXPIRY_WARN_DAYS = 30
PROBE_CLIENT_NAME = "rollout-cockpit-probe-handshake"  # what the Redis handshake probe calls itself
_CLOSE_GRACE = 1.0  # seconds allowed for a polite close (TLS close_notify) after the verdict

# OpenSSL X509_V_ERR_* codes, as carried by ssl.SSLCertVerificationError.verify_code
_V_NOT_YET_VALID = 9
_V_EXPIRED = 10
_V_HOSTNAME_MISMATCH = 62
_V_IP_MISMATCH = 64
_V_CHAIN = frozenset(
    {
        2,  # unable to get issuer certificate
        4,  # unable to decrypt certificate signature
        7,  # certificate signature failure
        18,  # self-signed certificate
        19,  # self-signed certificate in chain
        20,  # unable to get local issuer certificate
        21,  # unable to verify the first certificate
        24,  # invalid CA certificate
        30,  # authority and subject key identifier mismatch
        32,  # key usage does not include certificate signing
    }
)


# --- contexts -------------------------------------------------------------------------------------


class _NamePinnedContext(ssl.SSLContext):
    """A client context that always verifies (and sends SNI for) one fixed server name.

    Libraries that only know the address they dial (asyncpg, redis-py) pass that address as
    ``server_hostname``; this context replaces it, so the DB's DNS name is verified whatever
    address -- an IP, a tunnel's local end -- is dialled.
    """

    pinned_server_name: str | None = None

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        if not server_side and self.pinned_server_name:
            server_hostname = self.pinned_server_name
        return super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)

    def wrap_socket(
        self,
        sock: socket.socket,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        if not server_side and self.pinned_server_name:
            server_hostname = self.pinned_server_name
        return super().wrap_socket(
            sock, server_side, do_handshake_on_connect, suppress_ragged_eofs, server_hostname, session
        )


def make_client_context(ca_pem: bytes | None, *, server_name: str | None = None) -> ssl.SSLContext:
    """A TLS >= 1.2 client context trusting ONLY `ca_pem` (never the system bundle).

    check_hostname is on and certificates are required. With ``ca_pem=None`` the context trusts
    nothing, so every verified handshake fails (there is no internal CA to check against).
    With `server_name`, the context verifies that name whatever ``server_hostname`` the library
    using it passes (for asyncpg and redis-py, which pass the address they dial).
    Raises ``ssl.SSLError`` / ``ValueError`` if `ca_pem` holds no readable certificate.
    """
    ctx = _NamePinnedContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.pinned_server_name = server_name
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    if ca_pem is not None:
        ctx.load_verify_locations(cadata=ca_pem.decode("ascii", errors="replace"))
    return ctx


@functools.lru_cache(maxsize=32)
def _verified_context(ca_pem: bytes) -> ssl.SSLContext:
    # Probes pass server_hostname explicitly; a cached context saves re-parsing the CA each time.
    return make_client_context(ca_pem)


@functools.lru_cache(maxsize=1)
def _unverified_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


# --- certificates ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CertInfo:
    subject: str
    issuer: str
    common_name: str | None
    sans: tuple[str, ...]
    not_before: datetime
    not_after: datetime
    fingerprint: str  # sha256 of the DER, hex lowercase, no colons

    @property
    def days_left(self) -> int:
        return int((self.not_after - datetime.now(UTC)).total_seconds() // 86400)

    def evidence(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "sans": list(self.sans),
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "days_left": self.days_left,
            "fingerprint": self.fingerprint,
        }


def cert_info(der: bytes) -> CertInfo:
    cert = x509.load_der_x509_certificate(der)
    sans: list[str] = []
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans += [f"DNS:{n}" for n in ext.get_values_for_type(x509.DNSName)]
        sans += [f"IP:{ip}" for ip in ext.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        pass
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return CertInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        common_name=str(cns[0].value) if cns else None,
        sans=tuple(sans),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        fingerprint=hashlib.sha256(der).hexdigest(),
    )


def normalize_fingerprint(fp: str) -> str:
    """'SHA256:AB:CD…' / 'abcd…' → 'abcd…' (hex lowercase, no separators)."""
    s = fp.strip().lower()
    for prefix in ("sha256:", "sha256=", "sha-256:"):
        if s.startswith(prefix):
            s = s[len(prefix) :]
    return "".join(ch for ch in s if ch in "0123456789abcdef")


# --- shared plumbing ------------------------------------------------------------------------------


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def bug_result(check: str, target: str, exc: BaseException, t0: float) -> CheckResult:
    """ERROR for an exception nobody anticipated: a bug in the probe, not a fact about the server."""
    return CheckResult(
        check,
        target,
        Verdict.ERROR,
        f"probe bug (not a server fact): {type(exc).__name__}: {exc}",
        {"exception": type(exc).__name__, "detail": str(exc)[:500]},
        _ms(t0),
    )


class _Outcome(Exception):
    """Internal: ends a probe early with a finished verdict."""

    def __init__(self, verdict: Verdict, summary: str, **evidence: Any) -> None:
        super().__init__(summary)
        self.verdict = verdict
        self.summary = summary
        self.evidence = evidence


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _close(writer: asyncio.StreamWriter | None) -> None:
    """Close politely (a TLS stream sends close_notify), but never wait long."""
    if writer is None:
        return
    try:
        writer.close()
        async with asyncio.timeout(_CLOSE_GRACE):
            await writer.wait_closed()
    except Exception:  # includes TimeoutError: give up politely, drop the connection
        writer.transport.abort()


class _Dialer:
    """One attempt: connect, optional plaintext preamble, optional TLS, all under one deadline."""

    def __init__(self, host: str, port: int, deadline: float, timeout: float) -> None:
        self.host = host
        self.port = port
        self.deadline = deadline
        self.timeout = timeout
        self.stage = "connect"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        # Say goodbye properly (TCP FIN; TLS close_notify) only after a clean exchange; after a
        # timeout or a broken handshake the stream state is unknown, so the connection is dropped.
        self.polite = False

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self.stage = "connect"
        try:
            async with asyncio.timeout_at(self.deadline):
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        except ConnectionRefusedError as exc:
            raise _Outcome(Verdict.FAIL, f"nothing listening on {self.where}", listening=False) from exc
        except TimeoutError as exc:
            raise _Outcome(
                Verdict.ERROR,
                f"connect to {self.where} timed out after {self.timeout:g}s (host down or filtered?)",
                stage="connect",
            ) from exc
        except OSError as exc:
            raise _Outcome(
                Verdict.ERROR, f"cannot reach {self.where}: {exc.strerror or exc}", stage="connect"
            ) from exc
        _nodelay(self.writer)
        return self.reader, self.writer

    def timed_out(self) -> _Outcome:
        hint = " — a plaintext port?" if self.stage == "the TLS handshake" else ""
        return _Outcome(
            Verdict.ERROR,
            f"no answer from {self.where} within {self.timeout:g}s (waiting for {self.stage}{hint})",
            stage=self.stage,
        )

    async def aclose(self) -> None:
        w, self.writer = self.writer, None
        if w is None:
            return
        if self.polite:
            await _close(w)
        else:
            w.transport.abort()


async def _pg_ssl_request(d: _Dialer) -> None:
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
        raise _Outcome(Verdict.FAIL, "TLS not offered (answered N)", answer="N")
    if not answer:
        raise _Outcome(
            Verdict.FAIL,
            f"{d.where} closed the connection without answering the SSLRequest "
            "(not a Postgres/PgBouncer server?)",
            answer="",
        )
    if answer[:1] == b"E":
        msg = _pg_error_message(answer)
        if msg:
            raise _Outcome(Verdict.FAIL, f"server refused the SSLRequest: {msg}", answer=answer.hex())
    raise _Outcome(
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


async def _start_tls(d: _Dialer, ctx: ssl.SSLContext, server_name: str) -> ssl.SSLObject:
    assert d.writer is not None
    d.stage = "the TLS handshake"
    await d.writer.start_tls(ctx, server_hostname=server_name)
    d.polite = True
    obj = d.writer.get_extra_info("ssl_object")
    if not isinstance(obj, ssl.SSLObject):  # pragma: no cover - asyncio always provides it
        raise RuntimeError("no ssl_object after start_tls")
    return obj


def _handshake_reason(exc: ssl.SSLError) -> str:
    reason = getattr(exc, "reason", None)
    text = str(reason or exc).lower().replace("_", " ")
    if "wrong version number" in text or "packet length too long" in text or "record layer" in text:
        return "the peer does not speak TLS here (plaintext port?)"
    if "certificate required" in text:
        return "the server requires a client certificate"
    if "protocol version" in text:
        return "no common TLS version (server below TLS 1.2?)"
    if "handshake failure" in text:
        return "the server aborted the handshake (no common cipher, or a client certificate required)"
    return f"{exc.reason or exc}" if getattr(exc, "reason", None) else str(exc)


Preamble = Callable[[_Dialer], Awaitable[None]]
After = Callable[[_Dialer], Awaitable[tuple[Verdict, str, dict[str, Any]] | None]]


async def _fetch_unverified(
    host: str,
    port: int,
    server_name: str,
    deadline: float,
    timeout: float,  # noqa: ASYNC109 - only for messages; the deadline bounds the work
    preamble: Preamble | None,
) -> tuple[CertInfo | None, str | None]:
    """Second, unverified handshake: which certificate is served (for the report only)."""
    d = _Dialer(host, port, deadline, timeout)
    try:
        async with asyncio.timeout_at(deadline):
            await d.connect()
            if preamble is not None:
                await preamble(d)
            obj = await _start_tls(d, _unverified_context(), server_name)
            der = obj.getpeercert(binary_form=True)
        if not der:
            return None, "server sent no certificate"
        return cert_info(der), None
    except _Outcome as out:
        return None, out.summary
    except TimeoutError:
        d.polite = False
        return None, d.timed_out().summary
    except Exception as exc:
        d.polite = False
        return None, f"{type(exc).__name__}: {exc}"
    finally:
        await d.aclose()


def _classify_verify_error(
    exc: ssl.SSLCertVerificationError, server_name: str, info: CertInfo | None
) -> tuple[str, str]:
    code = exc.verify_code
    message = str(exc.verify_message or exc)
    if code in (_V_HOSTNAME_MISMATCH, _V_IP_MISMATCH):
        covers = f" (it covers {', '.join(info.sans)})" if info and info.sans else ""
        return "hostname", f"certificate does not cover {server_name}{covers}"
    if code == _V_EXPIRED:
        when = info.not_after.isoformat() if info else "an unknown date"
        if info and info.not_after > datetime.now(UTC):
            # the leaf is valid, so something above it in the chain has expired
            return "expired", f"certificate chain has an expired CA certificate ({message})"
        return "expired", f"certificate expired on {when}"
    if code == _V_NOT_YET_VALID:
        when = info.not_before.isoformat() if info else "a later date"
        return "not-yet-valid", f"certificate is not valid until {when} (clock skew?)"
    if code in _V_CHAIN:
        return "chain", "certificate does not chain to the internal CA"
    return "verify", f"certificate verification failed: {message}"


async def _tls_probe(
    *,
    check: str,
    host: str,
    port: int,
    server_name: str,
    ca_pem: bytes | None,
    expected_cert_fingerprint: str | None,
    timeout: float,  # noqa: ASYNC109 - turned into a deadline (asyncio.timeout_at) below
    preamble: Preamble | None,
    after: After | None,
) -> CheckResult:
    t0 = time.perf_counter()
    target = f"{host}:{port}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    base: dict[str, Any] = {"dialled": target, "server_name": server_name}

    def result(verdict: Verdict, summary: str, evidence: dict[str, Any]) -> CheckResult:
        return CheckResult(check, target, verdict, summary, {**base, **evidence}, _ms(t0))

    try:
        try:
            ctx = _verified_context(ca_pem) if ca_pem is not None else _unverified_context()
        except (ssl.SSLError, ValueError) as exc:
            return result(Verdict.ERROR, f"cannot load the internal CA PEM: {exc}", {})

        d = _Dialer(host, port, deadline, timeout)
        verify_exc: ssl.SSLCertVerificationError | None = None
        info: CertInfo | None = None
        after_outcome: tuple[Verdict, str, dict[str, Any]] | None = None
        evidence: dict[str, Any] = {}
        try:
            async with asyncio.timeout_at(deadline):
                await d.connect()
                if preamble is not None:
                    await preamble(d)
                try:
                    obj = await _start_tls(d, ctx, server_name)
                except ssl.SSLCertVerificationError as exc:
                    verify_exc = exc
                else:
                    der = obj.getpeercert(binary_form=True)
                    cipher = obj.cipher()
                    evidence["tls_version"] = obj.version()
                    evidence["cipher"] = cipher[0] if cipher else None
                    evidence["verified"] = ca_pem is not None
                    info = cert_info(der) if der else None
                    if after is not None:
                        d.stage = "the first answer over TLS"
                        after_outcome = await after(d)
        except _Outcome as out:
            return result(out.verdict, out.summary, {**evidence, **out.evidence})
        except TimeoutError:
            d.polite = False
            late = d.timed_out()
            return result(late.verdict, late.summary, {**evidence, **late.evidence})
        except ssl.SSLError as exc:
            d.polite = False
            return result(
                Verdict.FAIL,
                f"TLS handshake with {target} failed: {_handshake_reason(exc)}",
                {**evidence, "ssl_error": str(exc)},
            )
        except (ConnectionError, asyncio.IncompleteReadError, EOFError) as exc:
            d.polite = False
            return result(
                Verdict.FAIL,
                f"{target} closed the connection during {d.stage}",
                {**evidence, "error": f"{type(exc).__name__}: {exc}"},
            )
        finally:
            await d.aclose()

        if verify_exc is not None:
            info, fetch_error = await _fetch_unverified(host, port, server_name, deadline, timeout, preamble)
            kind, summary = _classify_verify_error(verify_exc, server_name, info)
            evidence = {
                "verified": False,
                "verify_error": kind,
                "verify_code": verify_exc.verify_code,
                "verify_message": str(verify_exc.verify_message),
            }
            if info is not None:
                evidence.update(info.evidence())
                if expected_cert_fingerprint:
                    evidence["fingerprint_matches_expected"] = info.fingerprint == normalize_fingerprint(
                        expected_cert_fingerprint
                    )
            if fetch_error:
                evidence["cert_fetch_error"] = fetch_error
            return result(Verdict.FAIL, summary, evidence)

        if info is None:
            return result(Verdict.FAIL, "server sent no certificate", evidence)
        evidence.update(info.evidence())
        verdict, summary = Verdict.OK, f"{evidence['tls_version']} ok, certificate covers {server_name}"
        if ca_pem is None:
            verdict = Verdict.WARN
            summary = f"{evidence['tls_version']} offered but NOT verified (no internal CA given)"
        if expected_cert_fingerprint:
            matches = info.fingerprint == normalize_fingerprint(expected_cert_fingerprint)
            evidence["expected_fingerprint"] = normalize_fingerprint(expected_cert_fingerprint)
            evidence["fingerprint_matches_expected"] = matches
            if not matches:
                return result(
                    Verdict.FAIL,
                    "serving a different certificate than the one in Secrets Manager"
                    " — restarted since the change?",
                    evidence,
                )
        if verdict is Verdict.OK and info.days_left < EXPIRY_WARN_DAYS:
            verdict = Verdict.WARN
            summary = f"certificate expires in {info.days_left} days (on {info.not_after.date().isoformat()})"
        if after_outcome is not None:
            a_verdict, a_summary, a_evidence = after_outcome
            evidence.update(a_evidence)
            if a_verdict.rank >= verdict.rank:
                verdict = a_verdict
                summary = a_summary
            else:
                summary = f"{summary}; {a_summary}"
        return result(verdict, summary, evidence)
    except Exception as exc:
        return bug_result(check, target, exc, t0)


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
    return await _tls_probe(
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
        raise _Outcome(Verdict.FAIL, f"not a Redis server: answered 0x{junk[:16].hex()}", answer=junk.hex())
    try:
        line = await reader.readuntil(b"\r\n")
    except asyncio.LimitOverrunError as exc:
        raise _Outcome(Verdict.FAIL, f"not a Redis server: a {exc.consumed}+ byte line without CRLF") from exc
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

    async def after(d: _Dialer) -> tuple[Verdict, str, dict[str, Any]]:
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

    return await _tls_probe(
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
    d = _Dialer(host, port, loop.time() + timeout, timeout)
    try:
        try:
            async with asyncio.timeout_at(d.deadline):
                reader, writer = await d.connect()
                d.stage = "an answer to PING"
                verdict, summary, evidence = await _redis_auth_ping(reader, writer, password)
                d.polite = True
            if verdict is Verdict.OK:
                summary = "plaintext listener answered PONG"
            return CheckResult(check, target, verdict, summary, evidence, _ms(t0))
        except _Outcome as out:
            return CheckResult(check, target, out.verdict, out.summary, out.evidence, _ms(t0))
        except TimeoutError:
            late = d.timed_out()
            return CheckResult(check, target, late.verdict, late.summary, late.evidence, _ms(t0))
        except (ConnectionError, EOFError, asyncio.IncompleteReadError) as exc:
            return CheckResult(
                check,
                target,
                Verdict.FAIL,
                f"{target} closed the connection without a Redis answer (a TLS-only port?)",
                {"answered": False, "error": f"{type(exc).__name__}: {exc}"},
                _ms(t0),
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
    d = _Dialer(host, port, loop.time() + timeout, timeout)
    try:
        try:
            await d.connect()
            return CheckResult(
                check, target, Verdict.OK, f"something is listening on {target}", {"listening": True}, _ms(t0)
            )
        except _Outcome as out:
            evidence = {"listening": out.evidence.get("listening"), **out.evidence}
            return CheckResult(check, target, out.verdict, out.summary, evidence, _ms(t0))
        finally:
            if d.writer is not None:
                d.writer.transport.abort()  # no conversation was started; nothing to say goodbye to
                d.writer = None
    except Exception as exc:
        return bug_result(check, target, exc, t0)
