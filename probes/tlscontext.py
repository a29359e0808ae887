"""TLS client contexts that trust the internal CA only (never the system bundle) and verify the DB's DNS
name whatever address is dialled, and what a served certificate says (`CertInfo`)."""

from __future__ import annotations

import functools
import hashlib
import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID


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
def verified_context(ca_pem: bytes) -> ssl.SSLContext:
    # Probes pass server_hostname explicitly; a cached context saves re-parsing the CA each time.
    return make_client_context(ca_pem)


@functools.lru_cache(maxsize=1)
def unverified_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


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
