"""Certificate material for the lab and the tests: an internal CA and server certs.

Everything is PEM bytes: EC P-256 keys (PKCS8, unencrypted, ``BEGIN PRIVATE KEY``),
SHA-256 signatures, a CA with BasicConstraints(ca=True) and a server cert with SANs and
ExtendedKeyUsage serverAuth, as OpenSSL 3 servers (Postgres, PgBouncer, Redis) and
Python's ``ssl`` with ``check_hostname`` expect.

`variant` derives the broken materials the probes must catch ("bad-san", "expired", ...):
each differs from its base in exactly the property its name says.
"""

from __future__ import annotations

import base64
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "DEFAULT_SERVER_DAYS",
    "VARIANT_KINDS",
    "Material",
    "b64",
    "make_ca",
    "make_material",
    "make_server_cert",
    "variant",
    "write_material",
]

DEFAULT_SERVER_DAYS = 825
VARIANT_KINDS: tuple[str, ...] = ("good", "bad-san", "expired", "expiring-soon", "wrong-ca", "key-mismatch")
BAD_SAN_NAME = "wrong.invalid"
_SKEW = timedelta(minutes=5)  # back-date not_before so a slightly slow clock still accepts a new cert


@dataclass(frozen=True)
class Material:
    """The three PEMs the platform stores (CA, server cert, server key) plus the CA's key."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    ca_key_pem: bytes  # kept so more certs can be issued from the same CA

    def __repr__(self) -> str:  # never print key material by accident
        return "Material(<ca>, <cert>, <key>, <ca key>)"


# --- helpers ---------------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(dt: datetime) -> datetime:
    """A naive datetime is taken as UTC."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_to_pem(key: CertificateIssuerPrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_signing_key(key_pem: bytes, what: str) -> CertificateIssuerPrivateKeyTypes:
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(
        key,
        ec.EllipticCurvePrivateKey
        | rsa.RSAPrivateKey
        | dsa.DSAPrivateKey
        | ed25519.Ed25519PrivateKey
        | ed448.Ed448PrivateKey,
    ):
        raise ValueError(f"{what} is not a key type that can sign certificates")
    return key


def _sig_hash(key: CertificateIssuerPrivateKeyTypes) -> hashes.SHA256 | None:
    # Ed25519/Ed448 sign without a separate digest; everything else uses SHA-256.
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return None
    return hashes.SHA256()


def _spki_der(key: CertificateIssuerPrivateKeyTypes) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _cert_ips(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]


# --- public API ------------------------------------------------------------------------------------


def make_ca(common_name: str = "Lab Internal CA", *, days: int = 3650) -> tuple[bytes, bytes]:
    """A self-signed CA: (cert_pem, key_pem)."""
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _SKEW)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_to_pem(key)


_SERVER_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


def _issuer(ca_cert_pem: bytes, ca_key_pem: bytes) -> tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes]:
    """The CA's certificate and signing key, checked to belong together."""
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = _load_signing_key(ca_key_pem, "ca_key_pem")
    ca_spki = ca_cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if ca_spki != _spki_der(ca_key):
        raise ValueError("ca_key_pem does not belong to ca_cert_pem")
    return ca_cert, ca_key


def _authority_key_id(
    ca_cert: x509.Certificate, ca_key: CertificateIssuerPrivateKeyTypes
) -> x509.AuthorityKeyIdentifier:
    try:
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        )
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())


def make_server_cert(
    ca_cert_pem: bytes,
    ca_key_pem: bytes,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str] = (),
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    key_pem: bytes | None = None,
) -> tuple[bytes, bytes]:
    """A server cert issued by the CA: (cert_pem, key_pem). Reuses `key_pem` when given.

    Defaults: valid from 5 minutes ago for `DEFAULT_SERVER_DAYS` days. Naive datetimes are UTC.
    The subject CN is the first DNS name (clients use only the SAN).
    """
    if isinstance(dns_names, str) or isinstance(ip_addresses, str):
        raise TypeError("dns_names and ip_addresses are sequences of strings, not a single string")
    if not dns_names and not ip_addresses:
        raise ValueError("a server cert needs at least one DNS name or IP address")
    ips = [ipaddress.ip_address(ip) for ip in ip_addresses]

    ca_cert, ca_key = _issuer(ca_cert_pem, ca_key_pem)
    key = _load_signing_key(key_pem, "key_pem") if key_pem is not None else _new_key()

    now = _now()
    start = _aware(not_before) if not_before is not None else now - _SKEW
    end = _aware(not_after) if not_after is not None else now + timedelta(days=DEFAULT_SERVER_DAYS)
    if end <= start:
        raise ValueError(f"not_after ({end.isoformat()}) must be after not_before ({start.isoformat()})")

    cn = dns_names[0] if dns_names and len(dns_names[0]) <= 64 else "lab server"
    aki = _authority_key_id(ca_cert, ca_key)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ip) for ip in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_SERVER_KEY_USAGE, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(aki, critical=False)
        .sign(ca_key, _sig_hash(ca_key))
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_to_pem(key)


def make_material(dns_name: str, ip_addresses: Sequence[str] = (), *, days: int = 825) -> Material:
    """A fresh CA and a server cert for `dns_name` (and the IPs), valid for `days` days."""
    ca_pem, ca_key_pem = make_ca()
    cert_pem, key_pem = make_server_cert(
        ca_pem, ca_key_pem, [dns_name], ip_addresses, not_after=_now() + timedelta(days=days)
    )
    return Material(ca_pem=ca_pem, cert_pem=cert_pem, key_pem=key_pem, ca_key_pem=ca_key_pem)


def variant(kind: str, base: Material, dns_name: str) -> Material:
    """Material derived from `base`, differing in the one property `kind` names.

    - "good": a rotation: new key and cert for `dns_name` from the same CA.
    - "bad-san": same key, cert's SAN is only "wrong.invalid" (no `dns_name`, no IPs).
    - "expired": same key, cert valid from 30 days ago until yesterday.
    - "expiring-soon": same key, cert expires in 10 days less an hour ("9 days left").
    - "wrong-ca": cert/key unchanged; ca_pem (and ca_key_pem) replaced by an unrelated CA with the
      same subject name, so only the signature tells them apart (a regenerated CA).
    - "key-mismatch": cert unchanged; key_pem replaced by a fresh unrelated key.
    IP SANs of the base cert are kept, except for "bad-san".
    """
    if kind not in VARIANT_KINDS:
        raise ValueError(f"unknown variant {kind!r}; expected one of {', '.join(VARIANT_KINDS)}")
    base_cert = x509.load_pem_x509_certificate(base.cert_pem)
    ips = _cert_ips(base_cert)
    now = _now()

    def issue(names: Sequence[str], ip_list: Sequence[str], **kw: datetime) -> Material:
        key = None if kind == "good" else base.key_pem
        cert_pem, key_pem = make_server_cert(base.ca_pem, base.ca_key_pem, names, ip_list, key_pem=key, **kw)
        return Material(ca_pem=base.ca_pem, cert_pem=cert_pem, key_pem=key_pem, ca_key_pem=base.ca_key_pem)

    if kind == "good":
        return issue([dns_name], ips)
    if kind == "bad-san":
        return issue([BAD_SAN_NAME], ())
    if kind == "expired":
        return issue([dns_name], ips, not_before=now - timedelta(days=30), not_after=now - timedelta(days=1))
    if kind == "expiring-soon":
        # an hour short of 10 days, so "9 days left" holds however long after issue it is checked
        return issue([dns_name], ips, not_after=now + timedelta(days=10) - timedelta(hours=1))
    if kind == "wrong-ca":
        base_ca = x509.load_pem_x509_certificate(base.ca_pem)
        cns = base_ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        cn = str(cns[0].value) if cns else "Lab Internal CA"
        other_ca, other_ca_key = make_ca(cn)
        return Material(ca_pem=other_ca, cert_pem=base.cert_pem, key_pem=base.key_pem, ca_key_pem=other_ca_key)
    # "key-mismatch"
    return Material(
        ca_pem=base.ca_pem,
        cert_pem=base.cert_pem,
        key_pem=_key_to_pem(_new_key()),
        ca_key_pem=base.ca_key_pem,
    )


def b64(pem: bytes) -> str:
    """Base64 of the PEM (one line), as the platform stores the INTERNAL_*_B64 values."""
    return base64.b64encode(pem).decode("ascii")


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # an existing temp file keeps its old mode otherwise
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_material(m: Material, directory: Path) -> None:
    """Write ca.crt, server.crt (0644) and server.key (0600) into `directory` (created if needed).

    Each file is replaced atomically, so a server reading it never sees half a file.
    """
    directory.mkdir(parents=True, exist_ok=True)
    _write_atomic(directory / "ca.crt", m.ca_pem, 0o644)
    _write_atomic(directory / "server.crt", m.cert_pem, 0o644)
    _write_atomic(directory / "server.key", m.key_pem, 0o600)
