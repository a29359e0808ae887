"""One verified TLS handshake against a listener, as a check: dial (maybe a tunnel's local end), run a
plaintext preamble (Postgres's SSLRequest), hand-shake verifying `server_name` against the internal CA,
then optionally talk over TLS (Redis's PING). A certificate problem is classified (does not chain / does
not cover the name / expired) and a second, unverified handshake fetches the certificate so the result
says what is served either way. `probes.tls` builds the Postgres, PgBouncer and Redis probes on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from probes.model import CheckResult, Verdict, bug_result
from probes.tlscontext import CertInfo, cert_info, normalize_fingerprint, unverified_context, verified_context

EXPIRY_WARN_DAYS = 30
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


def ms_since(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


class Outcome(Exception):
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


class Dialer:
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
            raise Outcome(Verdict.FAIL, f"nothing listening on {self.where}", listening=False) from exc
        except TimeoutError as exc:
            raise Outcome(
                Verdict.ERROR,
                f"connect to {self.where} timed out after {self.timeout:g}s (host down or filtered?)",
                stage="connect",
            ) from exc
        except OSError as exc:
            raise Outcome(Verdict.ERROR, f"cannot reach {self.where}: {exc.strerror or exc}", stage="connect") from exc
        _nodelay(self.writer)
        return self.reader, self.writer

    def timed_out(self) -> Outcome:
        hint = " — a plaintext port?" if self.stage == "the TLS handshake" else ""
        return Outcome(
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


async def start_tls(d: Dialer, ctx: ssl.SSLContext, server_name: str) -> ssl.SSLObject:
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


Preamble = Callable[[Dialer], Awaitable[None]]
After = Callable[[Dialer], Awaitable[tuple[Verdict, str, dict[str, Any]] | None]]


async def _fetch_unverified(
    host: str,
    port: int,
    server_name: str,
    deadline: float,
    timeout: float,  # noqa: ASYNC109 - only for messages; the deadline bounds the work
    preamble: Preamble | None,
) -> tuple[CertInfo | None, str | None]:
    """Second, unverified handshake: which certificate is served (for the report only)."""
    d = Dialer(host, port, deadline, timeout)
    try:
        async with asyncio.timeout_at(deadline):
            await d.connect()
            if preamble is not None:
                await preamble(d)
            obj = await start_tls(d, unverified_context(), server_name)
            der = obj.getpeercert(binary_form=True)
        if not der:
            return None, "server sent no certificate"
        return cert_info(der), None
    except Outcome as out:
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


@dataclass
class _Handshake:
    """What the verified handshake (and the conversation after it) gave."""

    verify_exc: ssl.SSLCertVerificationError | None = None
    info: CertInfo | None = None
    after: tuple[Verdict, str, dict[str, Any]] | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


Result = Callable[[Verdict, str, dict[str, Any]], CheckResult]


async def tls_probe(
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
    deadline = asyncio.get_running_loop().time() + timeout
    base: dict[str, Any] = {"dialled": target, "server_name": server_name}

    def result(verdict: Verdict, summary: str, evidence: dict[str, Any]) -> CheckResult:
        return CheckResult(check, target, verdict, summary, {**base, **evidence}, ms_since(t0))

    try:
        try:
            ctx = verified_context(ca_pem) if ca_pem is not None else unverified_context()
        except (ssl.SSLError, ValueError) as exc:
            return result(Verdict.ERROR, f"cannot load the internal CA PEM: {exc}", {})
        d = Dialer(host, port, deadline, timeout)
        hs = await _handshake(d, ctx, server_name, ca_pem, preamble, after, result)
        if isinstance(hs, CheckResult):
            return hs
        if hs.verify_exc is not None:
            info, fetch_error = await _fetch_unverified(host, port, server_name, deadline, timeout, preamble)
            return _not_verified(hs.verify_exc, info, fetch_error, server_name, expected_cert_fingerprint, result)
        return _verified(hs, server_name, ca_pem, expected_cert_fingerprint, result)
    except Exception as exc:
        return bug_result(check, target, exc, t0)


async def _handshake(
    d: Dialer,
    ctx: ssl.SSLContext,
    server_name: str,
    ca_pem: bytes | None,
    preamble: Preamble | None,
    after: After | None,
    result: Result,
) -> _Handshake | CheckResult:
    """Connect, the preamble, the verified handshake and the conversation after it, under the deadline;
    a finished result when the attempt ended early."""
    hs = _Handshake()
    evidence = hs.evidence
    try:
        async with asyncio.timeout_at(d.deadline):
            await d.connect()
            if preamble is not None:
                await preamble(d)
            try:
                obj = await start_tls(d, ctx, server_name)
            except ssl.SSLCertVerificationError as exc:
                hs.verify_exc = exc
            else:
                der = obj.getpeercert(binary_form=True)
                cipher = obj.cipher()
                evidence["tls_version"] = obj.version()
                evidence["cipher"] = cipher[0] if cipher else None
                evidence["verified"] = ca_pem is not None
                hs.info = cert_info(der) if der else None
                if after is not None:
                    d.stage = "the first answer over TLS"
                    hs.after = await after(d)
    except Outcome as out:
        return result(out.verdict, out.summary, {**evidence, **out.evidence})
    except TimeoutError:
        d.polite = False
        late = d.timed_out()
        return result(late.verdict, late.summary, {**evidence, **late.evidence})
    except ssl.SSLError as exc:
        d.polite = False
        return result(
            Verdict.FAIL,
            f"TLS handshake with {d.where} failed: {_handshake_reason(exc)}",
            {**evidence, "ssl_error": str(exc)},
        )
    except (ConnectionError, asyncio.IncompleteReadError, EOFError) as exc:
        d.polite = False
        return result(
            Verdict.FAIL,
            f"{d.where} closed the connection during {d.stage}",
            {**evidence, "error": f"{type(exc).__name__}: {exc}"},
        )
    finally:
        await d.aclose()
    return hs


def _not_verified(
    exc: ssl.SSLCertVerificationError,
    info: CertInfo | None,
    fetch_error: str | None,
    server_name: str,
    expected_cert_fingerprint: str | None,
    result: Result,
) -> CheckResult:
    """FAIL with why the certificate did not verify, and what is served (from the unverified fetch)."""
    kind, summary = _classify_verify_error(exc, server_name, info)
    evidence: dict[str, Any] = {
        "verified": False,
        "verify_error": kind,
        "verify_code": exc.verify_code,
        "verify_message": str(exc.verify_message),
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


def _verified(
    hs: _Handshake, server_name: str, ca_pem: bytes | None, expected_cert_fingerprint: str | None, result: Result
) -> CheckResult:
    """The verdict of a handshake that completed: the certificate served, its expiry, the conversation after."""
    evidence, info = hs.evidence, hs.info
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
                "serving a different certificate than the one in Secrets Manager — restarted since the change?",
                evidence,
            )
    if verdict is Verdict.OK and info.days_left < EXPIRY_WARN_DAYS:
        verdict = Verdict.WARN
        summary = f"certificate expires in {info.days_left} days (on {info.not_after.date().isoformat()})"
    if hs.after is not None:
        a_verdict, a_summary, a_evidence = hs.after
        evidence.update(a_evidence)
        if a_verdict.rank >= verdict.rank:
            verdict = a_verdict
            summary = a_summary
        else:
            summary = f"{summary}; {a_summary}"
    return result(verdict, summary, evidence)
