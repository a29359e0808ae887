"""Parsing cert material (no I/O): the PEM inside a base64 value, certificates (PEM bundle or DER) and
their public facts, private keys. Bad input is a ValueError with a reason a person can act on; nothing
here ever returns or shows key material — only subjects, SANs, dates and SHA-256 fingerprints."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
PEM_BODY = re.compile(rb"-----BEGIN [A-Z0-9 ]+-----(.*?)-----END [A-Z0-9 ]+-----", re.S)


@dataclass(frozen=True)
class CertInfo:
    """Parsed facts of one certificate (all public)."""

    subject: str
    issuer: str
    sans_dns: tuple[str, ...]
    sans_ip: tuple[str, ...]
    not_before: datetime  # UTC, aware
    not_after: datetime  # UTC, aware
    is_ca: bool
    fingerprint_sha256: str  # of the DER certificate
    pubkey_sha256: str  # of the DER SubjectPublicKeyInfo

    def to_evidence(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "sans_dns": list(self.sans_dns),
            "sans_ip": list(self.sans_ip),
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "is_ca": self.is_ca,
            "fingerprint_sha256": self.fingerprint_sha256,
            "pubkey_sha256": self.pubkey_sha256,
        }


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def spki_sha256(public_key: Any) -> str:
    der: bytes = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return sha256_hex(der)


def _pem_labels(data: bytes) -> list[str]:
    return [m.decode("ascii") for m in _PEM_BEGIN.findall(data)]


def load_certs(data: bytes) -> list[x509.Certificate]:
    """All certificates in a PEM bundle, or the one DER certificate. ValueError on anything else.

    Each certificate is also parsed through (`info_of`), so a malformed extension fails here, as bad
    input, and not later as if it were a bug in a check.
    """
    certs = _parse_certs(data)
    for c in certs:
        info_of(c)
    return certs


def _parse_certs(data: bytes) -> list[x509.Certificate]:
    if b"-----BEGIN" in data:
        labels = _pem_labels(data)
        if not any(label in ("CERTIFICATE", "TRUSTED CERTIFICATE", "X509 CERTIFICATE") for label in labels):
            if any("PRIVATE KEY" in label for label in labels):
                raise ValueError("holds a private key, not a certificate")
            raise ValueError(f"holds PEM of type {', '.join(labels) or '?'}, not a certificate")
        try:
            return x509.load_pem_x509_certificates(data)
        except ValueError as e:
            raise ValueError(f"PEM certificate does not parse ({short(e)})") from None
    try:
        return [x509.load_der_x509_certificate(data)]
    except ValueError as e:
        raise ValueError(f"neither PEM nor DER certificate ({short(e)})") from None


def info_of(cert: x509.Certificate) -> CertInfo:
    """Facts of a certificate; ValueError when the certificate itself is malformed."""
    try:
        public_key = cert.public_key()
    except UnsupportedAlgorithm as e:
        raise ValueError(f"certificate's public key algorithm is not supported ({short(e)})") from None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns: tuple[str, ...] = tuple(san.get_values_for_type(x509.DNSName))
        ips: tuple[str, ...] = tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        dns, ips = (), ()
    try:
        is_ca = bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        is_ca = False
    return CertInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        sans_dns=dns,
        sans_ip=ips,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        is_ca=is_ca,
        fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
        pubkey_sha256=spki_sha256(public_key),
    )


def decode_b64_pem(value: str) -> bytes:
    """The PEM bytes inside a base64 value; ValueError with a human reason otherwise."""
    text = value.strip()
    if not text:
        raise ValueError("is empty")
    if text.startswith("-----BEGIN"):
        raise ValueError("is a raw PEM, not base64 of the PEM (init.sh base64-decodes it)")
    compact = "".join(text.split())  # base64 wrapped over lines is fine
    try:
        raw = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"is not valid base64 ({short(e)})") from None
    if b"-----BEGIN" not in raw:
        try:
            twice = base64.b64decode(b"".join(raw.split()), validate=True)
        except (binascii.Error, ValueError):
            twice = b""
        if b"-----BEGIN" in twice:
            raise ValueError("is base64-encoded twice (decodes to base64, not to a PEM)")
        raise ValueError("decodes to something that is not PEM (no '-----BEGIN' line)")
    return raw


def cert_info(pem: bytes) -> CertInfo:
    """Facts of the first certificate in `pem` (PEM or DER); ValueError if there is none."""
    return info_of(load_certs(pem)[0])


def fingerprint(pem: bytes) -> str:
    """SHA-256 of the first certificate's DER (PEM or DER input): lowercase hex, no colons."""
    return load_certs(pem)[0].fingerprint(hashes.SHA256()).hex()


def load_key(key_pem: bytes) -> PrivateKeyTypes:
    labels = _pem_labels(key_pem)
    if labels and not any("PRIVATE KEY" in label for label in labels):
        if "CERTIFICATE" in labels:
            raise ValueError("holds a certificate, not a private key")
        raise ValueError(f"holds PEM of type {', '.join(labels)}, not a private key")
    if "ENCRYPTED PRIVATE KEY" in labels or b"Proc-Type: 4,ENCRYPTED" in key_pem:
        raise ValueError("is an encrypted private key; the servers need it unencrypted")
    try:
        return serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:  # "password was not given but private key is encrypted"
        raise ValueError("is an encrypted private key; the servers need it unencrypted") from None
    except ValueError as e:
        raise ValueError(f"private key does not parse ({short(e)})") from None
    except UnsupportedAlgorithm as e:
        raise ValueError(f"private key uses an unsupported algorithm ({short(e)})") from None


def pubkey_fingerprint_of_key(key_pem: bytes) -> str:
    """SHA-256 of the DER SubjectPublicKeyInfo derived from a private key (PEM)."""
    return spki_sha256(load_key(key_pem).public_key())


def short(e: BaseException, limit: int = 120) -> str:
    """An exception's message, first line, cut short (never used with key bytes in it)."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return msg if len(msg) <= limit else msg[: limit - 1] + "…"
